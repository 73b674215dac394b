"""Putting finished files into the user's home, relative to open folders: conflict names, atomic links
and the ledger."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from shared.core.datafolder import WORK_FOLDER
from shared.core.errors import InvalidInput
from shared.core.names import numbered
from shared.core.paths import safe_relative
from shovel.settings import ConflictPolicy

log = logging.getLogger(__name__)

PARTIAL_FOLDER = WORK_FOLDER
"""Downloads land here first: on the home's own volume, so that moving them into place is atomic."""
READ_SIZE = 1 << 20
MAX_CONFLICT_NAMES = 10_000

# Transfer ids name files of the partial folder; the platform makes them from UUIDs.
_TRANSFER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Serialises the exists-check and the rename where the volume has no hard links.
_rename_lock = threading.Lock()


class PlacementError(Exception):
    """One file cannot be placed, for good; the message names the file and the reason."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def check_transfer_id(transfer_id: str) -> str:
    if not _TRANSFER_ID.fullmatch(transfer_id):
        raise PlacementError(f"transfer id {transfer_id[:80]!r} is not a plain name")
    return transfer_id


def relative(path: str, *, field: str) -> str:
    """A clean relative path in the home, or ``PlacementError`` naming it (see ``shared.core.paths``)."""
    try:
        clean = safe_relative(path, field=field)
    except InvalidInput as error:
        raise PlacementError(error.message) from None
    if clean.split("/")[0] == PARTIAL_FOLDER:
        raise PlacementError(f"{field}: {path!r} is inside the shovel's own folder {PARTIAL_FOLDER}")
    return clean


def folder_in_home(path: str, *, field: str) -> str:
    """A folder of the home given in a command: "" (or ".") for the home itself, else as ``relative``."""
    return "" if path.strip() in ("", ".") else relative(path, field=field)


@dataclass(frozen=True)
class LedgerEntry:
    placed: str
    """Where the file went, relative to the home."""
    sha256: str | None
    size: int


class Ledger:
    """What one transfer has placed, so that a redelivered command places nothing twice.

    JSON lines ``{"path", "placed", "sha256", "size"}`` appended to ``<transfer_id>.ledger`` and
    fsynced before the command is acknowledged. The file is also an exclusive lock: two shovels of
    one user (their stacks share the home) never work on the same transfer at once.
    """

    def __init__(self, handle: int, entries: dict[str, LedgerEntry]) -> None:
        self._handle = handle
        self._entries = entries
        self._lock = threading.Lock()

    @classmethod
    @contextmanager
    def open(cls, path: Path, *, folder: int | None = None) -> Iterator[Ledger]:
        """The ledger at ``path``; with ``folder``, the file ``path.name`` in that open folder."""
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        if folder is None:
            handle = os.open(path, flags, 0o600)
        else:
            handle = os.open(path.name, flags, 0o600, dir_fd=folder)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            ledger = cls(handle, _entries(path, handle))
            yield ledger
            _read_before.keep(path, handle, ledger._entries)
        finally:
            os.close(handle)  # releases the lock

    def get(self, path: str) -> LedgerEntry | None:
        with self._lock:
            return self._entries.get(path)

    def placed(self) -> dict[str, str]:
        """Where each file went (in the home), by the path it was sent to."""
        with self._lock:
            return {path: entry.placed for path, entry in self._entries.items()}

    def record(self, path: str, entry: LedgerEntry) -> None:
        self.record_all([(path, entry)])

    def record_all(self, records: list[tuple[str, LedgerEntry]]) -> None:
        """Append the lines and make them durable (one fsync for all of them)."""
        if not records:
            return
        lines = "".join(
            json.dumps(
                {"path": path, "placed": entry.placed, "sha256": entry.sha256, "size": entry.size},
                ensure_ascii=False,
            )
            + "\n"
            for path, entry in records
        ).encode("utf-8")
        with self._lock:
            written = 0
            while written < len(lines):
                written += os.write(self._handle, lines[written:])
            os.fsync(self._handle)
            self._entries.update(records)


@dataclass
class _Read:
    """A ledger as it was when this shovel closed it: its file, size and entries, and its last bytes."""

    identity: tuple[int, int]
    size: int
    tail: bytes
    entries: dict[str, LedgerEntry]


class _ReadBefore:
    """The entries of the ledgers closed lately, so that opening one again reads only what was appended
    since (by this shovel's next command of the transfer, or another shovel of the user): a transfer
    of many small files is many commands, and reading its whole ledger for each of them grows with the
    square of its files. A ledger counts as the same file when its device, inode and the bytes before
    the remembered end are unchanged; anything else is read afresh."""

    LEDGERS = 64
    TAIL = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reads: dict[str, _Read] = {}

    def keep(self, path: Path, handle: int, entries: dict[str, LedgerEntry]) -> None:
        """Remember ``entries`` as all of the ledger (open and locked by the caller)."""
        info = os.fstat(handle)
        tail = os.pread(handle, self.TAIL, max(0, info.st_size - self.TAIL))
        read = _Read((info.st_dev, info.st_ino), info.st_size, tail, entries)
        with self._lock:
            self._reads.pop(str(path), None)
            self._reads[str(path)] = read
            while len(self._reads) > self.LEDGERS:
                del self._reads[next(iter(self._reads))]

    def take(self, path: Path, handle: int) -> tuple[dict[str, LedgerEntry], int]:
        """The remembered entries of the ledger (open and locked) and the offset to read on from."""
        with self._lock:
            read = self._reads.pop(str(path), None)
        if read is None:
            return {}, 0
        info = os.fstat(handle)
        if (
            (info.st_dev, info.st_ino) != read.identity
            or info.st_size < read.size
            or os.pread(handle, len(read.tail), read.size - len(read.tail)) != read.tail
        ):
            return {}, 0
        return read.entries, read.size


_read_before = _ReadBefore()


def _entries(path: Path, handle: int) -> dict[str, LedgerEntry]:
    entries, offset = _read_before.take(path, handle)
    return _read_entries(handle, entries, offset)


def _read_entries(
    handle: int, entries: dict[str, LedgerEntry] | None = None, offset: int = 0
) -> dict[str, LedgerEntry]:
    """The ledger's lines from ``offset`` on, added to ``entries``."""
    entries = {} if entries is None else entries
    chunks = []
    while chunk := os.pread(handle, READ_SIZE, offset):
        chunks.append(chunk)
        offset += len(chunk)
    for line in b"".join(chunks).splitlines():
        try:
            record = json.loads(line)
            entries[str(record["path"])] = LedgerEntry(
                placed=str(record["placed"]), sha256=record.get("sha256"), size=int(record["size"])
            )
        except (ValueError, KeyError, TypeError):
            # A crash while appending leaves a torn last line; that file is simply placed again.
            log.warning("skipping an unreadable line of a transfer ledger")
    return entries


def same_content(folder: int, name: str, work: int, partial: str, sha256: str | None) -> bool:
    """Whether ``name`` in ``folder`` already is what ``partial`` in ``work`` holds (a file placed
    before a crash, say)."""
    try:
        there = os.stat(name, dir_fd=folder, follow_symlinks=False)
        here = os.stat(partial, dir_fd=work, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(here.st_mode):
        return stat.S_ISLNK(there.st_mode) and os.readlink(name, dir_fd=folder) == os.readlink(
            partial, dir_fd=work
        )
    if not stat.S_ISREG(there.st_mode) or there.st_size != here.st_size:
        return False
    if there.st_ino == here.st_ino and there.st_dev == here.st_dev:
        return True
    existing = file_sha256(folder, name)
    return existing is not None and existing == (sha256 or file_sha256(work, partial))


def file_sha256(folder: int, name: str) -> str | None:
    """The sha256 of the regular file ``name`` in ``folder``; None where it is something else."""
    try:
        # Not through a link, and without waiting should a pipe have taken the file's place.
        handle = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENXIO):
            return None
        raise
    with open(handle, "rb", buffering=0) as reader:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            return None
        digest = hashlib.sha256()
        while chunk := reader.read(READ_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def place(
    work: int,
    partial: str,
    folder: int,
    name: str,
    *,
    policy: ConflictPolicy,
    sha256: str | None,
    durable: bool = True,
) -> str:
    """Move the finished ``partial`` (a file or a symbolic link in the open folder ``work``) to
    ``name`` in the open folder ``folder``; returns the name it got there.

    Both folders are descriptors, so a folder the user swaps for a symbolic link meanwhile cannot
    send the file elsewhere. Never replaces a different file unless the policy is ``overwrite``; an
    identical file already there counts as placed. A hard link makes the file appear at its final
    path complete or not at all, and fails when the name is taken, so no check-then-write race can
    lose a user's file. With ``durable`` false the caller makes the new name durable itself
    (``sync_folder``), say once for many files of one folder.
    """
    for number in range(MAX_CONFLICT_NAMES):
        candidate = name if number == 0 else numbered(name, number)
        if _link(work, partial, folder, candidate):
            discard(work, partial)
            if durable:
                sync_folder(folder)
            return candidate
        if same_content(folder, candidate, work, partial, sha256):
            discard(work, partial)
            return candidate
        if policy == "skip":
            discard(work, partial)
            raise PlacementError(f"{name!r} exists with other content and the conflict policy is skip")
        if policy == "overwrite":
            with suppress(FileNotFoundError):
                if stat.S_ISDIR(os.stat(candidate, dir_fd=folder, follow_symlinks=False).st_mode):
                    discard(work, partial)
                    raise PlacementError(f"{name!r} exists as a folder")
            os.replace(partial, candidate, src_dir_fd=work, dst_dir_fd=folder)
            if durable:
                sync_folder(folder)
            return candidate
    discard(work, partial)
    raise PlacementError(f"{name!r}: every one of {MAX_CONFLICT_NAMES} alternative names is taken")


def _link(work: int, partial: str, folder: int, candidate: str) -> bool:
    """Give ``partial`` the name ``candidate`` unless the name is taken; False when it is."""
    try:
        os.link(partial, candidate, src_dir_fd=work, dst_dir_fd=folder, follow_symlinks=False)
        return True
    except FileExistsError:
        return False
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
            raise
    # Volumes without hard links (some network filesystems): check and rename under a lock, which
    # guards against other threads of this shovel, the only writer apart from the user.
    with _rename_lock:
        try:
            os.stat(candidate, dir_fd=folder, follow_symlinks=False)
            return False
        except FileNotFoundError:
            pass
        os.rename(partial, candidate, src_dir_fd=work, dst_dir_fd=folder)
        return True


def discard(folder: int, name: str) -> None:
    """Remove ``name`` from the open folder ``folder``, if it is there."""
    with suppress(FileNotFoundError):
        os.unlink(name, dir_fd=folder)


def sync_folder(folder: int) -> None:
    """Make the new names in the open folder ``folder`` durable (before the command is acknowledged)."""
    with suppress(OSError):  # some filesystems cannot sync a folder; the ledger still has the record
        os.fsync(folder)
