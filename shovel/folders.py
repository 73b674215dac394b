"""The home's folders opened by descriptor, one name at a time and never through a symbolic link."""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from shovel.placing import PARTIAL_FOLDER, PlacementError

OPEN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
"""A file of the home, to read: not through a link, and without waiting should it be a pipe."""
KEPT_OPEN = 64
"""Folders not in use that stay open for the next file of the same folder."""
ATTEMPTS = 5
"""Openings of one folder that is swapped or removed meanwhile before it counts as failed."""
MAX_LINKS = 40
"""Symbolic links followed in one path before it counts as a loop (Linux's own limit)."""


def open_folder(parent: int, name: str, *, create: bool = False, mode: int = 0o777, shown: str = "") -> int:
    """A new descriptor of the folder ``name`` in the open folder ``parent``, made first when missing
    and ``create`` is set; ``PlacementError`` where ``name`` is a symbolic link or not a folder.

    ``O_NOFOLLOW``: the kernel itself refuses a link at the moment of opening, so no check done
    earlier can be outrun by a folder swapped for a link. ``shown``: the path named in errors.
    """
    shown = shown or name
    for _ in range(ATTEMPTS):
        try:
            return os.open(name, OPEN_FOLDER, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise PlacementError(f"folder {shown!r} does not exist in the home") from None
            with suppress(FileExistsError):  # another file, or shovel, may have made it first
                os.mkdir(name, mode, dir_fd=parent)
        except OSError as error:
            # With O_NOFOLLOW a link fails the opening: ELOOP, or ENOTDIR along with O_DIRECTORY.
            if error.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                raise
            try:
                mode_now = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
            except FileNotFoundError:
                continue  # gone meanwhile: made again, or reported missing, on the next round
            if stat.S_ISLNK(mode_now):
                raise PlacementError(
                    f"folder {shown!r}: {name!r} is a symbolic link; the shovel goes only through real "
                    "folders of the home, never through a link (which could lead out of it)"
                ) from None
            if not stat.S_ISDIR(mode_now):
                raise PlacementError(f"folder {shown!r}: {name!r} exists and is not a folder") from None
            # A folder again by now (swapped back): opened on the next round, again without following.
    raise PlacementError(f"folder {shown!r} keeps changing while it is opened")


@dataclass
class _Open:
    descriptor: int
    users: int


class HomeFolders:
    """The home, and the folders below it that one command uses, each opened once.

    Each folder is opened relative to its parent's descriptor (``open_folder``), so that a folder
    the user swaps for a symbolic link meanwhile can never redirect the shovel: a descriptor already
    open still is the folder it was opened as, and a link met on opening is refused. Everything the
    shovel then makes, links, renames or removes is named relative to such a descriptor. Thread safe;
    up to ``KEPT_OPEN`` folders not in use stay open.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        # The home itself is the platform's mount point (or folder), not the user's: its path is trusted.
        self._home = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._real = os.path.realpath(home)
        self._lock = threading.Lock()
        self._open: OrderedDict[str, _Open] = OrderedDict()

    def __enter__(self) -> HomeFolders:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            for entry in self._open.values():
                os.close(entry.descriptor)
            self._open.clear()
            if self._home >= 0:
                os.close(self._home)
                self._home = -1

    @contextmanager
    def folder(self, relative: str, *, create: bool = False) -> Iterator[int]:
        """The descriptor of ``<home>/<relative>`` (a clean relative path, "" for the home), open
        inside the block; missing folders are made when ``create`` is set."""
        with self._lock:
            descriptor = self._acquire(relative, create)
        try:
            yield descriptor
        finally:
            with self._lock:
                self._release(relative)

    def open_partial(self) -> int:
        """A new descriptor (the caller closes it) of the shovel's partial folder, made when missing."""
        with self._lock:
            with suppress(FileExistsError):
                os.mkdir(PARTIAL_FOLDER, 0o700, dir_fd=self._home)
            try:
                return open_folder(self._home, PARTIAL_FOLDER)
            except PlacementError as error:
                raise PlacementError(
                    f"the shovel's own folder in the home is refused: {error.message}"
                ) from None

    def resolve(self, relative: str) -> str:
        """The path in the home that ``relative`` leads to, its symbolic links followed by the shovel
        itself (never by the kernel) and only while they stay in the home; ``PlacementError`` where
        one leads out, loops or dangles. The result names real folders only, for ``folder``."""
        done: list[str] = []
        pending = relative.split("/") if relative else []
        links = 0
        while pending:
            part = pending.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if not done:
                    raise PlacementError(f"{relative!r} leads out of the home")
                done.pop()
                continue
            target = None
            with self.folder("/".join(done)) as folder:
                try:
                    mode = os.stat(part, dir_fd=folder, follow_symlinks=False).st_mode
                except FileNotFoundError:
                    raise PlacementError(f"{relative!r} does not exist in the home") from None
                if stat.S_ISLNK(mode):
                    target = os.readlink(part, dir_fd=folder)
            if target is None:
                if pending and not stat.S_ISDIR(mode):
                    raise PlacementError(f"{relative!r}: {part!r} is not a folder")
                done.append(part)
                continue
            links += 1
            if links > MAX_LINKS:
                raise PlacementError(f"{relative!r} goes through more than {MAX_LINKS} symbolic links")
            if os.path.isabs(target):
                inner = self._inside(target)
                if inner is None:
                    raise PlacementError(f"{relative!r}: {part!r} is a link that leads out of the home")
                done, pending = [], [*inner, *pending]
            else:
                pending = [*target.split("/"), *pending]
        return "/".join(done)

    def _inside(self, target: str) -> list[str] | None:
        """The names below the home of an absolute link target, or None where it is not below it."""
        home = [part for part in self._real.split("/") if part]
        names = [part for part in target.split("/") if part]
        if names[: len(home)] != home:
            return None
        return names[len(home) :]

    def _acquire(self, relative: str, create: bool) -> int:
        if not relative:
            return self._home
        entry = self._open.get(relative)
        if entry is not None:
            entry.users += 1
            self._open.move_to_end(relative)
            return entry.descriptor
        parent, _, name = relative.rpartition("/")
        parent_descriptor = self._acquire(parent, create)
        try:
            descriptor = open_folder(parent_descriptor, name, create=create, shown=relative)
        finally:
            self._release(parent)
        self._open[relative] = _Open(descriptor, 1)
        return descriptor

    def _release(self, relative: str) -> None:
        if not relative:
            return
        self._open[relative].users -= 1
        if len(self._open) > KEPT_OPEN:
            unused = [name for name, entry in self._open.items() if entry.users == 0]  # oldest first
            for name in unused[: len(self._open) - KEPT_OPEN]:
                os.close(self._open.pop(name).descriptor)


def check_home(home: Path) -> None:
    """The home opened and the shovel's partial folder made in it, or the error that prevents it."""
    with HomeFolders(home) as folders:
        os.close(folders.open_partial())
