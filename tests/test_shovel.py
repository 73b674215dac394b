"""The shovel: placing staged and linked files, export, heartbeats, health, and a crash on real RabbitMQ."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from events.types import (
    EXPORT_UPLOADED,
    SHOVEL_HEARTBEAT,
    TRANSFER_PROGRESS,
    ExportUploaded,
    Payload,
    ShovelHeartbeat,
    TransferProgress,
)
from shared.adapters.bus import Delivery
from shared.adapters.bus.memory import MemoryBus
from shared.adapters.runtime.processes import free_port
from shared.core.errors import InvalidInput, Unavailable
from shared.domain.messages import ExportCommand, StackCommand, SyncCommand, SyncFile, queue_for
from shovel.daemon import event_sender, run
from shovel.settings import ConflictPolicy, ShovelSettings
from tests.conftest import need
from tests.support import wait_until

AMQP_URL = os.environ.get("WORKBENCH_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
WAIT = 15.0
"""Every wait gives up after this long, so a broken shovel fails a test instead of hanging it."""
POLL = 0.02
"""How often a wait looks again: a shovel's steps take milliseconds."""
USER = "alice"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- HTTP servers of the tests ------------------------------------------------------------------------


class Server:
    """A WSGI app on 127.0.0.1, one thread per request.

    wsgiref rather than werkzeug: after each response werkzeug drains the socket with a 10 MB read,
    which would count against the shovel in the memory test.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        from socketserver import ThreadingMixIn
        from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

        class Threading(ThreadingMixIn, WSGIServer):
            daemon_threads = True

        class Quiet(WSGIRequestHandler):
            def log_message(self, format: str, *arguments: Any) -> None:
                pass

        self.server = make_server("127.0.0.1", 0, app, server_class=Threading, handler_class=Quiet)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(WAIT)


@dataclass
class Blob:
    """A staged file: its bytes, or a size and a maker of its chunks (so a big one is never in memory)."""

    data: bytes = b""
    size: int | None = None
    chunks: Callable[[], Iterator[bytes]] | None = None
    hold: threading.Event | None = None
    """When set up, the first request sends half the file and then waits for this event."""
    holding: threading.Event = field(default_factory=threading.Event)
    requests: int = 0

    @property
    def length(self) -> int:
        return self.size if self.size is not None else len(self.data)


class Staging:
    """Serves staged files at /<name>, as the object store's pre-signed URLs do."""

    def __init__(self) -> None:
        self.blobs: dict[str, Blob] = {}
        self.server = Server(self)

    def add(self, name: str, blob: Blob) -> str:
        self.blobs[name] = blob
        return f"{self.server.url}/{name}"

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        blob = self.blobs.get(environ["PATH_INFO"].lstrip("/"))
        if blob is None:
            start_response("404 Not Found", [("Content-Length", "0")])
            return [b""]
        blob.requests += 1
        start_response("200 OK", [("Content-Length", str(blob.length))])
        return self._body(blob, first=blob.requests == 1)

    @staticmethod
    def _body(blob: Blob, *, first: bool) -> Iterator[bytes]:
        if blob.chunks is not None:
            yield from blob.chunks()
            return
        if blob.hold is not None and first:
            half = len(blob.data) // 2
            yield blob.data[:half]
            blob.holding.set()
            blob.hold.wait(WAIT)
            yield blob.data[half:]
            return
        yield blob.data


@pytest.fixture
def staging() -> Iterator[Staging]:
    instance = Staging()
    yield instance
    for blob in instance.blobs.values():
        if blob.hold is not None:
            blob.hold.set()
    instance.server.close()


# --- running a shovel -----------------------------------------------------------------------------------


@dataclass
class Settlement:
    action: str
    requeue: bool | None
    body: bytes


class RecordingBus(MemoryBus):
    """The in-process bus, recording how each delivery was settled."""

    def __init__(self) -> None:
        super().__init__()
        self.settlements: list[Settlement] = []

    def consume(
        self,
        queue: str,
        handler: Callable[[Delivery], None],
        *,
        prefetch: int,
        stop: threading.Event,
        connected: Callable[[bool], None] | None = None,
    ) -> None:
        bus = self

        class Recorded:
            def __init__(self, inner: Delivery) -> None:
                self.inner = inner
                self.body = inner.body
                self.redelivered = inner.redelivered

            def ack(self) -> None:
                bus.settlements.append(Settlement("ack", None, self.body))
                self.inner.ack()

            def reject(self, *, requeue: bool) -> None:
                bus.settlements.append(Settlement("reject", requeue, self.body))
                self.inner.reject(requeue=requeue)

        super().consume(
            queue,
            lambda delivery: handler(Recorded(delivery)),
            prefetch=prefetch,
            stop=stop,
            connected=connected,
        )


Emitted = list[tuple[float, str, Payload]]


@contextmanager
def running(
    settings: ShovelSettings, bus: MemoryBus, *, emit: Callable[[str, Payload], None] | None = None
) -> Iterator[Emitted]:
    """The shovel on a thread; yields what it emits (time, type, payload), also passing it on to
    ``emit`` when given; stops it on the way out."""
    emitted: Emitted = []
    stop = threading.Event()

    def record(event_type: str, payload: Payload) -> None:
        emitted.append((time.monotonic(), event_type, payload))
        if emit is not None:
            emit(event_type, payload)

    thread = threading.Thread(
        target=run, kwargs={"settings": settings, "bus": bus, "stop": stop, "emit": record}, daemon=True
    )
    thread.start()
    try:
        yield emitted
    finally:
        stop.set()
        thread.join(WAIT)
        assert not thread.is_alive(), "the shovel did not stop"


def of_type(emitted: Emitted, event_type: str) -> list[Any]:
    return [payload for _, kind, payload in emitted if kind == event_type]


def progress_of(emitted: Emitted, count: int = 1) -> list[TransferProgress]:
    reports: list[TransferProgress] = wait_until(
        lambda: len(of_type(emitted, TRANSFER_PROGRESS)) >= count and of_type(emitted, TRANSFER_PROGRESS),
        f"{count} progress report(s)",
        WAIT,
        every=POLL,
    )
    return reports


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


@pytest.fixture
def settings(home: Path) -> ShovelSettings:
    return ShovelSettings(user=USER, stack_id="s1", home=home, health_host="127.0.0.1", health_port=0)


def send(bus: MemoryBus, command: SyncCommand | ExportCommand | StackCommand) -> None:
    bus.publish(queue_for(command.user), command.model_dump_json().encode())


def files_below(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` except the shovel's partial folder, by relative path."""
    found = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if relative.startswith(".workbench-partial") or not path.is_file():
            continue
        found[relative] = path.read_bytes()
    return found


def staged(staging: Staging, path: str, data: bytes, *, checksum: str | None = None) -> SyncFile:
    url = staging.add(uuid.uuid4().hex, Blob(data))
    return SyncFile(path=path, size=len(data), sha256=checksum or sha256(data), url=url)


def sync_of(staging: Staging, transfer_id: str, target: str, contents: dict[str, bytes]) -> SyncCommand:
    """A sync command of ``contents`` (path → bytes), each file staged, for the test user."""
    return SyncCommand(
        transfer_id=transfer_id,
        user=USER,
        target=target,
        files=[staged(staging, path, data) for path, data in contents.items()],
    )


# --- sync -----------------------------------------------------------------------------------------------


def test_sync_places_every_file_and_reports_once(settings: ShovelSettings, staging: Staging) -> None:
    contents = {"a.txt": b"alpha\n", "sub/b.bin": os.urandom(300_000), "sub/deeper/c": b""}
    command = sync_of(staging, "t1", "Clowder/Data set", contents)
    bus = RecordingBus()
    with running(settings, bus) as emitted:
        send(bus, command)
        [progress] = progress_of(emitted)
        wait_until(lambda: bus.settlements, "the command to be settled", WAIT, every=POLL)

    assert files_below(settings.home / "Clowder/Data set") == contents
    assert sorted(progress.placed) == sorted(contents)
    assert progress.bytes_placed == sum(len(data) for data in contents.values())
    assert progress.errors == []
    assert (progress.transfer_id, progress.user, progress.stack_id) == ("t1", USER, "s1")
    assert [(entry.action, entry.requeue) for entry in bus.settlements] == [("ack", None)]
    assert len(of_type(emitted, TRANSFER_PROGRESS)) == 1
    # The transfer's work folder is gone; only its ledger stays, for redeliveries.
    assert sorted(path.name for path in (settings.home / ".workbench-partial").iterdir()) == ["t1.ledger"]


def test_files_appear_only_complete(settings: ShovelSettings, staging: Staging) -> None:
    data = os.urandom(2_000_000)
    hold = threading.Event()
    blob = Blob(data, hold=hold)
    url = staging.add("slow", blob)
    command = SyncCommand(
        transfer_id="t-slow",
        user=USER,
        target="in",
        files=[SyncFile(path="big.bin", size=len(data), sha256=sha256(data), url=url)],
    )
    bus = MemoryBus()
    final = settings.home / "in" / "big.bin"
    partial = settings.home / ".workbench-partial" / "t-slow" / "0.part"
    seen_partial = False
    with running(settings, bus) as emitted:
        send(bus, command)
        wait_until(blob.holding.is_set, "half of the file to be sent", WAIT, every=POLL)
        releaser = threading.Timer(0.5, hold.set)
        releaser.start()
        while not of_type(emitted, TRANSFER_PROGRESS):
            # Whenever the final path exists, it holds the whole file: never a partial one.
            if final.exists():
                assert final.stat().st_size == len(data)
            seen_partial = seen_partial or (partial.exists() and partial.stat().st_size < len(data))
            assert [path.name for path in final.parent.iterdir()] in ([], ["big.bin"])
            time.sleep(0.005)
        releaser.join()
    assert seen_partial, "the download did not go through the partial folder"
    assert final.read_bytes() == data
    assert not partial.exists()


def test_checksum_mismatch_fails_that_file_only(settings: ShovelSettings, staging: Staging) -> None:
    good = staged(staging, "good.txt", b"good")
    bad = staged(staging, "bad.txt", b"tampered", checksum=sha256(b"original"))
    short = SyncFile(path="short.txt", size=100, url=staging.add("short", Blob(b"only 18 bytes here")))
    bus = RecordingBus()
    with running(settings, bus) as emitted:
        send(bus, SyncCommand(transfer_id="t2", user=USER, target="d", files=[good, bad, short]))
        [progress] = progress_of(emitted)
        wait_until(lambda: bus.settlements, "the command to be settled", WAIT, every=POLL)

    assert files_below(settings.home) == {"d/good.txt": b"good"}
    assert progress.placed == ["good.txt"]
    errors = {problem.path: problem.error for problem in progress.errors}
    assert set(errors) == {"bad.txt", "short.txt"}
    assert "checksum mismatch" in errors["bad.txt"]
    assert "size mismatch" in errors["short.txt"]
    assert [entry.action for entry in bus.settlements] == ["ack"]
    assert not (settings.home / ".workbench-partial" / "t2").exists()


def test_hostile_paths_are_refused_by_name(
    settings: ShovelSettings, staging: Staging, tmp_path: Path
) -> None:
    hostile = ["../escape.txt", "/etc/evil.txt", "nul\x00byte.txt", "bell\x07.txt", "x" * 300, "a/../../b"]
    files = [staged(staging, path, b"payload") for path in [*hostile, "fine.txt"]]
    bus = MemoryBus()
    with running(settings, bus) as emitted:
        send(bus, SyncCommand(transfer_id="t3", user=USER, target="in", files=files))
        send(bus, SyncCommand(transfer_id="t4", user=USER, target="../outside", files=files[-1:]))
        send(bus, SyncCommand(transfer_id="t5", user=USER, target=".workbench-partial", files=files[-1:]))
        reports = {report.transfer_id: report for report in progress_of(emitted, 3)}

    assert reports["t3"].placed == ["fine.txt"]
    errors = {problem.path: problem.error for problem in reports["t3"].errors}
    assert set(errors) == set(hostile)
    for path, error in errors.items():
        assert repr(path[:80])[1:-1] in error, error
    assert "longer than 255 bytes" in errors["x" * 300]
    for transfer in ("t4", "t5"):
        assert reports[transfer].placed == []
        assert "target" in reports[transfer].errors[0].error
    assert files_below(settings.home) == {"in/fine.txt": b"payload"}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["home"]


def test_links_on_the_way_to_a_file_are_refused_by_name(
    settings: ShovelSettings, staging: Staging, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (settings.home / "data").symlink_to(outside)
    (settings.home / "real").mkdir()
    (settings.home / "alias").symlink_to(settings.home / "real")  # a link that stays in the home
    (settings.home / "in").mkdir()
    (settings.home / "in" / "sub").symlink_to(outside)
    bus = MemoryBus()
    with running(settings, bus) as emitted:
        send(bus, SyncCommand(transfer_id="t6", user=USER, target="data", files=[staged(staging, "f", b"x")]))
        send(
            bus, SyncCommand(transfer_id="t6b", user=USER, target="alias", files=[staged(staging, "f", b"x")])
        )
        send(
            bus,
            SyncCommand(transfer_id="t6c", user=USER, target="in", files=[staged(staging, "sub/f", b"x")]),
        )
        reports = {report.transfer_id: report for report in progress_of(emitted, 3)}
    for transfer, link in [("t6", "data"), ("t6b", "alias"), ("t6c", "in/sub")]:
        assert reports[transfer].placed == []
        [problem] = reports[transfer].errors
        assert f"folder {link!r}" in problem.error and "is a symbolic link" in problem.error, problem.error
    assert list(outside.iterdir()) == [] and list((settings.home / "real").iterdir()) == []


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("keep-both", {"a.txt": b"mine", "a (1).txt": b"theirs", "same.txt": b"same"}),
        ("overwrite", {"a.txt": b"theirs", "same.txt": b"same"}),
        ("skip", {"a.txt": b"mine", "same.txt": b"same"}),
    ],
)
def test_conflicts_follow_the_policy(
    settings: ShovelSettings, staging: Staging, policy: ConflictPolicy, expected: dict[str, bytes]
) -> None:
    folder = settings.home / "in"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"mine")
    (folder / "same.txt").write_bytes(b"same")
    files = [staged(staging, "a.txt", b"theirs"), staged(staging, "same.txt", b"same")]
    bus = MemoryBus()
    with running(replace(settings, conflict_policy=policy), bus) as emitted:
        send(bus, SyncCommand(transfer_id="t7", user=USER, target="in", files=files))
        [progress] = progress_of(emitted)
    assert files_below(folder) == expected
    if policy == "skip":
        assert progress.placed == ["same.txt"]
        assert "conflict policy is skip" in progress.errors[0].error
    else:
        assert sorted(progress.placed) == ["a.txt", "same.txt"]


def test_keep_both_counts_on(settings: ShovelSettings, staging: Staging) -> None:
    folder = settings.home / "in"
    folder.mkdir()
    for name, data in {"a.txt": b"0", "a (1).txt": b"1", "README": b"r"}.items():
        (folder / name).write_bytes(data)
    files = [staged(staging, "a.txt", b"new"), staged(staging, "README", b"new readme")]
    bus = MemoryBus()
    with running(settings, bus) as emitted:
        send(bus, SyncCommand(transfer_id="t8", user=USER, target="in", files=files))
        progress_of(emitted)
    assert files_below(folder) == {
        "a.txt": b"0",
        "a (1).txt": b"1",
        "a (2).txt": b"new",
        "README": b"r",
        "README (1)": b"new readme",
    }


def test_redelivered_command_places_nothing_twice(settings: ShovelSettings, staging: Staging) -> None:
    contents = {"one.txt": b"1", "two/three.txt": b"23"}
    command = sync_of(staging, "t9", "in", contents)
    bus = MemoryBus()
    with running(settings, bus) as emitted:
        send(bus, command)
        progress_of(emitted, 1)
        # Changed by the user since: a second placement would now show up as "one (1).txt".
        (settings.home / "in" / "one.txt").write_bytes(b"edited")
        send(bus, command)
        first, second = progress_of(emitted, 2)
        # A crash between placing a file and writing the ledger: the identical file counts as placed.
        (settings.home / ".workbench-partial" / "t9.ledger").unlink()
        (settings.home / "in" / "one.txt").write_bytes(b"1")
        send(bus, command)
        third = progress_of(emitted, 3)[2]

    for report in (first, second, third):
        assert sorted(report.placed) == sorted(contents)
        assert report.bytes_placed == 3
        assert report.errors == []
    assert files_below(settings.home / "in") == contents
    requests = [blob.requests for blob in staging.blobs.values()]
    assert requests == [2, 2], "the redelivery with the ledger in place downloaded again"


def test_commands_of_one_transfer_are_placed_side_by_side(settings: ShovelSettings, staging: Staging) -> None:
    # The transfer function sends a large file in a command of its own: the next command of the same
    # transfer must not wait for it, and neither may take the other's work folder away.
    slow_data = os.urandom(500_000)
    hold = threading.Event()
    slow = Blob(slow_data, hold=hold)
    first = SyncCommand(
        transfer_id="t-side",
        user=USER,
        target="in",
        files=[
            SyncFile(
                path="slow.bin", size=len(slow_data), sha256=sha256(slow_data), url=staging.add("slow", slow)
            )
        ],
    )
    contents = {f"quick-{number}.txt": f"quick {number}".encode() for number in range(5)}
    second = sync_of(staging, "t-side", "in", contents)
    bus = MemoryBus()
    with running(settings, bus) as emitted:
        send(bus, first)
        wait_until(slow.holding.is_set, "half of the slow file", WAIT, every=POLL)
        send(bus, second)
        [quick] = progress_of(emitted, 1)  # while the first command still waits for its file
        assert sorted(quick.placed) == sorted(contents) and quick.errors == []
        hold.set()
        _, late = progress_of(emitted, 2)
    assert late.placed == ["slow.bin"] and late.errors == []
    assert files_below(settings.home / "in") == {**contents, "slow.bin": slow_data}
    assert sorted(path.name for path in (settings.home / ".workbench-partial").iterdir()) == ["t-side.ledger"]
    ledger = (settings.home / ".workbench-partial" / "t-side.ledger").read_text().splitlines()
    assert sorted(json.loads(line)["path"] for line in ledger) == sorted(
        f"in/{path}" for path in [*contents, "slow.bin"]
    )


def test_files_carried_in_the_command_are_placed_without_a_download(
    settings: ShovelSettings, staging: Staging
) -> None:
    small = b"small enough to travel in the command\n"
    tampered = b"these bytes are not the ones staged"
    files = [
        SyncFile(
            path="inline.txt",
            size=len(small),
            sha256=sha256(small),
            url=staging.add("inline", Blob(small)),
            content=small,
        ),
        SyncFile(
            path="tampered.txt",
            size=len(tampered),
            sha256=sha256(b"the original"),
            url=staging.add("tampered", Blob(tampered)),
            content=tampered,
        ),
    ]
    command = SyncCommand(transfer_id="t-inline", user=USER, target="in", files=files)
    # What the bus carries: the bytes as base64 in the JSON.
    assert SyncCommand.model_validate_json(command.model_dump_json()) == command
    bus = RecordingBus()
    with running(settings, bus) as emitted:
        send(bus, command)
        [progress] = progress_of(emitted)
        wait_until(lambda: bus.settlements, "the command to be settled", WAIT, every=POLL)
    assert progress.placed == ["inline.txt"]
    [problem] = progress.errors
    assert problem.path == "tampered.txt" and "checksum mismatch" in problem.error
    assert files_below(settings.home / "in") == {"inline.txt": small}
    assert [blob.requests for blob in staging.blobs.values()] == [0, 0]
    ledger = (settings.home / ".workbench-partial" / "t-inline.ledger").read_text().splitlines()
    assert [json.loads(line)["path"] for line in ledger] == ["in/inline.txt"]


def test_staged_files_are_copied_from_a_mounted_staging_folder(
    settings: ShovelSettings, staging: Staging, tmp_path: Path
) -> None:
    """The local platform's shovels read its staging folder (the object store's directory) directly;
    what is not there, or not a plain file, comes over its URL; a copy is checked like a download."""
    from shared.adapters.objectstore import blob_key

    folder = tmp_path / "objects"

    def stage_locally(data: bytes, *, stored: bytes | None = None) -> None:
        path = folder / blob_key(sha256(data))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if stored is None else stored)

    local, remote, damaged, linked, longer = (
        os.urandom(size) for size in (3_000_000, 70_000, 5_000, 6_000, 7_000)
    )
    stage_locally(local)
    stage_locally(damaged, stored=b"x" * len(damaged))
    stage_locally(longer, stored=longer + b"more")
    elsewhere = tmp_path / "elsewhere.bin"
    elsewhere.write_bytes(linked)
    (folder / blob_key(sha256(linked))).parent.mkdir(parents=True, exist_ok=True)
    (folder / blob_key(sha256(linked))).symlink_to(elsewhere)
    contents = {
        "local.bin": local,
        "remote.bin": remote,
        "damaged.bin": damaged,
        "linked.bin": linked,
        "longer.bin": longer,
    }
    command = sync_of(staging, "t-mounted", "in", contents)
    bus = MemoryBus()
    with running(replace(settings, staging_dir=folder), bus) as emitted:
        send(bus, command)
        [progress] = progress_of(emitted)
    assert sorted(progress.placed) == ["linked.bin", "local.bin", "remote.bin"]
    problems = {problem.path: problem.error for problem in progress.errors}
    assert "checksum mismatch" in problems["damaged.bin"]
    assert "holds more than the 7000 bytes expected" in problems["longer.bin"]
    assert files_below(settings.home / "in") == {
        "local.bin": local,
        "remote.bin": remote,
        "linked.bin": linked,
    }
    requests = {file.path: staging.blobs[str(file.url).rsplit("/", 1)[1]].requests for file in command.files}
    assert requests == {"local.bin": 0, "damaged.bin": 0, "longer.bin": 0, "remote.bin": 1, "linked.bin": 1}


def test_a_download_cut_short_is_tried_again_then_fails_that_file(
    settings: ShovelSettings, staging: Staging, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shovel.sync

    monkeypatch.setattr(shovel.sync, "RETRY_SECONDS", 0.01)
    data = os.urandom(50_000)
    # Announces 80,000 bytes, sends 50,000 and closes the connection (a server or proxy that died).
    cut = SyncFile(path="cut.bin", size=80_000, url=staging.add("cut", Blob(data, size=80_000)))
    whole = staged(staging, "whole.bin", data)
    command = SyncCommand(transfer_id="t-cut", user=USER, target="in", files=[cut, whole])
    bus = MemoryBus()
    with running(settings, bus) as emitted:
        send(bus, command)
        [progress] = progress_of(emitted)
    assert progress.placed == ["whole.bin"]
    [problem] = progress.errors
    assert (
        problem.path == "cut.bin" and "failed 3 times" in problem.error and "before the end" in problem.error
    )
    assert staging.blobs["cut"].requests == 3
    assert files_below(settings.home / "in") == {"whole.bin": data}


def test_downloads_through_the_http_client_where_a_proxy_is_set(
    settings: ShovelSettings, staging: Staging, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With a proxy named in the environment the downloads go through the client, which honours it
    # (here it names no address the test server needs, so the downloads still arrive).
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    contents = {"a.bin": os.urandom(200_000), "b.txt": b"b"}
    command = sync_of(staging, "t-proxy", "in", contents)
    bus = MemoryBus()
    with running(settings, bus) as emitted:
        send(bus, command)
        [progress] = progress_of(emitted)
    assert sorted(progress.placed) == sorted(contents) and progress.errors == []
    assert files_below(settings.home / "in") == contents


class KeptAlive:
    """A staging server that keeps each connection open after its answer (HTTP/1.1), and counts the
    connections its clients still hold open."""

    def __init__(self, data: bytes) -> None:
        import http.server

        owner = self
        self.open = 0
        self.lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with owner.lock:
                    owner.open += 1

            def finish(self) -> None:
                # Runs once the client closed the connection: handle() serves requests until then.
                super().finish()
                with owner.lock:
                    owner.open -= 1

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_shovel_closes_its_kept_download_connections_when_it_stops(
    settings: ShovelSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)  # downloads go over the shovel's own kept connections
    data = os.urandom(100_000)
    server = KeptAlive(data)
    file = SyncFile(path="a.bin", size=len(data), sha256=sha256(data), url=f"{server.url}/blob")
    bus = RecordingBus()
    try:
        with running(settings, bus):
            send(bus, SyncCommand(transfer_id="t-kept", user=USER, target="Clowder/kept", files=[file]))
            wait_until(lambda: bus.settlements, "the command to be settled", WAIT, every=POLL)
            assert server.open == 1, "the download's connection is kept for the next one"
        wait_until(lambda: server.open == 0, "the kept connection to be closed", WAIT, every=POLL)
    finally:
        server.close()
    assert files_below(settings.home / "Clowder/kept") == {"a.bin": data}


def test_link_mode_copies_and_symlinks_below_the_roots(
    settings: ShovelSettings, staging: Staging, tmp_path: Path
) -> None:
    root = tmp_path / "clowder-disk"
    (root / "ds").mkdir(parents=True)
    data = os.urandom(50_000)
    (root / "ds" / "one.csv").write_bytes(data)
    private = tmp_path / "private.txt"
    private.write_bytes(b"secret")
    (root / "ds" / "escape").symlink_to(private)
    linked = replace(settings, link_roots=(root.resolve(),))

    def linked_file(path: str, source: Path, size: int) -> SyncFile:
        return SyncFile(path=path, size=size, source=str(source))

    copy = SyncCommand(
        transfer_id="t10",
        user=USER,
        target="copied",
        files=[
            linked_file("one.csv", root / "ds" / "one.csv", len(data)),
            linked_file("escape", root / "ds" / "escape", 6),
            linked_file("direct", private, 6),
            linked_file("relative", Path("ds/one.csv"), len(data)),
            linked_file("wrong-size", root / "ds" / "one.csv", 5),
        ],
    )
    symlink = SyncCommand(
        transfer_id="t11",
        user=USER,
        target="linked",
        link="symlink",
        files=[linked_file("one.csv", root / "ds" / "one.csv", len(data))],
    )
    bus = MemoryBus()
    with running(linked, bus) as emitted:
        send(bus, copy)
        send(bus, symlink)
        reports = {report.transfer_id: report for report in progress_of(emitted, 2)}

    assert reports["t10"].placed == ["one.csv"]
    errors = {problem.path: problem.error for problem in reports["t10"].errors}
    assert "outside the link roots" in errors["escape"] and "escape" in errors["escape"]
    assert "outside the link roots" in errors["direct"] and str(private) in errors["direct"]
    assert "not a plain absolute path" in errors["relative"]
    assert "5 were expected" in errors["wrong-size"]
    copied = settings.home / "copied" / "one.csv"
    assert copied.read_bytes() == data and not copied.is_symlink()
    assert reports["t11"].placed == ["one.csv"]
    link = settings.home / "linked" / "one.csv"
    assert link.is_symlink() and os.readlink(link) == str((root / "ds" / "one.csv").resolve())
    assert link.read_bytes() == data
    assert files_below(settings.home / "copied") == {"one.csv": data}


def test_link_mode_needs_link_roots(settings: ShovelSettings, tmp_path: Path) -> None:
    source = tmp_path / "file"
    source.write_bytes(b"1")
    bus = MemoryBus()
    with running(settings, bus) as emitted:
        file = SyncFile(path="file", size=1, source=str(source))
        send(bus, SyncCommand(transfer_id="t12", user=USER, target="x", files=[file]))
        [progress] = progress_of(emitted)
    assert "no link roots" in progress.errors[0].error


def test_command_for_another_user_is_rejected(settings: ShovelSettings, staging: Staging) -> None:
    bus = RecordingBus()
    command = SyncCommand(transfer_id="t13", user="mallory", target="in", files=[staged(staging, "f", b"1")])
    with running(settings, bus) as emitted:
        # Published to this shovel's own queue, as a confused or hostile producer might.
        bus.publish(queue_for(USER), command.model_dump_json().encode())
        bus.publish(queue_for(USER), b"not json at all")
        wait_until(lambda: len(bus.settlements) == 2, "both messages to be settled", WAIT, every=POLL)
    assert [(entry.action, entry.requeue) for entry in bus.settlements] == [("reject", False)] * 2
    assert of_type(emitted, TRANSFER_PROGRESS) == []
    assert files_below(settings.home) == {}
    assert bus.message_count(queue_for(USER)) == 0


def test_memory_stays_bounded_for_a_large_file(settings: ShovelSettings, staging: Staging) -> None:
    block = bytes(range(256)) * 256
    count = 480  # 30 MiB

    def chunks() -> Iterator[bytes]:
        for _ in range(count):
            yield block

    digest = hashlib.sha256()
    for chunk in chunks():
        digest.update(chunk)
    size = len(block) * count
    url = staging.add("large", Blob(size=size, chunks=chunks))
    command = SyncCommand(
        transfer_id="t14",
        user=USER,
        target="big",
        files=[SyncFile(path="large.bin", size=size, sha256=digest.hexdigest(), url=url)],
    )
    bus = MemoryBus()
    with running(settings, bus) as emitted:
        wait_until(lambda: of_type(emitted, SHOVEL_HEARTBEAT), "the first heartbeat", WAIT, every=POLL)
        tracemalloc.start()
        try:
            send(bus, command)
            [progress] = progress_of(emitted)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert progress.placed == ["large.bin"], progress.errors
    assert (settings.home / "big" / "large.bin").stat().st_size == size
    assert peak < 8 * 1024 * 1024, f"peak traced memory {peak} bytes for a {size}-byte file"


# --- export ---------------------------------------------------------------------------------------------


class Receiver:
    """Takes form-POST uploads as an S3 POST policy endpoint does, keeping them by key."""

    def __init__(self) -> None:
        self.uploads: dict[str, bytes] = {}
        self.fields: list[dict[str, str]] = []
        self.server = Server(self)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        from werkzeug.wrappers import Request, Response

        with Request(environ) as request:
            fields = dict(request.form)
            self.fields.append(fields)
            self.uploads[fields["key"]] = request.files["file"].read()
        response = Response(status=204)
        return response(environ, start_response)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    instance = Receiver()
    yield instance
    instance.server.close()


def test_export_uploads_a_nested_folder(settings: ShovelSettings, receiver: Receiver, tmp_path: Path) -> None:
    folder = settings.home / "project"
    contents = {
        "a.txt": b"alpha",
        "sub/b.bin": os.urandom(200_000),
        "sub/deeper/c.txt": b"",
        "inner": b"inside the home",
    }
    for path, data in contents.items():
        if path != "inner":
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_bytes(data)
    (settings.home / "other.txt").write_bytes(contents["inner"])
    (folder / "inner").symlink_to(settings.home / "other.txt")
    (tmp_path / "secret.txt").write_bytes(b"not yours")
    (folder / "outside").symlink_to(tmp_path / "secret.txt")
    (folder / "loop").symlink_to(folder)
    os.mkfifo(folder / "pipe")
    command = ExportCommand(
        export_id="e1",
        user=USER,
        folder="project",
        upload_url=f"{receiver.server.url}/objects",
        upload_fields={"policy": "p0licy", "signature": "s1gnature"},
        key_prefix="exports/e1/",
    )
    bus = RecordingBus()
    with running(settings, bus) as emitted:
        send(bus, command)
        [report] = wait_until(
            lambda: of_type(emitted, EXPORT_UPLOADED), "the export report", WAIT, every=POLL
        )
        wait_until(lambda: bus.settlements, "the command to be settled", WAIT, every=POLL)

    assert isinstance(report, ExportUploaded)
    assert report.errors == []
    assert receiver.uploads == {f"exports/e1/{path}": data for path, data in contents.items()}
    assert {file.path: (file.size, file.sha256, file.key) for file in report.files} == {
        path: (len(data), sha256(data), f"exports/e1/{path}") for path, data in contents.items()
    }
    assert all(fields["policy"] == "p0licy" for fields in receiver.fields)
    assert [entry.action for entry in bus.settlements] == ["ack"]


def test_export_of_a_missing_or_hostile_folder_reports_it(
    settings: ShovelSettings, receiver: Receiver
) -> None:
    bus = MemoryBus()
    with running(settings, bus) as emitted:
        for number, folder in enumerate(["nothing-here", "../etc"]):
            send(
                bus,
                ExportCommand(
                    export_id=f"e{number}",
                    user=USER,
                    folder=folder,
                    upload_url=f"{receiver.server.url}/objects",
                    upload_fields={},
                    key_prefix="x/",
                ),
            )
        reports = wait_until(
            lambda: len(of_type(emitted, EXPORT_UPLOADED)) == 2 and of_type(emitted, EXPORT_UPLOADED),
            "reports",
            WAIT,
            every=POLL,
        )
    errors = {report.errors[0].path: report.errors[0].error for report in reports}
    assert "does not exist" in errors["nothing-here"]
    assert "'../etc'" in errors["../etc"]
    assert receiver.uploads == {}


# --- stacks, events -------------------------------------------------------------------------------------


def test_stack_commands_call_the_api_with_their_own_token(
    settings: ShovelSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each command's token goes with its call; an outage is tried again (counted), a refusal is final."""
    monkeypatch.setattr("shovel.daemon.RETRY_SECONDS", 0.05)
    calls: list[tuple[str, str, str]] = []
    answers = {"/api/start/s2": ["202 Accepted"], "/api/stop/s2": ["503 Service Unavailable", "202 Accepted"]}

    def api(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        calls.append((environ["REQUEST_METHOD"], path, environ.get("HTTP_AUTHORIZATION", "")))
        queued = answers.get(path, ["401 Unauthorized"])
        start_response(queued.pop(0) if len(queued) > 1 else queued[0], [("Content-Length", "0")])
        return [b""]

    server = Server(api)
    try:
        bus = RecordingBus()
        configured = replace(settings, api_url=server.url)
        with running(configured, bus):
            send(bus, StackCommand(kind="start", user=USER, stack_id="s2", token="t0ken-start"))
            send(bus, StackCommand(kind="stop", user=USER, stack_id="s2", token="t0ken-stop"))
            send(bus, StackCommand(kind="stop", user=USER, stack_id="s3", token="expired"))
            hostile = StackCommand(kind="stop", user="mallory", stack_id="s9", token="x")
            bus.publish(queue_for(USER), hostile.model_dump_json().encode())
            wait_until(lambda: len(bus.settlements) == 5, "five settlements", WAIT, every=POLL)
    finally:
        server.close()
    assert calls == [
        ("GET", "/api/start/s2", "Bearer t0ken-start"),
        ("GET", "/api/stop/s2", "Bearer t0ken-stop"),
        ("GET", "/api/stop/s3", "Bearer expired"),
        ("GET", "/api/stop/s2", "Bearer t0ken-stop"),
    ]
    settled = [(entry.action, entry.requeue, json.loads(entry.body)) for entry in bus.settlements]
    # The 503 put the stop back on the queue with its failure counted; the others were settled once.
    assert sorted(
        (body["stack_id"], body["failures"], action, requeue) for action, requeue, body in settled
    ) == [
        ("s2", 0, "ack", None),
        ("s2", 0, "ack", None),
        ("s2", 1, "ack", None),
        ("s3", 0, "reject", False),
        ("s9", 0, "reject", False),
    ]
    assert bus.message_count(queue_for(USER)) == 0


def test_a_stop_waits_for_the_commands_taken_before_it(settings: ShovelSettings, staging: Staging) -> None:
    """Files sent before a stop are placed before the stack is stopped."""
    placed_when_stopped: list[dict[str, bytes]] = []

    def api(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        placed_when_stopped.append(files_below(settings.home / "Clowder"))
        start_response("202 Accepted", [("Content-Length", "0")])
        return [b""]

    data = os.urandom(100_000)
    blob = Blob(data, hold=threading.Event())
    url = staging.add("slow", blob)
    command = SyncCommand(
        transfer_id="t-before",
        user=USER,
        target="Clowder/before",
        files=[SyncFile(path="slow.bin", size=len(data), sha256=sha256(data), url=url)],
    )
    server = Server(api)
    try:
        bus = RecordingBus()
        with running(replace(settings, api_url=server.url), bus):
            send(bus, command)
            wait_until(blob.holding.is_set, "the download under way", WAIT, every=POLL)
            send(bus, StackCommand(kind="stop", user=USER, stack_id="s1", token="t"))
            time.sleep(0.3)  # the stop is taken meanwhile, and waits
            assert placed_when_stopped == []
            assert blob.hold is not None
            blob.hold.set()
            wait_until(lambda: len(bus.settlements) == 2, "both commands settled", WAIT, every=POLL)
    finally:
        server.close()
    assert placed_when_stopped == [{"before/slow.bin": data}]
    assert [(entry.action, entry.requeue) for entry in bus.settlements] == [("ack", None), ("ack", None)]


class FailingPlatform:
    """The platform's events endpoint, answering 500 to every report of placed files (a bug it has
    for this transfer), so that the command reporting them fails however often it is placed."""

    def __init__(self) -> None:
        self.reports: list[tuple[int, TransferProgress]] = []
        self.exports: list[tuple[int, ExportUploaded]] = []
        self.server = Server(self)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        from werkzeug.wrappers import Request

        from events import codec

        request = Request(environ)
        event = codec.from_http(dict(request.headers), request.get_data())
        status = "202 Accepted"
        if event.type == TRANSFER_PROGRESS:
            progress = TransferProgress.model_validate(codec.parse_data(event))
            status = "500 Internal Server Error" if progress.placed else status
            self.reports.append((int(status[:3]), progress))
        elif event.type == EXPORT_UPLOADED:
            uploaded = ExportUploaded.model_validate(codec.parse_data(event))
            status = "500 Internal Server Error" if uploaded.files else status
            self.exports.append((int(status[:3]), uploaded))
        start_response(status, [("Content-Length", "0")])
        return [b""]

    def given_up(self, settings: ShovelSettings, bus: Any, command: SyncCommand) -> TransferProgress:
        """Run the shovel with three attempts on ``command``; the report of its files given up."""
        configured = replace(settings, attempts=3, events_url=f"{self.server.url}/events")
        try:
            with running(configured, bus, emit=event_sender(configured)):
                bus.publish(queue_for(command.user), command.model_dump_json().encode())
                wait_until(
                    lambda: len(self.reports) == 4, "three failed reports and the last one", WAIT, every=POLL
                )
                time.sleep(0.3)  # nothing more comes: the command is gone
        finally:
            self.server.close()
        assert [status for status, _ in self.reports] == [500, 500, 500, 202]
        final = self.reports[-1][1]
        assert final.placed == [] and sorted(problem.path for problem in final.errors) == ["a.txt", "b.txt"]
        for problem in final.errors:
            assert problem.error.startswith("the shovel gave up after 3 failed attempts: ")
            assert "HTTP 500" in problem.error
        return final


def test_a_command_that_fails_every_time_is_given_up_and_its_files_reported_failed(
    settings: ShovelSettings, staging: Staging, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poison command: after WORKBENCH_SHOVEL_ATTEMPTS tries it leaves the queue, its files reported
    failed with the reason, instead of going back to the queue for ever."""
    monkeypatch.setattr("shovel.daemon.RETRY_SECONDS", 0.05)
    command = sync_of(staging, "t-poison", "Clowder/poison", {"a.txt": b"alpha\n", "b.txt": b"beta\n"})
    bus = RecordingBus()
    FailingPlatform().given_up(settings, bus, command)
    failures = [json.loads(entry.body)["failures"] for entry in bus.settlements]
    assert failures == [0, 1, 2] and all(entry.action == "ack" for entry in bus.settlements)
    assert bus.message_count(queue_for(USER)) == 0


def test_an_export_that_fails_every_time_is_given_up_saying_why(
    settings: ShovelSettings, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shovel.daemon.RETRY_SECONDS", 0.05)
    (settings.home / "results").mkdir()
    (settings.home / "results" / "a.txt").write_bytes(b"alpha")
    command = ExportCommand(
        export_id="e-poison",
        user=USER,
        folder="results",
        upload_url=f"{receiver.server.url}/objects",
        upload_fields={},
        key_prefix="exports/e-poison/",
    )
    platform = FailingPlatform()
    configured = replace(settings, attempts=2, events_url=f"{platform.server.url}/events")
    bus = RecordingBus()
    try:
        with running(configured, bus, emit=event_sender(configured)):
            send(bus, command)
            wait_until(
                lambda: len(platform.exports) == 3, "two failed reports and the last one", WAIT, every=POLL
            )
    finally:
        platform.server.close()
    assert [status for status, _ in platform.exports] == [500, 500, 202]
    final = platform.exports[-1][1]
    assert final.files == [] and [problem.path for problem in final.errors] == ["results"]
    assert final.errors[0].error.startswith("the shovel gave up after 2 failed attempts: ")
    assert [json.loads(entry.body)["failures"] for entry in bus.settlements] == [0, 1]


def test_a_poison_command_on_rabbitmq_is_given_up(
    settings: ShovelSettings, staging: Staging, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same on the real broker: the shovel's own count travels in the command it publishes again."""
    import pika

    from shared.adapters.bus.amqp import AmqpBus

    require_rabbitmq()
    monkeypatch.setattr("shovel.daemon.RETRY_SECONDS", 0.05)
    user = f"poison{uuid.uuid4().hex[:8]}"
    command = sync_of(staging, "t-poison", "Clowder/poison", {"a.txt": b"alpha\n", "b.txt": b"beta\n"})
    bus = AmqpBus(AMQP_URL, name=f"test shovel {user}")
    try:
        FailingPlatform().given_up(
            replace(settings, user=user), bus, command.model_copy(update={"user": user})
        )
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        try:
            declared = connection.channel().queue_declare(queue_for(user), passive=True)
            assert declared.method.message_count == 0
        finally:
            connection.close()
    finally:
        bus.close()
        delete_queue(queue_for(user))


def test_default_events_are_signed_with_the_shovel_key(settings: ShovelSettings) -> None:
    from events import codec, signing

    received: list[codec.Event] = []

    def sink(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        from werkzeug.wrappers import Request

        request = Request(environ)
        received.append(codec.from_http(dict(request.headers), request.get_data()))
        start_response("202 Accepted", [("Content-Length", "0")])
        return [b""]

    server = Server(sink)
    key = signing.derive_key(b"pairing secret", f"shovel:{USER}")
    try:
        emit = event_sender(replace(settings, events_url=f"{server.url}/events", signing_key=key.hex()))
        emit(TRANSFER_PROGRESS, TransferProgress(transfer_id="t", user=USER, placed=["a"], bytes_placed=1))
    finally:
        server.close()
    [event] = received
    codec.verify(event, key)
    assert event.type == TRANSFER_PROGRESS
    assert event.source == "/workbench/shovels/alice/s1"
    assert codec.parse_data(event) == TransferProgress(
        transfer_id="t", user=USER, placed=["a"], bytes_placed=1
    )


# --- heartbeats and health ------------------------------------------------------------------------------


def test_heartbeats_at_once_on_interval_and_on_shutdown(settings: ShovelSettings) -> None:
    bus = MemoryBus()
    fast = replace(settings, heartbeat_seconds=0.2)
    started = time.monotonic()
    with running(fast, bus) as emitted:
        time.sleep(1.1)
    beats = [(moment, payload) for moment, _, payload in emitted if isinstance(payload, ShovelHeartbeat)]
    assert len(beats) == len(of_type(emitted, SHOVEL_HEARTBEAT))
    assert beats[0][0] - started < 0.5, "the first heartbeat was not sent at once"
    assert beats[-1][1].status == "stopping"
    assert all(payload.status in ("starting", "ready") for _, payload in beats[:-1])
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(beats[:-1])]
    assert 4 <= len(gaps) <= 6, gaps
    assert all(0.2 * 0.9 - 0.02 <= gap <= 0.2 * 1.1 + 0.15 for gap in gaps), gaps
    assert beats[0][1].user == USER and beats[0][1].stack_id == "s1" and beats[0][1].free_bytes > 0


class GatedBus(MemoryBus):
    """A broker that lets no consumer in until ``gate`` opens, as one still starting up."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def consume(
        self,
        queue: str,
        handler: Callable[[Delivery], None],
        *,
        prefetch: int,
        stop: threading.Event,
        connected: Callable[[bool], None] | None = None,
    ) -> None:
        if not self.gate.wait(WAIT):
            raise Unavailable("the gate stayed shut")
        super().consume(queue, handler, prefetch=prefetch, stop=stop, connected=connected)


def test_healthz_is_503_until_connected_then_200(settings: ShovelSettings) -> None:
    port = free_port()
    bus = GatedBus()
    url = f"http://127.0.0.1:{port}/healthz"

    def answer() -> httpx.Response | None:
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            return None

    try:
        with running(replace(settings, health_port=port), bus):
            waiting = wait_until(answer, "the health server", WAIT, every=POLL)
            assert waiting.status_code == 503 and waiting.json() == {"status": "connecting"}
            bus.gate.set()
            ready = wait_until(
                lambda: (response := answer()) is not None and response.status_code == 200 and response,
                "200",
                WAIT,
                every=POLL,
            )
            assert ready.json()["status"] == "ready"
            assert ready.json()["user"] == USER and ready.json()["stack_id"] == "s1"
            assert httpx.get(f"http://127.0.0.1:{port}/other", timeout=2).status_code == 404
    finally:
        bus.gate.set()
    assert answer() is None, "the health server outlived the shovel"


# --- settings and the command line ----------------------------------------------------------------------


def test_settings_from_the_environment(home: Path, tmp_path: Path) -> None:
    base = {
        "WORKBENCH_SHOVEL_USER": USER,
        "WORKBENCH_SHOVEL_STACK_ID": "s1",
        "WORKBENCH_SHOVEL_HOME": str(home),
    }
    defaults = ShovelSettings.from_env(base)
    assert (defaults.prefetch, defaults.parallel, defaults.heartbeat_seconds) == (4, 4, 30.0)
    assert defaults.attempts == 5
    assert (defaults.health_port, defaults.conflict_policy) == (8081, "keep-both")
    assert defaults.events_url is None and defaults.link_roots == () and defaults.key is None
    full = ShovelSettings.from_env(
        {
            **base,
            "WORKBENCH_AMQP_URL": "amqp://user:password@broker/",
            "WORKBENCH_EVENTS_URL": "http://broker/events",
            "WORKBENCH_SHOVEL_SIGNING_KEY": "00ff",
            "WORKBENCH_SHOVEL_LINK_ROOTS": f"{tmp_path}:/mnt/clowder",
            "WORKBENCH_SHOVEL_CONFLICT": "skip",
            "WORKBENCH_SHOVEL_HEARTBEAT_SECONDS": "2.5",
            "WORKBENCH_SHOVEL_HEALTH_PORT": "0",
            "WORKBENCH_SHOVEL_STAGING_DIR": str(tmp_path),
            "WORKBENCH_SHOVEL_ATTEMPTS": "2",
        }
    )
    assert full.attempts == 2
    assert full.staging_dir == tmp_path.resolve() and defaults.staging_dir is None
    assert full.key == b"\x00\xff" and full.conflict_policy == "skip" and full.heartbeat_seconds == 2.5
    assert full.link_roots == (tmp_path.resolve(), Path("/mnt/clowder")) and full.health_port == 0
    assert "password" not in repr(full) and "00ff" not in repr(full)

    bad = {
        "WORKBENCH_SHOVEL_PREFETCH": "many",
        "WORKBENCH_SHOVEL_PARALLEL": "0",
        "WORKBENCH_SHOVEL_ATTEMPTS": "0",
        "WORKBENCH_SHOVEL_HEARTBEAT_SECONDS": "-1",
        "WORKBENCH_SHOVEL_HEALTH_PORT": "70000",
        "WORKBENCH_SHOVEL_CONFLICT": "replace",
        "WORKBENCH_SHOVEL_LINK_ROOTS": "relative/root",
        "WORKBENCH_SHOVEL_SIGNING_KEY": "not hex",
        "WORKBENCH_SHOVEL_HOME": str(tmp_path / "missing"),
        "WORKBENCH_SHOVEL_STAGING_DIR": str(tmp_path / "no-such-folder"),
    }
    for name, value in bad.items():
        with pytest.raises(InvalidInput) as caught:
            ShovelSettings.from_env({**base, name: value})
        assert caught.value.field == name and name in caught.value.message
    for name in base:
        with pytest.raises(InvalidInput, match=name):
            ShovelSettings.from_env({key: value for key, value in base.items() if key != name})


def test_a_user_or_stack_name_with_a_slash_or_a_control_character_is_refused(home: Path) -> None:
    base = {
        "WORKBENCH_SHOVEL_USER": USER,
        "WORKBENCH_SHOVEL_STACK_ID": "s1",
        "WORKBENCH_SHOVEL_HOME": str(home),
    }
    for name in ("WORKBENCH_SHOVEL_USER", "WORKBENCH_SHOVEL_STACK_ID"):
        for value in ("a/b", "a\nb", "a\x00b", "a\x7fb"):
            with pytest.raises(InvalidInput, match="a slash or a control character") as caught:
                ShovelSettings.from_env({**base, name: value})
            assert caught.value.field == name
    assert ShovelSettings.from_env({**base, "WORKBENCH_SHOVEL_USER": "d\u00e9a"}).user == "d\u00e9a"


def test_cli_needs_rabbitmq(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.tools.cli import main

    monkeypatch.setenv("WORKBENCH_SHOVEL_USER", USER)
    monkeypatch.setenv("WORKBENCH_SHOVEL_STACK_ID", "s1")
    monkeypatch.setenv("WORKBENCH_SHOVEL_HOME", str(home))
    assert main(["shovel"]) == 1
    assert "WORKBENCH_AMQP_URL is not set" in capsys.readouterr().err
    monkeypatch.delenv("WORKBENCH_SHOVEL_USER")
    assert main(["shovel"]) == 1
    assert "WORKBENCH_SHOVEL_USER" in capsys.readouterr().err


# --- a crash on the real RabbitMQ -----------------------------------------------------------------------


def require_rabbitmq() -> None:
    import pika

    parameters = pika.URLParameters(AMQP_URL)
    parameters.socket_timeout = 3
    try:
        pika.BlockingConnection(parameters).close()
    except Exception as error:
        need("RabbitMQ", repr(error))


def delete_queue(queue: str) -> None:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        connection.channel().queue_delete(queue)
    finally:
        connection.close()


class EventSink:
    """Receives the shovel process's events over HTTP, as the platform's /events does."""

    def __init__(self) -> None:
        from events import codec

        self.events: list[codec.Event] = []
        self.server = Server(self)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        from werkzeug.wrappers import Request

        from events import codec

        request = Request(environ)
        self.events.append(codec.from_http(dict(request.headers), request.get_data()))
        start_response("202 Accepted", [("Content-Length", "0")])
        return [b""]


def shovel_process_environment(user: str, key: bytes, home: Path, sink: EventSink) -> dict[str, str]:
    """The environment of a `workbench shovel` process on the real RabbitMQ, one download at a time."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "WORKBENCH_AMQP_URL": AMQP_URL,
        "WORKBENCH_EVENTS_URL": f"{sink.server.url}/events",
        "WORKBENCH_SHOVEL_USER": user,
        "WORKBENCH_SHOVEL_STACK_ID": "s1",
        "WORKBENCH_SHOVEL_HOME": str(home),
        "WORKBENCH_SHOVEL_SIGNING_KEY": key.hex(),
        "WORKBENCH_SHOVEL_PARALLEL": "1",
        "WORKBENCH_SHOVEL_HEALTH_HOST": "127.0.0.1",
        "WORKBENCH_SHOVEL_HEALTH_PORT": "0",
    }


def held_transfer(
    staging: Staging, user: str, target: str, *, files: int, size: int, held: int
) -> tuple[dict[str, bytes], threading.Event, SyncCommand]:
    """A command of ``files`` random files whose number ``held`` stops half sent until the event is set."""
    contents = {f"part-{number}.bin": os.urandom(size) for number in range(files)}
    hold = threading.Event()
    sync_files = [
        SyncFile(
            path=path,
            size=len(data),
            sha256=sha256(data),
            url=staging.add(path, Blob(data, hold=hold if number == held else None)),
        )
        for number, (path, data) in enumerate(contents.items())
    ]
    command = SyncCommand(transfer_id=str(uuid.uuid4()), user=user, target=target, files=sync_files)
    return contents, hold, command


def test_killed_shovel_resumes_without_duplicates(staging: Staging, home: Path, tmp_path: Path) -> None:
    require_rabbitmq()
    from events import codec, signing
    from shared.adapters.bus.amqp import AmqpBus

    user = f"crash{uuid.uuid4().hex[:10]}"
    key = signing.derive_key(b"pairing secret", f"shovel:{user}")
    contents, hold, command = held_transfer(staging, user, "Clowder/crash", files=5, size=150_000, held=3)
    held = staging.blobs["part-3.bin"]
    sink = EventSink()
    environment = shovel_process_environment(user, key, home, sink)
    workbench = Path(sys.executable).parent / "workbench"
    target = home / "Clowder" / "crash"
    log = tmp_path / "shovel.log"

    def start() -> subprocess.Popen[bytes]:
        with open(log, "ab") as output:
            return subprocess.Popen([str(workbench), "shovel"], env=environment, stdout=output, stderr=output)

    bus = AmqpBus(AMQP_URL, name="test-shovel-crash")
    first: subprocess.Popen[bytes] | None = None
    second: subprocess.Popen[bytes] | None = None
    try:
        bus.publish(queue_for(user), command.model_dump_json().encode())
        first = start()
        wait_until(held.holding.is_set, "the fourth file to be half sent", WAIT, every=POLL)
        assert sorted(files_below(target)) == ["part-0.bin", "part-1.bin", "part-2.bin"]
        first.send_signal(signal.SIGKILL)
        first.wait(WAIT)
        hold.set()
        assert sorted(files_below(target)) == ["part-0.bin", "part-1.bin", "part-2.bin"]

        second = start()
        progress = wait_until(
            lambda: [event for event in sink.events if event.type == TRANSFER_PROGRESS],
            "the progress event",
            WAIT,
            every=POLL,
        )
        second.send_signal(signal.SIGTERM)
        assert second.wait(WAIT) == 0
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(WAIT)
        bus.close()
        delete_queue(queue_for(user))
        sink.server.close()

    [event] = progress
    codec.verify(event, key)
    report = codec.parse_data(event)
    assert isinstance(report, TransferProgress)
    assert sorted(report.placed) == sorted(contents) and report.errors == []
    assert files_below(home) == {f"Clowder/crash/{path}": data for path, data in contents.items()}
    assert not any(path.name.endswith(".part") for path in target.rglob("*"))
    # The files placed before the crash were not fetched again; only the interrupted one was.
    assert [staging.blobs[path].requests for path in contents] == [1, 1, 1, 2, 1]
    assert "stopped" in log.read_text()


def test_a_dropped_broker_connection_mid_transfer_loses_and_repeats_nothing(
    staging: Staging, home: Path, tmp_path: Path
) -> None:
    """RabbitMQ closes the shovel's connections while a file is half sent: the shovel reconnects, the
    command comes again, and every file is placed exactly once."""
    require_rabbitmq()
    from events import codec, signing
    from shared.adapters.bus.amqp import AmqpBus
    from tests.test_bus import close_connections

    user = f"drop{uuid.uuid4().hex[:10]}"
    key = signing.derive_key(b"pairing secret", f"shovel:{user}")
    contents, hold, command = held_transfer(staging, user, "Clowder/drop", files=4, size=120_000, held=2)
    sink = EventSink()
    environment = shovel_process_environment(user, key, home, sink)
    target = home / "Clowder" / "drop"
    log = tmp_path / "shovel.log"
    bus = AmqpBus(AMQP_URL, name="test-shovel-drop")
    process: subprocess.Popen[bytes] | None = None
    try:
        bus.publish(queue_for(user), command.model_dump_json().encode())
        with open(log, "ab") as output:
            process = subprocess.Popen(
                [str(Path(sys.executable).parent / "workbench"), "shovel"],
                env=environment,
                stdout=output,
                stderr=output,
            )
        wait_until(
            staging.blobs["part-2.bin"].holding.is_set, "the third file to be half sent", WAIT, every=POLL
        )
        assert wait_until(
            lambda: close_connections(f"shovel {user}/s1"),
            "the shovel's connection to close",
            WAIT,
            every=POLL,
        )
        hold.set()
        progress = wait_until(
            lambda: [event for event in sink.events if event.type == TRANSFER_PROGRESS],
            "the progress event",
            WAIT,
            every=POLL,
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(WAIT) == 0
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(WAIT)
        bus.close()
        delete_queue(queue_for(user))
        sink.server.close()

    report = codec.parse_data(progress[-1])
    assert isinstance(report, TransferProgress)
    assert sorted(report.placed) == sorted(contents) and report.errors == []
    assert files_below(home) == {f"Clowder/drop/{path}": data for path, data in contents.items()}
    assert not any(path.name.endswith(".part") for path in target.rglob("*"))


# --- the ledger, opened again -----------------------------------------------------------------------


def _ledger_line(path: str) -> str:
    return json.dumps({"path": path, "placed": f"Clowder/{path}", "sha256": None, "size": 1}) + "\n"


def test_a_ledger_opened_again_reads_only_what_was_appended_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shovel import placing

    path = tmp_path / "t-again.ledger"
    with placing.Ledger.open(path) as ledger:
        ledger.record_all([(f"f{n}", placing.LedgerEntry(f"Clowder/f{n}", None, 1)) for n in range(100)])
    remembered = path.stat().st_size
    with path.open("a") as other_shovel:  # another stack's shovel went on with the transfer meanwhile
        other_shovel.write(_ledger_line("g"))

    offsets: list[int] = []
    real_pread = os.pread

    def pread(handle: int, size: int, offset: int) -> bytes:
        offsets.append(offset)
        return real_pread(handle, size, offset)

    monkeypatch.setattr(placing.os, "pread", pread)
    with placing.Ledger.open(path) as ledger:
        assert ledger.get("f0") is not None and ledger.get("f99") is not None
        assert ledger.get("g") == placing.LedgerEntry("Clowder/g", None, 1)
    assert 0 not in offsets, "the whole ledger was read again"
    assert remembered in offsets


def test_a_ledger_replaced_by_another_file_is_read_afresh(tmp_path: Path) -> None:
    from shovel import placing

    path = tmp_path / "t-replaced.ledger"
    with placing.Ledger.open(path) as ledger:
        ledger.record("old", placing.LedgerEntry("Clowder/old", None, 1))
    path.unlink()  # e.g. the user emptied the partial folder; then another ledger of the same name
    path.write_text(_ledger_line("new") * 3)
    with placing.Ledger.open(path) as ledger:
        assert ledger.get("old") is None
        assert ledger.get("new") is not None
    # Rewritten in place to the same length, with other lines: not the file read before either.
    with placing.Ledger.open(path) as ledger:
        pass
    path.write_text(_ledger_line("ne2") * 3)
    with placing.Ledger.open(path) as ledger:
        assert ledger.get("new") is None
        assert ledger.get("ne2") is not None
