"""Replayed and stale events: each (source, id) acts once, and events older than the window are refused.

The setting of ``test_transfers`` (its fixtures, used as they are): events go through the functions as
functions-framework serves them, signed as Clowder and the shovels sign them.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from events import types
from events.codec import Event, canonical_json, from_http, signed
from events.errors import InvalidEvent
from events.signing import derive_key
from shared.adapters.store.sql import SqlStore, open_store
from shared.bootstrap import Platform
from tests import test_stacks
from tests import test_transfers as transfers
from tests.clowder_pairing import SECRET, SOURCE, Served
from tests.clowder_server import ClowderServer
from tests.conftest import Api
from tests.receiver import Receiver
from tests.test_events import workbench
from tests.test_transfers import (
    MODES,
    ClientFactory,
    accepted,
    deliver,
    field_study,
    only_transfer,
    refused,
    stack_event,
    started_stack,
    transfer_of,
    transfer_request,
)

pytestmark = pytest.mark.usefixtures("quick_retries", "no_stack_left")


@pytest.fixture
def environment(paired_environment: dict[str, str]) -> dict[str, str]:
    return paired_environment


def event_made(
    event_type: str,
    data: dict[str, Any],
    *,
    ago: float | None,
    key: bytes = SECRET.encode(),
    source: str = SOURCE,
) -> Event:
    """A signed event whose ``time`` says it was made ``ago`` seconds ago (negative: in the future;
    None: no time at all)."""
    attributes = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": source,
        "type": event_type,
        "datacontenttype": "application/json",
    }
    if ago is not None:
        moment = datetime.now(UTC) - timedelta(seconds=ago)
        attributes["time"] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return signed(Event(attributes, canonical_json(data)), key)


def stays(api: Api, token: str, sid: str, status: str, seconds: float = 1.5) -> None:
    """The stack is ``status`` now and stays so for a while (a stop in flight would show as stopping)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert test_stacks.read(api, token, sid)["status"] == status
        time.sleep(0.1)


# --- replays ---------------------------------------------------------------------------------------------


def test_a_replayed_stop_event_does_not_stop_the_stack_again(
    api: Api, client: ClientFactory, platform: Platform, shovels: Served, alice: str
) -> None:
    sid = started_stack(api, alice)
    captured = stack_event(types.STACK_STOP_REQUESTED, sid)
    accepted(deliver(client, "stack_action", captured))
    test_stacks.wait_for(api, alice, sid, "stopped")

    # The user starts the stack again; whoever captured the signed stop event sends it once more.
    assert api.call("GET", f"/api/start/{sid}", alice).status_code == 202
    test_stacks.wait_for(api, alice, sid, "started")
    for mode in MODES:
        # Taken as a redelivery of what was done already (a 202 keeps the Broker from retrying it).
        accepted(deliver(client, "stack_action", captured, mode))
    stays(api, alice, sid, "started")

    # Replayed once its window has passed, it is refused outright, as any old event is.
    late = event_made(types.STACK_STOP_REQUESTED, {"email": "alice@example.org", "stack_id": sid}, ago=3600)
    refused(deliver(client, "stack_action", late), "time", "older than", "WORKBENCH_EVENT_MAX_AGE_SECONDS")
    stays(api, alice, sid, "started", seconds=0.5)


def test_a_replayed_start_event_refused_once_stays_refused(
    api: Api, client: ClientFactory, platform: Platform, alice: str
) -> None:
    sid = transfers.new_stack(api, alice)
    platform.store.update_stack("alice", sid, lambda stack: stack.model_copy(update={"status": "error"}))
    start = stack_event(types.STACK_START_REQUESTED, sid)
    refused(deliver(client, "stack_action", start), "error")

    # Once the stack could start, the event refused before does not start it when sent again.
    platform.store.update_stack("alice", sid, lambda stack: stack.model_copy(update={"status": "stopped"}))
    accepted(deliver(client, "stack_action", start))
    assert test_stacks.read(api, alice, sid)["status"] == "stopped"


def test_an_event_met_by_an_outage_is_taken_when_delivered_again(
    api: Api, client: ClientFactory, platform: Platform, alice: str
) -> None:
    sid = transfers.new_stack(api, alice)
    platform.store.update_stack("alice", sid, lambda stack: stack.model_copy(update={"status": "stopping"}))
    start = stack_event(types.STACK_START_REQUESTED, sid)
    refused(deliver(client, "stack_action", start), sid, status=503)  # retried by the Broker
    platform.store.update_stack("alice", sid, lambda stack: stack.model_copy(update={"status": "stopped"}))
    accepted(deliver(client, "stack_action", start))  # the retry acts
    assert test_stacks.read(api, alice, sid)["status"] in ("starting", "started")
    accepted(deliver(client, "stack_action", stack_event(types.STACK_STOP_REQUESTED, sid)))
    test_stacks.wait_for(api, alice, sid, "stopped")


@pytest.mark.parametrize("mode", MODES)
def test_a_replayed_transfer_or_export_request_is_taken_once(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str, mode: str
) -> None:
    dataset_id, _, _ = field_study(clowder, big=1000)
    event = transfer_request(clowder, dataset_id)
    accepted(deliver(client, "transfer", event, mode))  # type: ignore[arg-type]
    requests = len(clowder.requests)
    accepted(deliver(client, "transfer", event, mode))  # type: ignore[arg-type]
    assert len(clowder.requests) == requests  # not even Clowder was asked again
    assert len(platform.store.list_transfers("alice")) == 1


# --- the window ------------------------------------------------------------------------------------------


def test_events_outside_the_window_or_without_a_time_are_refused(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str
) -> None:
    dataset_id = clowder.add_dataset("Timely")
    data = {"clowder_url": clowder.url, "dataset_id": dataset_id, "email": "alice@example.org"}
    window = platform.settings.clowder.event_max_age
    assert window == 600  # the default

    old = event_made(types.TRANSFER_REQUESTED, data, ago=window + 30)
    refused(deliver(client, "transfer", old), "time", f"older than {window} s")
    future = event_made(types.TRANSFER_REQUESTED, data, ago=-600)
    refused(deliver(client, "transfer", future), "time", "in the future")
    timeless = event_made(types.TRANSFER_REQUESTED, data, ago=None)
    refused(deliver(client, "transfer", timeless), "time")
    nonsense = Event({**timeless.attributes, "time": "yesterday"}, timeless.data)
    refused(deliver(client, "transfer", signed(nonsense, SECRET.encode())), "time", "RFC 3339")
    assert platform.store.list_transfers() == []
    assert clowder.requests == []

    # A clock a little ahead, and an event near the end of its window, are fine.
    accepted(deliver(client, "transfer", event_made(types.TRANSFER_REQUESTED, data, ago=-30)))
    accepted(deliver(client, "transfer", event_made(types.TRANSFER_REQUESTED, data, ago=window - 30)))
    assert len(platform.store.list_transfers("alice")) == 2


@pytest.mark.parametrize("extra_environment", [{"WORKBENCH_EVENT_MAX_AGE_SECONDS": "30"}])
def test_the_window_is_a_setting(
    api: Api, client: ClientFactory, platform: Platform, alice: str, extra_environment: dict[str, str]
) -> None:
    sid = transfers.new_stack(api, alice)
    data = {"email": "alice@example.org", "stack_id": sid}
    refused(deliver(client, "stack_action", event_made(types.STACK_START_REQUESTED, data, ago=45)), "30 s")
    assert test_stacks.read(api, alice, sid)["status"] == "stopped"


def test_shovel_reports_are_held_to_the_same_window_and_taken_once(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str
) -> None:
    dataset_id, _, _ = field_study(clowder, big=1000)
    accepted(deliver(client, "transfer", transfer_request(clowder, dataset_id)))
    transfer_id = only_transfer(platform, "alice")["id"]
    key = derive_key(SECRET.encode(), "shovel:alice")
    report = {"transfer_id": transfer_id, "user": "alice", "placed": ["readme.txt"], "stack_id": "s1"}

    stale = event_made(types.TRANSFER_PROGRESS, report, ago=3600, key=key, source="shovel://test/")
    refused(deliver(client, "shovel_reports", stale), "time", "older than")
    timeless = event_made(types.TRANSFER_PROGRESS, report, ago=None, key=key, source="shovel://test/")
    refused(deliver(client, "shovel_reports", timeless), "time")
    assert transfer_of(api, alice, transfer_id)["filesDone"] == 0

    fresh = event_made(types.TRANSFER_PROGRESS, report, ago=1, key=key, source="shovel://test/")
    accepted(deliver(client, "shovel_reports", fresh))
    accepted(deliver(client, "shovel_reports", fresh))
    assert transfer_of(api, alice, transfer_id)["filesDone"] == 1


def test_without_signatures_an_event_may_lack_a_time(
    client: ClientFactory, platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.serving.eventing import made_at

    relaxed = platform.settings._replace(clowder=platform.settings.clowder._replace(require_signatures=False))
    monkeypatch.setattr(platform, "settings", relaxed)
    timeless = event_made(types.SHOVEL_HEARTBEAT, {}, ago=None)
    assert abs(made_at(platform, timeless) - time.time()) < 5
    old = event_made(types.SHOVEL_HEARTBEAT, {}, ago=3600)
    with pytest.raises(InvalidEvent, match="older than"):
        made_at(platform, old)


def test_the_event_command_says_when_its_event_was_made(receiver: Receiver) -> None:
    data = {"user": "alice", "stack_id": "s1", "version": "1", "status": "ready", "free_bytes": 1}
    result = workbench(types.SHOVEL_HEARTBEAT, "--data", json.dumps(data), "--to", receiver.url)
    assert result.returncode == 0, result.stderr
    [(headers, body)] = receiver.requests
    made = datetime.fromisoformat(from_http(headers, body).attributes["time"])
    assert abs((datetime.now(UTC) - made).total_seconds()) < 60


# --- the store's record of events ------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def event_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'events.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    stores = [open_store(url), open_store(url)]  # two instances of the platform on one database
    yield stores
    for store in stores:
        store.close()


def test_one_delivery_of_many_at_once_acts_and_a_dead_claim_is_taken_over(
    event_store: list[SqlStore],
) -> None:
    now = int(time.time())
    results: list[bool] = []
    lock = threading.Lock()

    def deliver_once(index: int) -> None:
        taken = event_store[index % 2].claim_event("urn:clowder", "e1", "t", now, lease=60)
        with lock:
            results.append(taken)

    threads = [threading.Thread(target=deliver_once, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]

    first, second = event_store
    # Released (its handler met an outage): the next delivery acts.
    first.release_event("urn:clowder", "e1")
    assert second.claim_event("urn:clowder", "e1", "t", now, lease=60)
    # Claimed by a delivery that died: taken over once the lease has passed, not before.
    assert not first.claim_event("urn:clowder", "e1", "t", now, lease=60)
    with first._transaction(write=True) as db:
        db.run("UPDATE seen_events SET claimed_at = ? WHERE id = 'e1'", (now - 120,))
    assert first.claim_event("urn:clowder", "e1", "t", now, lease=60)
    # Done: a duplicate for good, whatever the lease, until it is pruned past its window.
    first.finish_event("urn:clowder", "e1")
    with first._transaction(write=True) as db:
        db.run("UPDATE seen_events SET claimed_at = ? WHERE id = 'e1'", (now - 120,))
    assert not second.claim_event("urn:clowder", "e1", "t", now, lease=60)
    assert second.claim_event("urn:other", "e1", "t", now, lease=60)  # another source's e1
    assert first.prune_events(now) == 0
    assert first.prune_events(now + 1) == 2
    assert first.claim_event("urn:clowder", "e1", "t", now, lease=60)
