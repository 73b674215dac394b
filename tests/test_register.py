"""Registration with e-mail verification and approval, and password reset, through the ``register`` function."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.bootstrap import Platform
from tests.conftest import Client
from tests.test_auth import RecordingApi, body_of, claims_of, error_of, mails, recording_api

SUPPORT = "support@workbench.localhost"
CAROL = {
    "namespace": "carol",
    "name": "Carol Jones",
    "email": "carol@example.org",
    "password": "carol-password",
    "organization": "Example University",
    "description": "Research on things",
}


@pytest.fixture
def api(client: Callable[[str], Client], platform: Platform) -> Iterator[RecordingApi]:
    yield from recording_api(client, platform)


def register(api: RecordingApi, **changes: Any) -> Any:
    return api.call("POST", "/api/register", json=CAROL | changes)


def verification_link(platform: Platform, to: str = "carol@example.org") -> tuple[str, str]:
    """``(user, token)`` from the last verification e-mail to ``to``."""
    for message in reversed(mails(platform, to)):
        found = re.search(r"/#/register/verify\?t=(\S+)&u=(\S+)", body_of(message))
        if found is not None:
            return found.group(2), found.group(1)
    raise AssertionError(f"no verification e-mail to {to}")


def verify(api: RecordingApi, platform: Platform) -> Any:
    user, token = verification_link(platform)
    return api.call("PUT", "/api/register/verify", json={"u": user, "t": token})


def decision_links(platform: Platform) -> dict[str, str]:
    """The approve and deny paths (with query) from the last request e-mail to the support address."""
    body = body_of(mails(platform, SUPPORT)[-1])
    links = dict(re.findall(r"^(Approve|Deny): (\S+)$", body, flags=re.MULTILINE))
    assert set(links) == {"Approve", "Deny"}, body
    origin = platform.settings.server.origin
    for url in links.values():
        assert url.startswith(origin + "/api/register/")
    return {name.lower(): url.removeprefix(origin) for name, url in links.items()}


def status_of(platform: Platform, user: str = "carol") -> str:
    record = platform.store.get_account(user)
    assert record is not None
    return record.account.status


def can_log_in(api: RecordingApi, username: str = "carol", password: str | None = None) -> bool:
    """Whether ``username`` logs in with ``password`` (carol's by default)."""
    password = CAROL["password"] if password is None else password
    response = api.call("POST", "/api/authenticate", json={"username": username, "password": password})
    assert response.status_code in (200, 401), response.get_json()
    return bool(response.status_code == 200)


def account_count(api: RecordingApi) -> int:
    response = api.call("GET", "/api/accounts", api.admin())
    assert response.status_code == 200
    return len(response.get_json())


# --- registration ------------------------------------------------------------------------------


def test_register_creates_an_unverified_account_and_mails_a_verification_link(
    api: RecordingApi, platform: Platform
) -> None:
    response = register(api)

    assert response.status_code == 200, response.get_json()
    account = response.get_json()
    assert account["id"] == account["namespace"] == "carol"
    assert account["status"] == "unverified"
    assert account["password"] == ""
    assert account["token"] == ""
    assert account["email"] == "carol@example.org"
    assert account["organization"] == "Example University"

    record = platform.store.get_account("carol")
    assert record is not None
    assert record.password_hash.startswith("$argon2")
    assert record.account.password == ""
    assert record.account.token

    sent = mails(platform, "carol@example.org")
    assert len(sent) == 1
    user, token = verification_link(platform)
    assert user == "carol"
    assert token == record.account.token
    assert f"{platform.settings.server.origin}/#/register/verify?t={token}&u=carol" in body_of(sent[0])
    assert not can_log_in(api)


def test_verify_then_approve_lets_the_user_log_in(api: RecordingApi, platform: Platform) -> None:
    assert register(api).status_code == 200

    response = verify(api, platform)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"message": "Account has been verified."}
    assert status_of(platform) == "unapproved"
    assert not can_log_in(api)

    request = mails(platform, SUPPORT)
    assert len(request) == 1
    assert "carol" in request[0]["Subject"]
    assert "carol@example.org" in body_of(request[0])
    links = decision_links(platform)
    user, token = verification_link(platform)
    decision = parse_qs(urlsplit(links["approve"]).query)
    assert decision["u"] == [user]
    assert decision["t"] != [token]  # a new token, which the registrant never sees
    assert parse_qs(urlsplit(links["deny"]).query) == decision

    response = api.call("GET", links["approve"])
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"message": "Account has been approved."}
    assert status_of(platform) == "approved"
    assert can_log_in(api)
    assert can_log_in(api, "carol@example.org")
    assert "approved" in mails(platform, "carol@example.org")[-1]["Subject"]

    # The links are spent: neither decision can be made again.
    assert api.call("GET", links["approve"]).status_code == 404
    assert api.call("GET", links["deny"]).status_code == 404
    assert status_of(platform) == "approved"


def test_deny_leaves_an_account_that_cannot_log_in(api: RecordingApi, platform: Platform) -> None:
    assert register(api).status_code == 200
    assert verify(api, platform).status_code == 200
    links = decision_links(platform)

    response = api.call("GET", links["deny"])
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"message": "Account has been denied."}
    assert status_of(platform) == "denied"
    assert not can_log_in(api)
    assert "denied" in mails(platform, "carol@example.org")[-1]["Subject"]

    assert api.call("GET", links["approve"]).status_code == 404
    assert status_of(platform) == "denied"
    assert not can_log_in(api)


def test_verify_twice_is_404(api: RecordingApi, platform: Platform) -> None:
    assert register(api).status_code == 200
    assert verify(api, platform).status_code == 200
    sent = len(mails(platform))

    response = verify(api, platform)
    assert response.status_code == 404
    error_of(response)
    assert status_of(platform) == "unapproved"
    assert len(mails(platform)) == sent


@pytest.mark.parametrize(
    ("user", "token"),
    [("carol", "wrong-token"), ("carol", ""), ("nobody", None), ("", None), ("admin", None)],
)
def test_verify_with_a_wrong_user_or_token_is_404(
    api: RecordingApi, platform: Platform, user: str, token: str | None
) -> None:
    assert register(api).status_code == 200
    _, real_token = verification_link(platform)

    response = api.call(
        "PUT", "/api/register/verify", json={"u": user, "t": real_token if token is None else token}
    )
    assert response.status_code == 404
    assert error_of(response) == "Token not found"
    assert status_of(platform) == "unverified"
    assert mails(platform, SUPPORT) == []


@pytest.mark.parametrize("decision", ["approve", "deny"])
def test_decisions_need_the_right_token_and_a_verified_account(
    api: RecordingApi, platform: Platform, decision: str
) -> None:
    assert register(api).status_code == 200
    user, token = verification_link(platform)

    # Before verification the token does not decide anything.
    assert api.call("GET", f"/api/register/{decision}?u={user}&t={token}").status_code == 404
    assert status_of(platform) == "unverified"

    assert verify(api, platform).status_code == 200
    for query in (f"u={user}&t=wrong", f"u=nobody&t={token}", f"u={user}", "", f"t={token}"):
        response = api.call("GET", f"/api/register/{decision}?{query}")
        assert response.status_code == 404, query
        error_of(response)
    assert status_of(platform) == "unapproved"


@pytest.mark.parametrize("body", [{"u": "carol"}, {"t": "token"}, {}], ids=["no-token", "no-user", "neither"])
def test_verify_without_both_fields_is_400(api: RecordingApi, body: dict[str, str]) -> None:
    response = api.call("PUT", "/api/register/verify", json=body)
    assert response.status_code == 400
    error_of(response)


@pytest.mark.parametrize("environment", [{"WORKBENCH_REQUIRE_APPROVAL": "false"}])
def test_without_required_approval_verify_approves(api: RecordingApi, platform: Platform) -> None:
    assert not platform.settings.auth.require_approval
    assert register(api).status_code == 200

    response = verify(api, platform)
    assert response.status_code == 200, response.get_json()
    assert "approved" in response.get_json()["message"]
    assert status_of(platform) == "approved"
    assert mails(platform, SUPPORT) == []
    assert can_log_in(api)
    assert verify(api, platform).status_code == 404


def test_register_cannot_choose_status_limits_or_token(api: RecordingApi, platform: Platform) -> None:
    limits = {
        "cpuMax": 64000,
        "cpuDefault": 64000,
        "memMax": 512000,
        "memDefault": 512000,
        "storageQuota": 9999,
    }
    response = register(api, status="approved", resourceLimits=limits, token="chosen-token", lastLogin=5)

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "unverified"
    record = platform.store.get_account("carol")
    assert record is not None
    assert record.account.status == "unverified"
    assert record.account.token != "chosen-token"
    configured = platform.settings.limits
    assert record.account.resourceLimits.cpuMax == configured.cpu_max
    assert record.account.resourceLimits.memMax == configured.mem_max
    assert record.account.resourceLimits.storageQuota == configured.storage_quota
    assert response.get_json()["resourceLimits"]["cpuMax"] == configured.cpu_max
    assert not can_log_in(api)


def test_register_uses_the_id_when_no_namespace_is_given(api: RecordingApi) -> None:
    body = {name: value for name, value in CAROL.items() if name != "namespace"} | {"id": "carol"}
    response = api.call("POST", "/api/register", json=body)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["namespace"] == "carol"


# --- refused registrations ---------------------------------------------------------------------


def test_a_user_name_in_use_is_409(api: RecordingApi, platform: Platform) -> None:
    assert register(api).status_code == 200
    count = account_count(api)

    response = register(api, email="other@example.org")
    assert response.status_code == 409
    assert error_of(response) == "Username is in use"
    response = register(api, namespace="admin", email="other@example.org")
    assert response.status_code == 409
    assert error_of(response) == "Username is in use"
    assert account_count(api) == count
    assert mails(platform, "other@example.org") == []


@pytest.mark.parametrize(
    "email", ["carol@example.org", "CAROL@example.org", "Carol@Example.Org", " carol@example.org "]
)
def test_an_email_in_use_in_any_case_is_409(api: RecordingApi, platform: Platform, email: str) -> None:
    assert register(api).status_code == 200
    count = account_count(api)

    response = register(api, namespace="carol2", email=email)
    assert response.status_code == 409
    assert "mail" in error_of(response)
    assert platform.store.get_account("carol2") is None
    assert account_count(api) == count


def test_the_support_address_of_the_admin_is_in_use(api: RecordingApi) -> None:
    response = register(api, email=SUPPORT.upper())
    assert response.status_code == 409


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"namespace": "Carol"}, "namespace"),
        ({"namespace": "carol_jones"}, "namespace"),
        ({"namespace": "1carol"}, "namespace"),
        ({"namespace": "ca"}, "namespace"),
        ({"namespace": "carol-"}, "namespace"),
        ({"namespace": "c" * 33}, "namespace"),
        ({"namespace": "../etc"}, "namespace"),
        ({"namespace": ""}, "namespace"),
        ({"namespace": 7}, "namespace"),
        ({"email": "carol"}, "email"),
        ({"email": "carol@example"}, "email"),
        ({"email": "carol @example.org"}, "email"),
        ({"email": ""}, "email"),
        ({"password": "short"}, "password"),
        ({"password": ""}, "password"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"status": "superuser"}, "status"),
    ],
)
def test_bad_fields_are_400_naming_the_field(
    api: RecordingApi, platform: Platform, changes: dict[str, Any], field: str
) -> None:
    count = account_count(api)

    response = register(api, **changes)
    assert response.status_code == 400
    assert error_of(response).startswith(f"{field}:"), error_of(response)
    assert account_count(api) == count
    assert mails(platform) == []


def test_a_missing_name_is_400(api: RecordingApi) -> None:
    body = {name: value for name, value in CAROL.items() if name != "name"}
    response = api.call("POST", "/api/register", json=body)
    assert response.status_code == 400
    assert error_of(response).startswith("name:")


@pytest.mark.parametrize("data", ['{"namespace": "carol",', "not json", "", "[]", '"carol"'])
def test_a_malformed_body_is_400(api: RecordingApi, platform: Platform, data: str) -> None:
    count = account_count(api)
    response = api.call("POST", "/api/register", data=data, content_type="application/json")
    assert response.status_code == 400
    error_of(response)
    assert account_count(api) == count
    assert mails(platform) == []


# --- password reset ----------------------------------------------------------------------------


def reset_link_token(platform: Platform, to: str = "alice@example.org") -> str:
    found = re.search(r"/#/recover\?t=(\S+)", body_of(mails(platform, to)[-1]))
    assert found is not None
    return found.group(1)


@pytest.mark.parametrize(
    "path",
    [
        "/api/reset/alice",
        "/api/reset?userId=alice",
        "/api/reset?userId=alice@example.org",
        "/api/reset?userId=ALICE@example.org",
    ],
)
def test_reset_mails_a_link_with_a_reset_token(api: RecordingApi, platform: Platform, path: str) -> None:
    api.make_user("alice", "alice-password")

    response = api.call("POST", path)
    assert response.status_code == 200, response.get_json()
    assert set(response.get_json()) == {"message"}
    sent = mails(platform, "alice@example.org")
    assert len(sent) == 1
    assert "reset" in sent[0]["Subject"]
    claims = claims_of(reset_link_token(platform))
    assert claims["user"] == "alice"
    assert claims["scope"] == "reset"
    assert claims["admin"] is False


def test_a_reset_token_sets_the_password(api: RecordingApi, platform: Platform) -> None:
    api.make_user("alice", "alice-password")
    assert api.call("POST", "/api/reset/alice").status_code == 200
    token = reset_link_token(platform)

    response = api.call("PUT", "/api/change_password", token, json={"password": "alice-new-password"})
    assert response.status_code == 200, response.get_json()
    assert set(response.get_json()) == {"message"}
    assert not can_log_in(api, "alice", "alice-password")
    assert can_log_in(api, "alice", "alice-new-password")
    record = platform.store.get_account("alice")
    assert record is not None
    assert record.password_hash.startswith("$argon2")


def test_change_password_with_a_normal_token(api: RecordingApi, platform: Platform) -> None:
    token = api.make_user("alice", "alice-password")
    before = platform.store.get_account("alice")
    assert before is not None

    response = api.call("PUT", "/api/change_password", token, json={"password": "alice-new-password"})
    assert response.status_code == 200, response.get_json()
    assert not can_log_in(api, "alice", "alice-password")
    assert can_log_in(api, "alice", "alice-new-password")
    after = platform.store.get_account("alice")
    assert after is not None
    assert after.password_hash != before.password_hash
    assert after.account == before.account.model_copy(update={"lastLogin": after.account.lastLogin})


@pytest.mark.parametrize("password", ["", "short", "12345"])
def test_a_short_new_password_is_400_and_changes_nothing(
    api: RecordingApi, platform: Platform, password: str
) -> None:
    token = api.make_user("alice", "alice-password")
    before = platform.store.get_account("alice")
    assert before is not None

    response = api.call("PUT", "/api/change_password", token, json={"password": password})
    assert response.status_code == 400
    assert error_of(response).startswith("password:")
    after = platform.store.get_account("alice")
    assert after is not None
    assert after.password_hash == before.password_hash
    assert can_log_in(api, "alice", "alice-password")


def test_change_password_needs_a_valid_token(api: RecordingApi) -> None:
    token = api.make_user("alice", "alice-password")
    for bad in (None, "garbage", token[:-4] + "AAAA"):
        response = api.call("PUT", "/api/change_password", bad, json={"password": "alice-new-password"})
        assert response.status_code == 401
        error_of(response)
    assert can_log_in(api, "alice", "alice-password")


@pytest.mark.parametrize(
    "path", ["/api/reset/nobody", "/api/reset?userId=nobody", "/api/reset?userId=nobody@example.org"]
)
def test_reset_of_an_unknown_account_answers_as_for_a_known_one(
    api: RecordingApi, platform: Platform, path: str
) -> None:
    """As the Go apiserver does: the answer does not tell who has an account."""
    api.make_user("alice", "alice-password")
    known = api.call("POST", "/api/reset/alice")
    assert len(mails(platform)) == 1

    response = api.call("POST", path)
    assert response.status_code == known.status_code == 200
    assert response.get_json() == known.get_json()
    assert len(mails(platform)) == 1


def test_reset_without_a_user_is_400(api: RecordingApi, platform: Platform) -> None:
    response = api.call("POST", "/api/reset")
    assert response.status_code == 400
    assert error_of(response).startswith("userId:")
    assert mails(platform) == []


def test_reset_of_an_unverified_account_sends_the_verification_link_again(
    api: RecordingApi, platform: Platform
) -> None:
    assert register(api).status_code == 200
    first = verification_link(platform)

    response = api.call("POST", "/api/reset/carol")
    assert response.status_code == 200
    sent = mails(platform, "carol@example.org")
    assert len(sent) == 2
    assert "/#/recover" not in body_of(sent[-1])
    assert verification_link(platform) == first
    assert verify(api, platform).status_code == 200
