"""The room in the users' homes, where the platform reaches them (one machine): what a transfer plan reads.

Nothing here writes. Folders are opened one name at a time and never through a symbolic link, and the
scan of a home follows none either: a link in a home neither sends the platform elsewhere nor counts
what it points at."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple, Protocol

from shared.core import receipts
from shared.core.receipts import Verification

OPEN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
SCAN_ENTRIES = 200_000
"""A home's scan stops after this many entries (its count is then a lower bound): a plan answers at once."""
OPEN_FOLDERS = 64
"""Folders held open at once while sizes are read (then all but the home are closed)."""


class Usage(NamedTuple):
    """The bytes of a home's files (apparent sizes, as a transfer counts them); ``complete``: every
    entry was counted (else the scan stopped at ``SCAN_ENTRIES``)."""

    bytes: int
    complete: bool


class HomeSpacePort(Protocol):
    """The room in the users' homes (``HomeSpace``), where the platform reaches them."""

    def free_bytes(self, user: str) -> int | None:
        """The bytes an unprivileged writer may still use on the home's volume (None: cannot tell)."""
        ...

    def usage(self, user: str) -> Usage: ...

    def sizes(self, user: str, folder: str, paths: Iterable[str]) -> dict[str, int]:
        """The size of each of ``paths`` (below ``folder`` of the home) that is a regular file there."""
        ...

    def verify(self, user: str, folder: str) -> Verification | None:
        """``folder`` of the home checked against its receipts; None where it is no real folder there."""
        ...


class HomeSpace:
    """The homes of this machine (``home_for(user)``: the home's folder)."""

    def __init__(self, home_for: Callable[[str], Path]) -> None:
        self.home_for = home_for

    def free_bytes(self, user: str) -> int | None:
        # A home not made yet will be made on the volume of its nearest folder that is.
        place = self.home_for(user)
        while not place.exists() and place.parent != place:
            place = place.parent
        try:
            volume = os.statvfs(place)
        except OSError:
            return None
        return volume.f_bavail * volume.f_frsize

    def usage(self, user: str) -> Usage:
        total = entries = 0
        waiting = [str(self.home_for(user))]
        while waiting:
            try:
                listing = os.scandir(waiting.pop())
            except OSError:
                continue  # gone meanwhile, or not a folder we may read: nothing to count
            with listing:
                for entry in listing:
                    entries += 1
                    if entries > SCAN_ENTRIES:
                        return Usage(total, complete=False)
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            waiting.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        return Usage(total, complete=True)

    def sizes(self, user: str, folder: str, paths: Iterable[str]) -> dict[str, int]:
        try:
            home = os.open(self.home_for(user), OPEN_FOLDER)
        except OSError:
            return {}
        folders = _Folders(home)
        found: dict[str, int] = {}
        try:
            for path in paths:
                parent, _, name = f"{folder}/{path}".strip("/").rpartition("/")
                descriptor = folders.open(parent)
                if descriptor is None:
                    continue
                try:
                    status = os.stat(name, dir_fd=descriptor, follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISREG(status.st_mode):
                    found[path] = status.st_size
        finally:
            folders.close()
        return found

    def verify(self, user: str, folder: str) -> Verification | None:
        # Reached through folders opened one name at a time (never through a link) and walked through
        # the open descriptor: a link in the home cannot send the platform elsewhere.
        try:
            home = os.open(self.home_for(user), OPEN_FOLDER)
        except OSError:
            return None
        folders = _Folders(home)
        try:
            descriptor = folders.open(folder.strip("/"))
            if descriptor is None:
                return None
            return receipts.verify(Path(f"/proc/self/fd/{descriptor}"))
        finally:
            folders.close()


class _Folders:
    """The folders of a home opened so far, by path (None: missing, or not a real folder)."""

    def __init__(self, home: int) -> None:
        self.home = home
        self.opened: dict[str, int | None] = {}

    def open(self, path: str) -> int | None:
        if not path:
            return self.home
        if path in self.opened:
            return self.opened[path]
        if len(self.opened) >= OPEN_FOLDERS:
            self.close(keep_home=True)
        parent, _, name = path.rpartition("/")
        above = self.open(parent)
        descriptor = None
        if above is not None:
            try:
                descriptor = os.open(name, OPEN_FOLDER, dir_fd=above)
            except OSError:
                descriptor = None
        self.opened[path] = descriptor
        return descriptor

    def close(self, *, keep_home: bool = False) -> None:
        for descriptor in self.opened.values():
            if descriptor is not None:
                os.close(descriptor)
        self.opened = {}
        if not keep_home:
            os.close(self.home)
