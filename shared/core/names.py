"""Another name for a file whose name is taken: ``name (n).ext``, as file managers make them."""

from __future__ import annotations

import itertools
from collections.abc import Container

from shared.core.paths import MAX_COMPONENT_BYTES


def numbered(name: str, number: int) -> str:
    """``name`` with `` (number)`` before its extension (at the end where it has none, or is a hidden
    file like ``.bashrc``), its stem shortened where the result would be longer than a file name."""
    stem, dot, extension = name.rpartition(".")
    if not stem:
        stem, dot, extension = name, "", ""
    mark = f" ({number})"
    while len(f"{stem}{mark}{dot}{extension}".encode()) > MAX_COMPONENT_BYTES and stem:
        stem = stem[:-1]
    return f"{stem}{mark}{dot}{extension}"


def first_free(path: str, taken: Container[str]) -> str:
    """``path`` with its last name numbered by the first number from 1 that makes a path not taken."""
    folder, slash, name = path.rpartition("/")
    for number in itertools.count(1):
        candidate = f"{folder}{slash}{numbered(name, number)}"
        if candidate not in taken:
            return candidate
    raise AssertionError("unreachable")
