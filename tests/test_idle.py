"""Idle shutdown: the running stacks of an account without activity past its limit are stopped by the
sweep, with one warning mail an hour before; the admin sets an account's limit, its user may only lower
it, and 0 means never. The sweep's clock is driven (``idle.clock``), never slept through."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from shared.adapters.store import AccountRecord
from shared.adapters.store.sql import open_store
from shared.bootstrap import Platform
from shared.core.models import Account
from shared.core.settings import Settings
from shared.domain import idle, recovery
from tests.conftest import ADMIN_PASSWORD, ROOT, Api
from tests.support import remove_stacks, wait_for_status
from tests.test_auth import body_of, mails
from tests.test_e2e import STATIC_SPEC, bearer, token
from tests.test_e2e import Platform as PlatformProcess
from tests.test_stacks import NOTEBOOK, add_spec, create, read, started, wait_for
from tests.test_ui_browser import log_in
from tests.users import Users

HOUR = 3600


class Clock:
    """The idle module's clock, set by the test."""

    def __init__(self) -> None:
        self.at = int(time.time())

    def now(self) -> int:
        return self.at


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    driven = Clock()
    monkeypatch.setattr(idle, "clock", SimpleNamespace(now=driven.now))
    return driven


@pytest.fixture(autouse=True)
def no_stack_left(platform: Platform) -> Iterator[None]:
    yield
    remove_stacks(platform)


def status_of(platform: Platform, user: str, sid: str) -> str:
    stack = platform.store.get_stack(user, sid)
    assert stack is not None, sid
    return stack.status


def running_stack(api: Api, token: str) -> str:
    add_spec(api, token, NOTEBOOK)
    sid: str = create(api, token, {"key": "notebook"})["id"]
    started(api, token, sid)
    return sid


def account_of(api: Api, token: str, user: str) -> dict[str, Any]:
    response = api.call("GET", f"/api/accounts/{user}", token)
    assert response.status_code == 200, response.get_json()
    found: dict[str, Any] = response.get_json()
    return found


def put(api: Api, token: str, user: str, **changes: Any) -> Any:
    return api.call("PUT", f"/api/accounts/{user}", token, json=account_of(api, token, user) | changes)


def test_an_idle_stack_is_stopped_on_time_and_an_active_one_is_not(
    api: Api, platform: Platform, users: Users, clock: Clock
) -> None:
    alice, bob = users.make("alice"), users.make("bob")
    alice_stack, bob_stack = running_stack(api, alice), running_stack(api, bob)
    began = clock.at  # both were last active now (their calls above), with the default limit, 8 h
    assert account_of(api, alice, "alice")["inactiveTimeout"] == 480
    assert abs(account_of(api, alice, "alice")["lastActive"] - began) <= 1

    clock.at = began + 6 * HOUR  # bob calls the API again; alice does not
    assert api.call("GET", "/api/stacks", bob).status_code == 200
    recovery.sweep(platform)
    assert mails(platform, "alice@example.org") == []  # more than an hour left: no warning yet

    clock.at = began + 7 * HOUR + 60  # within the last hour of alice's limit
    recovery.sweep(platform)
    recovery.sweep(platform)  # a second pass in the same idle period sends no second warning
    [warning] = mails(platform, "alice@example.org")
    assert "will be stopped" in warning["Subject"]
    assert "about 59 minutes" in body_of(warning) and "log in" in body_of(warning)
    assert mails(platform, "bob@example.org") == []
    assert status_of(platform, "alice", alice_stack) == "started"  # read in the store: a call is activity

    clock.at = began + 8 * HOUR - 60  # a minute before the limit: still running
    recovery.sweep(platform)
    assert status_of(platform, "alice", alice_stack) == "started"

    clock.at = began + 8 * HOUR + 1
    recovery.sweep(platform)
    wait_for(api, alice, alice_stack, "stopped", passing=("stopping",))
    assert read(api, bob, bob_stack)["status"] == "started"  # active 2 h after alice: 6 h idle
    stopped_mail = mails(platform, "alice@example.org")[-1]
    assert "were stopped" in stopped_mail["Subject"] and "8 h without activity" in body_of(stopped_mail)
    assert mails(platform, "bob@example.org") == []


def test_new_activity_starts_a_new_idle_period_with_its_own_warning(
    api: Api, platform: Platform, users: Users, clock: Clock
) -> None:
    alice = users.make("alice")
    sid = running_stack(api, alice)
    began = clock.at
    clock.at = began + 7 * HOUR + 120
    recovery.sweep(platform)
    assert len(mails(platform, "alice@example.org")) == 1

    clock.at += 60
    api.call("GET", "/api/stacks", alice)  # the warning worked: alice is back
    clock.at += 8 * HOUR - 120  # past the first deadline, within the warning time of the second
    recovery.sweep(platform)
    assert len(mails(platform, "alice@example.org")) == 2
    assert status_of(platform, "alice", sid) == "started"


def test_the_pages_own_polls_are_not_activity_but_a_refresh_is(
    api: Api, platform: Platform, users: Users, clock: Clock
) -> None:
    alice = users.make("alice")
    began = clock.at
    api.call("GET", "/api/stacks", alice)

    def last_active() -> int:
        record = platform.store.get_account("alice")
        assert record is not None
        return record.last_active

    assert last_active() == began
    clock.at = began + 2 * HOUR
    polled = api.call("GET", "/api/stacks", alice, headers={"X-Workbench-Background": "1"})
    assert polled.status_code == 200
    assert last_active() == began
    refreshed = api.call("GET", "/api/refresh_token", alice)
    assert refreshed.status_code == 200, refreshed.get_json()
    assert last_active() == began + 2 * HOUR


def test_connect_use_through_the_ingress_check_is_activity(
    api: Api, platform: Platform, users: Users, clock: Clock
) -> None:
    """On a cluster a secure stack's visitors are checked by ``/api/check_token`` (nginx ``auth-url``)
    on each request: that use of Connect counts as the user's activity."""
    alice = users.make("alice")
    clock.at += HOUR
    checked = api.call("GET", "/api/check_token", alice)
    assert checked.status_code == 200, checked.get_data(as_text=True)
    record = platform.store.get_account("alice")
    assert record is not None and record.last_active == clock.at


@pytest.mark.postgres
def test_activity_and_the_warning_mark_are_kept_on_postgresql(postgres_url: str) -> None:
    store = open_store(postgres_url)
    try:
        store.insert_account(AccountRecord(Account(id="carol", namespace="carol", name="Carol"), ""))
        store.record_activity("carol", 2_000_000, 60)
        store.record_activity("carol", 2_000_059, 60)

        def warned(stored: AccountRecord) -> AccountRecord:
            stored.idle_warned_at = 2_000_100
            return stored

        store.update_account("carol", warned)
        record = store.get_account("carol")
        assert record is not None
        assert (record.last_active, record.idle_warned_at) == (2_000_000, 2_000_100)
    finally:
        store.close()


def test_activity_is_written_at_most_once_a_minute_per_user(platform: Platform, users: Users) -> None:
    """Each store skips the write within the resolution; another process's store (here a second
    one on the same database) is held back by the conditional update."""
    users.make("alice")
    store, other = platform.store, open_store(platform.settings.store.database_url)
    try:
        store.record_activity("alice", 1_000_000, 60)
        store.record_activity("alice", 1_000_030, 60)
        other.record_activity("alice", 1_000_030, 60)
        assert other.get_account("alice").last_active == 1_000_000  # type: ignore[union-attr]
        other.record_activity("alice", 1_000_091, 60)
        assert store.get_account("alice").last_active == 1_000_091  # type: ignore[union-attr]
    finally:
        other.close()


def test_the_admin_sets_the_limit_and_the_user_may_only_lower_it(
    api: Api, platform: Platform, users: Users, clock: Clock
) -> None:
    alice, admin = users.make("alice"), users.admin()
    assert put(api, alice, "alice").status_code == 200  # the account put back as read changes nothing
    assert platform.store.get_account("alice").account.inactiveTimeout is None  # type: ignore[union-attr]

    for raised in (600, 0):
        response = put(api, alice, "alice", inactiveTimeout=raised)
        assert response.status_code == 403, response.get_json()
        assert "only the admin may raise" in response.get_json()["Error"]
    assert put(api, alice, "alice", inactiveTimeout=-5).status_code == 400
    assert put(api, alice, "alice", inactiveTimeout=120).get_json()["inactiveTimeout"] == 120

    assert put(api, admin, "alice", inactiveTimeout=60).status_code == 200
    assert account_of(api, alice, "alice")["inactiveTimeout"] == 60
    sid = running_stack(api, alice)
    clock.at += 31 * 60  # a limit of an hour warns at half of it
    recovery.sweep(platform)
    assert len(mails(platform, "alice@example.org")) == 1
    clock.at += 30 * 60
    recovery.sweep(platform)
    wait_for(api, alice, sid, "stopped", passing=("stopping",))


def test_a_registration_takes_the_default_limit_whatever_it_asks(api: Api, platform: Platform) -> None:
    registration = {
        "namespace": "erin",
        "name": "Erin",
        "email": "erin@example.org",
        "password": "erin-password",
        "inactiveTimeout": 0,
    }
    assert api.call("POST", "/api/register", json=registration).status_code == 200
    record = platform.store.get_account("erin")
    assert record is not None and record.account.inactiveTimeout is None


def test_a_limit_of_zero_never_stops(api: Api, platform: Platform, users: Users, clock: Clock) -> None:
    alice, admin = users.make("alice"), users.admin()
    assert put(api, admin, "alice", inactiveTimeout=0).status_code == 200
    sid = running_stack(api, alice)
    clock.at += 365 * 24 * HOUR
    recovery.sweep(platform)
    assert read(api, alice, sid)["status"] == "started"
    assert mails(platform, "alice@example.org") == []
    # Nor does the platform's default of 0 (WORKBENCH_INACTIVE_TIMEOUT_MINUTES=0), for accounts without their own.
    settings = Settings.from_env({"WORKBENCH_INACTIVE_TIMEOUT_MINUTES": "0"})
    record = platform.store.get_account("alice")
    assert record is not None
    assert idle.deadline(settings, record) is None
    record.account = record.account.model_copy(update={"inactiveTimeout": None})
    assert idle.deadline(settings, record) is None
    assert idle.deadline(Settings.from_env({}), record) is not None


def page_notice(account: dict[str, Any], now: int) -> Any:
    """What the stacks view's idle notice (js/idle.js) says for ``account`` at ``now``, run by Node."""
    script = (
        "import { idleNotice } from './shared/data/ui/js/idle.js';"
        f"console.log(JSON.stringify(idleNotice({json.dumps(account)}, {now})));"
    )
    done = subprocess.run(
        ["node", "--input-type=module", "-e", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def test_the_stacks_view_says_the_limit_and_warns_in_the_last_hour(api: Api, users: Users) -> None:
    alice = users.make("alice")
    account_of(api, alice, "alice")
    account = account_of(api, alice, "alice")  # what the view reads, once alice has been active
    last = account["lastActive"]
    early = page_notice(account, last + 60)
    assert "stop after 8 h without activity" in early["text"]
    assert early["warning"] == ""
    late = page_notice(account, last + 7 * HOUR + 20 * 60)
    assert "stop in about 40 min" in late["warning"]
    assert page_notice(account | {"inactiveTimeout": 0}, last) is None


# --- the page in a browser -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workbench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformProcess]:
    """``workbench run`` with dave, whose limit the admin set to 2 h, and his started stack."""
    platform = PlatformProcess(tmp_path_factory.mktemp("workbench") / "data")
    platform.start()
    try:
        http = httpx.Client(base_url=platform.url, timeout=10)
        admin = token(http, "admin", ADMIN_PASSWORD)
        account = {
            "namespace": "dave",
            "name": "Dave",
            "email": "dave@example.org",
            "password": "dave-password",
        }
        assert http.post("/api/accounts", json=account, headers=bearer(admin)).status_code == 200
        read = http.get("/api/accounts/dave", headers=bearer(admin)).json()
        changed = http.put("/api/accounts/dave", json=read | {"inactiveTimeout": 120}, headers=bearer(admin))
        assert changed.status_code == 200, changed.text
        dave = token(http, "dave", "dave-password")
        assert http.post("/api/services", json=STATIC_SPEC, headers=bearer(dave)).status_code == 200
        created = http.post("/api/stacks", json={"key": STATIC_SPEC["key"]}, headers=bearer(dave))
        assert created.status_code == 200, created.text
        sid = created.json()["id"]
        assert http.get(f"/api/start/{sid}", headers=bearer(dave)).status_code == 202
        wait_for_status(
            lambda: http.get(f"/api/stacks/{sid}", headers=bearer(dave)).json(),
            "started",
            f"stack {sid}",
            passing=("starting",),
        )
        yield platform
    finally:
        platform.stop()


@pytest.mark.browser
@pytest.mark.e2e
def test_the_stacks_page_shows_the_limit_and_in_its_last_hour_the_warning(
    page: Any, workbench: PlatformProcess
) -> None:
    from playwright.sync_api import expect

    page.clock.install()  # the page's own clock: the server's (and dave's last activity) stays
    log_in(page, workbench.url, "dave", "dave-password")
    limit = page.locator("#idle-limit")
    expect(limit).to_contain_text("Running stacks stop after 2 h without activity")
    expect(page.locator("#idle-warning")).to_be_hidden()

    page.clock.fast_forward("01:20:00")  # its polls since are the page's own: no activity
    expect(page.locator("#idle-warning")).to_be_visible()
    expect(page.locator("#idle-warning")).to_contain_text("your running stacks stop in about 40 min")
    expect(page.get_by_role("button", name="Keep them running")).to_be_visible()


def test_the_clusters_sweep_may_stop_stacks() -> None:
    """On a cluster the CronJob workbench-sweep runs the idle shutdown: it runs as the ``stop`` function's
    service account, which stack-manager binds, with its token mounted."""
    from shared.serving import registry
    from shared.tools import manifests

    [cron_job] = [item for item in manifests.documents()["config.yaml"] if item["kind"] == "CronJob"]
    pod = cron_job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == manifests.account_name(registry.function("stop"))
    assert pod["automountServiceAccountToken"] is True
    assert "stop" in manifests.STACK_MANAGERS
