"""The Go apiserver's HTTP contract where this platform once answered otherwise: each test names the
rule of the Go source (server.go, validate.go) that it holds the platform to."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.bootstrap import Platform
from shared.core.settings import Settings
from tests.conftest import Client
from tests.test_auth import RecordingApi, error_of, mails, recording_api, reset_token
from tests.test_stacks import no_process_left, spec, stop, wait_for

__all__ = ["no_process_left"]  # its autouse fixture ends the quickstarted stack's processes

SPECS = Path(__file__).parent / "data" / "specs"

# `openssl passwd -apr1 -salt Ab3dEf9h 12345`: the APR1 hash the Go apiserver kept of the password
# 12345 (the Go test suite's demo account), as its GET /api/export/{userId} wrote it.
GO_HASH_OF_12345 = "$apr1$Ab3dEf9h$0XiGiOEhTW8G9h/zWmZXT1"
# `openssl passwd -apr1 -salt x7Gq0pLz 'a much longer password than sixteen'`
GO_HASH_OF_LONG = "$apr1$x7Gq0pLz$6LiCGmHBsvCP9VA20GZ5Z1"


@pytest.fixture
def api(client: Callable[[str], Client], platform: Platform) -> Iterator[RecordingApi]:
    """The functions as served; afterwards, no answer held a password or a password hash."""
    yield from recording_api(client, platform)


@pytest.fixture
def root_log_level() -> Iterator[None]:
    root = logging.getLogger()
    before = root.level
    yield
    root.setLevel(before)


def can_log_in(api: RecordingApi, user: str, password: str) -> bool:
    response = api.call("POST", "/api/authenticate", json={"username": user, "password": password})
    assert response.status_code in (200, 401), response.get_json()
    return bool(response.status_code == 200)


def account(user: str, **changes: Any) -> dict[str, Any]:
    return {"namespace": user, "name": user.title(), "email": f"{user}@example.org"} | changes


# --- log level ---------------------------------------------------------------------------------


def test_log_level_takes_glog_verbosity_numbers(api: RecordingApi, root_log_level: None) -> None:
    """server.go PutLogLevel: a number (strconv.Atoi) sets glog's -v and answers 200; 0 is glog's
    plain info logging, 1 and above its verbose levels."""
    admin = api.admin()
    logging.getLogger().setLevel(logging.WARNING)
    response = api.call("PUT", "/api/log_level/4", admin)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"level": "DEBUG"}
    assert logging.getLogger().level == logging.DEBUG

    response = api.call("PUT", "/api/log_level/0", admin)
    assert response.status_code == 200
    assert response.get_json() == {"level": "INFO"}
    assert logging.getLogger().level == logging.INFO

    response = api.call("PUT", "/api/log_level/-1", admin)
    assert response.status_code == 400
    assert error_of(response).startswith("level:")
    assert logging.getLogger().level == logging.INFO

    assert api.call("PUT", "/api/log_level/4", api.make_user("alice")).status_code == 403


# --- accounts ----------------------------------------------------------------------------------


def test_admin_creates_an_account_without_a_password(api: RecordingApi, platform: Platform) -> None:
    """server.go PostAccount: the admin's account is stored as posted, an empty password too (200
    with the account); such an account cannot log in until its owner sets a password by reset."""
    admin = api.admin()
    response = api.call("POST", "/api/accounts", admin, json=account("carol", password=""))
    assert response.status_code == 200, response.get_json()
    created = response.get_json()
    assert (created["id"], created["namespace"], created["status"]) == ("carol", "carol", "approved")
    assert created["password"] == ""

    assert not can_log_in(api, "carol", "")
    assert not can_log_in(api, "carol", "anything-at-all")

    token = reset_token(api, platform, "carol")
    changed = api.call("PUT", "/api/change_password", token, json={"password": "carols-own-password"})
    assert changed.status_code == 200, changed.get_json()
    assert can_log_in(api, "carol", "carols-own-password")
    assert not can_log_in(api, "carol", "")


def test_admin_creating_an_existing_account_is_409(api: RecordingApi, platform: Platform) -> None:
    """server.go PostAccount: accountExists(namespace) → 409, before anything else of the body is
    looked at; the existing account is left as it was."""
    api.make_user("alice", "alice-password")
    admin = api.admin()
    count = len(platform.store.list_accounts())
    for body in (
        account("alice", password="another-password", name="Someone else"),
        account("alice", password=""),
        {"id": "alice", "namespace": "alice", "password": "short"},  # what else it holds is not the point
    ):
        response = api.call("POST", "/api/accounts", admin, json=body)
        assert response.status_code == 409, (body, response.get_json())
        assert "in use" in error_of(response)
    assert len(platform.store.list_accounts()) == count
    assert api.call("GET", "/api/accounts/alice", admin).get_json()["name"] == "Alice"
    assert can_log_in(api, "alice", "alice-password")


GO_ACCOUNTS = Path(__file__).parent / "data" / "accounts"


def test_admin_posts_the_go_test_account(api: RecordingApi) -> None:
    """server.go PostAccount checks nothing but the name in use: the Go test account (no e-mail
    address, a five-character password, its own limits) is 200 from the admin and logs in with that
    password; a registration is still held to an address and a longer password."""
    posted = json.loads((GO_ACCOUNTS / "account-limited.json").read_text())
    response = api.call("POST", "/api/accounts", api.admin(), json=posted)
    assert response.status_code == 200, response.get_json()
    created = response.get_json()
    assert (created["namespace"], created["email"], created["password"]) == ("demo", "", "")
    assert created["resourceLimits"]["cpuMax"] == posted["resourceLimits"]["cpuMax"]
    assert can_log_in(api, "demo", posted["password"])
    assert not can_log_in(api, "demo", "")

    registration = json.loads((GO_ACCOUNTS / "account-register.json").read_text())
    refused = api.call("POST", "/api/register", None, json={**registration, "namespace": "newcomer"})
    assert refused.status_code == 400
    assert error_of(refused).startswith("password:")
    no_address = api.call(
        "POST", "/api/register", None, json={**registration, "namespace": "other", "email": ""}
    )
    assert no_address.status_code == 400
    assert error_of(no_address).startswith("email:")


# --- export and import -------------------------------------------------------------------------


def go_package(user: str, password_hash: str) -> dict[str, Any]:
    """What the Go apiserver's GET /api/export/{userId} wrote: only the account (types.go
    ExportPackage), its password the APR1 hash (crypto.go)."""
    return {
        "account": {
            "id": user,
            "name": "Demo User",
            "description": "demo account description",
            "namespace": user,
            "email": f"{user}@example.org",
            "password": password_hash,
            "resourceLimits": {"cpuMax": 2000, "cpuDefault": 1000, "memMax": 8196, "memDefault": 100},
            "resourceUsage": {"cpu": "", "memory": "", "storage": "", "cpuPct": "", "memPct": ""},
            "status": "approved",
            "token": "",
            "organization": "",
            "created": 1500000000,
            "lastLogin": 0,
            "inactiveTimeout": 480,
            "nexturl": "",
        }
    }


def test_import_of_a_go_export_keeps_the_password(api: RecordingApi, platform: Platform) -> None:
    """server.go ImportAccount: POST /api/import/{userId} stores the exported account, its APR1
    password hash included, and answers 200 with it; the owner logs in with the same password
    (crypto.go CompareHashAndPassword), after which the hash is argon2."""
    admin = api.admin()
    response = api.call("POST", "/api/import/demo", admin, json=go_package("demo", GO_HASH_OF_12345))
    assert response.status_code == 200, response.get_json()
    imported = response.get_json()
    assert (imported["id"], imported["status"], imported["password"]) == ("demo", "approved", "")
    assert imported["resourceLimits"]["cpuMax"] == 2000

    assert not can_log_in(api, "demo", "1234")
    assert platform.store.get_account("demo").password_hash == GO_HASH_OF_12345  # type: ignore[union-attr]
    assert can_log_in(api, "demo", "12345")
    assert platform.store.get_account("demo").password_hash.startswith("$argon2id$")  # type: ignore[union-attr]
    assert can_log_in(api, "demo", "12345")

    # The project's own path takes the same package.
    response = api.call("POST", "/api/accounts/import", admin, json=go_package("demo2", GO_HASH_OF_LONG))
    assert response.status_code == 200, response.get_json()
    assert can_log_in(api, "demo2", "a much longer password than sixteen")

    # server.go ImportAccount: accountExists → 409.
    response = api.call("POST", "/api/import/demo", admin, json=go_package("demo", GO_HASH_OF_12345))
    assert response.status_code == 409


def test_import_takes_a_plain_password_and_refuses_another_accounts_path(
    api: RecordingApi, platform: Platform
) -> None:
    """A package's password that is no hash is taken as the password itself (hashed, as a new one is
    checked); a path naming another account than the package is refused, as the Go client (client.go
    Import) always names the package's namespace, and nothing is created."""
    admin = api.admin()
    response = api.call("POST", "/api/import/demo", admin, json=go_package("demo", "1234"))
    assert response.status_code == 400
    assert error_of(response).startswith("password:")
    response = api.call("POST", "/api/import/other", admin, json=go_package("demo", GO_HASH_OF_12345))
    assert response.status_code == 400
    assert "other" in error_of(response)
    assert platform.store.get_account("demo") is None
    assert platform.store.get_account("other") is None

    response = api.call("POST", "/api/import/demo", admin, json=go_package("demo", "a-plain-password"))
    assert response.status_code == 200, response.get_json()
    assert platform.store.get_account("demo").password_hash.startswith("$argon2id$")  # type: ignore[union-attr]
    assert can_log_in(api, "demo", "a-plain-password")


def test_export_by_the_go_path_is_the_admins(api: RecordingApi) -> None:
    """server.go ExportAccount: GET /api/export/{userId} is the admin's (403 for others) and answers
    200 with the package; the project's /api/accounts/{id}/export stays, the owner's too."""
    alice = api.make_user("alice")
    admin = api.admin()
    response = api.call("GET", "/api/export/alice", admin)
    assert response.status_code == 200, response.get_json()
    package = response.get_json()
    assert package["account"]["id"] == "alice"
    assert package["account"]["token"] == ""
    assert api.call("GET", "/api/accounts/alice/export", admin).get_json() == package
    assert api.call("GET", "/api/accounts/alice/export", alice).get_json() == package
    assert api.call("GET", "/api/export/alice", alice).status_code == 403
    assert api.call("GET", "/api/export/nobody", admin).status_code == 404

    # Exported and imported again under the Go paths, after the original is gone.
    assert api.call("DELETE", "/api/accounts/alice", admin).status_code == 200
    response = api.call("POST", "/api/import/alice", admin, json=package)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["email"] == "alice@example.org"


# --- password reset ----------------------------------------------------------------------------


def test_reset_of_an_unknown_account_is_200(api: RecordingApi, platform: Platform) -> None:
    """server.go ResetPassword: whatever getTemporaryToken or GetAccount make of the name, the answer
    is 200, so it tells nobody whether the account exists; no mail goes out for an unknown one."""
    api.make_user("alice")
    unknown = api.call("POST", "/api/reset/nobody")
    known = api.call("POST", "/api/reset/alice")
    assert unknown.status_code == known.status_code == 200
    assert unknown.get_json() == known.get_json()
    assert api.call("POST", "/api/reset?userId=nobody@example.org").status_code == 200
    assert [message["To"] for message in mails(platform)] == ["alice@example.org"]


# --- registration tokens -----------------------------------------------------------------------


def listed_token(api: RecordingApi, user: str) -> tuple[str, str]:
    """``(status, token)`` of ``user`` in the admin's account list, where the Go test suite reads them."""
    response = api.call("GET", "/api/accounts", api.admin())
    assert response.status_code == 200
    (found,) = [item for item in response.get_json() if item["id"] == user]
    return found["status"], found["token"]


def test_a_verify_token_saved_before_a_delete_verifies_the_account_registered_again(
    api: RecordingApi, platform: Platform
) -> None:
    """etcd.go PutAccount: ``account.Token = HashString(email + status)``, so the Go test suite verifies
    an account deleted and registered again with the token it saved the first time. Here the token
    is a keyed MAC of the same facts: equal for the same account, e-mail and status, spent as soon as
    the status changes."""
    registration = account("carol", email="Carol@Example.org", password="carol-password")
    assert api.call("POST", "/api/register", json=registration).status_code == 200
    status, saved = listed_token(api, "carol")
    assert status == "unverified" and saved
    assert api.call("PUT", "/api/register/verify", json={"u": "carol", "t": saved}).status_code == 200
    status, decision = listed_token(api, "carol")
    assert status == "unapproved" and decision != saved
    assert api.call("PUT", "/api/register/verify", json={"u": "carol", "t": saved}).status_code == 404
    assert api.call("GET", f"/api/register/deny?u=carol&t={decision}").status_code == 200
    assert listed_token(api, "carol")[0] == "denied"
    assert api.call("GET", f"/api/register/approve?u=carol&t={decision}").status_code == 404

    assert api.call("DELETE", "/api/accounts/carol", api.admin()).status_code == 200
    again = registration | {"email": "carol@example.ORG"}  # the address compares without case
    assert api.call("POST", "/api/register", json=again).status_code == 200
    assert listed_token(api, "carol") == ("unverified", saved)
    assert api.call("PUT", "/api/register/verify", json={"u": "carol", "t": saved}).status_code == 200
    assert listed_token(api, "carol") == ("unapproved", decision)
    assert api.call("GET", f"/api/register/approve?u=carol&t={decision}").status_code == 200
    assert listed_token(api, "carol")[0] == "approved"
    assert can_log_in(api, "carol", "carol-password")
    # Another user's token, or this one's for another status, is no token for carol.
    assert (
        api.call("POST", "/api/register", json=account("dave", password="dave-password")).status_code == 200
    )
    _, daves = listed_token(api, "dave")
    assert api.call("PUT", "/api/register/verify", json={"u": "carol", "t": daves}).status_code == 404


def test_registration_tokens_are_keyed_by_the_servers_secret() -> None:
    """Go's token was an unkeyed hash of e-mail and status, which anyone knowing the address could
    compute; here it is an HMAC under the server's secret: another secret gives another token, and
    no unkeyed hash of the facts it covers is it."""
    import hashlib

    from shared.core.models import Account
    from shared.domain.accounts import registration_token
    from shared.domain.auth import Tokens

    def tokens(secret: str) -> Tokens:
        return Tokens(secret, lifetime_seconds=60, refresh_seconds=60)

    carol = Account(
        id="carol", namespace="carol", name="Carol", email="carol@example.org", status="unverified"
    )
    first, second = tokens("a" * 40), tokens("b" * 40)
    token = registration_token(first, carol)
    assert len(token) >= 43  # 256 bits
    assert token == registration_token(first, carol.model_copy(update={"email": "CAROL@example.org"}))
    assert token != registration_token(second, carol)
    for changed in ({"status": "unapproved"}, {"id": "carl"}, {"email": "carol@example.com"}):
        assert token != registration_token(first, carol.model_copy(update=changed))
    for algorithm in ("md5", "sha1", "sha256"):
        digest = hashlib.new(algorithm, b"carol@example.orgunverified").digest()
        assert token not in (digest.hex(), base64url(digest))


def base64url(raw: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# --- service specs -----------------------------------------------------------------------------


def go_accepted_spec(key: str = "golike") -> dict[str, Any]:
    """A spec the Go apiserver took: no description, a readiness probe of empty strings and zeros."""
    return {
        "key": key,
        "label": "Go-like",
        "image": {"name": "nginx", "tags": ["latest"]},
        "readinessProbe": {"type": "", "path": "", "port": 0, "initialDelay": 0, "timeout": 0},
        "resourceLimits": {"cpuMax": 100, "cpuDefault": 10, "memMax": 100, "memDefault": 10},
    }


def test_a_spec_go_accepted_is_200_with_the_schemas_warnings(
    api: RecordingApi, caplog: pytest.LogCaptureFixture
) -> None:
    """validate.go ValidateSpec: the schema is checked on the spec as decoded into Go's type (an
    absent description is there, empty), so PostService answers 200; the ndslabs schema's view of the
    document as sent comes back as a Warning header and in the log."""
    alice = api.make_user("alice")
    with caplog.at_level(logging.WARNING, logger="workbench.specs"):
        response = api.call("POST", "/api/services", alice, json=go_accepted_spec())
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["key"] == "golike"
    assert response.headers.getlist("Warning") == ['299 - "the spec schema: description: is required"']
    assert "service spec 'golike' of alice: the spec schema: description: is required" in caplog.text
    stored = api.call("GET", "/api/services/golike?catalog=user", alice)
    assert stored.status_code == 200
    assert stored.get_json()["description"] == ""

    # PutService validates the same way.
    changed = go_accepted_spec() | {"label": "Go-like, changed"}
    response = api.call("PUT", "/api/services/golike", alice, json=changed)
    assert response.status_code == 200, response.get_json()
    assert response.headers.getlist("Warning") == ['299 - "the spec schema: description: is required"']


def test_a_user_catalog_spec_always_requires_login(api: RecordingApi) -> None:
    """server.go PostService and PutService: a user catalog's spec is stored with ``AuthRequired =
    true`` (and no security context) whatever was posted; the system catalog keeps what the admin
    sent."""
    alice = api.make_user("alice")
    posted = go_accepted_spec("open") | {"authRequired": False, "privileged": True}
    response = api.call("POST", "/api/services?catalog=user", alice, json=posted)
    assert response.status_code == 200, response.get_json()
    assert (response.get_json()["authRequired"], response.get_json()["privileged"]) == (True, False)
    response = api.call(
        "PUT", "/api/services/open?catalog=user", alice, json=posted | {"label": "Still open"}
    )
    assert response.status_code == 200, response.get_json()
    stored = api.call("GET", "/api/services/open?catalog=user", alice).get_json()
    assert (stored["label"], stored["authRequired"], stored["privileged"]) == ("Still open", True, False)

    admin = api.admin()
    response = api.call("POST", "/api/services?catalog=system", admin, json=go_accepted_spec("public"))
    assert response.status_code == 200, response.get_json()
    assert api.call("GET", "/api/services/public?catalog=system", admin).get_json()["authRequired"] is False


@pytest.mark.parametrize(
    ("name", "status", "named"),
    [
        ("small.json", 200, ""),
        ("multiport.json", 200, ""),
        ("multivol.json", 200, ""),
        ("cpuhog.json", 200, ""),
        ("memhog.json", 200, ""),
        ("toobig.json", 200, ""),
        ("noimage.json", 200, ""),
        ("full.json", 200, ""),  # its dependency, mongo, is in the system catalog
        ("badspec.json", 400, "image"),  # no image: its tags encode as null, which breaks the schema
        ("baddep.json", 404, "Missing dependency noimagetest"),
    ],
)
def test_the_go_test_specs(api: RecordingApi, name: str, status: int, named: str) -> None:
    """server.go PostService on the Go apiserver's own test specs: ValidateSpec → 400, a missing
    dependency (checkDependencies) → 404, else 200."""
    alice = api.make_user("alice")
    document = json.loads((SPECS / name).read_text(encoding="utf-8"))
    response = api.call("POST", "/api/services", alice, json=document)
    assert response.status_code == status, response.get_json()
    if status != 200:
        assert named in error_of(response)
        assert api.call("GET", f"/api/services/{document['key']}?catalog=user", alice).status_code == 404


def test_posting_a_spec_is_refused_in_go_order(api: RecordingApi) -> None:
    """server.go PostService: invalid → 400, then serviceExists → 409, then checkDependencies and
    checkConfigs → 404 ("Missing dependency", "Missing config dependency"); an unparsable body is 400
    (Go's 500 there was a fault, not a contract)."""
    alice = api.make_user("alice")
    assert api.call("POST", "/api/services", alice, json=go_accepted_spec()).status_code == 200

    taken = api.call("POST", "/api/services", alice, json=go_accepted_spec() | {"label": "Again"})
    assert taken.status_code == 409
    assert "golike" in error_of(taken)
    system_key = api.call("POST", "/api/services", alice, json=go_accepted_spec("jupyterlab"))
    assert system_key.status_code == 409

    # Taken and missing a dependency: the key is looked at first.
    both = go_accepted_spec() | {"depends": [{"key": "nosuchservice", "required": True}]}
    assert api.call("POST", "/api/services", alice, json=both).status_code == 409

    missing = go_accepted_spec("lonely") | {"depends": [{"key": "nosuchservice", "required": True}]}
    response = api.call("POST", "/api/services", alice, json=missing)
    assert response.status_code == 404
    assert error_of(response) == "Missing dependency nosuchservice"

    config = go_accepted_spec("configured") | {
        "config": [{"name": "DB", "value": "", "useFrom": "nosuchservice.DB_NAME"}]
    }
    response = api.call("POST", "/api/services", alice, json=config)
    assert response.status_code == 404
    assert error_of(response) == "Missing config dependency nosuchservice"

    response = api.call(
        "POST", "/api/services", alice, data=b'{"key": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    error_of(response)
    keys = [item["key"] for item in api.call("GET", "/api/services?catalog=user", alice).get_json()]
    assert keys == ["golike"]


# --- quickstart --------------------------------------------------------------------------------


def test_quickstart_answers_200_with_the_stack(api: RecordingApi) -> None:
    """server.go QuickstartStack: creates the stack of the one spec when there is none, starts it in
    the background unless it is starting or started, and answers 200 with the stack (WriteJson)."""
    alice = api.make_user("alice")
    assert api.call("POST", "/api/services", alice, json=spec("quick")).status_code == 200

    response = api.call("GET", "/api/start?key=quick", alice)
    assert response.status_code == 200, response.get_json()
    stack = response.get_json()
    assert (stack["key"], stack["name"], stack["status"]) == ("quick", "Quick", "starting")
    assert stack["secure"] is True  # the Go apiserver's quickstart stack: Name spec.Label, Secure true
    assert [service["service"] for service in stack["services"]] == ["quick"]

    again = api.call("GET", "/api/start?key=quick", alice)
    assert again.status_code == 200
    assert again.get_json()["id"] == stack["id"]
    wait_for(api, alice, stack["id"], "started", passing=("starting",))
    assert api.call("GET", "/api/start?key=quick", alice).status_code == 200
    stop(api, alice, stack["id"])


# --- the command-line client -------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", "?os=linux", "?os=darwin", "?os=windows", "?os=plan9"])
def test_download_answers_200_with_the_clients_steps(api: RecordingApi, query: str) -> None:
    """server.go DownloadClient: 200 for any os, links to each platform's download without a known
    one. Here the client is the Python package's workbench command: the page gives the steps that
    install it and log it in to this platform."""
    response = api.call("GET", "/api/download" + query)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["Content-Security-Policy"] == "default-src 'none'"
    page = response.get_data(as_text=True)
    origin = Settings.from_env().server.origin
    assert f"workbench login --url {origin}" in page
    wanted = query.removeprefix("?os=")
    if wanted in ("linux", "darwin"):
        assert "~/.workbench-cli/bin/workbench" in page
        assert "Scripts" not in page
    elif wanted == "windows":
        assert r"%USERPROFILE%\workbench-cli\Scripts\workbench" in page
    else:
        for name in ("linux", "darwin", "windows"):
            assert f'href="download?os={name}"' in page
