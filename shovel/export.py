"""Carrying out an export command: upload every file below a folder of the home with a form-POST grant."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait
from pathlib import Path
from typing import IO, BinaryIO, cast

import httpx

from events.types import ExportUploaded, FileProblem, UploadedFile
from shared.messages import ExportCommand
from shovel.placing import PARTIAL_FOLDER, PlacementError, folder_in_home, inside, real_home, relative
from shovel.sync import ATTEMPTS, CHUNK_SIZE, RETRY_SECONDS, TIMEOUT, Retry, Stopping
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
        home = real_home(self.settings.home)
        try:
            folder = "" if command.folder.strip() in ("", ".") else relative(command.folder, field="folder")
            root = folder_in_home(home, folder, create=False)
        except PlacementError as error:
            return ExportUploaded(
                export_id=command.export_id,
                user=command.user,
                errors=[FileProblem(path=command.folder, error=error.message)],
            )
        futures: list[Future[UploadedFile | FileProblem]] = [
            self.pool.submit(self._upload, command, path, file)
            for path, file in walk(root, home, cancelled=self.cancelled)
        ]
        wait(futures)
        results = [future.result() for future in futures]
        return ExportUploaded(
            export_id=command.export_id,
            user=command.user,
            files=[result for result in results if isinstance(result, UploadedFile)],
            errors=[result for result in results if isinstance(result, FileProblem)],
        )

    def _upload(self, command: ExportCommand, path: str, file: Path) -> UploadedFile | FileProblem:
        key = command.key_prefix + path
        for attempt in range(1, ATTEMPTS + 1):
            if self.cancelled():
                raise Stopping
            try:
                return self._post(command, path, file, key)
            except PlacementError as error:
                log.warning("export %s: %r failed: %s", command.export_id, path, error.message)
                return FileProblem(path=path, error=error.message)
            except OSError as error:
                log.warning("export %s: %r failed: %s", command.export_id, path, error)
                return FileProblem(path=path, error=f"could not read it: {error.strerror or error}")
            except Retry as error:
                if attempt == ATTEMPTS:
                    return FileProblem(path=path, error=f"the upload failed {ATTEMPTS} times, last: {error}")
                log.info("upload of %r failed (%s); trying again", path, error)
                self.pause(RETRY_SECONDS * attempt)
        raise AssertionError("unreachable")

    def _post(self, command: ExportCommand, path: str, file: Path, key: str) -> UploadedFile:
        with open(file, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            reader = _HashingReader(handle, size, self.cancelled)
            upload = (file.name, cast(IO[bytes], reader), "application/octet-stream")
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


def walk(root: Path, home: Path, *, cancelled: Callable[[], bool]) -> Iterator[tuple[str, Path]]:
    """Every regular file below ``root``: its path relative to ``root`` and a path to open it by.

    Symbolic links are followed only where they stay in the home; the shovel's partial folder,
    links that lead out, and pipes, sockets and devices (reading a pipe would wait for ever) are
    skipped. Each real folder is visited once, so link loops end.
    """
    partial = home / PARTIAL_FOLDER
    seen: set[tuple[int, int]] = set()
    pending: list[tuple[Path, str]] = [(root, "")]
    while pending:
        if cancelled():
            raise Stopping
        folder, prefix = pending.pop()
        info = os.stat(folder)
        if (info.st_dev, info.st_ino) in seen:
            continue
        seen.add((info.st_dev, info.st_ino))
        with os.scandir(folder) as entries:
            found = sorted(entries, key=lambda entry: entry.name)
        for entry in found:
            path = Path(entry.path)
            name = prefix + entry.name
            if entry.is_symlink():
                path = Path(os.path.realpath(path))
                if not inside(path, home):
                    log.info("export: skipping %s, a link that leads out of the home", name)
                    continue
            if inside(path, partial):
                continue
            try:
                mode = os.stat(path).st_mode
            except OSError:
                continue  # a dangling link, or removed meanwhile
            if stat.S_ISDIR(mode):
                pending.append((path, name + "/"))
            elif stat.S_ISREG(mode):
                yield name, path
