"""Account management through the ``accounts`` function: the admin's and each user's own account."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared.bootstrap import Platform
from tests.conftest import ROOT, Client
from tests.test_auth import RecordingApi, error_of, recording_api
from tests.test_register import verification_link

MONGO = ROOT / "shared" / "data" / "catalog" / "mongo" / "mongo.json"


@pytest.fixture
def api(client: Callable[[str], Client], platform: Platform) -> Iterator[RecordingApi]:
    yield from recording_api(client, platform)


def account(user: str, **changes: Any) -> dict[str, Any]:
    return {
        "namespace": user,
        "name": user.title(),
        "email": f"{user}@example.org",
        "password": f"{user}-password",
    } | changes


def stored(platform: Platform, user: str) -> Any:
    record = platform.store.get_account(user)
    assert record is not None, user
    return record


def can_log_in(api: RecordingApi, user: str, password: str | None = None) -> bool:
    response = api.call(
        "POST", "/api/authenticate", json={"username": user, "password": password or f"{user}-password"}
    )
    assert response.status_code in (200, 401), response.get_json()
    return bool(response.status_code == 200)


# --- list and create ---------------------------------------------------------------------------


def test_admin_lists_every_account_with_tokens_but_no_passwords(
    api: RecordingApi, platform: Platform
) -> None:
    api.make_user("alice")
    registered = api.call("POST", "/api/register", json=account("carol"))
    assert registered.status_code == 200

    response = api.call("GET", "/api/accounts", api.admin())
    assert response.status_code == 200
    listed = {item["id"]: item for item in response.get_json()}
    assert set(listed) == {"admin", "alice", "carol"}
    assert all(item["password"] == "" for item in listed.values())
    assert listed["carol"]["token"] == stored(platform, "carol").account.token != ""
    assert listed["carol"]["status"] == "unverified"
    assert listed["alice"]["status"] == "approved"


def test_users_cannot_list_accounts(api: RecordingApi) -> None:
    response = api.call("GET", "/api/accounts", api.make_user("alice"))
    assert response.status_code == 403
    error_of(response)
    assert api.call("GET", "/api/accounts").status_code == 401


def test_admin_creates_an_approved_account_with_default_limits(api: RecordingApi, platform: Platform) -> None:
    response = api.call("POST", "/api/accounts", api.admin(), json=account("bob", description="A tester"))

    assert response.status_code == 200, response.get_json()
    created = response.get_json()
    assert created["id"] == created["namespace"] == "bob"
    assert created["status"] == "approved"
    assert created["password"] == ""
    assert created["resourceLimits"]["cpuMax"] == platform.settings.limits.cpu_max
    assert stored(platform, "bob").password_hash.startswith("$argon2")
    assert can_log_in(api, "bob")


def test_users_cannot_create_accounts(api: RecordingApi, platform: Platform) -> None:
    response = api.call("POST", "/api/accounts", api.make_user("alice"), json=account("mallory"))
    assert response.status_code == 403
    error_of(response)
    assert platform.store.get_account("mallory") is None
    assert api.call("POST", "/api/accounts", json=account("mallory")).status_code == 401
    assert platform.store.get_account("mallory") is None


@pytest.mark.parametrize(
    "body",
    [
        account("alice", email="other@example.org"),
        account("bob", email="alice@example.org"),
        account("bob", email="ALICE@EXAMPLE.ORG"),
        account("admin", email="other@example.org"),
    ],
)
def test_admin_create_of_a_duplicate_is_409(
    api: RecordingApi, platform: Platform, body: dict[str, Any]
) -> None:
    api.make_user("alice")
    count = len(platform.store.list_accounts())

    response = api.call("POST", "/api/accounts", api.admin(), json=body)
    assert response.status_code == 409
    error_of(response)
    assert len(platform.store.list_accounts()) == count
    assert stored(platform, "alice").account.email == "alice@example.org"


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"namespace": "Bad Name"}, "namespace"), ({"email": "bob"}, "email"), ({"name": " "}, "name")],
)
def test_admin_create_with_a_bad_field_is_400(
    api: RecordingApi, platform: Platform, changes: dict[str, Any], field: str
) -> None:
    response = api.call("POST", "/api/accounts", api.admin(), json=account("bob") | changes)
    assert response.status_code == 400
    assert error_of(response).startswith(f"{field}:")
    assert len(platform.store.list_accounts()) == 1


# --- read --------------------------------------------------------------------------------------


def approved_by_registration(api: RecordingApi, platform: Platform, user: str) -> str:
    """A user who registered (so a verification token is stored) and was approved; their token."""
    assert api.call("POST", "/api/register", json=account(user)).status_code == 200
    token = stored(platform, user).account.token
    assert api.call("PUT", "/api/register/verify", json={"u": user, "t": token}).status_code == 200
    approval = stored(platform, user).account.token  # a new one, for the support address
    assert api.call("GET", f"/api/register/approve?u={user}&t={approval}").status_code == 200
    return api.login(user, f"{user}-password")


def test_users_read_their_own_account_without_password_or_token(
    api: RecordingApi, platform: Platform
) -> None:
    token = approved_by_registration(api, platform, "carol")
    assert stored(platform, "carol").account.token != ""

    response = api.call("GET", "/api/accounts/carol", token)
    assert response.status_code == 200
    read = response.get_json()
    assert read["id"] == "carol"
    assert read["email"] == "carol@example.org"
    assert read["status"] == "approved"
    assert read["password"] == ""
    assert read["token"] == ""


def test_users_cannot_read_another_account(api: RecordingApi) -> None:
    api.make_user("bob")
    token = api.make_user("alice")
    for other in ("bob", "admin", "nobody"):
        response = api.call("GET", f"/api/accounts/{other}", token)
        assert response.status_code == 403, other
        error_of(response)


def test_admin_reads_any_account_and_404s_on_unknown(api: RecordingApi) -> None:
    api.make_user("alice")
    admin = api.admin()
    response = api.call("GET", "/api/accounts/alice", admin)
    assert response.status_code == 200
    assert response.get_json()["email"] == "alice@example.org"
    assert response.get_json()["password"] == ""

    response = api.call("GET", "/api/accounts/nobody", admin)
    assert response.status_code == 404
    assert "nobody" in error_of(response)


# --- update ------------------------------------------------------------------------------------


def test_users_change_their_name_description_and_email(api: RecordingApi, platform: Platform) -> None:
    token = api.make_user("alice")
    current = api.call("GET", "/api/accounts/alice", token).get_json()
    changed = current | {
        "name": "Alice Smith",
        "description": "Now with a description",
        "email": "a.smith@example.org",
    }

    response = api.call("PUT", "/api/accounts/alice", token, json=changed)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["name"] == "Alice Smith"
    assert response.get_json()["token"] == ""
    read = api.call("GET", "/api/accounts/alice", token).get_json()
    assert read["name"] == "Alice Smith"
    assert read["description"] == "Now with a description"
    assert read["status"] == "approved"
    assert read["resourceLimits"] == current["resourceLimits"]
    # The new address takes effect once the link mailed to it is opened.
    assert read["email"] == "alice@example.org"
    user, link_token = verification_link(platform, "a.smith@example.org")
    verified = api.call("PUT", "/api/register/verify", json={"u": user, "t": link_token})
    assert verified.status_code == 200, verified.get_json()
    assert api.call("GET", "/api/accounts/alice", token).get_json()["email"] == "a.smith@example.org"
    assert can_log_in(api, "a.smith@example.org", "alice-password")
    assert not can_log_in(api, "alice@example.org", "alice-password")


@pytest.mark.parametrize(
    "changes",
    [
        {"status": "denied"},
        {"status": "unverified"},
        {
            "resourceLimits": {
                "cpuMax": 64000,
                "cpuDefault": 1000,
                "memMax": 8196,
                "memDefault": 100,
                "storageQuota": 10,
            }
        },
        {
            "resourceLimits": {
                "cpuMax": 0,
                "cpuDefault": 0,
                "memMax": 0,
                "memDefault": 0,
                "storageQuota": 9999,
            }
        },
    ],
)
def test_users_cannot_change_their_status_or_limits(
    api: RecordingApi, platform: Platform, changes: dict[str, Any]
) -> None:
    token = api.make_user("alice")
    before = stored(platform, "alice")
    current = api.call("GET", "/api/accounts/alice", token).get_json()

    response = api.call("PUT", "/api/accounts/alice", token, json=current | {"name": "Changed"} | changes)
    assert response.status_code == 403
    error_of(response)
    after = stored(platform, "alice")
    assert after.account == before.account
    assert after.password_hash == before.password_hash


def test_sending_back_the_same_status_and_limits_is_allowed(api: RecordingApi) -> None:
    token = api.make_user("alice")
    current = api.call("GET", "/api/accounts/alice", token).get_json()
    response = api.call("PUT", "/api/accounts/alice", token, json=current | {"organization": "Example Lab"})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["organization"] == "Example Lab"


def test_users_cannot_update_another_account(api: RecordingApi, platform: Platform) -> None:
    api.make_user("bob")
    before = stored(platform, "bob")
    response = api.call(
        "PUT", "/api/accounts/bob", api.make_user("alice"), json=account("bob", name="Hijacked")
    )
    assert response.status_code == 403
    assert stored(platform, "bob").account == before.account


def test_admin_changes_status_and_limits(api: RecordingApi, platform: Platform) -> None:
    api.make_user("alice")
    admin = api.admin()
    current = api.call("GET", "/api/accounts/alice", admin).get_json()
    limits = current["resourceLimits"] | {"cpuMax": 4000}

    response = api.call(
        "PUT", "/api/accounts/alice", admin, json=current | {"status": "denied", "resourceLimits": limits}
    )
    assert response.status_code == 200, response.get_json()
    after = stored(platform, "alice").account
    assert after.status == "denied"
    assert after.resourceLimits.cpuMax == 4000
    assert after.name == current["name"]
    assert not can_log_in(api, "alice")

    response = api.call("PUT", "/api/accounts/alice", admin, json=current | {"status": "approved"})
    assert response.status_code == 200
    assert can_log_in(api, "alice")


@pytest.mark.parametrize("email", ["bob@example.org", "BOB@example.org", "support@workbench.localhost"])
def test_an_email_clash_on_update_is_409(api: RecordingApi, platform: Platform, email: str) -> None:
    api.make_user("bob")
    token = api.make_user("alice")
    before = stored(platform, "alice")
    current = api.call("GET", "/api/accounts/alice", token).get_json()

    response = api.call(
        "PUT", "/api/accounts/alice", token, json=current | {"email": email, "name": "Changed"}
    )
    assert response.status_code == 409
    error_of(response)
    assert stored(platform, "alice").account == before.account


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"id": "bob"}, "id"),
        ({"namespace": "bob"}, "namespace"),
        ({"password": "123"}, "password"),
    ],
)
def test_an_update_with_a_bad_field_is_400(
    api: RecordingApi, platform: Platform, changes: dict[str, Any], field: str
) -> None:
    token = api.make_user("alice")
    before = stored(platform, "alice")
    current = api.call("GET", "/api/accounts/alice", token).get_json()

    response = api.call("PUT", "/api/accounts/alice", token, json=current | changes)
    assert response.status_code == 400
    assert error_of(response).startswith(f"{field}:")
    assert stored(platform, "alice").account == before.account
    assert stored(platform, "alice").password_hash == before.password_hash


def test_admin_update_of_an_unknown_account_is_404(api: RecordingApi, platform: Platform) -> None:
    response = api.call("PUT", "/api/accounts/nobody", api.admin(), json=account("nobody"))
    assert response.status_code == 404
    assert platform.store.get_account("nobody") is None


# --- delete ------------------------------------------------------------------------------------


def test_admin_deletes_an_account_with_what_it_owns(api: RecordingApi, platform: Platform) -> None:
    token = api.make_user("alice")
    assert api.call("POST", "/api/stacks", token, json={"key": "jupyterlab"}).status_code == 200
    assert platform.store.list_stacks("alice")

    response = api.call("DELETE", "/api/accounts/alice", api.admin())
    assert response.status_code == 200
    assert platform.store.get_account("alice") is None
    assert platform.store.list_stacks("alice") == []
    assert not can_log_in(api, "alice")
    assert not can_log_in(api, "alice@example.org", "alice-password")
    assert api.call("GET", "/api/accounts/alice", api.admin()).status_code == 404
    assert api.call("DELETE", "/api/accounts/alice", api.admin()).status_code == 404

    # The name and address are free again.
    assert api.call("POST", "/api/accounts", api.admin(), json=account("alice")).status_code == 200


def test_the_admin_account_cannot_be_deleted(api: RecordingApi, platform: Platform) -> None:
    response = api.call("DELETE", "/api/accounts/admin", api.admin())
    assert response.status_code == 403
    error_of(response)
    assert platform.store.get_account("admin") is not None
    assert api.admin()


def test_users_cannot_delete_accounts(api: RecordingApi, platform: Platform) -> None:
    api.make_user("bob", "bob-password")
    token = api.make_user("alice")
    for target in ("bob", "alice", "admin"):
        response = api.call("DELETE", f"/api/accounts/{target}", token)
        assert response.status_code == 403, target
        error_of(response)
        assert platform.store.get_account(target) is not None
    assert can_log_in(api, "bob")


# --- export and import -------------------------------------------------------------------------


def own_spec(key: str = "mymongo") -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(MONGO.read_text(encoding="utf-8"))
    return spec | {"key": key, "label": "My MongoDB"}


def user_with_spec_and_stack(api: RecordingApi) -> str:
    token = api.make_user("alice")
    created = api.call("POST", "/api/services", token, json=own_spec())
    assert created.status_code == 200, created.get_json()
    stack = api.call("POST", "/api/stacks", token, json={"key": "mymongo", "name": "My stack"})
    assert stack.status_code == 200, stack.get_json()
    return token


def test_export_carries_the_account_its_catalog_and_stacks(api: RecordingApi) -> None:
    token = user_with_spec_and_stack(api)

    response = api.call("GET", "/api/accounts/alice/export", token)
    assert response.status_code == 200, response.get_json()
    package = response.get_json()
    assert set(package) == {"account", "services", "stacks"}
    assert package["account"]["id"] == "alice"
    assert package["account"]["password"] == ""
    assert package["account"]["token"] == ""
    assert [spec["key"] for spec in package["services"]] == ["mymongo"]
    assert [stack["key"] for stack in package["stacks"]] == ["mymongo"]
    assert package["stacks"][0]["name"] == "My stack"
    assert package["stacks"][0]["status"] == "stopped"

    assert api.call("GET", "/api/accounts/alice/export", api.admin()).get_json() == package


def test_users_cannot_export_another_account(api: RecordingApi) -> None:
    api.make_user("bob")
    response = api.call("GET", "/api/accounts/bob/export", api.make_user("alice"))
    assert response.status_code == 403
    error_of(response)


def renamed(package: dict[str, Any], user: str) -> dict[str, Any]:
    """The package as another user's: the namespace (and so the id) and the e-mail address changed."""
    moved = copy.deepcopy(package)
    moved["account"] |= {"id": user, "namespace": user, "email": f"{user}@example.org"}
    return moved


def test_export_then_import_under_a_new_name(api: RecordingApi, platform: Platform) -> None:
    token = user_with_spec_and_stack(api)
    package = api.call("GET", "/api/accounts/alice/export", token).get_json()
    admin = api.admin()

    response = api.call("POST", "/api/accounts/import", admin, json=renamed(package, "alice2"))
    assert response.status_code == 200, response.get_json()
    imported = response.get_json()
    assert imported["id"] == imported["namespace"] == "alice2"
    assert imported["status"] == "approved"
    assert imported["name"] == package["account"]["name"]
    assert imported["resourceLimits"] == package["account"]["resourceLimits"]
    assert imported["password"] == ""
    assert stored(platform, "alice2").password_hash == ""  # the owner's export carries no hash

    # The new owner logs in (after the admin sets a password) and finds the catalog and the stack.
    changed = api.call("PUT", "/api/accounts/alice2", admin, json=imported | {"password": "alice2-password"})
    assert changed.status_code == 200, changed.get_json()
    token2 = api.login("alice2", "alice2-password")
    specs = api.call("GET", "/api/services?catalog=user", token2).get_json()
    assert [spec["key"] for spec in specs] == ["mymongo"]
    assert specs[0]["label"] == "My MongoDB"
    stacks = api.call("GET", "/api/stacks", token2).get_json()
    assert [(stack["key"], stack["name"], stack["status"]) for stack in stacks] == [
        ("mymongo", "My stack", "stopped")
    ]
    stack = stacks[0]
    assert all(service["id"].startswith(stack["id"] + "-") for service in stack["services"])
    assert all(service["stack"] == stack["id"] for service in stack["services"])
    assert api.call("GET", f"/api/stacks/{stack['id']}", token2).status_code == 200

    # The original is untouched, and each owner sees only their own stack.
    original = api.call("GET", "/api/stacks", token).get_json()
    assert [item["key"] for item in original] == ["mymongo"]
    assert api.call("GET", f"/api/stacks/{original[0]['id']}", token).status_code == 200
    again = api.call("GET", "/api/accounts/alice2/export", token2).get_json()
    assert again["services"] == package["services"]
    assert [[service["service"] for service in item["services"]] for item in again["stacks"]] == [
        [service["service"] for service in item["services"]] for item in package["stacks"]
    ]


def test_export_then_import_after_deleting_the_original(api: RecordingApi, platform: Platform) -> None:
    token = user_with_spec_and_stack(api)
    package = api.call("GET", "/api/accounts/alice/export", token).get_json()
    admin = api.admin()
    assert api.call("DELETE", "/api/accounts/alice", admin).status_code == 200

    response = api.call("POST", "/api/accounts/import", admin, json=package)
    assert response.status_code == 200, response.get_json()
    assert [spec.key for spec in platform.store.list_specs("alice")] == ["mymongo"]
    assert [(stack.id, stack.key) for stack in platform.store.list_stacks("alice")] == [
        (package["stacks"][0]["id"], "mymongo")
    ]


def test_import_of_a_name_in_use_is_409_and_changes_nothing(api: RecordingApi, platform: Platform) -> None:
    token = user_with_spec_and_stack(api)
    package = api.call("GET", "/api/accounts/alice/export", token).get_json()
    admin = api.admin()
    count = len(platform.store.list_accounts())

    response = api.call("POST", "/api/accounts/import", admin, json=package)
    assert response.status_code == 409
    error_of(response)
    clash = renamed(package, "alice2") | {
        "account": renamed(package, "alice2")["account"] | {"email": "ALICE@example.org"}
    }
    response = api.call("POST", "/api/accounts/import", admin, json=clash)
    assert response.status_code == 409
    assert len(platform.store.list_accounts()) == count
    assert platform.store.get_account("alice2") is None
    assert len(platform.store.list_stacks("alice")) == 1


def test_import_with_a_bad_spec_is_400_and_creates_nothing(api: RecordingApi, platform: Platform) -> None:
    token = user_with_spec_and_stack(api)
    package = renamed(api.call("GET", "/api/accounts/alice/export", token).get_json(), "alice2")
    # A well-formed package whose spec breaks the spec schema, so the function's own check refuses it.
    package["services"][0]["key"] = "Bad Key!"

    response = api.call("POST", "/api/accounts/import", api.admin(), json=package)
    assert response.status_code == 400
    assert error_of(response).startswith("key:")
    assert platform.store.get_account("alice2") is None
    assert platform.store.list_specs("alice2") == []
    assert platform.store.list_stacks("alice2") == []


def test_users_cannot_import(api: RecordingApi, platform: Platform) -> None:
    token = user_with_spec_and_stack(api)
    package = renamed(api.call("GET", "/api/accounts/alice/export", token).get_json(), "alice2")
    response = api.call("POST", "/api/accounts/import", token, json=package)
    assert response.status_code == 403
    assert platform.store.get_account("alice2") is None
