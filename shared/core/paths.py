"""Paths that come from outside (Clowder names, event fields, API bodies) are checked before use."""

from __future__ import annotations

from shared.core.errors import InvalidInput

MAX_COMPONENT_BYTES = 255
MAX_PATH_BYTES = 4096


def safe_relative(path: str, *, field: str = "path") -> str:
    """``path`` as a clean relative path, or InvalidInput naming it and what is wrong.

    Refused: empty paths, absolute paths, ``..`` components, NUL and other control characters,
    backslashes (a Windows separator a volume would take literally), over-long names.
    """
    if not path or not path.strip():
        raise InvalidInput("must not be empty", field=field)
    shown = repr(path[:80] + ("…" if len(path) > 80 else ""))
    if any(ord(character) < 32 or ord(character) == 127 for character in path):
        raise InvalidInput(f"{shown} contains a NUL or control character", field=field)
    if path.startswith("/"):
        raise InvalidInput(f"{shown} is an absolute path", field=field)
    if "\\" in path:
        raise InvalidInput(f"{shown} contains a backslash", field=field)
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if not parts:
        raise InvalidInput(f"{shown} names no file or folder", field=field)
    if ".." in parts:
        raise InvalidInput(f"{shown} leads out of its folder ('..')", field=field)
    for part in parts:
        if len(part.encode()) > MAX_COMPONENT_BYTES:
            raise InvalidInput(f"{shown} has a name longer than {MAX_COMPONENT_BYTES} bytes", field=field)
    clean = "/".join(parts)
    if len(clean.encode()) > MAX_PATH_BYTES:
        raise InvalidInput(f"{shown} is longer than {MAX_PATH_BYTES} bytes", field=field)
    return clean


def safe_name(name: str, *, field: str = "name") -> str:
    """One path component (a folder made from a dataset name): separators become '_'."""
    return safe_relative(name.replace("/", "_").replace("\\", "_"), field=field)
