"""Staging into the user's own volume, where the platform reaches it (the local and container runtimes).

A file fetched from Clowder is written into the transfer's folder of the home's hidden work folder
(``.workbench-partial/<transfer>.staged``), on the volume where it will be shown, so that the shovel
places it with a rename after checking it: no second copy, no download from the object store. The
work folder is mounted into no app. Every folder is opened by descriptor, one name at a time and never
through a symbolic link, so a home whose folders were swapped for links sends nothing elsewhere."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from shared.adapters.objectstore import Blob
from shared.core.datafolder import WORK_FOLDER, staged_folder
from shared.core.durable import new_durable_file, sync_batch, write_unsynced
from shared.core.errors import WorkbenchError

OPEN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class StagedFolder:
    """One transfer's staging folder of a home, open."""

    def __init__(self, descriptor: int, shown: str) -> None:
        self.descriptor = descriptor
        self.shown = shown

    def write(self, name: str, data: bytes) -> None:
        """A small file written afresh, not yet durable: ``barrier`` makes a batch of them so at once."""
        write_unsynced(self.descriptor, name, data)

    def stream(self, name: str, chunks: Iterable[bytes], *, size: int | None) -> Blob:
        """A file written afresh from ``chunks`` and made durable; its size and sha256."""
        digest = hashlib.sha256()
        with new_durable_file(self.descriptor, name, size=size) as output:
            for chunk in chunks:
                digest.update(chunk)
                output.write(chunk)
        return Blob(key=name, sha256=digest.hexdigest(), size=output.size)

    def barrier(self, names: list[str]) -> dict[str, OSError]:
        """The files ``names`` (written by ``write``) made durable; those that could not be, with why."""
        return sync_batch(self.descriptor, names)

    def discard(self, name: str) -> None:
        with suppress(FileNotFoundError):
            os.unlink(name, dir_fd=self.descriptor)


class HomeStaging:
    """The staging folders of the users' homes (``home_for(user)``: the home's folder on this machine)."""

    def __init__(self, home_for: Callable[[str], Path]) -> None:
        self.home_for = home_for

    @contextmanager
    def folder(self, user: str, transfer_id: str) -> Iterator[StagedFolder]:
        """The transfer's staging folder, made where missing; ``WorkbenchError`` where the home's
        folders cannot be opened as real folders."""
        home = self.home_for(user)
        shown = f"{WORK_FOLDER}/{staged_folder(transfer_id)}"
        try:
            home.mkdir(parents=True, exist_ok=True)
            descriptor = _open_path(os.open(home, OPEN_FOLDER), [WORK_FOLDER, staged_folder(transfer_id)])
        except OSError as error:
            raise WorkbenchError(
                f"cannot stage into {shown!r} of {user}'s home: {error.strerror or error}"
            ) from None
        try:
            yield StagedFolder(descriptor, shown)
        finally:
            os.close(descriptor)

    def remove(self, user: str, transfer_id: str) -> None:
        """The transfer's staging folder and what is left in it, where there is one (best effort)."""
        with suppress(OSError):
            home = os.open(self.home_for(user), OPEN_FOLDER)
            try:
                work = os.open(WORK_FOLDER, OPEN_FOLDER, dir_fd=home)
            finally:
                os.close(home)
            try:
                name = staged_folder(transfer_id)
                staged = os.open(name, OPEN_FOLDER, dir_fd=work)
                try:
                    for entry in os.listdir(staged):
                        with suppress(OSError):
                            os.unlink(entry, dir_fd=staged)
                finally:
                    os.close(staged)
                os.rmdir(name, dir_fd=work)
            finally:
                os.close(work)


def _open_path(parent: int, names: list[str]) -> int:
    """The folder ``names`` below the open folder ``parent`` (which is closed), each made where missing
    and opened without following a link."""
    try:
        for name in names:
            with suppress(FileExistsError):
                os.mkdir(name, 0o700, dir_fd=parent)
            child = os.open(name, OPEN_FOLDER, dir_fd=parent)
            os.close(parent)
            parent = child
    except BaseException:
        os.close(parent)
        raise
    return parent
