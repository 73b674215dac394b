"""What the Clowder client hands on: datasets, files, the key's user, and a dataset's folders by path."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

DIGEST_FIELDS = ("sha256", "sha512", "sha1", "md5")
"""The digests a Clowder file record may carry, by the hashlib name of their algorithm (a field of
that name holding hex): the strongest one found is checked against the bytes received."""
_HEX = re.compile(r"[0-9a-fA-F]+")


@dataclass(frozen=True)
class ClowderFile:
    """A file of a dataset; ``path`` is relative to the dataset, its folders joined with '/'.

    Names are exactly as Clowder gave them: callers normalise before using them as paths."""

    id: str
    name: str
    path: str
    size: int | None
    content_type: str | None
    storage_path: str | None = None
    """Where Clowder keeps the bytes on its own disk (Clowder 2's ``local`` storage), for link mode."""
    digest: tuple[str, str] | None = None
    """A digest Clowder keeps of the file: (hashlib algorithm, lower-case hex), where it offers one."""


def digest_in(record: dict[str, Any]) -> tuple[str, str] | None:
    """The strongest digest a Clowder file record carries (``DIGEST_FIELDS``), or None."""
    for algorithm in DIGEST_FIELDS:
        value = record.get(algorithm)
        if isinstance(value, str) and _HEX.fullmatch(value):
            return algorithm, value.lower()
    return None


@dataclass(frozen=True)
class ClowderDataset:
    id: str
    name: str
    description: str
    version: str | None = None
    """The version where Clowder has one (Clowder 2's frozen, released versions)."""


@dataclass(frozen=True)
class ClowderUser:
    """The Clowder user an API key belongs to."""

    id: str
    email: str


@dataclass
class FolderIndex:
    """The folders of one dataset by path (tuple of names) and by id, so uploads create each one once."""

    by_path: dict[tuple[str, ...], str] = field(default_factory=dict)
    by_id: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def add(self, path: tuple[str, ...], folder_id: str) -> None:
        self.by_path.setdefault(path, folder_id)
        self.by_id[folder_id] = path
