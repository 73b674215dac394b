"""Attacks on accounts, each shown to fail: self-approval, taking another person's e-mail address,
tokens outliving their account or session, and guessing passwords or flooding reset mails."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from events import types
from events.codec import new_event, to_http
from shared.adapters.store import AccountRecord, EmailChange
from shared.adapters.store.sql import SqlStore
from shared.bootstrap import Platform
from shared.core.errors import Unauthorized
from shared.core.settings import Settings
from shared.domain import accounts, auth, throttle
from shared.serving.access_log import RedactingRequestHandler, redact
from tests.conftest import Client
from tests.test_auth import RecordingApi, body_of, error_of, mails, recording_api
from tests.test_register import CAROL, SUPPORT, decision_links, register, verification_link, verify
from tests.test_services import new_spec

CLOWDER_URL = "https://clowder.example.org"
EVENT_SECRET = "pairing-secret-shared-with-clowder"


@pytest.fixture
def database(request: pytest.FixtureRequest) -> str:
    """The platform's store: SQLite, unless a test is parametrized (indirectly) with ``postgresql``."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def environment(database: str, request: pytest.FixtureRequest) -> dict[str, str]:
    settings = {
        "WORKBENCH_CLOWDER_URL": CLOWDER_URL,
        "WORKBENCH_EVENT_SECRET": EVENT_SECRET,
        "WORKBENCH_LOGIN_ACCOUNT_ATTEMPTS": "5",
        "WORKBENCH_LOGIN_ADDRESS_ATTEMPTS": "12",
        "WORKBENCH_LOGIN_WINDOW_SECONDS": "600",
        "WORKBENCH_RESET_INTERVAL_SECONDS": "300",
    }
    if database == "postgresql":
        settings["WORKBENCH_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    return settings


BOTH_DATABASES = pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


@pytest.fixture
def api(client: Callable[[str], Client], platform: Platform) -> Iterator[RecordingApi]:
    yield from recording_api(client, platform)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """``clock(seconds)``: the accounts' clock moves on by that much (the throttles' and links')."""
    offset = 0
    real = accounts._clock

    def advance(seconds: int) -> None:
        nonlocal offset
        offset += seconds

    monkeypatch.setattr(accounts, "_clock", lambda: real() + offset)
    return advance


def log_in(api: RecordingApi, username: str, password: str, address: str = "127.0.0.1") -> Any:
    return api.call(
        "POST",
        "/api/authenticate",
        json={"username": username, "password": password},
        environ_base={"REMOTE_ADDR": address},
    )


def stored(platform: Platform, user: str) -> AccountRecord:
    record = platform.store.get_account(user)
    assert record is not None
    return record


# --- 3. self-approval ------------------------------------------------------------------------------


@pytest.mark.parametrize("decision", ["approve", "deny"])
def test_the_registrants_own_token_neither_approves_nor_denies(
    api: RecordingApi, platform: Platform, decision: str
) -> None:
    assert register(api).status_code == 200
    user, token = verification_link(platform)
    assert verify(api, platform).status_code == 200

    response = api.call("GET", f"/api/register/{decision}?u={user}&t={token}")
    assert response.status_code == 404
    assert error_of(response) == "Token not found"
    assert stored(platform, "carol").account.status == "unapproved"
    assert log_in(api, "carol", CAROL["password"]).status_code == 401


def test_the_decision_token_goes_to_the_support_address_only(api: RecordingApi, platform: Platform) -> None:
    assert register(api).status_code == 200
    assert verify(api, platform).status_code == 200
    decision_token = re.search(r"[?&]t=([^&\s]+)", decision_links(platform)["approve"])
    assert decision_token is not None
    assert [message["To"] for message in mails(platform) if decision_token.group(1) in body_of(message)] == [
        SUPPORT
    ]
    # Neither the registration's answer nor a read of the own account shows it.
    assert all(decision_token.group(1) not in response.get_data(as_text=True) for response in api.responses)


def test_every_status_change_gives_a_new_token_and_spent_ones_are_refused(
    api: RecordingApi, platform: Platform
) -> None:
    assert register(api).status_code == 200
    registration_token = stored(platform, "carol").account.token
    assert verify(api, platform).status_code == 200
    approval_token = stored(platform, "carol").account.token
    assert approval_token != registration_token
    links = decision_links(platform)
    assert api.call("GET", links["approve"]).status_code == 200
    approved_token = stored(platform, "carol").account.token
    assert approved_token not in (registration_token, approval_token)

    # The spent links, and the verification link, are refused from now on.
    for path in (links["approve"], links["deny"]):
        assert api.call("GET", path).status_code == 404
    assert verify(api, platform).status_code == 404

    # The token is of the status (as the Go apiserver's was): the admin putting the account back to
    # "unapproved" makes it awaiting a decision again, by the links the support address holds; the
    # verification link stays spent, and a decision spends the links again.
    response = api.call("PUT", "/api/accounts/carol", api.admin(), json={"status": "unapproved"})
    assert response.status_code == 200, response.get_json()
    assert stored(platform, "carol").account.token == approval_token
    assert verify(api, platform).status_code == 404
    assert api.call("GET", links["deny"]).status_code == 200
    assert stored(platform, "carol").account.status == "denied"
    assert stored(platform, "carol").account.token not in (registration_token, approval_token, approved_token)
    for path in (links["approve"], links["deny"]):
        assert api.call("GET", path).status_code == 404


def test_the_access_log_never_holds_a_link_token(caplog: pytest.LogCaptureFixture) -> None:
    """The local server's request log (werkzeug's, through the handler ``workbench run`` uses)."""
    from werkzeug.serving import make_server

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=RedactingRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    secret = "Zm9yLXRoZS1zdXBwb3J0LWFkZHJlc3Mtb25seQ"
    try:
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            for path in (
                f"/api/register/approve?u=carol&t={secret}",
                f"/api/register/deny?t={secret}&u=carol",
                f"/objects/blobs/x?expires=1&signature={secret}",
                f"/api/check_token?token={secret}",
            ):
                assert httpx.get(f"http://127.0.0.1:{server.port}{path}").status_code == 200
    finally:
        server.shutdown()
        server.server_close()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "/api/register/approve?u=carol&t=[redacted]" in logged
    assert "signature=[redacted]" in logged
    assert secret not in logged
    assert redact("GET /?tt=keep&t=drop&at=keep HTTP/1.1") == "GET /?tt=keep&t=[redacted]&at=keep HTTP/1.1"
    # A value holding a quote is left out whole, not up to the quote.
    assert redact('GET /?t="half"secret&u=x HTTP/1.1') == "GET /?t=[redacted]&u=x HTTP/1.1"


def test_workbench_run_serves_with_the_redacting_handler(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    import werkzeug.serving

    from shared.tools import cli

    given: dict[str, Any] = {}

    class Served(Exception):
        pass

    def make_server(*args: Any, **kwargs: Any) -> Any:
        given.update(kwargs)
        raise Served

    monkeypatch.setattr(werkzeug.serving, "make_server", make_server)
    monkeypatch.setattr("shovel.local.attach_shovels", lambda platform: None)
    with pytest.raises(Served):
        cli.run(argparse.Namespace())
    assert given["request_handler"] is RedactingRequestHandler


# --- 4. e-mail changes -----------------------------------------------------------------------------


def transfer_event_for(email: str) -> Any:
    event = new_event(
        types.TRANSFER_REQUESTED,
        {"clowder_url": CLOWDER_URL, "dataset_id": "64f0a1b2c3d4e5f6a7b8c9d0", "email": email},
        source=CLOWDER_URL + "/",
        secret=EVENT_SECRET.encode(),
    )
    return to_http(event, "binary")


def test_a_user_cannot_take_another_clowder_users_address(
    api: RecordingApi, platform: Platform, client: Callable[[str], Client]
) -> None:
    """The attack: alice names herself by the victim's Clowder address, and the victim's datasets
    are delivered into her home."""
    token = api.make_user("alice", "alice-password")
    current = api.call("GET", "/api/accounts/alice", token).get_json()

    response = api.call("PUT", "/api/accounts/alice", token, json=current | {"email": "victim@example.org"})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["email"] == "alice@example.org"
    assert stored(platform, "alice").account.email == "alice@example.org"
    assert platform.store.find_account("victim@example.org") is None

    headers, body = transfer_event_for("victim@example.org")
    refused = client("transfer").post("/", headers=headers, data=body)
    assert refused.status_code == 400, refused.get_data(as_text=True)
    assert "victim@example.org" in error_of(refused)
    assert platform.store.list_transfers("alice") == []

    # Only the link mailed to the new address makes it alice's; she never sees it.
    sent = mails(platform, "victim@example.org")
    assert len(sent) == 1
    assert "/#/register/verify?" in body_of(sent[0])
    change = stored(platform, "alice").email_change
    assert change is not None and change.address == "victim@example.org"
    assert all(change.token not in response.get_data(as_text=True) for response in api.responses)


def test_a_new_address_takes_effect_once_verified_and_the_link_works_once(
    api: RecordingApi, platform: Platform, clock: Callable[[int], None]
) -> None:
    token = api.make_user("alice", "alice-password")
    response = api.call("PUT", "/api/accounts/alice", token, json={"email": "alice@new.example.org"})
    assert response.status_code == 200, response.get_json()
    user, link_token = verification_link(platform, "alice@new.example.org")
    assert user == "alice"

    for wrong in ("not-the-token", link_token[:-1]):
        assert api.call("PUT", "/api/register/verify", json={"u": "alice", "t": wrong}).status_code == 404
    assert api.call("PUT", "/api/register/verify", json={"u": "bob", "t": link_token}).status_code == 404
    assert stored(platform, "alice").account.email == "alice@example.org"

    response = api.call("PUT", "/api/register/verify", json={"u": "alice", "t": link_token})
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"message": "E-mail address has been changed."}
    assert stored(platform, "alice").account.email == "alice@new.example.org"
    assert stored(platform, "alice").email_change is None
    assert "changed" in mails(platform, "alice@example.org")[-1]["Subject"]  # the old address is told
    assert api.call("PUT", "/api/register/verify", json={"u": "alice", "t": link_token}).status_code == 404

    # A link older than a day is refused.
    response = api.call("PUT", "/api/accounts/alice", token, json={"email": "alice@later.example.org"})
    assert response.status_code == 200
    _, late_token = verification_link(platform, "alice@later.example.org")
    clock(accounts.EMAIL_CHANGE_SECONDS + 1)
    assert api.call("PUT", "/api/register/verify", json={"u": "alice", "t": late_token}).status_code == 404
    assert stored(platform, "alice").account.email == "alice@new.example.org"


def test_a_second_change_makes_the_first_link_stale(api: RecordingApi, platform: Platform) -> None:
    token = api.make_user("alice", "alice-password")
    assert (
        api.call("PUT", "/api/accounts/alice", token, json={"email": "first@example.org"}).status_code == 200
    )
    _, first = verification_link(platform, "first@example.org")
    assert (
        api.call("PUT", "/api/accounts/alice", token, json={"email": "second@example.org"}).status_code == 200
    )
    assert api.call("PUT", "/api/register/verify", json={"u": "alice", "t": first}).status_code == 404
    assert stored(platform, "alice").account.email == "alice@example.org"


def test_an_address_of_another_account_is_refused_at_once(api: RecordingApi, platform: Platform) -> None:
    api.make_user("bob", "bob-password")
    token = api.make_user("alice", "alice-password")
    response = api.call("PUT", "/api/accounts/alice", token, json={"email": "BOB@example.org"})
    assert response.status_code == 409
    assert mails(platform, "BOB@example.org") == mails(platform, "bob@example.org") == []


def test_the_admin_sets_addresses_directly(api: RecordingApi, platform: Platform) -> None:
    api.make_user("alice", "alice-password")
    response = api.call("PUT", "/api/accounts/alice", api.admin(), json={"email": "alice@lab.example.org"})
    assert response.status_code == 200, response.get_json()
    assert stored(platform, "alice").account.email == "alice@lab.example.org"
    assert mails(platform, "alice@lab.example.org") == []


# --- 5. tokens outliving their account or session --------------------------------------------------


def still_works(api: RecordingApi, token: str) -> dict[str, int]:
    """The status of what a token holder would do: list and create stacks and specs, refresh."""
    return {
        "list": api.call("GET", "/api/stacks", token).status_code,
        "stack": api.call("POST", "/api/stacks", token, json={"key": "cloudcmd"}).status_code,
        "spec": api.call("POST", "/api/services", token, json=new_spec("mything")).status_code,
        "refresh": api.call("GET", "/api/refresh_token", token).status_code,
        "check": api.call("GET", "/api/check_token", token).status_code,
    }


REFUSED = {"list": 401, "stack": 401, "spec": 401, "refresh": 401, "check": 401}


@BOTH_DATABASES
def test_a_deleted_accounts_token_is_refused_also_after_the_name_is_made_again(
    api: RecordingApi, platform: Platform
) -> None:
    token = api.make_user("alice", "alice-password")
    assert api.call("GET", "/api/stacks", token).status_code == 200  # remembered as verified
    assert api.call("DELETE", "/api/accounts/alice", api.admin()).status_code == 200
    assert still_works(api, token) == REFUSED

    again = api.make_user("alice", "another-password")
    assert still_works(api, token) == REFUSED
    assert api.call("GET", "/api/stacks", again).status_code == 200
    assert platform.store.list_specs("alice") == []


def test_a_denied_accounts_token_is_refused_also_after_approval_again(api: RecordingApi) -> None:
    token = api.make_user("alice", "alice-password")
    admin = api.admin()
    assert api.call("PUT", "/api/accounts/alice", admin, json={"status": "denied"}).status_code == 200
    assert still_works(api, token) == REFUSED
    assert api.call("PUT", "/api/accounts/alice", admin, json={"status": "approved"}).status_code == 200
    assert still_works(api, token) == REFUSED


@BOTH_DATABASES
def test_logout_ends_the_accounts_tokens_in_every_instance(api: RecordingApi, platform: Platform) -> None:
    token = api.make_user("alice", "alice-password")
    other_session = api.login("alice", "alice-password")
    # Another instance of a function (its own memory of verified tokens) on the same database.
    elsewhere = Platform(Settings.from_env())
    try:
        assert elsewhere.tokens.verify(token).user == "alice"
        assert api.call("DELETE", "/api/authenticate", token).status_code == 200
        with pytest.raises(Unauthorized, match="ended"):
            elsewhere.tokens.verify(token)
    finally:
        elsewhere.close()
    assert still_works(api, token) == REFUSED
    assert api.call("GET", "/api/stacks", other_session).status_code == 401
    # A token that is no longer good ends nothing more, and is answered the same.
    fresh = api.login("alice", "alice-password")
    assert api.call("DELETE", "/api/authenticate", token).status_code == 200
    assert api.call("GET", "/api/stacks", fresh).status_code == 200


def test_a_password_change_ends_the_earlier_tokens(api: RecordingApi) -> None:
    token = api.make_user("alice", "alice-password")
    response = api.call("PUT", "/api/change_password", token, json={"password": "alice-new-password"})
    assert response.status_code == 200, response.get_json()
    assert still_works(api, token) == REFUSED

    token = api.login("alice", "alice-new-password")
    response = api.call("PUT", "/api/accounts/alice", token, json={"password": "alice-third-password"})
    assert response.status_code == 200, response.get_json()
    assert still_works(api, token) == REFUSED
    assert api.call("GET", "/api/stacks", api.login("alice", "alice-third-password")).status_code == 200


def test_a_reset_token_works_once_and_ends_the_earlier_tokens(api: RecordingApi, platform: Platform) -> None:
    token = api.make_user("alice", "alice-password")
    assert api.call("POST", "/api/reset/alice").status_code == 200
    found = re.search(r"/#/recover\?t=(\S+)", body_of(mails(platform, "alice@example.org")[-1]))
    assert found is not None
    reset = found.group(1)

    first = api.call("PUT", "/api/change_password", reset, json={"password": "alice-new-password"})
    assert first.status_code == 200, first.get_json()
    second = api.call("PUT", "/api/change_password", reset, json={"password": "mallory-password"})
    assert second.status_code == 401
    assert "used" in error_of(second)
    assert log_in(api, "alice", "mallory-password").status_code == 401
    assert still_works(api, token) == REFUSED
    assert log_in(api, "alice", "alice-new-password").status_code == 200


def test_a_refreshed_token_stays_bound_to_the_session(api: RecordingApi) -> None:
    token = api.make_user("alice", "alice-password")
    refreshed = api.call("GET", "/api/refresh_token", token).get_json()["token"]
    assert api.call("DELETE", "/api/authenticate", token).status_code == 200
    assert api.call("GET", "/api/stacks", refreshed).status_code == 401
    assert api.call("GET", "/api/refresh_token", refreshed).status_code == 401


SERVICE_TOKEN = "clowder-service-token-for-the-containers-route"


@pytest.mark.parametrize("environment", [{"WORKBENCH_CLOWDER_SERVICE_TOKEN": SERVICE_TOKEN}])
def test_the_admin_and_clowders_service_token_keep_working(api: RecordingApi) -> None:
    api.make_user("alice", "alice-password")
    admin = api.admin()
    assert api.call("GET", "/api/accounts", admin).status_code == 200
    assert api.call("GET", "/api/containers/alice", SERVICE_TOKEN).status_code == 200
    refreshed = api.call("GET", "/api/refresh_token", admin).get_json()["token"]
    assert api.call("GET", "/api/accounts", refreshed).status_code == 200


# --- 6. guessing passwords, flooding reset mails ------------------------------------------------------


def test_wrong_passwords_for_one_account_are_throttled_even_from_many_addresses(
    api: RecordingApi, platform: Platform, clock: Callable[[int], None]
) -> None:
    api.make_user("alice", "alice-password")
    limit = platform.settings.auth.login_account_attempts
    for attempt in range(limit):
        response = log_in(api, "alice", f"guess-{attempt}", address=f"192.0.2.{attempt}")
        assert response.status_code == 401, attempt

    # The right password no longer helps, by name or by address, from anywhere.
    for username in ("alice", "alice@example.org"):
        response = log_in(api, username, "alice-password", address="198.51.100.7")
        assert response.status_code == 429
        assert "try again" in error_of(response)
        retry_after = int(response.headers["Retry-After"])
        assert 0 < retry_after <= platform.settings.auth.login_window

    clock(platform.settings.auth.login_window)
    assert log_in(api, "alice", "alice-password").status_code == 200


def test_a_success_clears_the_accounts_count(api: RecordingApi, platform: Platform) -> None:
    api.make_user("alice", "alice-password")
    limit = platform.settings.auth.login_account_attempts
    for _ in range(2):
        for attempt in range(limit - 1):
            assert log_in(api, "alice", f"typo-{attempt}").status_code == 401
        assert log_in(api, "alice", "alice-password").status_code == 200


@BOTH_DATABASES
def test_one_address_guessing_across_accounts_is_throttled(api: RecordingApi, platform: Platform) -> None:
    api.make_user("alice", "alice-password")
    limit = platform.settings.auth.login_address_attempts
    for attempt in range(limit):
        response = log_in(api, f"user{attempt}", "guessed-secret", address="203.0.113.9")
        assert response.status_code == 401, attempt
    response = log_in(api, "alice", "alice-password", address="203.0.113.9")
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    # Another address is not held back, and the count is in the database: another instance sees it.
    assert log_in(api, "alice", "alice-password", address="203.0.113.10").status_code == 200
    elsewhere = Platform(Settings.from_env())
    try:
        with pytest.raises(Exception, match="too many"):
            accounts.login(elsewhere, "alice", "alice-password", address="203.0.113.9")
    finally:
        elsewhere.close()


def test_an_unknown_name_is_throttled_like_a_known_one(api: RecordingApi, platform: Platform) -> None:
    limit = platform.settings.auth.login_account_attempts
    answers = [
        log_in(api, "nobody", f"guess-{n}", address=f"192.0.2.{n}").status_code for n in range(limit + 1)
    ]
    assert answers == [401] * limit + [429]


def test_parallel_guesses_cannot_outrun_the_count(api: RecordingApi, platform: Platform) -> None:
    api.make_user("alice", "alice-password")
    limit = platform.settings.auth.login_account_attempts
    statuses: list[int] = []

    def guess(number: int) -> None:
        statuses.append(accounts_login_status(platform, "alice", f"guess-{number}", f"192.0.2.{number}"))

    threads = [threading.Thread(target=guess, args=(number,)) for number in range(limit * 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [401] * limit + [429] * limit


def accounts_login_status(platform: Platform, username: str, password: str, address: str) -> int:
    from shared.core.errors import WorkbenchError

    try:
        accounts.login(platform, username, password, address=address)
    except WorkbenchError as error:
        return error.status
    return 200


def test_an_unknown_name_costs_a_password_verification(
    api: RecordingApi, platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What makes the time of an unknown name's login that of a known one: the same argon2 check."""
    api.make_user("alice", "alice-password")
    verified: list[str] = []
    real_verify = auth.Passwords.verify

    def counting(self: auth.Passwords, password_hash: str, password: str) -> bool:
        verified.append(password_hash)
        return real_verify(self, password_hash, password)

    monkeypatch.setattr(auth.Passwords, "verify", counting)
    assert log_in(api, "alice", "wrong-password").status_code == 401
    assert log_in(api, "nobody", "wrong-password").status_code == 401
    assert log_in(api, "nobody@example.org", "wrong-password").status_code == 401
    assert len(verified) == 3
    known, *unknown = verified
    parameters = known.rsplit("$", 2)[0]  # $argon2id$v=19$m=…,t=…,p=…: the cost of the check
    assert all(password_hash.rsplit("$", 2)[0] == parameters for password_hash in unknown)
    assert all(password_hash != known for password_hash in unknown)


def test_reset_mails_are_not_sent_again_within_the_interval(
    api: RecordingApi, platform: Platform, clock: Callable[[int], None]
) -> None:
    api.make_user("alice", "alice-password")
    answers = [
        api.call("POST", "/api/reset/alice", environ_base={"REMOTE_ADDR": f"192.0.2.{n}"}) for n in range(5)
    ]
    assert {response.status_code for response in answers} == {200}
    assert len({response.get_data() for response in answers}) == 1
    assert len(mails(platform, "alice@example.org")) == 1
    clock(platform.settings.auth.reset_interval)
    assert api.call("POST", "/api/reset?userId=alice@example.org").get_data() == answers[0].get_data()
    assert len(mails(platform, "alice@example.org")) == 2


def test_reset_requests_from_one_address_are_throttled(api: RecordingApi, platform: Platform) -> None:
    limit = platform.settings.auth.login_address_attempts
    for number in range(limit):
        assert api.call("POST", f"/api/reset/user{number}").status_code == 200
    response = api.call("POST", "/api/reset/alice")
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    assert mails(platform) == []


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("198.51.100.1", None, (), "198.51.100.1"),
        ("198.51.100.1", "203.0.113.5", (), "198.51.100.1"),  # nobody trusted: the header is ignored
        ("10.0.0.2", "203.0.113.5", ("10.0.0.0/8",), "203.0.113.5"),
        ("10.0.0.2", "1.2.3.4, 203.0.113.5, 10.0.0.7", ("10.0.0.0/8",), "203.0.113.5"),  # 1.2.3.4: spoofed
        ("198.51.100.1", "203.0.113.5", ("10.0.0.0/8",), "198.51.100.1"),  # not from a trusted proxy
        ("10.0.0.2", "10.0.0.3", ("10.0.0.0/8",), "10.0.0.3"),
        ("::1", "2001:db8::5", ("::1/128",), "2001:db8::5"),
    ],
)
def test_the_client_address_believes_only_trusted_proxies(
    peer: str, forwarded: str | None, trusted: tuple[str, ...], expected: str
) -> None:
    assert throttle.client_address(peer, forwarded, trusted) == expected


@pytest.mark.parametrize("environment", [{"WORKBENCH_TRUSTED_PROXIES": "127.0.0.1"}])
def test_behind_a_trusted_proxy_each_client_is_counted_on_its_own(
    api: RecordingApi, platform: Platform
) -> None:
    assert platform.settings.auth.trusted_proxies == ("127.0.0.1/32",)
    limit = platform.settings.auth.login_address_attempts

    def attempt(client: str, username: str) -> int:
        status: int = api.call(
            "POST",
            "/api/authenticate",
            json={"username": username, "password": "guessed-secret"},
            headers={"X-Forwarded-For": f"{client}, {client}"},
        ).status_code
        return status

    assert [attempt("203.0.113.1", f"user{n}") for n in range(limit + 1)] == [401] * limit + [429]
    assert attempt("203.0.113.2", "someone") == 401


def test_the_document_lists_429_where_logins_are_counted(api: RecordingApi) -> None:
    document = api.call("GET", "/api/openapi.json").get_json()
    for path, method in (("/api/authenticate", "post"), ("/api/reset/{account_id}", "post")):
        responses = document["paths"][path][method]["responses"]
        assert "429" in responses
        assert "Retry-After" in responses["429"]["headers"]
    assert "429" not in document["paths"]["/api/stacks"]["get"]["responses"]


def test_throttle_settings_are_checked() -> None:
    with pytest.raises(Exception, match="WORKBENCH_TRUSTED_PROXIES"):
        Settings.from_env({"WORKBENCH_TRUSTED_PROXIES": "10.0.0.0/8, not-a-network"})
    with pytest.raises(Exception, match="WORKBENCH_LOGIN_ACCOUNT_ATTEMPTS"):
        Settings.from_env({"WORKBENCH_LOGIN_ACCOUNT_ATTEMPTS": "0"})


# --- the store, on SQLite and PostgreSQL ---------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'workbench.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    from shared.adapters.store.sql import open_store

    opened = open_store(store_url)
    assert isinstance(opened, SqlStore)
    yield opened
    opened.close()


def test_store_keeps_the_token_generation_and_the_email_change(store: SqlStore) -> None:
    from shared.core.models import Account

    record = AccountRecord(
        Account(id="alice", namespace="alice", name="Alice", email="alice@example.org", status="approved"),
        "hash",
    )
    store.insert_account(record)
    assert record.token_generation
    assert store.account_standing("alice") == ("approved", record.token_generation)
    assert store.account_standing("nobody") is None

    def request_change(stored: AccountRecord) -> AccountRecord:
        stored.token_generation = "second"
        stored.email_change = EmailChange("alice@new.example.org", "link-token", 1234)
        return stored

    store.update_account("alice", request_change)
    found = store.get_account("alice")
    assert found is not None
    assert found.token_generation == "second"
    assert found.email_change == EmailChange("alice@new.example.org", "link-token", 1234)
    assert store.find_account("alice@new.example.org") is None  # not the account's address yet
    assert store.account_standing("alice") == ("approved", "second")

    def refused(stored: AccountRecord) -> AccountRecord:
        stored.token_generation = "third"
        raise Unauthorized("refused")

    with pytest.raises(Unauthorized):
        store.update_account("alice", refused)
    assert store.account_standing("alice") == ("approved", "second")

    store.delete_account("alice")
    store.insert_account(AccountRecord(record.account, "hash"))
    assert store.account_standing("alice") not in (None, ("approved", "second"))


def test_store_throttles_count_in_windows_across_connections(store: SqlStore, store_url: str) -> None:
    from shared.adapters.store.sql import open_store

    other = open_store(store_url)  # another instance's store
    try:
        assert store.hit_throttles(["a", "b"], 1000, 60) == [(1, 1060), (1, 1060)]
        assert other.hit_throttles(["a"], 1010, 60) == [(2, 1060)]
        store.release_throttles(refunded=["a"])
        assert store.hit_throttles(["a"], 1020, 60) == [(2, 1060)]
        store.release_throttles(cleared=["a"])
        assert other.hit_throttles(["a"], 1030, 60) == [(1, 1090)]
        assert store.hit_throttles(["b"], 1060, 60) == [(1, 1120)]  # a window ends: counting starts again
    finally:
        other.close()


def test_store_throttles_count_every_concurrent_attempt(store: SqlStore) -> None:
    errors: list[BaseException] = []

    def hit() -> None:
        try:
            for _ in range(10):
                store.hit_throttles(["shared"], 5000, 60)
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=hit) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.hit_throttles(["shared"], 5000, 60) == [(61, 5060)]


# --- the first login after the upgrade ----------------------------------------------------------------


def test_an_account_from_before_gets_a_generation_at_its_next_login(
    api: RecordingApi, platform: Platform
) -> None:
    api.make_user("alice", "alice-password")

    def as_before(stored: AccountRecord) -> AccountRecord:
        stored.token_generation = ""
        return stored

    platform.store.update_account("alice", as_before)
    assert accounts.token_generation(platform.store, "alice") is None
    token = api.login("alice", "alice-password")
    assert stored(platform, "alice").token_generation
    assert api.call("GET", "/api/stacks", token).status_code == 200
    assert stored(platform, "admin").token_generation  # made with one, as every account is now
