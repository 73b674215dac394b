"""Files that travel in a sync command: written and verified without an fsync each, made durable by
one barrier for the command, and only then given their names in the home."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

import shovel.placing
import shovel.sync
from shared.core.durable import sync_batch, write_unsynced
from shared.domain.messages import SyncCommand, SyncFile
from shovel.placing import Ledger, LedgerEntry
from shovel.settings import ShovelSettings
from shovel.sync import Syncer

Calls = list[tuple[str, str]]


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[int]:
    descriptor = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield descriptor
    os.close(descriptor)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Every fsync (of the file it names) and hard link made meanwhile, in order; both still happen."""
    seen: Calls = []
    fsync, link = os.fsync, os.link

    def recording_fsync(descriptor: int) -> None:
        seen.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        fsync(descriptor)

    def recording_link(source: str, target: str, **options: object) -> None:
        seen.append(("link", target))
        link(source, target, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "link", recording_link)
    return seen


@contextmanager
def syncer(home: Path) -> Iterator[Syncer]:
    """The shovel's file placing on its own (no bus): ``run`` carries out one sync command."""
    settings = ShovelSettings(user="alice", stack_id="s1", home=home, health_host="127.0.0.1", health_port=0)
    with httpx.Client() as client, ThreadPoolExecutor(4) as pool:
        placing = Syncer(settings, client=client, pool=pool, cancelled=lambda: False, pause=time.sleep)
        try:
            yield placing
        finally:
            placing.close()


def inline(path: str, data: bytes, *, checksum: str | None = None) -> SyncFile:
    return SyncFile(
        path=path, size=len(data), sha256=checksum or hashlib.sha256(data).hexdigest(), content=data
    )


def test_an_unsynced_file_replaces_a_leftover_without_following_it(tmp_path: Path, folder: int) -> None:
    (tmp_path / "1.part").symlink_to(tmp_path / "elsewhere")

    write_unsynced(folder, "1.part", b"abc")

    assert not (tmp_path / "1.part").is_symlink()
    assert (tmp_path / "1.part").read_bytes() == b"abc"
    assert not (tmp_path / "elsewhere").exists()


def test_a_batch_is_synced_file_by_file_then_its_folder_and_names_what_failed(
    tmp_path: Path, folder: int, calls: Calls
) -> None:
    write_unsynced(folder, "1.part", b"one")
    write_unsynced(folder, "2.part", b"two")

    failed = sync_batch(folder, ["1.part", "gone.part", "2.part"])

    assert list(failed) == ["gone.part"] and isinstance(failed["gone.part"], FileNotFoundError)
    assert calls == [
        ("fsync", str(tmp_path / "1.part")),
        ("fsync", str(tmp_path / "2.part")),
        ("fsync", str(tmp_path)),
    ]


def test_a_commands_files_are_all_durable_before_the_first_gets_its_name(
    tmp_path: Path, calls: Calls
) -> None:
    contents = {f"sub{number % 3}/{number}.txt": os.urandom(100 + number) for number in range(12)}
    files = [inline(path, data) for path, data in contents.items()]
    files.append(inline("tampered.txt", b"not these bytes", checksum=hashlib.sha256(b"other").hexdigest()))
    with syncer(tmp_path) as placing:
        progress = placing.run(SyncCommand(transfer_id="t-batch", user="alice", target="in", files=files))

    assert sorted(progress.placed) == sorted(contents)
    assert [problem.path for problem in progress.errors] == ["tampered.txt"]
    for path, data in contents.items():
        assert (tmp_path / "in" / path).read_bytes() == data
    work = str(tmp_path / ".workbench-partial" / "t-batch")
    synced = [name for kind, name in calls if kind == "fsync" and name.startswith(work + "/")]
    first_link = next(index for index, (kind, _) in enumerate(calls) if kind == "link")
    # One fsync per file, all of them before any file is linked into the home.
    assert len(synced) == len(set(synced)) == len(contents)
    assert not [name for kind, name in calls[first_link:] if kind == "fsync" and name.startswith(work + "/")]
    # Then each folder that got names, and the ledger, once.
    after = [name for kind, name in calls[first_link:] if kind == "fsync"]
    assert sorted(after) == sorted(
        [*(str(tmp_path / "in" / f"sub{number}") for number in range(3)), work + ".ledger"]
    )


class Crash(BaseException):
    """The shovel's process dying at that point: nothing after it runs."""


@pytest.mark.parametrize("crash_at", ["placing", "ledger"])
def test_a_command_done_again_after_a_crash_places_each_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_at: str
) -> None:
    contents = {f"{number}.txt": os.urandom(50 + number) for number in range(8)}
    command = SyncCommand(
        transfer_id="t-crash",
        user="alice",
        target="in",
        files=[inline(path, data) for path, data in contents.items()],
    )
    placed: list[str] = []
    if crash_at == "placing":
        real_place = shovel.placing.place

        def place_three(*arguments: Any, **options: Any) -> str:
            if len(placed) == 3:
                raise Crash
            placed.append(real_place(*arguments, **options))
            return placed[-1]

        monkeypatch.setattr(shovel.sync, "place", place_three)
    else:

        def no_ledger(self: Ledger, records: list[tuple[str, LedgerEntry]]) -> None:
            raise Crash

        monkeypatch.setattr(Ledger, "record_all", no_ledger)
    with syncer(tmp_path) as first, pytest.raises(Crash):
        first.run(command)
    # What is in view is whole: the files placed before the crash, and nothing else.
    shown = {path.name: path.read_bytes() for path in (tmp_path / "in").iterdir()}
    assert all(contents[name] == data for name, data in shown.items())
    assert len(shown) == (3 if crash_at == "placing" else len(contents))
    monkeypatch.undo()

    with syncer(tmp_path) as again:
        progress = again.run(command)  # the redelivery

    assert sorted(progress.placed) == sorted(contents) and progress.errors == []
    assert {path.name: path.read_bytes() for path in (tmp_path / "in").iterdir()} == contents
    assert list((tmp_path / ".workbench-partial").iterdir()) == [
        tmp_path / ".workbench-partial" / "t-crash.ledger"
    ]
