"""What the Clowder client hands on: datasets, files, the key's user, and a dataset's folders by path."""

from __future__ import annotations

from dataclasses import dataclass, field


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


@dataclass(frozen=True)
class ClowderDataset:
    id: str
    name: str
    description: str


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
