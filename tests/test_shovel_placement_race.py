"""The shovel against a home whose folders are swapped for symbolic links while it works.

A process of the stack shares the home with the shovel and may replace any folder with a link at any
moment. Each test makes the swap at a chosen step, after the shovel opened the folder and before it
writes, links or reads there, and shows that nothing is written or read outside the home.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from events.types import EXPORT_UPLOADED, ExportUploaded, TransferProgress
from shared.adapters.bus.memory import MemoryBus
from shared.domain.messages import ExportCommand, SyncCommand, SyncFile
from shovel import export
from shovel.folders import HomeFolders
from shovel.placing import PARTIAL_FOLDER, PlacementError, place
from shovel.settings import ShovelSettings
from shovel.sync import Syncer
from tests.support import wait_until
from tests.test_shovel import (
    USER,
    Blob,
    Receiver,
    Staging,
    files_below,
    of_type,
    progress_of,
    running,
    send,
    sha256,
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the home, where nothing of the shovel's may ever arrive."""
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder


@pytest.fixture
def settings(home: Path) -> ShovelSettings:
    return ShovelSettings(user=USER, stack_id="s1", home=home, health_host="127.0.0.1", health_port=0)


@pytest.fixture
def staging() -> Iterator[Staging]:
    instance = Staging()
    yield instance
    for blob in instance.blobs.values():
        if blob.hold is not None:
            blob.hold.set()
    instance.server.close()


def swap_for_link(folder: Path, target: Path) -> Path:
    """``folder`` moved aside and a symbolic link to ``target`` put in its place; where it went."""
    moved = folder.with_name(folder.name + ".moved")
    folder.rename(moved)
    folder.symlink_to(target)
    return moved


def everything_below(folder: Path) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*"))


def held_download(staging: Staging, transfer_id: str, target: str, path: str) -> tuple[SyncCommand, Blob]:
    """A command of one file whose download stops halfway until its blob's ``hold`` is set."""
    data = os.urandom(300_000)
    blob = Blob(data, hold=threading.Event())
    url = staging.add(transfer_id, blob)
    file = SyncFile(path=path, size=len(data), sha256=sha256(data), url=url)
    return SyncCommand(transfer_id=transfer_id, user=USER, target=target, files=[file]), blob


# --- placement ------------------------------------------------------------------------------------------


def test_a_folder_swapped_for_a_link_after_it_was_opened_gets_nothing_through_the_link(
    home: Path, outside: Path
) -> None:
    (outside / "deep").mkdir()  # where a path-based link would land
    with HomeFolders(home) as folders, folders.folder("in/deep", create=True) as folder:
        moved = swap_for_link(home / "in", outside)  # between the folder's opening and its use
        work = folders.open_partial()
        try:
            descriptor = os.open("0.part", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=work)
            os.write(descriptor, b"payload")
            os.close(descriptor)
            placed = place(work, "0.part", folder, "f.txt", policy="keep-both", sha256=None)
        finally:
            os.close(work)
    assert placed == "f.txt"
    assert everything_below(outside) == ["deep"]
    assert (moved / "deep" / "f.txt").read_bytes() == b"payload"
    # Opened afresh, the path now meets the link, and the shovel refuses it by name.
    with (
        HomeFolders(home) as folders,
        pytest.raises(PlacementError, match="'in' is a symbolic link"),
        folders.folder("in/deep"),
    ):
        pass


def test_a_target_folder_swapped_for_a_link_during_the_download(
    settings: ShovelSettings, staging: Staging, outside: Path
) -> None:
    (outside / "deep").mkdir()
    (settings.home / "in" / "deep").mkdir(parents=True)
    command, blob = held_download(staging, "t-swap", "in/deep", "f.bin")
    bus = MemoryBus()
    with running(settings, bus) as emitted:
        send(bus, command)
        wait_until(blob.holding.is_set, "half of the file")
        moved = swap_for_link(settings.home / "in", outside)
        assert blob.hold is not None
        blob.hold.set()
        [progress] = progress_of(emitted)
    assert progress.placed == ["f.bin"] and progress.errors == []
    assert everything_below(outside) == ["deep"]
    assert (moved / "deep" / "f.bin").read_bytes() == blob.data


def test_the_partial_folder_swapped_for_a_link_during_the_download(
    settings: ShovelSettings, staging: Staging, outside: Path
) -> None:
    command, blob = held_download(staging, "t-partial", "in", "f.bin")
    bus = MemoryBus()
    with running(settings, bus) as emitted:
        send(bus, command)
        wait_until(blob.holding.is_set, "half of the file")
        moved = swap_for_link(settings.home / PARTIAL_FOLDER, outside)
        assert blob.hold is not None
        blob.hold.set()
        [progress] = progress_of(emitted)
        # Once it is a link, the next command is refused, each file with the reason.
        later, _ = held_download(staging, "t-later", "in", "g.bin")
        send(bus, later)
        _, refused = progress_of(emitted, 2)
    assert progress.placed == ["f.bin"] and progress.errors == []
    assert (settings.home / "in" / "f.bin").read_bytes() == blob.data
    assert everything_below(outside) == []
    assert (moved / "t-partial.ledger").exists()  # written through the folder's descriptor
    assert refused.placed == []
    [problem] = refused.errors
    assert "shovel's own folder" in problem.error and "is a symbolic link" in problem.error, problem.error


@pytest.mark.parametrize("policy", ["keep-both", "overwrite", "skip"])
def test_a_link_at_the_final_name_is_never_written_through(
    settings: ShovelSettings, outside: Path, policy: Any
) -> None:
    secret = outside / "secret.txt"
    secret.write_bytes(b"not the user's")
    folder = settings.home / "in"
    folder.mkdir()
    (folder / "a.txt").symlink_to(secret)
    data = b"new content"
    file = SyncFile(path="a.txt", size=len(data), sha256=sha256(data), content=data)
    progress = run_syncer(replace(settings, conflict_policy=policy), [file], target="in")
    assert secret.read_bytes() == b"not the user's"
    if policy == "overwrite":
        assert not (folder / "a.txt").is_symlink() and (folder / "a.txt").read_bytes() == data
    elif policy == "keep-both":
        assert (folder / "a.txt").is_symlink() and (folder / "a (1).txt").read_bytes() == data
    else:
        assert progress.placed == [] and "conflict policy is skip" in progress.errors[0].error


@contextmanager
def syncer_of(settings: ShovelSettings) -> Iterator[Syncer]:
    """A ``Syncer`` with the pool and client the daemon gives it."""
    stop = threading.Event()
    with httpx.Client() as client, ThreadPoolExecutor(settings.parallel) as pool:
        yield Syncer(settings, client=client, pool=pool, cancelled=stop.is_set, pause=stop.wait)


def run_syncer(settings: ShovelSettings, files: list[SyncFile], *, target: str) -> Any:
    with syncer_of(settings) as syncer:
        return syncer.run(SyncCommand(transfer_id="t", user=USER, target=target, files=files))


ROUNDS = 60
MAX_ROUNDS = 2000
FILES = 20


def test_folders_swapped_back_and_forth_while_files_are_placed(
    settings: ShovelSettings, outside: Path
) -> None:
    """A process that keeps swapping the target folder for a link while many files are placed."""
    (outside / "sub").mkdir()
    target = settings.home / "in"
    (target / "sub").mkdir(parents=True)
    stop = threading.Event()
    swaps = 0

    def swap() -> None:
        # The folder goes aside under a new name each time, so that one the shovel makes meanwhile
        # (finding "in" missing) never stops the swapping.
        nonlocal swaps
        while not stop.is_set():
            aside = settings.home / f"in.{swaps}"
            with suppress(OSError):
                target.rename(aside)
            with suppress(OSError):
                target.symlink_to(outside)
                swaps += 1
                time.sleep(0.0005)
                target.unlink()
            with suppress(OSError):
                aside.rename(target)

    files = [
        SyncFile(path=f"sub/{number}.txt", size=len(data), sha256=sha256(data), content=data)
        for number in range(FILES)
        for data in [f"file {number}\n".encode()]
    ]
    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    try:
        # Each command opens the folders afresh: many commands, many chances to meet the link. How
        # soon one meets it depends on the scheduler, so the commands go on (within a bound) until one
        # has met it.
        with syncer_of(settings) as syncer:
            reports: list[TransferProgress] = []
            while len(reports) < ROUNDS or (len(reports) < MAX_ROUNDS and not met_link(reports)):
                command = SyncCommand(transfer_id=f"t{len(reports)}", user=USER, target="in", files=files)
                reports.append(syncer.run(command))
    finally:
        stop.set()
        swapper.join(5)
    assert swaps > 0
    assert everything_below(outside) == ["sub"], "a file went through the link"
    placed = sum(len(report.placed) for report in reports)
    failed = [problem.error for report in reports for problem in report.errors]
    assert placed + len(failed) == len(reports) * FILES
    # A file fails where its command met the link (or its folder removed under it, which the swapping
    # does to a folder the shovel has just made); every other one is placed, and all in the home.
    assert placed > 0 and met_link(reports), failed[:3]


def met_link(reports: list[TransferProgress]) -> bool:
    return any("is a symbolic link" in problem.error for report in reports for problem in report.errors)


# --- export ---------------------------------------------------------------------------------------------


class HoldingReceiver(Receiver):
    """Holds the first upload until ``hold`` is set, so that the test can act in between."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = threading.Event()
        self.hold = threading.Event()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if not self.holding.is_set():
            self.holding.set()
            self.hold.wait(15)
        return super().__call__(environ, start_response)


def test_a_folder_swapped_for_a_link_during_an_export_uploads_nothing_from_outside(
    settings: ShovelSettings, outside: Path
) -> None:
    project = settings.home / "project"
    (project / "sub").mkdir(parents=True)
    (project / "a.txt").write_bytes(b"alpha")
    (project / "sub" / "b.txt").write_bytes(b"the user's own b")
    (outside / "b.txt").write_bytes(b"secret beside the home")
    receiver = HoldingReceiver()
    command = ExportCommand(
        export_id="e-swap",
        user=USER,
        folder="project",
        upload_url=f"{receiver.server.url}/objects",
        upload_fields={},
        key_prefix="x/",
    )
    bus = MemoryBus()
    try:
        with running(replace(settings, parallel=1), bus) as emitted:
            send(bus, command)
            wait_until(receiver.holding.is_set, "the first upload")
            swap_for_link(project / "sub", outside)
            receiver.hold.set()
            [report] = wait_until(lambda: of_type(emitted, EXPORT_UPLOADED), "the export report")
    finally:
        receiver.hold.set()
        receiver.server.close()
    assert isinstance(report, ExportUploaded)
    assert b"secret beside the home" not in receiver.uploads.values()
    assert receiver.uploads["x/a.txt"] == b"alpha"
    # sub/b.txt, listed before the swap, is read from the folder the shovel opened, or refused.
    assert receiver.uploads.get("x/sub/b.txt", b"the user's own b") == b"the user's own b"


def test_an_exported_file_whose_folder_became_a_link_is_refused_by_name(home: Path, outside: Path) -> None:
    (home / "project" / "sub").mkdir(parents=True)
    (home / "project" / "sub" / "b.txt").write_bytes(b"mine")
    (outside / "b.txt").write_bytes(b"secret beside the home")
    with HomeFolders(home) as folders:
        found = list(export.walk(folders, "project", cancelled=lambda: False))
    assert found == [("sub/b.txt", "project/sub/b.txt")]
    swap_for_link(home / "project" / "sub", outside)
    with HomeFolders(home) as folders:
        with (
            pytest.raises(PlacementError, match="'sub' is a symbolic link"),
            export._open_file(folders, "project/sub/b.txt"),
        ):
            pass
        # Walked again, the link that leads out is skipped.
        walked = list(export.walk(folders, "project", cancelled=lambda: False))
    assert walked == [("sub.moved/b.txt", "project/sub.moved/b.txt")]
    assert files_below(outside) == {"b.txt": b"secret beside the home"}
