"""Paths that come from outside (Clowder names, event fields, API bodies, object keys, volume paths) are
checked here before use: the one place that says what a safe path is."""

from __future__ import annotations

from pathlib import Path

from shared.core.errors import InvalidInput

MAX_COMPONENT_BYTES = 255
MAX_PATH_BYTES = 4096


def has_control(text: str, *, c1: bool = False) -> bool:
    """Whether ``text`` holds a NUL or another control character: C0 and DEL, with ``c1`` also C1
    (U+0080 to U+009F, which S3 and some terminals take as controls too)."""
    last = 0x9F if c1 else 0x7F
    return any(ord(character) < 32 or 0x7F <= ord(character) <= last for character in text)


def path_problem(
    path: str,
    *,
    exact: bool = False,
    c1: bool = False,
    max_bytes: int = MAX_PATH_BYTES,
    max_name_bytes: int | None = MAX_COMPONENT_BYTES,
) -> str | None:
    """What makes ``path`` unfit as a relative path, in words that follow it (``'/x' is an absolute
    path``), or None when it is fit.

    Refused: NUL and other control characters (``c1``: C1 as well), absolute paths, backslashes (a
    Windows separator a volume would take literally), text that is not UTF-8, paths naming nothing,
    ``..`` names, names longer than ``max_name_bytes`` (None: any length), paths longer than
    ``max_bytes``. Empty and ``.`` names are dropped, or with ``exact`` refused (an object key is used
    as it is written)."""
    if has_control(path, c1=c1):
        return "contains a NUL or control character"
    if path.startswith("/"):
        return "is an absolute path"
    if "\\" in path:
        return "contains a backslash"
    try:
        path.encode()
    except UnicodeEncodeError:  # a lone surrogate, as JSON may carry
        return "is not valid UTF-8"
    names = path.split("/")
    if exact and any(name in ("", ".") for name in names):
        return "has an empty or '.' name"
    parts = [name for name in names if name not in ("", ".")]
    if not parts:
        return "names no file or folder"
    if ".." in parts:
        return "leads out of its folder ('..')"
    if max_name_bytes is not None and any(len(part.encode()) > max_name_bytes for part in parts):
        return f"has a name longer than {max_name_bytes} bytes"
    if len("/".join(parts).encode()) > max_bytes:
        return f"is longer than {max_bytes} bytes"
    return None


def shown(path: str) -> str:
    """``path`` as an error message names it: quoted, and cut short where it is long."""
    return repr(path[:80] + ("…" if len(path) > 80 else ""))


def safe_relative(path: str, *, field: str = "path") -> str:
    """``path`` as a clean relative path (empty and ``.`` names dropped), or InvalidInput naming it
    and what is wrong (see ``path_problem``)."""
    if not path or not path.strip():
        raise InvalidInput("must not be empty", field=field)
    problem = path_problem(path)
    if problem is not None:
        raise InvalidInput(f"{shown(path)} {problem}", field=field)
    return "/".join(part for part in path.split("/") if part not in ("", "."))


def safe_component(name: str, *, field: str = "name") -> str:
    """``name`` if it is one plain file or folder name, as written (no separator, not ``.``), or
    InvalidInput naming it and what is wrong."""
    if safe_relative(name, field=field) != name or "/" in name:
        raise InvalidInput(f"{shown(name)} is not a single file or folder name", field=field)
    return name


def safe_name(name: str, *, field: str = "name") -> str:
    """One path component (a folder made from a dataset name): separators become '_'."""
    return safe_component(name.replace("/", "_").replace("\\", "_"), field=field)


def stays_inside(folder: Path, relative: str) -> bool:
    """Whether ``folder/relative`` stays inside ``folder`` once its symbolic links are followed (a
    link the user made must not lead elsewhere); False too where it cannot be told (a link loop)."""
    try:
        return (folder / relative).resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop, before Python 3.13
        return False
