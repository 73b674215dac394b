"""Staging into the user's home: the platform writes a transfer's files into the home's hidden work
folder (``.workbench-partial/<transfer>.staged``), and the shovel checks each and places it with a
rename, never through a link and never a file whose bytes are not the ones staged."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from shared.adapters.objectstore.home import HomeStaging
from shared.core.datafolder import WORK_FOLDER, staged_folder, staged_name
from shared.core.errors import WorkbenchError
from shared.domain.messages import SyncCommand, SyncFile
from tests.test_shovel_batch import syncer

TRANSFER = "t-1"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home" / "alice"


@pytest.fixture
def staging(tmp_path: Path) -> HomeStaging:
    return HomeStaging(lambda user: tmp_path / "home" / user)


def stage(staging: HomeStaging, files: dict[str, bytes]) -> list[SyncFile]:
    """The files written as the platform writes them (small ones then the batch's barrier, a large
    one streamed), and the sync command's entries for them."""
    entries = []
    with staging.folder("alice", TRANSFER) as folder:
        small = []
        for path, data in files.items():
            name = staged_name(path)
            if len(data) <= 64 * 1024:
                folder.write(name, data)
                small.append(name)
            else:
                blob = folder.stream(
                    name, [data[i : i + 65536] for i in range(0, len(data), 65536)], size=len(data)
                )
                assert (blob.size, blob.sha256) == (len(data), hashlib.sha256(data).hexdigest())
            entries.append(
                SyncFile(path=path, size=len(data), sha256=hashlib.sha256(data).hexdigest(), staged=name)
            )
        assert folder.barrier(small) == {}
    return entries


def command(files: list[SyncFile]) -> SyncCommand:
    return SyncCommand(transfer_id=TRANSFER, user="alice", target="Clowder/Study", files=files)


def staged(home: Path, path: str) -> Path:
    return home / WORK_FOLDER / staged_folder(TRANSFER) / staged_name(path)


def test_a_staged_file_is_placed_by_a_rename_of_the_very_file_staged(
    home: Path, staging: HomeStaging
) -> None:
    files = {"a.txt": b"alpha\n", "deep/b.bin": os.urandom(300_000)}
    entries = stage(staging, files)
    inodes = {path: staged(home, path).stat().st_ino for path in files}

    with syncer(home) as placing:
        progress = placing.run(command(entries))

    assert sorted(progress.placed) == sorted(files) and progress.errors == []
    for path, data in files.items():
        placed = home / "Clowder" / "Study" / path
        assert placed.read_bytes() == data
        assert placed.stat().st_ino == inodes[path]  # the staged file itself: no copy was made
        assert not staged(home, path).exists()


def test_a_staged_file_changed_after_staging_is_refused(home: Path, staging: HomeStaging) -> None:
    [entry] = stage(staging, {"a.txt": b"alpha\n"})
    staged(home, "a.txt").write_bytes(b"omega\n")

    with syncer(home) as placing:
        progress = placing.run(command([entry]))

    assert progress.placed == []
    [problem] = progress.errors
    assert "checksum mismatch" in problem.error
    assert not (home / "Clowder" / "Study" / "a.txt").exists()


def test_a_staged_file_swapped_for_a_link_is_not_followed(
    tmp_path: Path, home: Path, staging: HomeStaging
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"alpha\n")  # the same bytes: only the link itself may refuse it
    [entry] = stage(staging, {"a.txt": b"alpha\n"})
    staged(home, "a.txt").unlink()
    staged(home, "a.txt").symlink_to(secret)

    with syncer(home) as placing:
        progress = placing.run(command([entry]))

    assert progress.placed == [] and len(progress.errors) == 1
    assert not (home / "Clowder" / "Study" / "a.txt").exists()
    assert secret.read_bytes() == b"alpha\n"


def test_a_command_done_again_after_its_renames_counts_the_files_placed_once(
    home: Path, staging: HomeStaging
) -> None:
    """A shovel that stopped after placing, before its ledger lines: the command comes again, finds the
    staged copies gone and each file in its place, and places nothing twice."""
    files = {"a.txt": b"alpha\n", "b.txt": b"beta\n"}
    entries = stage(staging, files)
    with syncer(home) as placing:
        placing.run(command(entries))
    for ledger in (home / WORK_FOLDER).glob("*.ledger"):
        ledger.write_bytes(b"")  # its lines lost

    with syncer(home) as placing:
        again = placing.run(command(entries))

    assert sorted(again.placed) == sorted(files) and again.errors == []
    assert sorted(path.name for path in (home / "Clowder" / "Study").iterdir()) == sorted(files)


def test_a_staged_copy_that_is_gone_and_not_in_place_fails_the_file(home: Path, staging: HomeStaging) -> None:
    [entry] = stage(staging, {"a.txt": b"alpha\n"})
    staged(home, "a.txt").unlink()

    with syncer(home) as placing:
        progress = placing.run(command([entry]))

    [problem] = progress.errors
    assert "staged copy is gone" in problem.error


def test_the_platform_stages_through_no_link_in_the_home(
    tmp_path: Path, home: Path, staging: HomeStaging
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    home.mkdir(parents=True)
    (home / WORK_FOLDER).symlink_to(elsewhere)

    with pytest.raises(WorkbenchError, match="cannot stage into"), staging.folder("alice", TRANSFER):
        pass

    assert list(elsewhere.iterdir()) == []


def test_removing_a_transfers_staging_folder_takes_what_is_left(home: Path, staging: HomeStaging) -> None:
    stage(staging, {"a.txt": b"alpha\n", "b.txt": b"beta\n"})

    staging.remove("alice", TRANSFER)

    assert not (home / WORK_FOLDER / staged_folder(TRANSFER)).exists()
    staging.remove("alice", TRANSFER)  # nothing left: nothing to do
