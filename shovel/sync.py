"""Carrying out a sync command: fetch or link each file, verify it, then move it into the home atomically."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from concurrent.futures import Future, wait
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from events.types import FileProblem, TransferProgress
from shared.messages import SyncCommand, SyncFile
from shared.paths import MAX_PATH_BYTES
from shovel.placing import (
    Ledger,
    LedgerEntry,
    PlacementError,
    check_transfer_id,
    discard,
    folder_in_home,
    inside,
    partial_folder,
    place,
    real_home,
    relative,
)
from shovel.worker import CommandWorker

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
ATTEMPTS = 3
RETRY_SECONDS = 1.0
TIMEOUT = httpx.Timeout(60.0, connect=10.0)


class Stopping(Exception):
    """The shovel is stopping: the command goes back to the queue and resumes later, from its ledger."""


class Retry(Exception):
    """A failure that may pass (a dropped connection, a 5xx answer): try the file again."""


@dataclass(frozen=True)
class FileOutcome:
    path: str
    placed: bool
    size: int = 0
    error: str | None = None


class Syncer(CommandWorker):
    """Places the files of sync commands in parallel, ``settings.parallel`` at a time across commands."""

    def run(self, command: SyncCommand) -> TransferProgress:
        """Place every file, or fail it for good; ``Stopping`` when the shovel stops first."""
        transfer_id = check_transfer_id(command.transfer_id)
        try:
            target = "" if command.target.strip() in ("", ".") else relative(command.target, field="target")
        except PlacementError as error:
            problem = f"the target folder is refused: {error.message}"
            return self._progress(
                command, [FileOutcome(file.path, False, error=problem) for file in command.files]
            )
        partial_root = partial_folder(self.settings.home)
        work = partial_root / transfer_id
        work.mkdir(exist_ok=True)
        with Ledger.open(partial_root / f"{transfer_id}.ledger") as ledger:
            futures: list[Future[FileOutcome]] = [
                self.pool.submit(self._place_one, command, target, work, ledger, number, file)
                for number, file in enumerate(command.files)
            ]
            # Every file finishes (or stops) before the command is settled, so nothing writes on behind it.
            wait(futures)
        outcomes = [future.result() for future in futures]
        # Fails while another command of this transfer still uses it; a later one removes it.
        with suppress(OSError):
            work.rmdir()
        return self._progress(command, outcomes)

    def _progress(self, command: SyncCommand, outcomes: list[FileOutcome]) -> TransferProgress:
        return TransferProgress(
            transfer_id=command.transfer_id,
            user=command.user,
            stack_id=self.settings.stack_id,
            placed=[outcome.path for outcome in outcomes if outcome.placed],
            bytes_placed=sum(outcome.size for outcome in outcomes if outcome.placed),
            errors=[
                FileProblem(path=outcome.path, error=outcome.error)
                for outcome in outcomes
                if outcome.error is not None
            ],
        )

    def _place_one(
        self, command: SyncCommand, target: str, work: Path, ledger: Ledger, number: int, file: SyncFile
    ) -> FileOutcome:
        if self.cancelled():
            raise Stopping
        partial = work / f"{number}.part"
        try:
            clean = relative(file.path, field="path")
            joined = f"{target}/{clean}" if target else clean
            if len(joined.encode()) > MAX_PATH_BYTES:
                raise PlacementError(
                    f"{file.path[:80]!r} in the target folder is longer than {MAX_PATH_BYTES} bytes"
                )
            known = ledger.get(joined)
            if known is not None:
                log.info(
                    "transfer %s: %s was placed before, at %s", command.transfer_id, joined, known.placed
                )
                return FileOutcome(file.path, True, known.size)
            parent, _, name = joined.rpartition("/")
            folder = folder_in_home(self.settings.home, parent, create=True)
            discard(partial)  # what a crash left behind
            if file.source is not None:
                sha256 = self._link_in(file, partial, symlink=command.link == "symlink")
            elif file.url is not None:
                sha256 = self._download(file, partial)
            else:
                raise PlacementError("the command gives neither a url nor a source for it")
            final = place(partial, folder, name, policy=self.settings.conflict_policy, sha256=sha256)
            home = real_home(self.settings.home)
            placed = final.relative_to(home).as_posix()
            ledger.record(joined, LedgerEntry(placed=placed, sha256=sha256, size=file.size))
            log.info("transfer %s: placed %s (%d bytes)", command.transfer_id, placed, file.size)
            return FileOutcome(file.path, True, file.size)
        except PlacementError as error:
            discard(partial)
            log.warning("transfer %s: %r failed: %s", command.transfer_id, file.path, error.message)
            return FileOutcome(file.path, False, error=error.message)
        except OSError as error:
            # A full or read-only volume fails the file; sending the command round again would not help.
            discard(partial)
            log.warning("transfer %s: %r failed: %s", command.transfer_id, file.path, error)
            return FileOutcome(file.path, False, error=f"could not write it: {error.strerror or error}")
        except BaseException:
            discard(partial)
            raise

    def _download(self, file: SyncFile, partial: Path) -> str:
        assert file.url is not None
        free = shutil.disk_usage(partial.parent).free
        if file.size > free:
            raise PlacementError(f"needs {file.size} bytes; the volume has {free} free")
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return self._fetch(file.url, file, partial)
            except Retry as error:
                if attempt == ATTEMPTS:
                    raise PlacementError(f"the download failed {ATTEMPTS} times, last: {error}") from None
                log.info("download of %r failed (%s); trying again", file.path, error)
                self.pause(RETRY_SECONDS * attempt)
                if self.cancelled():
                    raise Stopping from None
        raise AssertionError("unreachable")

    def _fetch(self, url: str, file: SyncFile, partial: Path) -> str:
        digest = hashlib.sha256()
        size = 0
        try:
            with self.client.stream("GET", url, timeout=TIMEOUT) as response:
                status = response.status_code
                if status >= 500 or status == 429:
                    raise Retry(f"HTTP {status}")
                if not 200 <= status < 300:
                    raise PlacementError(f"the download was refused: HTTP {status}")
                with open(partial, "wb") as output:
                    for chunk in response.iter_bytes(CHUNK_SIZE):
                        if self.cancelled():
                            raise Stopping
                        size += len(chunk)
                        if size > file.size:
                            raise PlacementError(
                                f"the download is larger than the {file.size} bytes expected"
                            )
                        digest.update(chunk)
                        output.write(chunk)
                    output.flush()
                    os.fsync(output.fileno())
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as error:
            raise PlacementError(f"the download URL is unusable: {error}") from None
        except httpx.TransportError as error:
            raise Retry(f"{type(error).__name__}: {error}") from None
        return _verified(file, size, digest.hexdigest())

    def _link_in(self, file: SyncFile, partial: Path, *, symlink: bool) -> str | None:
        """Link mode: a copy of (or a symbolic link to) a file on storage mounted below a link root."""
        assert file.source is not None
        source = self._linked_source(file.source)
        size = os.stat(source).st_size
        if size != file.size:
            raise PlacementError(f"source {file.source!r} has {size} bytes where {file.size} were expected")
        if symlink:
            os.symlink(source, partial)
            return None
        digest = hashlib.sha256()
        copied = 0
        with open(source, "rb") as reader, open(partial, "wb") as output:
            while chunk := reader.read(CHUNK_SIZE):
                if self.cancelled():
                    raise Stopping
                copied += len(chunk)
                if copied > file.size:
                    raise PlacementError(f"source {file.source!r} grew while it was copied")
                digest.update(chunk)
                output.write(chunk)
            output.flush()
            os.fsync(output.fileno())
        return _verified(file, copied, digest.hexdigest())

    def _linked_source(self, source: str) -> Path:
        roots = self.settings.link_roots
        if not roots:
            raise PlacementError(f"source {source!r}: link mode is not set up on this shovel (no link roots)")
        if not os.path.isabs(source) or any(
            ord(character) < 32 or ord(character) == 127 for character in source
        ):
            raise PlacementError(f"source {source!r} is not a plain absolute path")
        # The real path, so that a symbolic link below a root cannot lead anywhere else.
        real = Path(os.path.realpath(source))
        if not any(inside(real, root) for root in roots):
            raise PlacementError(f"source {source!r} lies outside the link roots")
        if not real.is_file():
            raise PlacementError(f"source {source!r} is not a file")
        return real


def _verified(file: SyncFile, size: int, sha256: str) -> str:
    if size != file.size:
        raise PlacementError(f"size mismatch: expected {file.size} bytes, got {size}")
    if file.sha256 is not None and sha256 != file.sha256.lower():
        raise PlacementError(f"checksum mismatch: expected sha256 {file.sha256}, got {sha256}")
    return sha256
