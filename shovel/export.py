"""Carrying out an export command: upload every file below a folder of the home with a form-POST grant."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait
from contextlib import contextmanager
from typing import IO, BinaryIO, cast

import httpx

from events.types import ExportUploaded, FileProblem, UploadedFile
from shared.core.retry import Again, Attempt
from shared.domain.messages import ExportCommand
from shovel.folders import OPEN_FILE, HomeFolders
from shovel.placing import PARTIAL_FOLDER, PlacementError, folder_in_home
from shovel.sync import ATTEMPTS, CHUNK_SIZE, TIMEOUT, Retry, Stopping, retry_policy, stoppable_pause
from shovel.worker import CommandWorker

log = logging.getLogger(__name__)

REPLY_EXCERPT = 300


class _HashingReader:
    """The file httpx streams into the form: hashes what it hands out, and no more than the size it had.

    Reading stops at the size taken when the upload began, so the declared Content-Length holds
    even if the user's program appends to the file meanwhile. httpx rewinds it (``seek(0)``) before
    sending, which starts the hash afresh.
    """

    def __init__(self, handle: BinaryIO, size: int, cancelled: Callable[[], bool]) -> None:
        self.handle = handle
        self.size = size
        self.position = 0
        self.cancelled = cancelled
        self.digest = hashlib.sha256()

    def read(self, amount: int = -1) -> bytes:
        if self.cancelled():
            raise Stopping
        remaining = self.size - self.position
        if amount < 0 or amount > remaining:
            amount = remaining
        if amount <= 0:
            return b""
        data = self.handle.read(min(amount, CHUNK_SIZE))
        self.position += len(data)
        self.digest.update(data)
        return data

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.position, os.SEEK_END: self.size}[whence]
        self.position = max(0, min(base + offset, self.size))
        self.handle.seek(self.position)
        # Only a read from the very start gives the file's digest; httpx always reads that way.
        self.digest = hashlib.sha256()
        return self.position

    @property
    def complete(self) -> bool:
        return self.position == self.size


class Exporter(CommandWorker):
    """Uploads the files of export commands, ``settings.parallel`` at a time across commands."""

    def run(self, command: ExportCommand) -> ExportUploaded:
        with HomeFolders(self.settings.home) as folders:
            try:
                root = _root(folders, folder_in_home(command.folder, field="folder"))
            except PlacementError as error:
                return ExportUploaded(
                    export_id=command.export_id,
                    user=command.user,
                    errors=[FileProblem(path=command.folder, error=error.message)],
                )
            futures: list[Future[UploadedFile | FileProblem]] = [
                self.pool.submit(self._upload, command, folders, path, located)
                for path, located in walk(folders, root, cancelled=self.cancelled)
            ]
            wait(futures)
        results = [future.result() for future in futures]
        return ExportUploaded(
            export_id=command.export_id,
            user=command.user,
            files=[result for result in results if isinstance(result, UploadedFile)],
            errors=[result for result in results if isinstance(result, FileProblem)],
        )

    def _upload(
        self, command: ExportCommand, folders: HomeFolders, path: str, located: str
    ) -> UploadedFile | FileProblem:
        key = command.key_prefix + path

        def once(now: Attempt) -> UploadedFile | FileProblem:
            if self.cancelled():
                raise Stopping
            try:
                return self._post(command, folders, path, located, key)
            except PlacementError as error:
                log.warning("export %s: %r failed: %s", command.export_id, path, error.message)
                return FileProblem(path=path, error=error.message)
            except OSError as error:
                log.warning("export %s: %r failed: %s", command.export_id, path, error)
                return FileProblem(path=path, error=f"could not read it: {error.strerror or error}")
            except Retry as error:
                if now.last:
                    return FileProblem(path=path, error=f"the upload failed {ATTEMPTS} times, last: {error}")
                raise Again(str(error)) from None

        def retrying(number: int, again: Again) -> None:
            log.info("upload of %r failed (%s); trying again", path, again.reason)

        return retry_policy().run(once, retrying, sleep=stoppable_pause(self.pause, self.cancelled))

    def _post(
        self, command: ExportCommand, folders: HomeFolders, path: str, located: str, key: str
    ) -> UploadedFile:
        with _open_file(folders, located) as handle:
            size = os.fstat(handle.fileno()).st_size
            reader = _HashingReader(handle, size, self.cancelled)
            upload = (located.rpartition("/")[2], cast(IO[bytes], reader), "application/octet-stream")
            try:
                response = self.client.post(
                    command.upload_url,
                    data={**command.upload_fields, "key": key},
                    files={"file": upload},
                    timeout=TIMEOUT,
                )
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as error:
                raise PlacementError(f"the upload URL is unusable: {error}") from None
            except httpx.TransportError as error:
                raise Retry(f"{type(error).__name__}: {error}") from None
        status = response.status_code
        if status >= 500 or status == 429:
            raise Retry(f"HTTP {status}")
        if not 200 <= status < 300:
            raise PlacementError(
                f"the upload was refused: HTTP {status} {response.text[:REPLY_EXCERPT]}".strip()
            )
        if not reader.complete:
            raise Retry(f"the file shrank while it was sent ({reader.position} of {size} bytes)")
        log.info("export %s: uploaded %s (%d bytes) as %s", command.export_id, path, size, key)
        return UploadedFile(path=path, size=size, sha256=reader.digest.hexdigest(), key=key)


def _root(folders: HomeFolders, folder: str) -> str:
    """The export's folder as a path of real folders in the home (its links followed while they stay in it)."""
    root = folders.resolve(folder)
    if root.split("/")[0] == PARTIAL_FOLDER:
        raise PlacementError(f"folder {folder!r} leads into the shovel's own folder {PARTIAL_FOLDER}")
    with folders.folder(root):
        pass  # a folder, not a file
    return root


@contextmanager
def _open_file(folders: HomeFolders, located: str) -> Iterator[BinaryIO]:
    """The regular file at ``located`` (a path of real folders in the home), opened to read.

    Opened by name in its folder's descriptor and not through a link, so a folder or file swapped
    for a link since the walk found it cannot make the shovel read anything outside the home."""
    parent, _, name = located.rpartition("/")
    with folders.folder(parent) as folder:
        try:
            handle = os.open(name, OPEN_FILE, dir_fd=folder)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise PlacementError(f"{located!r} has become a symbolic link") from None
            raise
    with open(handle, "rb") as reader:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            raise PlacementError(f"{located!r} is no longer a regular file")
        yield reader  # O_NONBLOCK, which kept a pipe from holding up the open, changes nothing for a file


def walk(folders: HomeFolders, root: str, *, cancelled: Callable[[], bool]) -> Iterator[tuple[str, str]]:
    """Every regular file below ``root`` (a path of real folders in the home): its path relative to
    ``root``, and where it is in the home (a path of real folders, to open it by).

    Symbolic links are followed only where they stay in the home (``HomeFolders.resolve``); the
    shovel's partial folder, links that lead out, and pipes, sockets and devices (reading a pipe would
    wait for ever) are skipped. Each real folder is visited once, so link loops end.
    """
    seen: set[tuple[int, int]] = set()
    pending: list[tuple[str, str]] = [(root, "")]
    while pending:
        if cancelled():
            raise Stopping
        folder, prefix = pending.pop()
        try:
            with folders.folder(folder) as descriptor:
                info = os.fstat(descriptor)
                if (info.st_dev, info.st_ino) in seen:
                    continue
                seen.add((info.st_dev, info.st_ino))
                with os.scandir(descriptor) as entries:
                    found = sorted(
                        ((entry.name, entry.stat(follow_symlinks=False).st_mode) for entry in entries),
                        key=lambda item: item[0],
                    )
        except (PlacementError, OSError) as error:
            # Swapped for a link or removed since it was listed.
            log.info("export: skipping folder %r: %s", folder, getattr(error, "message", error))
            continue
        for name, mode in found:
            shown = prefix + name
            located = f"{folder}/{name}" if folder else name
            if stat.S_ISLNK(mode):
                try:
                    located = folders.resolve(located)
                    mode = _mode(folders, located)
                except PlacementError as error:
                    log.info("export: skipping %s: %s", shown, error.message)
                    continue
                except OSError:
                    continue  # removed meanwhile
            if located.split("/")[0] == PARTIAL_FOLDER:
                continue
            if stat.S_ISDIR(mode):
                pending.append((located, shown + "/"))
            elif stat.S_ISREG(mode):
                yield shown, located


def _mode(folders: HomeFolders, located: str) -> int:
    """The type and permissions of ``located`` (a path of real folders in the home, "" the home)."""
    parent, _, name = located.rpartition("/")
    if not name:
        return stat.S_IFDIR
    with folders.folder(parent) as folder:
        return os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode
