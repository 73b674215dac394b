"""Logging in and out, the tokens the API issues and accepts, refreshing and checking them."""

from __future__ import annotations

import os
import re
import time
import warnings
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from typing import Any

import jwt
import pytest

from shared.adapters.mail import Outbox
from shared.bootstrap import Platform
from tests.conftest import ADMIN_PASSWORD, Api, Client

DAY = 24 * 3600


# --- helpers shared with test_register and test_accounts -------------------------------------


class RecordingApi(Api):
    """The conftest ``Api`` that keeps every answer and every password sent, to prove none leaks."""

    def __init__(self, client: Callable[[str], Client]) -> None:
        super().__init__(client)
        self.responses: list[Any] = []
        self.passwords: set[str] = {ADMIN_PASSWORD}
        self._admin_token: str | None = None

    def admin(self) -> str:
        """The admin's token, logged in once per test (argon2 makes each login cost ~50 ms)."""
        if self._admin_token is None:
            self._admin_token = super().admin()
        return self._admin_token

    def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        self._collect_passwords(kwargs.get("json"))
        response = super().call(method, path, token, **kwargs)
        self.responses.append(response)
        return response

    def _collect_passwords(self, document: Any) -> None:
        if isinstance(document, dict):
            for key, value in document.items():
                # Only passwords long enough not to turn up in a reply by chance.
                if key == "password" and isinstance(value, str) and len(value) >= 8:
                    self.passwords.add(value)
                else:
                    self._collect_passwords(value)
        elif isinstance(document, list):
            for item in document:
                self._collect_passwords(item)

    def assert_nothing_leaked(self, password_hashes: list[str]) -> None:
        assert self.responses, "the test made no call"
        for response in self.responses:
            text = response.get_data(as_text=True)
            where = f"{response.request.method} {response.request.path} answered {text[:200]!r}"
            assert "$argon2" not in text, where
            for password in self.passwords:
                assert password not in text, where
            for password_hash in password_hashes:
                assert password_hash not in text, where


def recording_api(client: Callable[[str], Client], platform: Platform) -> Iterator[RecordingApi]:
    """Body of each module's ``api`` fixture: after the test, no answer held a password or hash."""
    api = RecordingApi(client)
    hashes_before = [record.password_hash for record in platform.store.list_accounts()]
    yield api
    hashes_after = [record.password_hash for record in platform.store.list_accounts()]
    api.assert_nothing_leaked([h for h in hashes_before + hashes_after if h])


def mails(platform: Platform, to: str | None = None) -> list[EmailMessage]:
    """The messages in the platform's outbox, oldest first; only those to ``to`` when given."""
    found = Outbox(platform.data_dir / "outbox", "x").messages()
    return [message for message in found if to is None or message["To"] == to]


def body_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    content: str = part.get_content()
    return content


def error_of(response: Any) -> str:
    """The ``Error`` of an error answer, checking the body is exactly ``{"Error": "..."}``."""
    body = response.get_json()
    assert isinstance(body, dict), response.get_data(as_text=True)
    assert set(body) == {"Error"}, body
    message: str = body["Error"]
    assert message
    return message


def secret() -> str:
    return os.environ["WORKBENCH_JWT_SECRET"]


def claims_of(token: str, key: str | None = None) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, key or secret(), algorithms=["HS256"])
    return decoded


def generation(platform: Platform, user: str = "alice") -> str:
    """The token generation ``user``'s tokens carry now (claim ``gen``)."""
    record = platform.store.get_account(user)
    assert record is not None and record.token_generation
    return record.token_generation


def craft(key: str | None = None, **claims: Any) -> str:
    """A token signed with ``key`` (the platform's secret by default)."""
    now = int(time.time())
    document = {"user": "alice", "admin": False, "exp": now + 600, "orig_iat": now} | claims
    document = {name: value for name, value in document.items() if value is not None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(document, key or secret(), algorithm="HS256")


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def api(client: Callable[[str], Client], platform: Platform) -> Iterator[RecordingApi]:
    yield from recording_api(client, platform)


# --- logging in --------------------------------------------------------------------------------


def test_login_by_user_name_gives_an_hs256_token_with_the_go_claims(api: RecordingApi) -> None:
    api.make_user("alice", "alice-password")
    before = int(time.time())
    response = api.call("POST", "/api/authenticate", json={"username": "alice", "password": "alice-password"})
    after = int(time.time())

    assert response.status_code == 200
    assert set(response.get_json()) == {"token"}
    token = response.get_json()["token"]
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = claims_of(token)
    assert set(claims) == {"user", "admin", "exp", "orig_iat", "gen"}  # Go's, and the account generation
    assert claims["user"] == "alice"
    assert claims["admin"] is False
    assert before <= claims["orig_iat"] <= after
    assert claims["exp"] - claims["orig_iat"] == 30 * 60


def test_login_by_email_in_any_case(api: RecordingApi) -> None:
    api.make_user("alice", "alice-password")
    for address in ("alice@example.org", "Alice@Example.ORG"):
        response = api.call(
            "POST", "/api/authenticate", json={"username": address, "password": "alice-password"}
        )
        assert response.status_code == 200, response.get_json()
        assert claims_of(response.get_json()["token"])["user"] == "alice"


@pytest.mark.parametrize("environment", [{"WORKBENCH_TOKEN_MINUTES": "5"}])
def test_token_lifetime_follows_the_setting(api: RecordingApi, platform: Platform) -> None:
    assert platform.settings.auth.token_minutes == 5
    claims = claims_of(api.admin())
    assert claims["exp"] - claims["orig_iat"] == 5 * 60


def test_admin_token_says_admin(api: RecordingApi) -> None:
    claims = claims_of(api.admin())
    assert claims["user"] == "admin"
    assert claims["admin"] is True


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("alice", "wrong-password"),
        ("alice@example.org", "wrong-password"),
        ("alice", ""),
        ("nobody", "alice-password"),
        ("", "alice-password"),
        ("admin", "alice-password"),
    ],
)
def test_wrong_credentials_are_refused(api: RecordingApi, username: str, password: str) -> None:
    api.make_user("alice", "alice-password")
    response = api.call("POST", "/api/authenticate", json={"username": username, "password": password})
    assert response.status_code == 401
    assert "token" not in error_of(response)


@pytest.mark.parametrize("body", [{"username": "alice"}, {"password": "alice-password"}, {}, []])
def test_login_without_both_fields_is_400(api: RecordingApi, body: Any) -> None:
    response = api.call("POST", "/api/authenticate", json=body)
    assert response.status_code == 400
    error_of(response)


def test_login_with_malformed_json_is_400(api: RecordingApi) -> None:
    response = api.call(
        "POST", "/api/authenticate", data='{"username": "admin",', content_type="application/json"
    )
    assert response.status_code == 400
    assert "malformed JSON" in error_of(response)


@pytest.mark.parametrize("status", ["unverified", "unapproved", "denied"])
def test_accounts_not_approved_cannot_log_in(api: RecordingApi, platform: Platform, status: str) -> None:
    created = api.call(
        "POST",
        "/api/accounts",
        api.admin(),
        json={
            "namespace": "bob",
            "name": "Bob",
            "email": "bob@example.org",
            "password": "bob-password",
            "status": status,
        },
    )
    assert created.status_code == 200, created.get_json()
    record = platform.store.get_account("bob")
    assert record is not None
    assert record.account.status == status

    for username in ("bob", "bob@example.org"):
        response = api.call(
            "POST", "/api/authenticate", json={"username": username, "password": "bob-password"}
        )
        assert response.status_code == 401
        assert status in error_of(response)


def test_login_records_the_time(api: RecordingApi, platform: Platform) -> None:
    api.make_user("alice", "alice-password")
    record = platform.store.get_account("alice")
    assert record is not None
    assert abs(record.account.lastLogin - time.time()) < 60


def test_passwords_are_stored_as_argon2_hashes(api: RecordingApi, platform: Platform) -> None:
    api.make_user("alice", "alice-password")
    for user, password in (("admin", ADMIN_PASSWORD), ("alice", "alice-password")):
        record = platform.store.get_account(user)
        assert record is not None
        assert record.password_hash.startswith("$argon2")
        assert password not in record.password_hash
        assert password not in record.account.model_dump_json()


def test_the_jwt_secret_is_not_the_admin_password(api: RecordingApi) -> None:
    assert secret() != ADMIN_PASSWORD
    token = api.admin()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(token, ADMIN_PASSWORD, algorithms=["HS256"])
    forged = craft(key=ADMIN_PASSWORD, user="admin", admin=True)
    response = api.call("GET", "/api/accounts", forged)
    assert response.status_code == 401


@pytest.mark.parametrize("environment", [{"WORKBENCH_JWT_SECRET": ""}])
def test_without_a_configured_secret_one_is_generated_and_kept(api: RecordingApi, platform: Platform) -> None:
    assert "WORKBENCH_JWT_SECRET" not in os.environ
    token = api.admin()
    stored = (platform.data_dir / "secrets" / "jwt-secret").read_text().strip()
    assert len(stored) >= 32
    assert stored != ADMIN_PASSWORD
    assert claims_of(token, key=stored)["user"] == "admin"
    assert (platform.data_dir / "secrets" / "jwt-secret").stat().st_mode & 0o077 == 0


def test_logout_answers_200(api: RecordingApi) -> None:
    assert api.call("DELETE", "/api/authenticate").status_code == 200
    assert api.call("DELETE", "/api/authenticate", api.admin()).status_code == 200


# --- tokens on user routes ---------------------------------------------------------------------


def test_a_valid_token_reaches_a_user_route(api: RecordingApi) -> None:
    token = api.make_user()
    response = api.call("GET", "/api/stacks", token)
    assert response.status_code == 200
    assert response.get_json() == []


def test_the_token_cookie_is_accepted(api: RecordingApi) -> None:
    token = api.make_user()
    # The test client keeps cookies in its own jar and drops a hand-written Cookie header.
    api.client("check_token").set_cookie("token", token)
    assert api.call("GET", "/api/check_token").status_code == 200
    api.client("check_token").set_cookie("token", craft(exp=int(time.time()) - 5))
    assert api.call("GET", "/api/check_token").status_code == 401


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer not-a-token",
        "Bearer a.b.c",
        "Basic YWRtaW46YWRtaW4=",
    ],
)
def test_missing_or_malformed_tokens_are_401(api: RecordingApi, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = api.call("GET", "/api/stacks", headers=headers)
    assert response.status_code == 401
    error_of(response)


def test_a_token_without_the_bearer_scheme_is_401(api: RecordingApi) -> None:
    token = api.make_user()
    response = api.call("GET", "/api/stacks", headers={"Authorization": token})
    assert response.status_code == 401


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda: craft(key="another-secret-that-is-long-enough-for-hs256"), id="other-secret"),
        pytest.param(lambda: craft(exp=int(time.time()) - 5), id="expired"),
        pytest.param(lambda: craft(user=None), id="no-user"),
        pytest.param(lambda: craft(user=""), id="empty-user"),
        pytest.param(lambda: craft(exp=None), id="no-exp"),
        pytest.param(lambda: craft(orig_iat=None), id="no-orig-iat"),
        pytest.param(
            lambda: jwt.encode(
                {"user": "alice", "exp": int(time.time()) + 60, "orig_iat": 0}, None, algorithm="none"
            ),
            id="alg-none",
        ),
        pytest.param(
            lambda: jwt.encode(
                {"user": "alice", "exp": int(time.time()) + 60, "orig_iat": int(time.time())},
                secret(),
                algorithm="HS512",
            ),
            id="hs512",
        ),
    ],
)
def test_wrongly_signed_expired_or_incomplete_tokens_are_401(
    api: RecordingApi, forge: Callable[[], str]
) -> None:
    api.make_user()
    response = api.call("GET", "/api/stacks", forge())
    assert response.status_code == 401
    error_of(response)


def test_an_expired_token_says_so(api: RecordingApi) -> None:
    response = api.call("GET", "/api/stacks", craft(exp=int(time.time()) - 5))
    assert response.status_code == 401
    assert "expired" in error_of(response)


def test_a_user_token_cannot_claim_admin_by_payload_edit(api: RecordingApi) -> None:
    """Changing the payload of a real token breaks its signature."""
    import base64
    import json

    token = api.make_user()
    header, _, signature = token.split(".")
    payload = claims_of(token) | {"admin": True}
    encoded = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    response = api.call("GET", "/api/accounts", f"{header}.{encoded}.{signature}")
    assert response.status_code == 401


def test_user_token_is_403_on_admin_routes(api: RecordingApi) -> None:
    response = api.call("GET", "/api/accounts", api.make_user())
    assert response.status_code == 403
    error_of(response)


def reset_token(api: RecordingApi, platform: Platform, user: str = "alice") -> str:
    """The token from the password-reset e-mail of ``user``."""
    response = api.call("POST", f"/api/reset/{user}")
    assert response.status_code == 200, response.get_json()
    found = re.search(r"/#/recover\?t=(\S+)", body_of(mails(platform, f"{user}@example.org")[-1]))
    assert found is not None
    return found.group(1)


def test_a_password_reset_token_is_refused_on_normal_routes(api: RecordingApi, platform: Platform) -> None:
    api.make_user()
    token = reset_token(api, platform)
    assert claims_of(token)["scope"] == "reset"
    assert claims_of(token)["user"] == "alice"

    for method, path in (
        ("GET", "/api/stacks"),
        ("GET", "/api/accounts/alice"),
        ("GET", "/api/check_token"),
        ("GET", "/api/refresh_token"),
        ("GET", "/api/services"),
    ):
        response = api.call(method, path, token)
        assert response.status_code == 401, (path, response.get_json())
        assert "reset" in error_of(response)


def test_a_stack_control_token_is_taken_by_the_start_and_stop_of_its_stack_only(
    api: RecordingApi, platform: Platform
) -> None:
    """What a shovel holds to start or stop a stack for its user: refused everywhere else, and, like
    every token of the account, once the account's sessions end."""
    session = api.make_user()
    token = platform.tokens.issue_stack_control("alice", "s1abcd")
    claims = claims_of(token)
    assert claims["scope"] == "stack:s1abcd:control" and claims["user"] == "alice"
    assert claims["admin"] is False and claims["exp"] - claims["orig_iat"] <= 3600

    # Past the token check: alice has no such stack.
    for path in ("/api/start/s1abcd", "/api/stop/s1abcd"):
        response = api.call("GET", path, token)
        assert response.status_code == 404, (path, response.get_json())
    for method, path in (
        ("GET", "/api/start/s2abcd"),
        ("GET", "/api/stop/s2abcd"),
        ("GET", "/api/start?key=notebook"),
        ("GET", "/api/stop_all"),
        ("GET", "/api/stacks"),
        ("GET", "/api/stacks/s1abcd"),
        ("DELETE", "/api/stacks/s1abcd"),
        ("GET", "/api/accounts/alice"),
        ("GET", "/api/check_token"),
        ("GET", "/api/refresh_token"),
        ("GET", "/api/transfers"),
    ):
        response = api.call(method, path, token)
        assert response.status_code == 401, (path, response.get_json())
        assert "stack:s1abcd:control" in error_of(response)

    assert api.call("DELETE", "/api/authenticate", session).status_code in (200, 204)
    response = api.call("GET", "/api/start/s1abcd", token)
    assert response.status_code == 401
    assert "session was ended" in error_of(response)


def test_a_crafted_admin_reset_token_is_refused_on_admin_routes(api: RecordingApi) -> None:
    response = api.call("GET", "/api/accounts", craft(user="admin", admin=True, scope="reset"))
    assert response.status_code == 401


# --- refresh_token -----------------------------------------------------------------------------


def test_refresh_gives_a_new_valid_token_with_the_same_orig_iat(
    api: RecordingApi, platform: Platform
) -> None:
    api.make_user()
    orig_iat = int(time.time()) - 3600
    old = craft(orig_iat=orig_iat, exp=int(time.time()) + 60, gen=generation(platform))

    response = api.call("GET", "/api/refresh_token", old)
    assert response.status_code == 200, response.get_json()
    assert set(response.get_json()) == {"token"}
    fresh = response.get_json()["token"]
    claims = claims_of(fresh)
    assert claims["user"] == "alice"
    assert claims["admin"] is False
    assert claims["orig_iat"] == orig_iat
    assert claims["gen"] == generation(platform)
    assert claims["exp"] >= int(time.time()) + 30 * 60 - 5
    assert api.call("GET", "/api/stacks", fresh).status_code == 200


def test_refresh_keeps_the_admin_claim(api: RecordingApi) -> None:
    response = api.call("GET", "/api/refresh_token", api.admin())
    assert response.status_code == 200
    fresh = response.get_json()["token"]
    assert claims_of(fresh)["admin"] is True
    assert api.call("GET", "/api/accounts", fresh).status_code == 200


def test_an_expired_token_issued_recently_can_be_refreshed(api: RecordingApi, platform: Platform) -> None:
    api.make_user()
    now = int(time.time())
    expired = craft(orig_iat=now - 2 * 3600, exp=now - 3600, gen=generation(platform))
    assert api.call("GET", "/api/stacks", expired).status_code == 401

    response = api.call("GET", "/api/refresh_token", expired)
    assert response.status_code == 200, response.get_json()
    fresh = response.get_json()["token"]
    assert claims_of(fresh)["orig_iat"] == now - 2 * 3600
    assert api.call("GET", "/api/stacks", fresh).status_code == 200


@pytest.mark.parametrize("expired", [False, True])
def test_a_token_first_issued_over_24_hours_ago_cannot_be_refreshed(api: RecordingApi, expired: bool) -> None:
    api.make_user()
    now = int(time.time())
    old = craft(orig_iat=now - DAY - 60, exp=now - 60 if expired else now + 600)
    response = api.call("GET", "/api/refresh_token", old)
    assert response.status_code == 401
    assert "log in again" in error_of(response)


def test_a_token_issued_just_inside_the_window_can_be_refreshed(
    api: RecordingApi, platform: Platform
) -> None:
    api.make_user()
    token = craft(orig_iat=int(time.time()) - DAY + 120, gen=generation(platform))
    response = api.call("GET", "/api/refresh_token", token)
    assert response.status_code == 200


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda: None, id="missing"),
        pytest.param(lambda: "garbage", id="garbage"),
        pytest.param(lambda: craft(key="another-secret-that-is-long-enough-for-hs256"), id="other-secret"),
        pytest.param(lambda: craft(scope="reset"), id="reset-scope"),
    ],
)
def test_refresh_refuses_bad_tokens(api: RecordingApi, forge: Callable[[], str | None]) -> None:
    api.make_user()
    response = api.call("GET", "/api/refresh_token", forge())
    assert response.status_code == 401
    error_of(response)


def test_a_deleted_account_cannot_refresh_its_token(api: RecordingApi) -> None:
    token = api.make_user()
    assert api.call("DELETE", "/api/accounts/alice", api.admin()).status_code == 200
    response = api.call("GET", "/api/refresh_token", token)
    assert response.status_code == 401
    error_of(response)


def test_a_denied_account_cannot_refresh_its_token(api: RecordingApi) -> None:
    token = api.make_user()
    denied = api.call("PUT", "/api/accounts/alice", api.admin(), json={"status": "denied"})
    assert denied.status_code == 200, denied.get_json()
    response = api.call("GET", "/api/refresh_token", token)
    assert response.status_code == 401


# --- check_token -------------------------------------------------------------------------------


def test_check_token_answers_200_with_a_token_and_401_without(api: RecordingApi) -> None:
    token = api.make_user()
    assert api.call("GET", "/api/check_token", token).status_code == 200
    response = api.call("GET", "/api/check_token")
    assert response.status_code == 401
    error_of(response)
    assert api.call("GET", "/api/check_token", craft(exp=int(time.time()) - 1)).status_code == 401


@pytest.mark.parametrize("host", ["elsewhere.example.org", "s1abc-jupyterlab.workbench.localhost:8080"])
def test_check_token_refuses_a_host_that_is_not_the_callers(api: RecordingApi, host: str) -> None:
    token = api.make_user()
    assert api.call("POST", "/api/stacks", token, json={"key": "jupyterlab"}).status_code == 200
    response = api.call("GET", f"/api/check_token?host={host}", token)
    assert response.status_code == 403
    assert host in error_of(response)


def test_the_leak_check_catches_an_echoed_password(
    client: Callable[[str], Client], platform: Platform
) -> None:
    """The check every test here ends with does find a password that comes back in an answer."""
    probe = RecordingApi(client)
    probe.call("POST", "/api/authenticate", json={"username": "nobody", "password": "echoed-password"})
    probe.assert_nothing_leaked([])
    assert probe.call("GET", "/api/accounts/echoed-password", probe.admin()).status_code == 404
    with pytest.raises(AssertionError, match="echoed-password"):
        probe.assert_nothing_leaked([])
