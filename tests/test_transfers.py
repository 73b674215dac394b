"""The Clowder integration's reliability and security: transfers, progress, stack actions and containers.

Events go through the functions as functions-framework serves them, in binary and structured mode;
Clowder is the Clowder test server; the object store is the local one, served with the local Broker
by a Gateway on the platform's own port, so pre-signed URLs and the shovels' /events resolve.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from events import types
from events.codec import Event, Mode, canonical_json, new_event, signed, to_http
from events.signing import derive_key
from shared.adapters.bus.memory import MemoryBus
from shared.adapters.objectstore import blob_key
from shared.bootstrap import Platform
from shared.core.paths import MAX_COMPONENT_BYTES
from shared.domain.messages import SyncCommand, queue_for
from shovel.placing import PARTIAL_FOLDER
from tests import test_stacks
from tests.clowder_pairing import (
    S3_BUCKET,
    SECRET,
    SERVICE_TOKEN,
    SOURCE,
    Served,
)
from tests.clowder_server import ClowderServer
from tests.conftest import Api, Client
from tests.support import WAIT_SECONDS, wait_for_status, wait_until
from tests.test_auth import error_of
from tests.test_e2e import STATIC_SPEC
from tests.users import Users

MODES: tuple[Mode, ...] = ("binary", "structured")

ClientFactory = Callable[[str], Client]

pytestmark = pytest.mark.usefixtures("quick_retries", "no_stack_left")


@pytest.fixture
def environment(paired_environment: dict[str, str]) -> dict[str, str]:
    return paired_environment


# --- stacks --------------------------------------------------------------------------------------------


def new_stack(api: Api, token: str) -> str:
    """A stopped stack of a service that serves its folder over HTTP; returns its id."""
    response = api.call("POST", "/api/services", token, json=STATIC_SPEC)
    assert response.status_code in (200, 409), response.get_json()
    response = api.call("POST", "/api/stacks", token, json={"key": STATIC_SPEC["key"]})
    assert response.status_code == 200, response.get_json()
    sid: str = response.get_json()["id"]
    return sid


def started_stack(api: Api, token: str) -> str:
    sid = new_stack(api, token)
    response = api.call("GET", f"/api/start/{sid}", token)
    assert response.status_code == 202, response.get_json()
    test_stacks.wait_for(api, token, sid, "started")
    return sid


# --- events ---------------------------------------------------------------------------------------------


def transfer_request(
    clowder: ClowderServer,
    dataset_id: str,
    *,
    email: str = "alice@example.org",
    secret: str | None = SECRET,
    event_id: str | None = None,
    **changes: Any,
) -> Event:
    data = {"clowder_url": clowder.url, "dataset_id": dataset_id, "email": email, **changes}
    return new_event(
        types.TRANSFER_REQUESTED,
        data,
        source=SOURCE,
        secret=secret.encode() if secret is not None else None,
        event_id=event_id,
    )


def raw_event(event_type: str, data: Mapping[str, Any], *, secret: bytes | None = SECRET.encode()) -> Event:
    """An event of any type with any data (new_event refuses unknown types and bad data)."""
    attributes = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": SOURCE,
        "type": event_type,
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "datacontenttype": "application/json",
    }
    event = Event(attributes, canonical_json(dict(data)))
    return signed(event, secret) if secret is not None else event


def deliver(client: ClientFactory, function: str, event: Event, mode: Mode = "binary") -> Any:
    headers, body = to_http(event, mode)
    return client(function).post("/", headers=headers, data=body)


def accepted(response: Any) -> None:
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.get_data() == b""


def refused(response: Any, *named: str, status: int = 400) -> str:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    message = error_of(response)
    for part in named:
        assert part in message, (part, message)
    return message


def progress_event(
    transfer_id: str, user: str, placed: list[str], *, key_user: str | None = None, **changes: Any
) -> Event:
    """A shovel's progress report, signed with the derived key of ``key_user`` (default: ``user``)."""
    key = derive_key(SECRET.encode(), f"shovel:{key_user or user}")
    data = {"transfer_id": transfer_id, "user": user, "placed": placed, "stack_id": "s1", **changes}
    return new_event(types.TRANSFER_PROGRESS, data, source="shovel://test/", secret=key)


# --- what the platform recorded and sent --------------------------------------------------------------


def memory_bus(platform: Platform) -> MemoryBus:
    bus = platform.bus
    assert isinstance(bus, MemoryBus)
    return bus


def queued(platform: Platform, user: str) -> int:
    return memory_bus(platform).message_count(queue_for(user))


def take_commands(platform: Platform, user: str) -> list[SyncCommand]:
    """Every command waiting on the user's queue (taken off it)."""
    bus = memory_bus(platform)
    count = bus.message_count(queue_for(user))
    bodies: list[bytes] = []
    if count == 0:
        return []
    stop = threading.Event()
    timer = threading.Timer(WAIT_SECONDS, stop.set)  # only if the queue were emptied by someone else
    timer.start()

    def take(delivery: Any) -> None:
        bodies.append(delivery.body)
        delivery.ack()
        if len(bodies) == count:
            stop.set()

    try:
        bus.consume(queue_for(user), take, prefetch=count, stop=stop)
    finally:
        timer.cancel()
    assert len(bodies) == count
    # A completed transfer's receipt command (the shovel writes it) is taken too, and left out.
    return [SyncCommand.model_validate_json(body) for body in bodies if json.loads(body)["kind"] == "sync"]


def transfer_of(api: Api, token: str, transfer_id: str) -> dict[str, Any]:
    response = api.call("GET", f"/api/transfers/{transfer_id}", token)
    assert response.status_code == 200, response.get_json()
    transfer: dict[str, Any] = response.get_json()
    return transfer


def only_transfer(platform: Platform, user: str) -> dict[str, Any]:
    transfers = platform.store.list_transfers(user)
    assert len(transfers) == 1, transfers
    return transfers[0].model_dump()


def wait_for_transfer(api: Api, token: str, transfer_id: str, state: str) -> dict[str, Any]:
    """Poll the transfer until it is ``state``; a final state other than that fails at once."""
    return wait_for_status(
        lambda: transfer_of(api, token, transfer_id),
        state,
        f"transfer {transfer_id}",
        field="state",
        passing=("requested", "staging", "syncing"),
    )


def downloads(clowder: ClowderServer, file_id: str = "*") -> int:
    """How many times Clowder was asked for a file's bytes."""
    if clowder.version == 1:
        return len(clowder.requests_to(f"/api/files/{file_id}/blob", "GET"))
    return len(
        [
            request
            for request in clowder.requests_to(f"/api/v2/files/{file_id}", "GET")
            if not request.path.endswith("/summary")
        ]
    )


def download_path(clowder: ClowderServer, file_id: str) -> str:
    return f"/api/files/{file_id}/blob" if clowder.version == 1 else f"/api/v2/files/{file_id}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def every_file(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not {PARTIAL_FOLDER, ".workbench"} & set(path.relative_to(folder).parts)
    }


def field_study(
    clowder: ClowderServer, *, big: int = 3_000_000
) -> tuple[str, dict[str, bytes], dict[str, str]]:
    """A dataset with folders and one file of a few MB: (dataset id, bytes by path, file id by path)."""
    content = {
        "readme.txt": b"hello from Clowder\n",
        "raw/2024/measurements.csv": os.urandom(300_000),
        "raw/big.bin": os.urandom(big),
    }
    dataset_id = clowder.add_dataset("Field Study")
    ids = clowder.add_files(dataset_id, content)
    return dataset_id, content, ids


def nothing_recorded(platform: Platform, clowder: ClowderServer, user: str = "alice") -> None:
    assert platform.store.list_transfers() == []
    assert queued(platform, user) == 0
    assert clowder.requests == []


# --- 1. signatures, types and payloads ------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_unsigned_forged_and_tampered_requests_are_refused(
    client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str, mode: Mode
) -> None:
    dataset_id = clowder.add_dataset("Secret")
    unsigned = transfer_request(clowder, dataset_id, secret=None)
    refused(deliver(client, "transfer", unsigned, mode), "carries no wbsignature")

    forged = transfer_request(clowder, dataset_id, secret="not-the-pairing-secret")
    refused(deliver(client, "transfer", forged, mode), "wbsignature does not match")

    genuine = transfer_request(clowder, dataset_id)
    data = json.loads(genuine.data)
    data["email"] = "mallory@example.org"
    tampered = Event(genuine.attributes, canonical_json(data))
    refused(deliver(client, "transfer", tampered, mode), "wbsignature does not match")

    # A user's shovel key (which the user's own pod holds) signs for that shovel only, not for Clowder.
    shovel_signed = new_event(
        types.TRANSFER_REQUESTED,
        json.loads(genuine.data),
        source=SOURCE,
        secret=derive_key(SECRET.encode(), "shovel:alice"),
    )
    refused(deliver(client, "transfer", shovel_signed, mode), "wbsignature does not match")

    # A signature over other attributes does not carry over either.
    moved = Event({**genuine.attributes, "source": "https://elsewhere.example.org/"}, genuine.data)
    refused(deliver(client, "transfer", moved, mode), "wbsignature does not match")

    nothing_recorded(platform, clowder)


@pytest.mark.parametrize("mode", MODES)
def test_unknown_types_and_malformed_payloads_are_refused_naming_them(
    client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str, mode: Mode
) -> None:
    good = {"clowder_url": clowder.url, "dataset_id": "d1", "email": "alice@example.org"}
    unknown = raw_event("org.clowder.workbench.transfer.teleported", good)
    refused(deliver(client, "transfer", unknown, mode), "org.clowder.workbench.transfer.teleported")
    # A known type that this function does not receive is just as unknown to it.
    other = raw_event(types.EXPORT_REQUESTED, good)
    refused(deliver(client, "transfer", other, mode), types.EXPORT_REQUESTED, "transfer")

    missing = {key: value for key, value in good.items() if key != "dataset_id"}
    refused(deliver(client, "transfer", raw_event(types.TRANSFER_REQUESTED, missing), mode), "dataset_id")
    extra = {**good, "colour": "red"}
    refused(deliver(client, "transfer", raw_event(types.TRANSFER_REQUESTED, extra), mode), "colour")
    wrong_mode = {**good, "mode": "teleport"}
    refused(deliver(client, "transfer", raw_event(types.TRANSFER_REQUESTED, wrong_mode), mode), "mode")

    nothing_recorded(platform, clowder)


# --- 2. who and where --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_requests_for_unknown_people_other_clowders_and_foreign_stacks_are_refused(
    api: Api,
    client: ClientFactory,
    platform: Platform,
    clowder: ClowderServer,
    alice: str,
    bob: str,
    mode: Mode,
) -> None:
    dataset_id = clowder.add_dataset("Wanted")
    registered = api.call(
        "POST",
        "/api/register",
        json={"namespace": "carol", "name": "Carol", "email": "carol@example.org", "password": "carol-pass"},
    )
    assert registered.status_code == 200, registered.get_json()
    assert registered.get_json()["status"] != "approved"
    bobs_stack = new_stack(api, bob)

    nobody = transfer_request(clowder, dataset_id, email="nobody@example.org")
    refused(deliver(client, "transfer", nobody, mode), "email", "nobody@example.org")
    unapproved = transfer_request(clowder, dataset_id, email="carol@example.org")
    refused(deliver(client, "transfer", unapproved, mode), "email", "not approved")
    elsewhere = transfer_request(clowder, dataset_id, clowder_url="https://other-clowder.example.org")
    refused(deliver(client, "transfer", elsewhere, mode), "clowder_url", "other-clowder.example.org")
    foreign = transfer_request(clowder, dataset_id, stack_id=bobs_stack)
    refused(deliver(client, "transfer", foreign, mode), bobs_stack, "alice")
    outside = transfer_request(clowder, dataset_id, target_folder="../bob")
    refused(deliver(client, "transfer", outside, mode), "target_folder", "..")
    the_data_folder_itself = transfer_request(clowder, dataset_id, target_folder="Clowder")
    refused(deliver(client, "transfer", the_data_folder_itself, mode), "target_folder", "data folder")

    nothing_recorded(platform, clowder)
    assert queued(platform, "bob") == 0


# --- 3. staging ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
def test_a_request_stages_the_dataset_and_queues_presigned_commands(
    api: Api,
    client: ClientFactory,
    platform: Platform,
    clowder: ClowderServer,
    served: Served,
    alice: str,
) -> None:
    dataset_id, content, ids = field_study(clowder, big=6_000_000)

    accepted(deliver(client, "transfer", transfer_request(clowder, dataset_id)))

    recorded = only_transfer(platform, "alice")
    transfer = transfer_of(api, alice, recorded["id"])
    assert transfer == {**recorded, "waitingForStack": True}  # alice has no stack: worked out when read
    assert transfer["state"] == "syncing"
    assert transfer["stagingDone"] is True
    assert (transfer["datasetId"], transfer["datasetName"]) == (dataset_id, "Field Study")
    assert transfer["target"] == "Clowder/Field Study"
    assert transfer["filesTotal"] == 3
    assert transfer["bytesTotal"] == sum(len(data) for data in content.values())
    assert (transfer["filesDone"], transfer["bytesDone"], transfer["errors"]) == (0, 0, [])

    manifest = b"".join(platform.objects.read(f"manifests/{transfer['id']}.json"))
    lines = [json.loads(line) for line in manifest.splitlines()]
    assert sorted(lines, key=lambda line: line["path"]) == [
        {"path": path, "size": len(data), "sha256": sha256(data), "clowder_id": ids[path]}
        for path, data in sorted(content.items())
    ]

    commands = take_commands(platform, "alice")
    assert commands
    staged = {}
    for command in commands:
        assert (command.transfer_id, command.user, command.target) == (
            transfer["id"],
            "alice",
            "Clowder/Field Study",
        )
        for file in command.files:
            assert file.url is not None and file.url.startswith(served.url + "/objects/")
            staged[file.path] = file
    assert sorted(staged) == sorted(content)
    for path, file in staged.items():
        assert (file.size, file.sha256, file.clowder_id) == (
            len(content[path]),
            sha256(content[path]),
            ids[path],
        )
        assert file.url is not None
        response = httpx.get(file.url, timeout=10)
        assert response.status_code == 200
        assert response.content == content[path]
        assert platform.objects.size(blob_key(sha256(content[path]))) == len(content[path])
    assert downloads(clowder) == 3


def test_small_files_travel_in_the_command_and_large_ones_alone(
    api: Api,
    client: ClientFactory,
    platform: Platform,
    clowder: ClowderServer,
    alice: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shared.domain import transfers

    # Lower limits than a real dataset needs, to see them work on a small one.
    monkeypatch.setattr(transfers, "BATCH_BYTES", 1_000_000)
    monkeypatch.setattr(transfers, "INLINE_BYTES", 1_000)
    content = {f"notes/note-{number:02d}.txt": f"note {number}\n".encode() for number in range(20)}
    content |= {
        "data/a.bin": os.urandom(1_500_000),
        "data/b.bin": os.urandom(1_200_000),
        "mid.csv": os.urandom(5_000),
    }
    dataset_id = clowder.add_dataset("Mixed")
    clowder.add_files(dataset_id, content)

    accepted(deliver(client, "transfer", transfer_request(clowder, dataset_id)))

    transfer = only_transfer(platform, "alice")
    assert (transfer["state"], transfer["filesTotal"]) == ("syncing", len(content))
    commands = take_commands(platform, "alice")
    placed = {file.path: file for command in commands for file in command.files}
    assert sorted(placed) == sorted(content)
    for path, file in placed.items():
        assert file.url is not None and file.sha256 == sha256(content[path])
        # Up to the limit the bytes come along (checked by their sha256 like any download).
        assert file.content == (content[path] if len(content[path]) <= 1_000 else None)
    # A file past the command's size limit closes it: the shovel places it while the next ones stage.
    for large in ("data/a.bin", "data/b.bin"):
        [command] = [command for command in commands if large in {file.path for file in command.files}]
        assert sum(file.size for file in command.files) - len(content[large]) < 1_000_000
    assert downloads(clowder) == len(content)


# --- 4. idempotence and reuse --------------------------------------------------------------------------


def test_a_redelivered_event_changes_nothing_and_a_new_one_reuses_the_blobs(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str
) -> None:
    dataset_id, content, _ = field_study(clowder)
    event = transfer_request(clowder, dataset_id)

    accepted(deliver(client, "transfer", event, "binary"))
    first = only_transfer(platform, "alice")
    assert downloads(clowder) == 3
    assert queued(platform, "alice") == 1

    accepted(deliver(client, "transfer", event, "structured"))
    assert only_transfer(platform, "alice")["id"] == first["id"]
    assert downloads(clowder) == 3
    assert queued(platform, "alice") == 1

    again = transfer_request(clowder, dataset_id)
    assert again.id != event.id
    accepted(deliver(client, "transfer", again))
    transfers = platform.store.list_transfers("alice")
    assert len(transfers) == 2
    second = next(transfer for transfer in transfers if transfer.id != first["id"])
    assert second.state == "syncing"
    assert (second.filesTotal, second.bytesTotal) == (first["filesTotal"], first["bytesTotal"])
    assert downloads(clowder) == 3  # every blob was staged before

    commands = take_commands(platform, "alice")
    assert [command.transfer_id for command in commands] == [first["id"], second.id]
    digests = [{file.path: file.sha256 for file in command.files} for command in commands]
    assert digests[0] == digests[1] == {path: sha256(data) for path, data in content.items()}


# --- 5. hostile names ------------------------------------------------------------------------------------


HOSTILE_NAMES = {
    # Clowder's name: the path the transfer shows it under (control characters escaped).
    "../x": "../x",
    "/etc/passwd-copy": "/etc/passwd-copy",
    "nul\x00name.txt": "nul\\x00name.txt",
    "bell\x07name.txt": "bell\\x07name.txt",
    "n" * 300: "n" * 300,
}


@pytest.mark.parametrize(("version", "database"), [(1, "sqlite"), (2, "sqlite"), (2, "postgres")])
def test_hostile_clowder_names_are_refused_and_the_rest_arrive(
    api: Api,
    client: ClientFactory,
    platform: Platform,
    clowder: ClowderServer,
    shovels: Served,
    alice: str,
    tmp_path: Path,
) -> None:
    sid = started_stack(api, alice)
    good = {"readme.txt": b"fine\n", "sub/data.bin": os.urandom(50_000)}
    dataset_id = clowder.add_dataset("Hostile")
    clowder.add_files(dataset_id, good)
    for name in HOSTILE_NAMES:
        # Straight into the server's model: its helpers would split the names on '/'.
        clowder.add_file(dataset_id, name, b"should never arrive")
    climbing = clowder.add_folder(dataset_id, "..")
    clowder.add_file(dataset_id, "escape.txt", b"should never arrive", folder_id=climbing)
    hostile_paths = {*HOSTILE_NAMES.values(), "../escape.txt"}

    accepted(deliver(client, "transfer", transfer_request(clowder, dataset_id, stack_id=sid)))
    transfer_id = only_transfer(platform, "alice")["id"]
    final = wait_for_transfer(api, alice, transfer_id, "failed")

    errors = {error["path"]: error["error"] for error in final["errors"]}
    assert set(errors) == hostile_paths
    for name, path in [*HOSTILE_NAMES.items(), ("../escape.txt", "../escape.txt")]:
        assert errors[path].startswith("refused name: "), errors[path]
        assert repr(name[:60])[:-1] in errors[path], (name, errors[path])  # the name, as Python shows it
    assert "'..'" in errors["../x"] and "'..'" in errors["../escape.txt"]
    assert "absolute" in errors["/etc/passwd-copy"]
    assert "control character" in errors["nul\\x00name.txt"]
    assert "control character" in errors["bell\\x07name.txt"]
    assert str(MAX_COMPONENT_BYTES) in errors["n" * 300]
    assert (final["filesTotal"], final["filesDone"]) == (len(good) + len(hostile_paths), len(good))
    assert final["bytesDone"] == sum(len(data) for data in good.values())

    home = platform.data_dir / "home" / "alice"
    assert every_file(home / "Clowder" / "Hostile") == good
    outside = {path for path in every_file(home) if not path.startswith("AppData/")}
    assert outside == {f"Clowder/Hostile/{path}" for path in good}
    assert clowder.requests_to("*/summary") == []
    arrived = [
        path for path in tmp_path.rglob("*") if path.is_file() and path.read_bytes() == b"should never arrive"
    ]
    assert all(path.is_relative_to(tmp_path / "clowder") for path in arrived), arrived
    assert downloads(clowder) == len(good)


def test_files_sharing_a_name_all_arrive_under_distinct_names(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str
) -> None:
    dataset_id = clowder.add_dataset("..")  # a refused dataset name: its id names the folder
    clowder.add_files(dataset_id, {"a (1).txt": b"taken already"})
    for data in (b"first", b"second", b"third"):
        clowder.add_file(dataset_id, "a.txt", data)  # Clowder lets names repeat in a folder
    for data in (b"no extension", b"no extension either"):
        clowder.add_file(dataset_id, "a", data)

    accepted(deliver(client, "transfer", transfer_request(clowder, dataset_id)))
    transfer = only_transfer(platform, "alice")
    assert transfer["target"] == f"Clowder/{dataset_id}"
    assert transfer["filesTotal"] == 6
    [command] = take_commands(platform, "alice")
    by_path = {file.path: file.sha256 for file in command.files}
    assert sorted(by_path) == ["a", "a (1)", "a (1).txt", "a (2).txt", "a (3).txt", "a.txt"]
    assert by_path["a (1).txt"] == sha256(b"taken already")
    assert {by_path[path] for path in ("a.txt", "a (2).txt", "a (3).txt")} == {
        sha256(data) for data in (b"first", b"second", b"third")
    }
    assert {by_path["a"], by_path["a (1)"]} == {sha256(b"no extension"), sha256(b"no extension either")}

    # Another request for the same dataset gives every file the same name again.
    accepted(deliver(client, "transfer", transfer_request(clowder, dataset_id)))
    [again] = take_commands(platform, "alice")
    assert {file.path: file.sha256 for file in again.files} == by_path

    accepted(deliver(client, "shovel_reports", progress_event(transfer["id"], "alice", sorted(by_path))))
    done = transfer_of(api, alice, transfer["id"])
    assert (done["state"], done["filesDone"], done["filesTotal"]) == ("completed", 6, 6)
    assert done["bytesDone"] == done["bytesTotal"]


def test_a_dataset_clowder_does_not_have_fails_the_transfer_at_once(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str
) -> None:
    event = transfer_request(clowder, "no-such-dataset")
    refused(deliver(client, "transfer", event), "dataset_id", "no-such-dataset")
    transfer = only_transfer(platform, "alice")
    assert transfer["state"] == "failed"
    assert "no-such-dataset" in transfer["message"]
    assert queued(platform, "alice") == 0
    accepted(deliver(client, "transfer", event, "structured"))  # delivered again: nothing more to do
    assert only_transfer(platform, "alice")["state"] == "failed"


# --- 6. Clowder failing ---------------------------------------------------------------------------------


def test_a_file_clowder_keeps_failing_fails_alone_and_one_that_recovers_arrives(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str
) -> None:
    dataset_id, content, ids = field_study(clowder)
    broken, flaky = "raw/2024/measurements.csv", "readme.txt"
    clowder.fail(download_path(clowder, ids[broken]), 503)  # every time
    clowder.fail(download_path(clowder, ids[flaky]), 502, times=2)

    accepted(deliver(client, "transfer", transfer_request(clowder, dataset_id)))

    transfer = transfer_of(api, alice, only_transfer(platform, "alice")["id"])
    assert transfer["state"] == "syncing"
    [error] = transfer["errors"]
    assert error["path"] == broken
    assert "Clowder" in error["error"] and "503" in error["error"], error
    client_attempts = platform.clowder().retries + 1
    assert downloads(clowder, ids[broken]) == client_attempts
    assert downloads(clowder, ids[flaky]) == 3
    [command] = take_commands(platform, "alice")
    assert sorted(file.path for file in command.files) == sorted(set(content) - {broken})


@pytest.mark.parametrize("ranges", [False])
def test_a_download_cut_short_without_ranges_is_fetched_again_then_failed(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str
) -> None:
    dataset_id, content, ids = field_study(clowder)
    cut, once = "raw/big.bin", "raw/2024/measurements.csv"
    clowder.truncate(download_path(clowder, ids[cut]), after_bytes=100_000)  # every time
    clowder.truncate(download_path(clowder, ids[once]), after_bytes=1_000, times=1)

    accepted(deliver(client, "transfer", transfer_request(clowder, dataset_id)))

    transfer = transfer_of(api, alice, only_transfer(platform, "alice")["id"])
    [error] = transfer["errors"]
    assert error["path"] == cut
    assert "Clowder" in error["error"] and "broke off" in error["error"], error
    [command] = take_commands(platform, "alice")
    assert {file.path: file.sha256 for file in command.files} == {
        path: sha256(data) for path, data in content.items() if path != cut
    }
    assert downloads(clowder, ids[once]) == 2  # from the start again: no ranges to resume it by
    assert 1 < downloads(clowder, ids[cut]) <= 5
    # The broken download left nothing behind in the object store.
    assert platform.objects.list("blobs/") == sorted(
        (blob_key(sha256(data)), len(data)) for path, data in content.items() if path != cut
    )
    assert not any((platform.data_dir / "objects" / ".partial").iterdir())


def test_a_download_that_breaks_off_resumes_by_range_and_a_short_one_fails(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str
) -> None:
    dataset_id, content, ids = field_study(clowder)
    resumed, short = "raw/big.bin", "raw/2024/measurements.csv"
    clowder.truncate(download_path(clowder, ids[resumed]), after_bytes=1_000_000, times=1)
    clowder.wrong_length(download_path(clowder, ids[short]))  # a well-formed answer of half the file

    accepted(deliver(client, "transfer", transfer_request(clowder, dataset_id)))

    transfer = transfer_of(api, alice, only_transfer(platform, "alice")["id"])
    [error] = transfer["errors"]
    assert error["path"] == short
    assert "Clowder" in error["error"] and str(len(content[short])) in error["error"], error
    [command] = take_commands(platform, "alice")
    assert {file.path: file.sha256 for file in command.files} == {
        path: sha256(data) for path, data in content.items() if path != short
    }
    asked = [request.header("Range") for request in clowder.requests_to(download_path(clowder, ids[resumed]))]
    assert asked == [None, "bytes=1000000-"]


def test_clowder_unreachable_while_listing_asks_for_a_retry(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str
) -> None:
    dataset_id, content, _ = field_study(clowder)
    clowder.fail("/api/v2/datasets/*/files", 503)
    event = transfer_request(clowder, dataset_id)

    message = refused(deliver(client, "transfer", event), "Clowder", status=503)
    assert "503" in message
    transfer = transfer_of(api, alice, only_transfer(platform, "alice")["id"])
    assert transfer["state"] in ("requested", "staging")
    assert transfer["message"].startswith("Clowder could not be read"), transfer
    assert queued(platform, "alice") == 0

    # Knative delivers it again once Clowder is back: the same transfer goes on.
    clowder.clear_faults()
    accepted(deliver(client, "transfer", event, "structured"))
    transfer = transfer_of(api, alice, transfer["id"])
    assert (transfer["state"], transfer["message"], transfer["filesTotal"]) == ("syncing", "", len(content))
    assert queued(platform, "alice") == 1


# --- 7. progress from the shovels ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_progress_counts_only_when_signed_by_the_transfers_user(
    api: Api,
    client: ClientFactory,
    platform: Platform,
    clowder: ClowderServer,
    alice: str,
    bob: str,
    mode: Mode,
) -> None:
    dataset_id, content, _ = field_study(clowder)
    accepted(deliver(client, "transfer", transfer_request(clowder, dataset_id)))
    transfer_id = only_transfer(platform, "alice")["id"]
    before = transfer_of(api, alice, transfer_id)

    forged = progress_event(transfer_id, "alice", ["readme.txt"], key_user="bob")
    refused(deliver(client, "shovel_reports", forged, mode), "wbsignature")
    foreign = progress_event(transfer_id, "bob", ["readme.txt"])
    refused(deliver(client, "shovel_reports", foreign, mode), transfer_id)
    pairing_signed = new_event(
        types.TRANSFER_PROGRESS,
        {"transfer_id": transfer_id, "user": "alice", "placed": ["readme.txt"]},
        source=SOURCE,
        secret=SECRET.encode(),
    )
    refused(deliver(client, "shovel_reports", pairing_signed, mode), "wbsignature")
    assert transfer_of(api, alice, transfer_id) == before

    accepted(deliver(client, "shovel_reports", progress_event(transfer_id, "alice", ["readme.txt"]), mode))
    partly = transfer_of(api, alice, transfer_id)
    assert partly["state"] == "syncing"
    assert (partly["filesDone"], partly["bytesDone"]) == (1, len(content["readme.txt"]))

    rest = sorted(set(content) - {"readme.txt"})
    accepted(deliver(client, "shovel_reports", progress_event(transfer_id, "alice", rest), mode))
    done = transfer_of(api, alice, transfer_id)
    assert done["state"] == "completed"
    assert (done["filesDone"], done["bytesDone"]) == (done["filesTotal"], done["bytesTotal"])
    assert done["filesTotal"] == len(content)
    assert done["errors"] == []


def test_a_report_landing_while_staging_ends_is_counted(
    api: Api,
    client: ClientFactory,
    platform: Platform,
    clowder: ClowderServer,
    alice: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dataset_id, content, _ = field_study(clowder)
    store = platform.store
    tally_files = store.tally_transfer_files
    reported: list[str] = []

    def racing(transfer_id: str) -> tuple[int, int, int, list[tuple[str, str]]]:
        tally = tally_files(transfer_id)
        transfer = store.get_transfer(transfer_id)
        if not reported and transfer is not None and transfer.stagingDone:
            # A fast shovel's report settles every file between this count and the write after it.
            reported.append(transfer_id)
            accepted(deliver(client, "shovel_reports", progress_event(transfer_id, "alice", sorted(content))))
        return tally

    monkeypatch.setattr(store, "tally_transfer_files", racing)
    accepted(deliver(client, "transfer", transfer_request(clowder, dataset_id)))

    assert reported
    done = transfer_of(api, alice, reported[0])
    assert done["state"] == "completed"
    assert (done["filesDone"], done["bytesDone"]) == (done["filesTotal"], done["bytesTotal"])


# --- 8. the whole way, with in-process shovels --------------------------------------------------------------


def test_a_transfer_waits_for_a_stack_and_lands_byte_for_byte(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, shovels: Served, alice: str
) -> None:
    dataset_id, content, _ = field_study(clowder)
    sid = new_stack(api, alice)  # stopped: no shovel of alice's runs

    accepted(deliver(client, "transfer", transfer_request(clowder, dataset_id)))
    transfer_id = only_transfer(platform, "alice")["id"]
    time.sleep(0.3)
    waiting = transfer_of(api, alice, transfer_id)
    assert (waiting["state"], waiting["filesDone"]) == ("syncing", 0)
    assert queued(platform, "alice") == 1

    response = api.call("GET", f"/api/start/{sid}", alice)
    assert response.status_code == 202, response.get_json()
    done = wait_for_transfer(api, alice, transfer_id, "completed")
    assert (done["filesDone"], done["bytesDone"]) == (
        len(content),
        sum(len(data) for data in content.values()),
    )
    assert done["errors"] == []
    wait_until(lambda: queued(platform, "alice") == 0, "alice's queue emptied (the receipt written)")

    home = platform.data_dir / "home" / "alice"
    target = home / "Clowder" / "Field Study"
    assert every_file(target) == content
    leftovers = [
        path for path in target.rglob("*") if path.name.endswith(".part") or PARTIAL_FOLDER in path.parts
    ]
    assert leftovers == []
    assert not (home / PARTIAL_FOLDER / transfer_id).exists()


# --- 9. through the real RabbitMQ, with the shovel as a process --------------------------------------------


RABBIT_USER = f"rabbit{uuid.uuid4().hex[:10]}"


def amqp_url() -> str:
    from tests.test_shovel import AMQP_URL

    return AMQP_URL


@pytest.fixture
def rabbitmq() -> Iterator[str]:
    """The RabbitMQ URL; the test user's queue is deleted afterwards."""
    from tests.test_shovel import delete_queue, require_rabbitmq

    require_rabbitmq()
    try:
        yield amqp_url()
    finally:
        delete_queue(queue_for(RABBIT_USER))


@pytest.mark.parametrize("extra_environment", [{"WORKBENCH_AMQP_URL": amqp_url()}], ids=["rabbitmq"])
def test_a_transfer_completes_through_rabbitmq_and_a_shovel_process(
    rabbitmq: str,
    api: Api,
    client: ClientFactory,
    platform: Platform,
    clowder: ClowderServer,
    shovels: Served,
) -> None:
    token = Users(api, platform).make(RABBIT_USER)
    dataset_id, content, _ = field_study(clowder, big=1_000_000)
    sid = started_stack(api, token)

    event = transfer_request(clowder, dataset_id, email=f"{RABBIT_USER}@example.org")
    accepted(deliver(client, "transfer", event))
    transfer_id = only_transfer(platform, RABBIT_USER)["id"]
    done = wait_for_transfer(api, token, transfer_id, "completed")
    assert (done["filesDone"], done["bytesDone"]) == (
        len(content),
        sum(len(data) for data in content.values()),
    )
    assert every_file(platform.data_dir / "home" / RABBIT_USER / "Clowder" / "Field Study") == content
    # The shovel was a process of its own, with its own log, and it placed the files.
    shovel_log = platform.data_dir / "logs" / RABBIT_USER / f"{sid}-shovel.log"
    assert f"transfer {transfer_id}: placed" in shovel_log.read_text()


# --- 10. the transfers API ------------------------------------------------------------------------------


def test_each_user_sees_only_their_own_transfers(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str, bob: str
) -> None:
    dataset_id = clowder.add_dataset("Shared")
    clowder.add_files(dataset_id, {"a.txt": b"a"})
    accepted(deliver(client, "transfer", transfer_request(clowder, dataset_id)))
    accepted(deliver(client, "transfer", transfer_request(clowder, dataset_id, email="bob@example.org")))
    alices = only_transfer(platform, "alice")["id"]
    bobs = only_transfer(platform, "bob")["id"]

    listed = api.call("GET", "/api/transfers", alice)
    assert listed.status_code == 200
    assert [transfer["id"] for transfer in listed.get_json()] == [alices]
    assert [transfer["user"] for transfer in api.call("GET", "/api/transfers", bob).get_json()] == ["bob"]

    refused(api.call("GET", f"/api/transfers/{bobs}", alice), bobs, status=404)
    refused(api.call("GET", f"/api/transfers/{alices}", bob), alices, status=404)
    assert transfer_of(api, Users(api, platform).admin(), alices)["user"] == "alice"
    assert transfer_of(api, Users(api, platform).admin(), bobs)["user"] == "bob"
    refused(api.call("GET", "/api/transfers"), status=401)
    refused(
        api.call("GET", "/api/transfers/nothing-such", Users(api, platform).admin()),
        "nothing-such",
        status=404,
    )


# --- 11. start and stop from Clowder ----------------------------------------------------------------------


def stack_event(event_type: str, sid: str, email: str = "alice@example.org") -> Event:
    return new_event(event_type, {"email": email, "stack_id": sid}, source=SOURCE, secret=SECRET.encode())


def test_clowder_starts_and_stops_only_the_users_own_stacks(
    api: Api, client: ClientFactory, platform: Platform, alice: str, bob: str
) -> None:
    sid = new_stack(api, alice)
    bobs = new_stack(api, bob)

    accepted(deliver(client, "stack_action", stack_event(types.STACK_START_REQUESTED, sid)))
    assert test_stacks.read(api, alice, sid)["status"] == "starting"
    accepted(deliver(client, "stack_action", stack_event(types.STACK_START_REQUESTED, sid), "structured"))
    test_stacks.wait_for(api, alice, sid, "started")
    accepted(deliver(client, "stack_action", stack_event(types.STACK_START_REQUESTED, sid)))
    assert test_stacks.read(api, alice, sid)["status"] == "started"

    refused(deliver(client, "stack_action", stack_event(types.STACK_START_REQUESTED, bobs)), bobs)
    refused(deliver(client, "stack_action", stack_event(types.STACK_STOP_REQUESTED, bobs)), bobs)
    assert test_stacks.read(api, bob, bobs)["status"] == "stopped"
    refused(
        deliver(client, "stack_action", stack_event(types.STACK_START_REQUESTED, sid, "nobody@example.org")),
        "nobody@example.org",
    )
    unsigned = new_event(
        types.STACK_STOP_REQUESTED, {"email": "alice@example.org", "stack_id": sid}, source=SOURCE
    )
    refused(deliver(client, "stack_action", unsigned), "wbsignature")
    assert test_stacks.read(api, alice, sid)["status"] == "started"

    accepted(deliver(client, "stack_action", stack_event(types.STACK_STOP_REQUESTED, sid), "structured"))
    assert test_stacks.read(api, alice, sid)["status"] in ("stopping", "stopped")
    test_stacks.wait_for(api, alice, sid, "stopped")
    accepted(deliver(client, "stack_action", stack_event(types.STACK_STOP_REQUESTED, sid)))
    assert test_stacks.read(api, alice, sid)["status"] == "stopped"


def test_a_start_that_cannot_happen_yet_is_retried_and_one_that_never_can_is_refused(
    api: Api, client: ClientFactory, platform: Platform, alice: str
) -> None:
    sid = new_stack(api, alice)

    def set_status(status: str) -> None:
        platform.store.update_stack("alice", sid, lambda stack: stack.model_copy(update={"status": status}))

    set_status("stopping")  # as while the runtime stops it
    refused(deliver(client, "stack_action", stack_event(types.STACK_START_REQUESTED, sid)), sid, status=503)
    assert test_stacks.read(api, alice, sid)["status"] == "stopping"
    accepted(deliver(client, "stack_action", stack_event(types.STACK_STOP_REQUESTED, sid)))

    set_status("error")  # must be stopped before it can start again
    refused(deliver(client, "stack_action", stack_event(types.STACK_START_REQUESTED, sid)), sid, "error")
    assert test_stacks.read(api, alice, sid)["status"] == "error"
    set_status("stopped")


# --- 12. containers ------------------------------------------------------------------------------------


def test_containers_lists_a_users_stacks_for_the_user_the_admin_and_clowder(
    api: Api, platform: Platform, alice: str, bob: str
) -> None:
    sid = started_stack(api, alice)
    stopped = new_stack(api, alice)

    response = api.call("GET", "/api/containers/alice", alice)
    assert response.status_code == 200, response.get_json()
    containers = {container["id"]: container for container in response.get_json()}
    assert set(containers) == {sid, stopped}
    assert (containers[sid]["status"], containers[stopped]["status"]) == ("started", "stopped")
    assert containers[stopped]["endpoints"] == []
    [url] = containers[sid]["endpoints"]
    assert httpx.get(url, timeout=5).status_code == 200
    assert containers[sid]["key"] == STATIC_SPEC["key"]

    as_admin = api.call("GET", "/api/containers/alice", Users(api, platform).admin())
    assert as_admin.status_code == 200
    assert as_admin.get_json() == response.get_json()
    as_clowder = api.call("GET", "/api/containers/alice", SERVICE_TOKEN)
    assert as_clowder.status_code == 200
    assert as_clowder.get_json() == response.get_json()

    refused(api.call("GET", "/api/containers/alice", bob), status=403)
    refused(api.call("GET", "/api/containers/alice"), status=401)
    refused(api.call("GET", "/api/containers/alice", "not-a-token"), status=401)
    refused(api.call("GET", "/api/containers/nobody", Users(api, platform).admin()), "nobody", status=404)
    assert api.call("GET", "/api/containers/bob", bob).get_json() == []


@pytest.mark.link_roots
@pytest.mark.parametrize("version", [2])
@pytest.mark.parametrize("link", ["copy", "symlink"])
def test_link_mode_takes_files_from_mounted_clowder_storage(
    api: Api,
    client: ClientFactory,
    platform: Platform,
    clowder: ClowderServer,
    shovels: Served,
    alice: str,
    tmp_path: Path,
    link: str,
) -> None:
    disk = tmp_path / "clowder-disk"
    (disk / "raw").mkdir(parents=True)
    (disk / "a.txt").write_bytes(b"kept on Clowder's disk\n")
    (disk / "raw" / "b.bin").write_bytes(os.urandom(100_000))
    secret = tmp_path / "not-yours.txt"
    secret.write_bytes(b"outside every link root")
    (disk / "escape.txt").symlink_to(secret)
    started_stack(api, alice)
    dataset_id = clowder.add_dataset("Mounted")
    on_disk = clowder.add_file(dataset_id, "a.txt", source=disk / "a.txt", local=True)
    clowder.add_file(dataset_id, "b.bin", source=disk / "raw" / "b.bin", local=True)
    clowder.add_file(dataset_id, "escape.txt", source=disk / "escape.txt", local=True)
    clowder.add_file(dataset_id, "staged.txt", b"kept in Clowder's object store\n")

    accepted(deliver(client, "transfer", transfer_request(clowder, dataset_id, mode="link", link=link)))
    final = wait_for_transfer(api, alice, only_transfer(platform, "alice")["id"], "failed")

    errors = {error["path"]: error["error"] for error in final["errors"]}
    assert list(errors) == ["escape.txt"]
    assert "leads out of the link roots" in errors["escape.txt"]
    target = platform.data_dir / "home" / "alice" / "Clowder" / "Mounted"
    assert (target / "a.txt").read_bytes() == (disk / "a.txt").read_bytes()
    assert (target / "b.bin").read_bytes() == (disk / "raw" / "b.bin").read_bytes()
    assert (target / "staged.txt").read_bytes() == b"kept in Clowder's object store\n"
    assert not (target / "escape.txt").exists()
    assert (target / "a.txt").is_symlink() is (link == "symlink")
    if link == "symlink":
        assert (target / "a.txt").resolve() == disk / "a.txt"
    assert downloads(clowder, on_disk) == 0  # read from the mounted disk, not through Clowder
    assert downloads(clowder) == 1  # only the file Clowder keeps elsewhere


def test_the_local_platforms_shovels_copy_from_its_staging_folder(platform: Platform) -> None:
    from shared.adapters.objectstore.local import LocalObjectStore
    from shovel.local import shovel_template

    objects = platform.objects
    assert isinstance(objects, LocalObjectStore)
    template = shovel_template(platform)
    assert template.staging_dir == objects.root and objects.root.is_dir()
    assert template.settings("alice", "s1").staging_dir == objects.root


@pytest.mark.s3
def test_shovels_download_what_is_staged_in_s3(platform: Platform) -> None:
    from shovel.local import shovel_template

    assert shovel_template(platform).staging_dir is None
    assert not (platform.data_dir / "objects").exists()


def test_on_one_machine_a_transfer_is_staged_in_the_home_and_nothing_in_the_object_store(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, shovels: Served, alice: str
) -> None:
    """With the embedded object store, the files (small and large) are staged into the home's own
    hidden folder and placed from there; the transfer's staging folder is gone once it completes."""
    dataset_id, content, _ = field_study(clowder)
    started_stack(api, alice)
    accepted(deliver(client, "transfer", transfer_request(clowder, dataset_id)))
    transfer_id = only_transfer(platform, "alice")["id"]

    done = wait_for_transfer(api, alice, transfer_id, "completed")

    home = platform.data_dir / "home" / "alice"
    assert done["filesDone"] == len(content)
    assert every_file(home / "Clowder" / "Field Study") == content
    assert platform.objects.list("blobs/") == []
    assert not (home / PARTIAL_FOLDER / f"{transfer_id}.staged").exists()


@pytest.mark.s3
def test_a_transfer_staged_in_s3_lands_byte_for_byte(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, shovels: Served, alice: str
) -> None:
    """Staging in an S3 API (moto's server): blobs in the bucket, the shovel downloads by pre-signed URL."""
    import boto3

    dataset_id, content, _ = field_study(clowder)
    started_stack(api, alice)
    accepted(deliver(client, "transfer", transfer_request(clowder, dataset_id)))
    done = wait_for_transfer(api, alice, only_transfer(platform, "alice")["id"], "completed")
    assert done["filesDone"] == len(content)
    assert every_file(platform.data_dir / "home" / "alice" / "Clowder" / "Field Study") == content

    settings = platform.settings.s3
    bucket = boto3.client(
        "s3",
        endpoint_url=settings.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    keys = [item["Key"] for item in bucket.list_objects_v2(Bucket=S3_BUCKET).get("Contents", [])]
    blobs = sorted(key.rsplit("/", 1)[1] for key in keys if key.startswith("blobs/sha256/"))
    assert blobs == sorted({sha256(data) for data in content.values()})
    assert not (platform.data_dir / "objects").exists()  # nothing staged on the local disk


def test_a_redelivery_while_the_first_delivery_stages_leaves_it_alone(
    client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str
) -> None:
    """Two deliveries of one event at once: one stages, the other answers 202 and stages nothing."""
    import threading

    dataset_id, content, _ = field_study(clowder, big=100_000)
    clowder.slow("/api/v2/datasets/*/files", 1.0, times=1)  # keeps the first delivery busy a moment
    event = transfer_request(clowder, dataset_id)
    answers: list[int] = []

    def deliver_once() -> None:
        answers.append(deliver(client, "transfer", event).status_code)

    first = threading.Thread(target=deliver_once)
    first.start()
    wait_until(lambda: platform.store.list_transfers("alice"), "the first delivery to record the transfer")
    deliver_once()  # meanwhile, the redelivery
    first.join(WAIT_SECONDS)
    assert sorted(answers) == [202, 202]
    assert downloads(clowder) == len(content)  # every file fetched once
    commands = take_commands(platform, "alice")
    assert sorted(file.path for command in commands for file in command.files) == sorted(content)


def test_clowder_refusing_the_api_key_fails_the_transfer_saying_so(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str
) -> None:
    dataset_id, _, _ = field_study(clowder, big=1000)
    clowder.fail("/api/v2/datasets/*", 401)
    refused(deliver(client, "transfer", transfer_request(clowder, dataset_id)), "Clowder refused")
    transfer = only_transfer(platform, "alice")
    assert transfer["state"] == "failed"
    assert "Clowder refused" in transfer["message"]


def test_the_admin_sees_each_running_shovels_heartbeat(
    api: Api, platform: Platform, shovels: Served, alice: str
) -> None:
    sid = started_stack(api, alice)

    def beating() -> list[dict[str, Any]] | None:
        listed: list[dict[str, Any]] = api.call(
            "GET", "/api/shovels", Users(api, platform).admin()
        ).get_json()
        return [shovel for shovel in listed if shovel["stackId"] == sid] or None

    [shovel] = wait_until(beating, "the shovel's first heartbeat")
    assert (shovel["user"], shovel["stale"]) == ("alice", False)
    assert shovel["status"] in ("starting", "ready", "syncing") and shovel["freeBytes"] > 0
    refused(api.call("GET", "/api/shovels", alice), status=403)
