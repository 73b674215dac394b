"""Carrying out a sync command: fetch or link each file, verify it, then move it into the home atomically."""

from __future__ import annotations

import hashlib
import http.client
import itertools
import logging
import os
import re
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, wait
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from events.types import FileProblem, TransferProgress
from shared.adapters.objectstore import blob_key
from shared.core.datafolder import staged_folder
from shared.core.durable import new_durable_file, sync_batch, write_unsynced
from shared.core.http import BodyBroken, Pools
from shared.core.paths import MAX_PATH_BYTES, has_control
from shared.core.retry import Again, Attempt, Policy
from shared.domain.messages import SyncCommand, SyncFile
from shovel.folders import OPEN_FILE, HomeFolders, open_folder
from shovel.placing import (
    PARTIAL_FOLDER,
    Ledger,
    LedgerEntry,
    PlacementError,
    check_transfer_id,
    discard,
    folder_in_home,
    place,
    relative,
    sync_folder,
)
from shovel.settings import ShovelSettings
from shovel.worker import CommandWorker

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
DOWNLOAD_BUFFER = 1 << 20
ATTEMPTS = 3
RETRY_SECONDS = 1.0
TIMEOUT = httpx.Timeout(60.0, connect=10.0)


class Stopping(Exception):
    """The shovel is stopping: the command goes back to the queue and resumes later, from its ledger."""


class Retry(Exception):
    """A failure that may pass (a dropped connection, a 5xx answer): try the file again."""


def retry_policy() -> Policy:
    """A file's download or upload: ``ATTEMPTS`` attempts, ``RETRY_SECONDS * n`` before repeat ``n``
    (read at each call, so that tests can shorten it)."""
    return Policy(retries=ATTEMPTS - 1, backoff=RETRY_SECONDS, linear=True, jitter=False)


def stoppable_pause(
    pause: Callable[[float], object], cancelled: Callable[[], bool]
) -> Callable[[float], None]:
    """The wait between a file's attempts: cut short by the shovel's stop, which then ends the retries
    with ``Stopping`` (the command goes back to the queue)."""

    def wait(seconds: float) -> None:
        pause(seconds)
        if cancelled():
            raise Stopping

    return wait


@dataclass(frozen=True)
class FileOutcome:
    path: str
    placed: bool
    size: int = 0
    error: str | None = None
    record: tuple[str, LedgerEntry] | None = None
    """For a file placed now: its ledger line (path in the home, entry), written once its folder is synced."""
    folder: str | None = None
    """The folder (in the home) that got a new name, made durable before the command is acknowledged."""
    written: _Written | None = None
    """For a file that came in the command: written and verified, not yet durable nor placed."""


@dataclass(frozen=True)
class _Written:
    """A file of the command's own bytes in the work folder, verified, waiting for the batch's barrier."""

    joined: str
    """Its path in the home."""
    partial: str
    sha256: str
    folder: int | None = None
    """The open folder it is in: the transfer's staging folder, where the platform wrote it and made it
    durable; None for the work folder (made durable by the command's barrier)."""


@dataclass
class _OpenTransfer:
    """One transfer's ledger and work folder, shared by the commands of it that run at once here."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0
    ledger: Ledger | None = None
    partial: int = -1
    """The open partial folder, which holds the ledger and the work folder."""
    work: int = -1
    """The open work folder, where the transfer's files are written before they are placed."""
    close: Callable[[], None] | None = None
    numbers: Iterator[int] = field(default_factory=itertools.count)
    """Names of the partial files: unique while the transfer is open here."""


class _OpenTransfers:
    """The transfers this shovel works on now. The first command of a transfer opens (and locks) its
    ledger, the last one to finish closes it, so several commands of one transfer proceed together
    while another shovel of the user still never works on the same transfer at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, _OpenTransfer] = {}

    @contextmanager
    def use(self, folders: HomeFolders, transfer_id: str) -> Iterator[tuple[Ledger, int, Iterator[int]]]:
        """The transfer's ledger, its open work folder and the numbers of its partial files."""
        with self._lock:
            entry = self._open.setdefault(transfer_id, _OpenTransfer())
            entry.users += 1
        try:
            with entry.lock:
                if entry.ledger is None:
                    with ExitStack() as stack:
                        # Descriptors of its own: the commands sharing them may outlive this one's folders.
                        partial = folders.open_partial()
                        stack.callback(os.close, partial)
                        ledger = stack.enter_context(
                            Ledger.open(
                                folders.home / PARTIAL_FOLDER / f"{transfer_id}.ledger", folder=partial
                            )
                        )
                        work = open_folder(
                            partial, transfer_id, create=True, shown=f"{PARTIAL_FOLDER}/{transfer_id}"
                        )
                        stack.callback(os.close, work)
                        # Holding the lock, nobody else works on this transfer: what the folder holds
                        # was left by a shovel that crashed.
                        _empty(work)
                        entry.ledger, entry.partial, entry.work = ledger, partial, work
                        entry.close = stack.pop_all().close
            yield entry.ledger, entry.work, entry.numbers
        finally:
            with self._lock:
                entry.users -= 1
                last = entry.users == 0
                if last:
                    del self._open[transfer_id]
            if last and entry.close is not None:
                with entry.lock:
                    # Removed under the ledger's lock: a command of the same transfer waiting for the
                    # lock (here or in another shovel) then makes the folder afresh.
                    with suppress(OSError):
                        os.rmdir(transfer_id, dir_fd=entry.partial)
                    entry.close()


def _empty(folder: int) -> None:
    """Remove the files (not folders) left in the open folder ``folder``."""
    with os.scandir(folder) as entries:
        leftovers = [entry.name for entry in entries if not entry.is_dir(follow_symlinks=False)]
    for name in leftovers:
        discard(folder, name)


class Syncer(CommandWorker):
    """Places the files of sync commands in parallel, ``settings.parallel`` at a time across commands
    (commands of one transfer too: they share its ledger)."""

    def __init__(
        self,
        settings: ShovelSettings,
        *,
        client: httpx.Client,
        pool: Executor,
        cancelled: Callable[[], bool],
        pause: Callable[[float], object],
        direct: bool = True,
    ) -> None:
        """``direct``: downloads over connections of its own (``Downloads``); False where they must go
        through ``client`` (e.g. its proxies)."""
        super().__init__(settings, client=client, pool=pool, cancelled=cancelled, pause=pause)
        self._transfers = _OpenTransfers()
        self._downloads = Downloads() if direct else None

    def close(self) -> None:
        """Close the direct downloads' kept connections, once no file is placed any more."""
        if self._downloads is not None:
            self._downloads.close()

    def run(self, command: SyncCommand) -> TransferProgress:
        """Place every file, or fail it for good; ``Stopping`` when the shovel stops first."""
        transfer_id = check_transfer_id(command.transfer_id)
        try:
            target = folder_in_home(command.target, field="target")
        except PlacementError as error:
            problem = f"the target folder is refused: {error.message}"
            return self._progress(
                command, [FileOutcome(file.path, False, error=problem) for file in command.files]
            )
        with ExitStack() as stack:
            folders = stack.enter_context(HomeFolders(self.settings.home))
            try:
                ledger, work, numbers = stack.enter_context(self._transfers.use(folders, transfer_id))
            except PlacementError as error:
                return self._progress(
                    command, [FileOutcome(file.path, False, error=error.message) for file in command.files]
                )
            staged = _open_staged(folders, transfer_id, stack) if _any_staged(command) else None
            futures: list[Future[FileOutcome]] = [
                self.pool.submit(
                    self._place_one, command, folders, target, work, ledger, next(numbers), file, staged
                )
                for file in command.files
            ]
            # Every file finishes (or stops) before the command is settled, so nothing writes on behind it.
            wait(futures)
            outcomes = _results(futures, work)
            # The files that came in the command: one barrier makes them all durable in the work
            # folder, and only then do they get their names in the home.
            outcomes = self._place_written(command, folders, work, outcomes)
            # The files placed from the command's own bytes, durable before it is acknowledged: first
            # the new names, then the ledger lines that say where they are (a redelivery trusts them).
            for placed_in in {outcome.folder for outcome in outcomes if outcome.folder is not None}:
                with suppress(PlacementError), folders.folder(placed_in) as folder:
                    sync_folder(folder)
            ledger.record_all([outcome.record for outcome in outcomes if outcome.record is not None])
        progress = self._progress(command, outcomes)
        log.info(
            "transfer %s: placed %d files (%d bytes), %d failed",
            command.transfer_id,
            len(progress.placed),
            progress.bytes_placed,
            len(progress.errors),
        )
        return progress

    def _place_written(
        self, command: SyncCommand, folders: HomeFolders, work: int, outcomes: list[FileOutcome]
    ) -> list[FileOutcome]:
        """The outcomes with each written file synced (all at once) and placed, or failed."""
        written = [outcome.written for outcome in outcomes if outcome.written is not None]
        if not written:
            return outcomes
        unsynced = sync_batch(work, [file.partial for file in written if file.folder is None])
        return [
            outcome
            if outcome.written is None
            else self._place_synced(command, folders, work, outcome, unsynced.get(outcome.written.partial))
            for outcome in outcomes
        ]

    def _place_synced(
        self,
        command: SyncCommand,
        folders: HomeFolders,
        work: int,
        outcome: FileOutcome,
        unsynced: OSError | None,
    ) -> FileOutcome:
        """A written file, durable in the work folder, moved to its place; its folder and ledger line
        are made durable with the rest of the command's."""
        assert outcome.written is not None
        file = outcome.written
        source = work if file.folder is None else file.folder
        parent, _, name = file.joined.rpartition("/")
        try:
            if unsynced is not None:
                raise unsynced
            with folders.folder(parent, create=True) as folder:
                final = place(
                    source,
                    file.partial,
                    folder,
                    name,
                    policy=self.settings.conflict_policy,
                    sha256=file.sha256,
                    durable=False,
                )
        except PlacementError as error:
            discard(source, file.partial)
            log.warning("transfer %s: %r failed: %s", command.transfer_id, outcome.path, error.message)
            return FileOutcome(outcome.path, False, error=error.message)
        except OSError as error:
            discard(source, file.partial)
            log.warning("transfer %s: %r failed: %s", command.transfer_id, outcome.path, error)
            return FileOutcome(outcome.path, False, error=f"could not write it: {error.strerror or error}")
        except BaseException:
            if file.folder is None:  # a staged file stays staged: the command is done again
                discard(work, file.partial)
            raise
        placed = f"{parent}/{final}" if parent else final
        log.debug("transfer %s: placed %s (%d bytes)", command.transfer_id, placed, outcome.size)
        entry = LedgerEntry(placed=placed, sha256=file.sha256, size=outcome.size)
        return FileOutcome(outcome.path, True, outcome.size, record=(file.joined, entry), folder=parent)

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
        self,
        command: SyncCommand,
        folders: HomeFolders,
        target: str,
        work: int,
        ledger: Ledger,
        number: int,
        file: SyncFile,
        staged: int | None = None,
    ) -> FileOutcome:
        """One file into the home, written first to ``work`` (the transfer's open work folder), or
        found in ``staged`` (the transfer's open staging folder) where the platform wrote it."""
        if self.cancelled():
            raise Stopping
        partial = f"{number}.part"
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
            if file.staged is not None:
                # Placed with the command's other files of the batch (``run``), by a rename.
                return self._take_staged(file, joined, folders, staged)
            if file.content is not None:
                # Placed, with the command's other such files, after the batch's barrier (``run``).
                digest = _write_content(file, file.content, work, partial)
                return FileOutcome(file.path, False, file.size, written=_Written(joined, partial, digest))
            parent, _, name = joined.rpartition("/")
            # Opened before the file is fetched, and placed into by this descriptor afterwards: what
            # becomes of the path meanwhile (a folder swapped for a link) cannot redirect the file.
            with folders.folder(parent, create=True) as folder:
                if file.source is not None:
                    sha256 = self._link_in(file, work, partial, symlink=command.link == "symlink")
                elif file.url is not None:
                    sha256 = self._download(file, work, partial)
                else:
                    raise PlacementError("the command gives neither a url nor a source for it")
                # Recorded at once, so that a redelivery after a crash does not fetch it again.
                final = place(
                    work, partial, folder, name, policy=self.settings.conflict_policy, sha256=sha256
                )
            placed = f"{parent}/{final}" if parent else final
            log.debug("transfer %s: placed %s (%d bytes)", command.transfer_id, placed, file.size)
            ledger.record(joined, LedgerEntry(placed=placed, sha256=sha256, size=file.size))
            return FileOutcome(file.path, True, file.size)
        except PlacementError as error:
            discard(work, partial)
            log.warning("transfer %s: %r failed: %s", command.transfer_id, file.path, error.message)
            return FileOutcome(file.path, False, error=error.message)
        except OSError as error:
            # A full or read-only volume fails the file; sending the command round again would not help.
            discard(work, partial)
            log.warning("transfer %s: %r failed: %s", command.transfer_id, file.path, error)
            return FileOutcome(file.path, False, error=f"could not write it: {error.strerror or error}")
        except BaseException:
            discard(work, partial)
            raise

    def _take_staged(
        self, file: SyncFile, joined: str, folders: HomeFolders, staged: int | None
    ) -> FileOutcome:
        """A file the platform wrote into the transfer's staging folder of the home, checked (size and
        sha256) and left there to be renamed into place; where it is gone, it counts as placed if the
        home holds it already (placed by a shovel that stopped before its ledger line), else as failed."""
        assert file.staged is not None
        name = file.staged
        if not _SHA256.fullmatch(name):
            raise PlacementError(f"its staged name {name[:80]!r} is not one the platform gives")
        handle = None
        if staged is not None:
            with suppress(FileNotFoundError):
                handle = os.open(name, OPEN_FILE, dir_fd=staged)
        if handle is None:
            if _holds(folders, joined, file):
                return FileOutcome(file.path, True, file.size)
            raise PlacementError("its staged copy is gone from the home's staging folder")
        try:
            if not stat.S_ISREG(os.fstat(handle).st_mode):
                raise PlacementError(f"its staged copy {name!r} is not a regular file")
            size, sha256 = _hashed(handle, file.size)
        finally:
            os.close(handle)
        digest = _verified(file, size, sha256)
        return FileOutcome(file.path, False, file.size, written=_Written(joined, name, digest, folder=staged))

    def _download(self, file: SyncFile, work: int, partial: str) -> str:
        assert file.url is not None
        volume = os.fstatvfs(work)
        free = volume.f_bavail * volume.f_frsize
        if file.size > free:
            raise PlacementError(f"needs {file.size} bytes; the volume has {free} free")
        copied = self._copy_staged(file, work, partial)
        if copied is not None:
            return copied
        url = file.url

        def once(now: Attempt) -> str:
            try:
                return self._fetch(url, file, work, partial)
            except Retry as error:
                if now.last:
                    raise PlacementError(f"the download failed {ATTEMPTS} times, last: {error}") from None
                raise Again(str(error)) from None

        def retrying(number: int, again: Again) -> None:
            log.info("download of %r failed (%s); trying again", file.path, again.reason)

        return retry_policy().run(once, retrying, sleep=stoppable_pause(self.pause, self.cancelled))

    def _fetch(self, url: str, file: SyncFile, work: int, partial: str) -> str:
        digest = hashlib.sha256()
        with new_durable_file(work, partial, size=file.size) as output:

            def receive(chunk: bytes | memoryview) -> None:
                if self.cancelled():
                    raise Stopping
                if output.size + len(chunk) > file.size:
                    raise PlacementError(f"the download is larger than the {file.size} bytes expected")
                digest.update(chunk)
                output.write(chunk)

            if self._downloads is not None:
                self._downloads.get(url, receive)
            else:
                self._get_with_client(url, receive)
        return _verified(file, output.size, digest.hexdigest())

    def _copy_staged(self, file: SyncFile, work: int, partial: str) -> str | None:
        """The file copied from the mounted staging folder, where its blob is (checked like a download:
        size and sha256); None where there is no such folder or blob, and the file is downloaded."""
        staging = self.settings.staging_dir
        if staging is None or file.sha256 is None or not _SHA256.fullmatch(file.sha256.lower()):
            return None
        source = staging / blob_key(file.sha256.lower())
        try:
            # Not through a symbolic link: the staging folder holds the platform's own files only.
            handle = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(handle).st_mode):
                return None
            return self._copy_verified(handle, file, work, partial, str(source))
        finally:
            os.close(handle)

    def _copy_verified(self, source: int, file: SyncFile, work: int, partial: str, name: str) -> str:
        """The open file ``source`` copied to ``partial`` in ``work`` (made durable), its size and
        sha256 checked."""
        digest = hashlib.sha256()
        buffer = bytearray(min(CHUNK_SIZE, file.size + 1))  # one byte more shows a longer source
        view = memoryview(buffer)
        copied = 0
        with (
            new_durable_file(work, partial, size=file.size) as output,
            open(source, "rb", buffering=0, closefd=False) as reader,
        ):
            while count := reader.readinto(buffer):
                if self.cancelled():
                    raise Stopping
                copied += count
                if copied > file.size:
                    raise PlacementError(f"source {name!r} holds more than the {file.size} bytes expected")
                digest.update(view[:count])
                output.write(view[:count])
        return _verified(file, copied, digest.hexdigest())

    def _get_with_client(self, url: str, receive: Callable[[bytes], None]) -> None:
        """The download through the shovel's HTTP client (which takes its proxies from the environment)."""
        try:
            with self.client.stream("GET", url, timeout=TIMEOUT) as response:
                _check_status(response.status_code)
                for chunk in response.iter_bytes():
                    receive(chunk)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as error:
            raise PlacementError(f"the download URL is unusable: {error}") from None
        except httpx.TransportError as error:
            raise Retry(f"{type(error).__name__}: {error}") from None

    def _link_in(self, file: SyncFile, work: int, partial: str, *, symlink: bool) -> str | None:
        """Link mode: a copy of (or a symbolic link to) a file on storage mounted below a link root."""
        assert file.source is not None
        source = self._linked_source(file.source)
        size = os.stat(source).st_size
        if size != file.size:
            raise PlacementError(f"source {file.source!r} has {size} bytes where {file.size} were expected")
        if symlink:
            discard(work, partial)
            os.symlink(source, partial, dir_fd=work)
            return None
        handle = os.open(source, os.O_RDONLY)
        try:
            return self._copy_verified(handle, file, work, partial, file.source)
        finally:
            os.close(handle)

    def _linked_source(self, source: str) -> Path:
        roots = self.settings.link_roots
        if not roots:
            raise PlacementError(f"source {source!r}: link mode is not set up on this shovel (no link roots)")
        if not os.path.isabs(source) or has_control(source):
            raise PlacementError(f"source {source!r} is not a plain absolute path")
        # The real path, so that a symbolic link below a root cannot lead anywhere else.
        real = Path(os.path.realpath(source))
        if not any(real.is_relative_to(root) for root in roots):
            raise PlacementError(f"source {source!r} lies outside the link roots")
        if not real.is_file():
            raise PlacementError(f"source {source!r} is not a file")
        return real


def _check_status(status: int) -> None:
    if status >= 500 or status == 429:
        raise Retry(f"HTTP {status}")
    if not 200 <= status < 300:
        raise PlacementError(f"the download was refused: HTTP {status}")


class Downloads:
    """GETs of pre-signed URLs over kept-alive connections (``shared.core.http``: one per host and
    thread, as each thread has pools of its own), each body read straight into a reused buffer. For a
    large file the HTTP client's parsing of every piece that arrives, not the bytes themselves, would
    otherwise take most of the shovel's time."""

    def __init__(self, *, connect_timeout: float = 10.0, read_timeout: float = 60.0) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._every_pools: list[Pools] = []
        """Each thread's pools, so that ``close`` reaches the connections of every thread."""

    def get(self, url: str, receive: Callable[[memoryview], None]) -> None:
        """The body of ``url`` handed to ``receive`` piece by piece (each piece valid during the call)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PlacementError(
                f"the download URL is unusable: scheme {parts.scheme!r}, host {parts.hostname!r}"
            )
        pools: Pools = self._thread_state("pools", self._pools)
        buffer: memoryview = self._thread_state("buffer", lambda: memoryview(bytearray(DOWNLOAD_BUFFER)))
        try:
            with pools.request("GET", url, headers={"Accept-Encoding": "identity"}) as response:
                _check_status(response.status)
                while count := response.readinto(buffer):
                    receive(buffer[:count])
        except (OSError, http.client.HTTPException, BodyBroken) as error:
            raise Retry(f"{type(error).__name__}: {error}") from None

    def close(self) -> None:
        """Close the kept connections of every thread."""
        with self._lock:
            every, self._every_pools = self._every_pools, []
        for pools in every:
            pools.close()

    def _pools(self) -> Pools:
        # One idle connection per host: a thread downloads one file at a time.
        pools = Pools(timeout=self.connect_timeout, read_timeout=self.read_timeout, max_idle=1)
        with self._lock:
            self._every_pools.append(pools)
        return pools

    def _thread_state(self, name: str, make: Callable[[], Any]) -> Any:
        value = getattr(self._local, name, None)
        if value is None:
            value = make()
            setattr(self._local, name, value)
        return value


def _any_staged(command: SyncCommand) -> bool:
    return any(file.staged is not None for file in command.files)


def _open_staged(folders: HomeFolders, transfer_id: str, stack: ExitStack) -> int | None:
    """The transfer's staging folder, open until ``stack`` closes; None where it is missing (each of
    its files is then looked for in its place, or fails)."""
    partial = folders.open_partial()
    try:
        staged = open_folder(partial, staged_folder(transfer_id))
    except PlacementError:
        return None
    finally:
        os.close(partial)
    stack.callback(os.close, staged)
    return staged


def _hashed(handle: int, expected: int) -> tuple[int, str]:
    """The size and sha256 of the open file ``handle``, read to its end, or to one byte beyond
    ``expected`` (which shows a longer file without reading it all)."""
    digest = hashlib.sha256()
    size = 0
    while size <= expected:
        chunk = os.read(handle, min(CHUNK_SIZE, expected + 1 - size))
        if not chunk:
            break
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def _holds(folders: HomeFolders, joined: str, file: SyncFile) -> bool:
    """Whether ``joined`` in the home is a regular file with ``file``'s size and sha256."""
    parent, _, name = joined.rpartition("/")
    try:
        with folders.folder(parent) as folder:
            handle = os.open(name, OPEN_FILE, dir_fd=folder)
    except (OSError, PlacementError):
        return False
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            return False
        size, sha256 = _hashed(handle, file.size)
    finally:
        os.close(handle)
    return size == file.size and file.sha256 is not None and sha256 == file.sha256.lower()


def _results(futures: list[Future[FileOutcome]], work: int) -> list[FileOutcome]:
    """The files' outcomes; where one stopped (or broke), the files written for the batch's barrier
    are removed before that goes on up (the command is done again from its ledger)."""
    try:
        return [future.result() for future in futures]
    except BaseException:
        for future in futures:
            written = future.result().written if future.exception() is None else None
            if written is not None and written.folder is None:  # a staged file stays for the redelivery
                discard(work, written.partial)
        raise


def _write_content(file: SyncFile, content: bytes, work: int, partial: str) -> str:
    """A file that came inside the command: checked first, then written, not yet durable: the
    command's barrier (``sync_batch``) makes it so, with the command's other such files."""
    sha256 = _verified(file, len(content), hashlib.sha256(content).hexdigest())
    write_unsynced(work, partial, content)
    return sha256


def _verified(file: SyncFile, size: int, sha256: str) -> str:
    if size != file.size:
        raise PlacementError(f"size mismatch: expected {file.size} bytes, got {size}")
    if file.sha256 is not None and sha256 != file.sha256.lower():
        raise PlacementError(f"checksum mismatch: expected sha256 {file.sha256}, got {sha256}")
    return sha256
