"""Verify where the platform does not reach the homes (a cluster): the check is asked of the user's shovel,
which re-hashes the folder in its home and reports back; the platform records it and the page follows it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from events.types import (
    MAX_LISTED_PATHS,
    SHOVEL_COMMAND_ABANDONED,
    TRANSFER_VERIFIED,
    CommandAbandoned,
    Payload,
    TransferVerified,
)
from shared.adapters.bus.memory import MemoryBus
from shared.adapters.store import Store
from shared.adapters.store.sql import SqlStore, open_store
from shared.bootstrap import Platform
from shared.core import receipts
from shared.core.errors import NotFound
from shared.core.models import Transfer, TransferCheck
from shared.domain import verifications
from shared.domain.messages import VerifyCommand, queue_for
from shovel.daemon import run
from shovel.settings import ShovelSettings
from shovel.verify import verify_target
from tests.clowder_pairing import Served
from tests.clowder_server import ClowderServer
from tests.conftest import Api
from tests.support import wait_until
from tests.test_receipts import completed_transfer, receipt_of, received
from tests.test_transfers import ClientFactory
from tests.users import Users

pytestmark = pytest.mark.usefixtures("quick_retries", "no_stack_left")


@pytest.fixture
def environment(paired_environment: dict[str, str]) -> dict[str, str]:
    return paired_environment


def command(target: str = "Clowder/D", *, check_id: str = "c1") -> VerifyCommand:
    return VerifyCommand(check_id=check_id, transfer_id="t1", user="alice", target=target)


# --- the shovel's command --------------------------------------------------------------------------------


def test_the_shovel_reports_what_was_modified_missing_and_added_in_its_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    folder = home / "Clowder" / "D"
    folder.mkdir(parents=True)
    received(folder, {"a.txt": b"a", "sub/b.txt": b"b", "c.txt": b"c"})

    unchanged = verify_target(home, command(), stack_id="s1")
    assert (unchanged.receipts, unchanged.checked, unchanged.error) == (1, 3, None)
    assert (unchanged.modified, unchanged.missing, unchanged.added) == ([], [], [])

    (folder / "a.txt").write_bytes(b"A")  # same size, other bytes
    (folder / "sub" / "b.txt").unlink()
    (folder / "sub" / "new.txt").write_bytes(b"new")
    report = verify_target(home, command(), stack_id="s1")

    assert (report.check_id, report.transfer_id, report.user, report.stack_id) == ("c1", "t1", "alice", "s1")
    assert (report.modified, report.missing, report.added) == (["a.txt"], ["sub/b.txt"], ["sub/new.txt"])
    assert (report.modified_count, report.missing_count, report.added_count) == (1, 1, 1)
    assert report.checked == 2


def test_the_shovel_follows_no_link_out_of_its_home(tmp_path: Path) -> None:
    """A target that is a link (even to a folder with a receipt), a target naming a way out of the
    home, and a receipts folder that is a link: nothing outside the home is read or listed."""
    home, outside = tmp_path / "home", tmp_path / "outside"
    (home / "Clowder").mkdir(parents=True)
    outside.mkdir()
    received(outside, {"secret.txt": b"not yours\n"})
    (home / "Clowder" / "D").symlink_to(outside)

    linked = verify_target(home, command())
    assert linked.error is not None and "symbolic link" in linked.error
    assert (linked.receipts, linked.checked, linked.added) == (0, 0, [])

    for target in ("../outside", "/etc", ".workbench-partial/x"):
        refused = verify_target(home, command(target))
        assert refused.error is not None, target
        assert refused.receipts == 0

    (home / "Clowder" / "D").unlink()
    (home / "Clowder" / "D" / ".workbench").mkdir(parents=True)
    (home / "Clowder" / "D" / receipts.RECEIPTS_FOLDER).symlink_to(outside / receipts.RECEIPTS_FOLDER)
    (home / "Clowder" / "D" / "mine.txt").write_bytes(b"mine")
    through_link = verify_target(home, command())
    assert (through_link.error, through_link.receipts, through_link.checked) == (None, 0, 0)
    assert through_link.added == ["mine.txt"]


def test_a_missing_target_is_the_check_s_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    report = verify_target(home, command("Clowder/Gone"))
    assert report.error is not None and "does not exist" in report.error


def test_the_report_lists_a_bounded_number_of_paths_and_counts_them_all(tmp_path: Path) -> None:
    home = tmp_path / "home"
    folder = home / "Clowder" / "D"
    folder.mkdir(parents=True)
    received(folder, {"kept.txt": b"k"})
    for number in range(MAX_LISTED_PATHS + 20):
        (folder / f"new-{number:04d}.txt").write_bytes(b"x")
    (folder / ("long-" + "n" * 240)).write_bytes(b"x")

    report = verify_target(home, command())

    assert len(report.added) == MAX_LISTED_PATHS
    assert report.added_count == MAX_LISTED_PATHS + 21
    assert TransferVerified.model_validate_json(report.model_dump_json()) == report


def test_a_shovel_carries_out_a_verify_command_from_its_queue(tmp_path: Path) -> None:
    """The daemon takes the command off the user's queue (the in-process bus) and emits its report."""
    home = tmp_path / "home"
    folder = home / "Clowder" / "D"
    folder.mkdir(parents=True)
    received(folder, {"a.txt": b"a"})
    (folder / "a.txt").write_bytes(b"b")
    bus = MemoryBus()
    emitted: list[tuple[str, Payload]] = []
    stop = threading.Event()
    settings = ShovelSettings(
        user="alice", stack_id="s1", home=home, health_host="127.0.0.1", health_port=0, heartbeat_seconds=60
    )

    def emit(event_type: str, payload: Payload) -> None:
        emitted.append((event_type, payload))

    shovel = threading.Thread(
        target=run, kwargs={"settings": settings, "bus": bus, "stop": stop, "emit": emit}
    )
    shovel.start()
    try:
        bus.publish(queue_for("alice"), command().model_dump_json().encode())
        wait_until(lambda: any(kind == TRANSFER_VERIFIED for kind, _ in emitted), "the verification report")
    finally:
        stop.set()
        shovel.join(10)
    [report] = [payload for kind, payload in emitted if kind == TRANSFER_VERIFIED]
    assert isinstance(report, TransferVerified)
    assert (report.check_id, report.modified, report.stack_id) == ("c1", ["a.txt"], "s1")


def test_a_verify_command_given_up_reports_its_check_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report that cannot be sent fails the command; at the last attempt the shovel reports the
    check failed, saying why, and names the check in the command it gave up."""
    monkeypatch.setattr("shovel.daemon.RETRY_SECONDS", 0.05)
    home = tmp_path / "home"
    (home / "Clowder" / "D").mkdir(parents=True)
    bus = MemoryBus()
    emitted: list[tuple[str, Payload]] = []
    stop = threading.Event()
    settings = ShovelSettings(
        user="alice", stack_id="s1", home=home, health_host="127.0.0.1", health_port=0, attempts=2
    )

    def emit(event_type: str, payload: Payload) -> None:
        if isinstance(payload, TransferVerified) and payload.error is None:
            raise ConnectionError("the events URL does not answer")
        emitted.append((event_type, payload))

    shovel = threading.Thread(
        target=run, kwargs={"settings": settings, "bus": bus, "stop": stop, "emit": emit}
    )
    shovel.start()
    try:
        bus.publish(queue_for("alice"), command().model_dump_json().encode())
        wait_until(
            lambda: any(kind == SHOVEL_COMMAND_ABANDONED for kind, _ in emitted), "the command given up"
        )
    finally:
        stop.set()
        shovel.join(10)
    [failed] = [payload for kind, payload in emitted if kind == TRANSFER_VERIFIED]
    assert isinstance(failed, TransferVerified) and failed.check_id == "c1"
    assert failed.error is not None and "gave up after 2 failed attempts" in failed.error
    [abandoned] = [payload for kind, payload in emitted if kind == SHOVEL_COMMAND_ABANDONED]
    assert isinstance(abandoned, CommandAbandoned)
    assert (abandoned.kind, abandoned.subject) == ("verify", "c1")


# --- the platform: asked, followed, recorded ---------------------------------------------------------------


def test_verify_on_a_cluster_goes_through_the_user_s_shovel(
    api: Api,
    client: ClientFactory,
    platform: Platform,
    clowder: ClowderServer,
    shovels: Served,
    alice: str,
    bob: str,
) -> None:
    _, transfer_id, content, target = completed_transfer(api, client, platform, clowder, alice)
    receipt_of(target, transfer_id)
    platform.home_space = None  # as on a cluster: only the shovels reach the homes
    (target / "readme.txt").write_bytes(b"edited in the app\n")
    (target / "raw" / "big.bin").unlink()
    (target / "notes.md").write_bytes(b"mine")
    path = f"/api/transfers/{transfer_id}/verify"

    answer = api.call("POST", path, alice)
    assert answer.status_code == 202, answer.get_json()
    asked = answer.get_json()
    assert (asked["state"], asked["transferId"], asked["waitingForStack"]) == (
        "requested",
        transfer_id,
        False,
    )

    def done() -> dict[str, Any] | None:
        check: dict[str, Any] = api.call("GET", path, alice).get_json()
        return check if check["state"] != "requested" else None

    check = wait_until(done, "the shovel's verification")
    assert check["id"] == asked["id"]
    assert check["state"] == "completed", check
    result = check["result"]
    assert (result["modified"], result["missing"], result["added"]) == (
        ["readme.txt"],
        ["raw/big.bin"],
        ["notes.md"],
    )
    assert (result["receipts"], result["checked"], result["unchanged"]) == (1, len(content) - 1, False)
    assert check["counts"] == {"modified": 1, "missing": 1, "added": 1, "problems": 0}

    for method in ("GET", "POST"):
        refused = api.call(method, path, bob)
        assert refused.status_code == 404, refused.get_json()
    as_admin = api.call("GET", path, Users(api, platform).admin())
    assert as_admin.status_code == 200 and as_admin.get_json()["id"] == asked["id"]


def test_a_check_without_a_running_stack_says_it_waits_for_one(
    api: Api, platform: Platform, alice: str
) -> None:
    transfer = Transfer(id="t-done", user="alice", source="https://clowder.example.org", datasetId="d1")
    platform.store.insert_transfer(transfer.model_copy(update={"state": "completed", "target": "Clowder/D"}))
    path = "/api/transfers/t-done/verify"
    assert api.call("GET", path, alice).status_code == 404  # none asked for yet

    answer = api.call("POST", path, alice)
    assert answer.status_code == 202, answer.get_json()
    asked = answer.get_json()
    assert (asked["state"], asked["waitingForStack"], asked["target"]) == ("requested", True, "Clowder/D")
    followed = api.call("GET", path, alice).get_json()
    assert (followed["id"], followed["state"], followed["waitingForStack"]) == (
        asked["id"],
        "requested",
        True,
    )
    bus = platform.bus
    assert isinstance(bus, MemoryBus)  # no broker set: the in-process bus
    assert bus.message_count(queue_for("alice")) == 1  # the command, there for the next shovel to start


def test_a_report_settles_only_its_own_user_s_requested_check(platform: Platform, alice: str) -> None:
    transfer = Transfer(id="t1", user="alice", source="https://clowder.example.org", datasetId="d1")
    platform.store.insert_transfer(transfer.model_copy(update={"state": "completed"}))
    check = TransferCheck(id="c1", transferId="t1", user="alice", target="Clowder/D")
    platform.store.insert_transfer_check(check)

    with pytest.raises(NotFound):
        verifications.record(platform, TransferVerified(check_id="c1", transfer_id="t1", user="bob"))
    assert platform.store.latest_transfer_check("t1") == check

    failed = verifications.record(
        platform, TransferVerified(check_id="c1", transfer_id="t1", user="alice", error="folder gone")
    )
    assert (failed.state, failed.message) == ("failed", "folder gone")
    late = verifications.record(
        platform, TransferVerified(check_id="c1", transfer_id="t1", user="alice", receipts=1, checked=1)
    )
    assert (late.state, late.result) == ("failed", None)


# --- the store, on both databases ---------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'store' / 'workbench.db'}"
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    opened = open_store(url)
    assert isinstance(opened, SqlStore)
    yield opened
    opened.close()


def test_the_store_keeps_checks_and_reads_the_latest_of_a_transfer(store: Store) -> None:
    from tests.test_store import account

    store.insert_account(account("alice"))
    for transfer_id in ("t1", "t2"):
        store.insert_transfer(Transfer(id=transfer_id, user="alice", source="s", datasetId="d"))
    assert store.latest_transfer_check("t1") is None
    first = TransferCheck(id="c-b", transferId="t1", user="alice", target="Clowder/D")
    second = TransferCheck(id="c-a", transferId="t1", user="alice", target="Clowder/D")
    store.insert_transfer_check(first)
    store.insert_transfer_check(second)  # asked for later, though its id sorts first
    store.insert_transfer_check(TransferCheck(id="c-other", transferId="t2", user="alice", target="x"))

    assert store.latest_transfer_check("t1") == second
    done = store.update_transfer_check("c-b", lambda check: check.model_copy(update={"state": "completed"}))
    assert done.state == "completed"
    assert store.get_transfer_check("c-b") == done
    assert store.latest_transfer_check("t1") == second
    with pytest.raises(NotFound):
        store.update_transfer_check("c-none", lambda check: check)

    assert store.delete_account("alice")
    assert store.get_transfer_check("c-a") is None  # gone with its account
