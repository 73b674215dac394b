"""New files written to be durable: large ones straight to disk (``O_DIRECT``) where the filesystem
allows it, others written back piece by piece as they grow; synced once at the end. Small files
(records, settings, messages) replaced whole or not at all: ``write_atomically``. Many small new files
written together and made durable by one barrier: ``write_unsynced``, then ``sync_batch``."""

from __future__ import annotations

import errno
import fcntl
import functools
import mmap
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

BLOCK_SIZE = 1 << 20
"""What a direct write sends at once (a multiple of every device's block size)."""
ALIGNMENT = 4096
"""Direct writes start and end at multiples of this (the last one is padded, then cut off)."""
DIRECT_FROM = 4 * BLOCK_SIZE
"""Files expected to be at least this large are written directly."""
WRITEBACK_BYTES = 8 << 20
"""How much a file written through the page cache grows before that part is written back."""
_SYNC_FILE_RANGE_WRITE = 2
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
"""How ``new_durable_file`` opens: a new file only, never through a symbolic link."""


def write_atomically(
    path: Path, data: bytes, *, mode: int = 0o600, prefix: str | None = None, suffix: str = ".partial"
) -> None:
    """Replace ``path`` (in an existing folder) by a file holding ``data``, whole or not at all.

    The bytes go to a hidden file of the same folder (``prefix``, by default ``.<name>.``, a random
    part and ``suffix``: a reader listing the folder's ``*.json`` or ``*.eml`` never sees it), are
    made durable, and the file is renamed over ``path``, so that a reader or a crash finds the old
    file or the new one, never a part. The file is made readable by its owner only and given
    ``mode`` before the bytes are written (never after, as a rename could already show it). On any
    failure the hidden file is removed."""
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}." if prefix is None else prefix, suffix=suffix
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def new_durable_file(folder: int, name: str, *, size: int | None = None) -> Iterator[DurableWriter]:
    """The file ``name`` made afresh in the open folder ``folder`` (one left there before, say by an
    earlier attempt, is removed; never through a link), written through the ``DurableWriter`` the
    block gets and made durable when the block ends without error. The file stays for the caller to
    rename or remove; ``size``: as for ``DurableWriter``."""
    with suppress(FileNotFoundError):
        os.unlink(name, dir_fd=folder)
    descriptor = os.open(name, NEW_FILE, 0o666, dir_fd=folder)
    output = DurableWriter(descriptor, size=size)
    try:
        yield output
        output.finish()
    finally:
        output.close()
        os.close(descriptor)


def write_unsynced(folder: int, name: str, data: bytes | memoryview) -> None:
    """The small file ``name`` made afresh in the open folder ``folder`` (as ``new_durable_file``
    does) holding ``data``, its writeback started but not waited for: one of a batch of files that
    ``sync_batch`` then makes durable together, before any of them is given its final name.

    An fsync per small file makes each wait for its own journal commit; written back meanwhile,
    the batch's files need only the commit or two that ``sync_batch`` waits for."""
    with suppress(FileNotFoundError):
        os.unlink(name, dir_fd=folder)
    descriptor = os.open(name, NEW_FILE, 0o666, dir_fd=folder)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
        start_writeback(descriptor, 0, len(data))
    finally:
        os.close(descriptor)


def sync_batch(folder: int, names: list[str]) -> dict[str, OSError]:
    """Make the files ``names`` of the open folder ``folder`` (written by ``write_unsynced``) and
    their names there durable: the batch's one barrier. Returns the files that could not be synced,
    with the error (the others are durable)."""
    failed: dict[str, OSError] = {}
    for name in names:
        try:
            # Reopened rather than kept open from the write: a batch may be larger than the
            # descriptors a process gets. An fsync through a read-only descriptor syncs the file,
            # and reports a failed writeback of it that nobody has been told of yet (Linux's errseq).
            descriptor = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        except OSError as error:
            failed[name] = error
    with suppress(OSError):  # some filesystems cannot sync a folder; the files themselves are synced
        os.fsync(folder)
    return failed


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """Linux's ``sync_file_range`` (which Python's ``os`` does not offer), or None elsewhere."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def start_writeback(descriptor: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing ``length`` bytes from ``offset`` to disk, without waiting.

    A file written in full and then fsynced makes the fsync write all of it at once; on ext4 that
    holds up other writers of the filesystem for as long (the journal commit waits for it). Written
    back as it grows, the data goes to disk while the rest still arrives, and the final fsync finds
    little left to do. Where the call is missing or refused, the final fsync simply does it all."""
    function = _sync_file_range()
    if function is not None:
        function(descriptor, offset, length, _SYNC_FILE_RANGE_WRITE)


def _set_direct(descriptor: int, direct: bool) -> bool:
    """Turn ``O_DIRECT`` on or off for an open file; False where the filesystem refuses it."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return False
    flags = fcntl.fcntl(descriptor, fcntl.F_GETFL)
    try:
        fcntl.fcntl(descriptor, fcntl.F_SETFL, (flags | flag) if direct else (flags & ~flag))
    except OSError:
        return False
    return True


class DurableWriter:
    """Writes a new file (an open descriptor at offset 0); ``finish`` makes it durable.

    Where ``size`` says the file will be large, the bytes go to disk directly (``O_DIRECT``) through
    an aligned block: no copy into the page cache and no writeback for the kernel to do later, which
    on a small machine leaves the processor to the hashing and the network. Elsewhere (small files,
    filesystems without direct I/O) the page cache is used and written back as the file grows."""

    def __init__(self, descriptor: int, *, size: int | None = None) -> None:
        self.descriptor = descriptor
        self.size = 0
        self._written = 0
        self._written_back = 0
        self._block: mmap.mmap | None = None
        self._view: memoryview | None = None
        self._filled = 0
        self._direct = False
        if size is not None and size >= DIRECT_FROM and _set_direct(descriptor, True):
            self._direct = True
        if size is None or size >= BLOCK_SIZE:
            self._block = mmap.mmap(-1, BLOCK_SIZE)  # page-aligned, as direct writes need
            self._view = memoryview(self._block)

    def write(self, data: bytes | memoryview) -> None:
        if self._view is None:
            self._write_out(memoryview(data))
            self.size += len(data)
            return
        data = memoryview(data)
        while data:
            count = min(BLOCK_SIZE - self._filled, len(data))
            self._view[self._filled : self._filled + count] = data[:count]
            data = data[count:]
            self._filled += count
            self.size += count
            if self._filled == BLOCK_SIZE:
                self._flush_block()

    def finish(self) -> None:
        """Write what is left and fsync; the file then holds exactly the bytes written."""
        if self._filled:
            assert self._view is not None
            length = self._filled
            if self._direct:
                padded = -(-length // ALIGNMENT) * ALIGNMENT
                self._view[length:padded] = bytes(padded - length)
                length = padded
            self._write_out(self._view[:length])
            self._filled = 0
        if self._written != self.size:
            os.ftruncate(self.descriptor, self.size)  # the padding of the last direct write
        os.fsync(self.descriptor)
        self.close()

    def close(self) -> None:
        """Let go of the block (``finish`` does so too); the descriptor stays the caller's."""
        if self._view is not None:
            self._view.release()
            self._view = None
        if self._block is not None:
            self._block.close()
            self._block = None

    def _flush_block(self) -> None:
        assert self._view is not None
        self._write_out(self._view[: self._filled])
        self._filled = 0

    def _write_out(self, data: memoryview) -> None:
        while data:
            try:
                count = os.write(self.descriptor, data)
            except OSError as error:
                if not (self._direct and error.errno == errno.EINVAL):
                    raise
                # The device wants other alignment than ours: go on through the page cache.
                self._direct = False
                _set_direct(self.descriptor, False)
                continue
            self._written += count
            data = data[count:]
        if not self._direct and self._written - self._written_back >= WRITEBACK_BYTES:
            start_writeback(self.descriptor, self._written_back, self._written - self._written_back)
            self._written_back = self._written
