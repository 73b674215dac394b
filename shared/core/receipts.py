"""Delivery receipts kept next to received data, and checking a folder against them (standard library only).

A completed transfer leaves, in its target folder, ``.workbench/receipts/<transfer id>.json`` (where
the data came from and each file's path, size and sha256) and ``<transfer id>.manifest-sha256.txt``
(BagIt's ``<sha256>  <path>`` lines, paths relative to the target folder). ``workbench verify`` reads
them back wherever the folder is (inside a container too), so this module imports nothing beyond the
standard library."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RECEIPTS_FOLDER = ".workbench/receipts"
"""Where a target folder keeps its receipts, relative to it."""
HIDDEN_TOP = ".workbench"
MANIFEST_SUFFIX = ".manifest-sha256.txt"
RECEIPT_FORMAT = "workbench-receipt/1"
CHUNK_SIZE = 1 << 20


@dataclass(frozen=True)
class ReceivedFile:
    path: str
    """Relative to the target folder, '/'-separated."""
    size: int
    sha256: str
    placed: str
    """When it was placed (ISO 8601, UTC)."""


def receipt_document(
    *,
    transfer_id: str,
    clowder_url: str,
    dataset_id: str,
    dataset_name: str,
    version: str | None,
    target: str,
    completed: str,
    files: list[ReceivedFile],
) -> dict[str, Any]:
    """The receipt's JSON: where the data came from, by which transfer, and each file as placed."""
    return {
        "format": RECEIPT_FORMAT,
        "transfer": transfer_id,
        "clowder": clowder_url,
        "dataset": {"id": dataset_id, "name": dataset_name, "version": version},
        "target": target,
        "completed": completed,
        "files": [
            {"path": file.path, "size": file.size, "sha256": file.sha256, "placed": file.placed}
            for file in sorted(files, key=lambda file: file.path)
        ],
    }


def manifest_text(files: list[ReceivedFile]) -> str:
    """BagIt's ``manifest-sha256.txt``: one ``<sha256>  <path>`` line per file (a line break or a
    percent sign in a path encoded as BagIt asks)."""
    return "".join(
        f"{file.sha256}  {_bagit_path(file.path)}\n" for file in sorted(files, key=lambda f: f.path)
    )


def _bagit_path(path: str) -> str:
    return path.replace("%", "%25").replace("\n", "%0A").replace("\r", "%0D")


@dataclass
class Verification:
    """What changed in a folder since its receipts were written."""

    receipts: int = 0
    checked: int = 0
    modified: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Receipts that could not be read, by name and reason."""

    @property
    def unchanged(self) -> bool:
        return self.receipts > 0 and not (self.modified or self.missing or self.added or self.problems)

    def as_json(self) -> dict[str, Any]:
        return {
            "receipts": self.receipts,
            "checked": self.checked,
            "modified": self.modified,
            "missing": self.missing,
            "added": self.added,
            "problems": self.problems,
            "unchanged": self.unchanged,
        }


def verify(folder: Path) -> Verification:
    """Re-hash ``folder``'s files against its receipts (a later receipt's file overrides an earlier
    one's) and list the files modified, missing and added since.

    Everything below ``folder`` is reached through open folders, one name at a time, and never
    through a symbolic link (``os.fwalk``, ``O_NOFOLLOW``): what a receipt names or a program swaps
    meanwhile cannot make the verifier read, list or hash anything outside the folder. A link where a
    file was received counts as modified."""
    top = os.open(folder, _OPEN_FOLDER)
    try:
        return verify_open(top)
    finally:
        os.close(top)


def verify_open(top: int) -> Verification:
    """``verify`` of the folder open as the descriptor ``top`` (left open): for a caller that reached
    the folder itself, one name at a time, e.g. a shovel below its home."""
    result = Verification()
    expected: dict[str, tuple[int, str]] = {}
    for name, document in _receipts(top, result):
        result.receipts += 1
        try:
            for entry in document["files"]:
                expected[str(entry["path"])] = (int(entry["size"]), str(entry["sha256"]).lower())
        except (KeyError, TypeError, ValueError) as error:
            result.problems.append(f"{name}: not a receipt ({type(error).__name__}: {error})")
    present: set[str] = set()
    for path, parent, name in _files(top):
        present.add(path)
        if path in expected:
            result.checked += 1
            size, sha256 = expected[path]
            if _digest(parent, name, size) != sha256:
                result.modified.append(path)
    result.modified.sort()
    result.missing = sorted(set(expected) - present)
    result.added = sorted(present - set(expected))
    return result


_OPEN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NO_LINK_FOLDER = _OPEN_FOLDER | os.O_NOFOLLOW


def _receipts(top: int, result: Verification) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each readable receipt, oldest completion first."""
    folder = top
    opened: list[int] = []
    try:
        for part in RECEIPTS_FOLDER.split("/"):
            folder = os.open(part, _NO_LINK_FOLDER, dir_fd=folder)
            opened.append(folder)
        names = sorted(name for name in os.listdir(folder) if name.endswith(".json"))
    except OSError:
        for descriptor in opened:
            os.close(descriptor)
        return
    documents: list[tuple[str, str, dict[str, Any]]] = []
    try:
        for name in names:
            try:
                handle = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
                with open(handle, "rb") as reader:
                    document = json.load(reader)
            except (OSError, ValueError) as error:
                result.problems.append(f"{name}: cannot be read ({error})")
                continue
            if not isinstance(document, dict) or document.get("format") != RECEIPT_FORMAT:
                result.problems.append(f"{name}: not a receipt (format {RECEIPT_FORMAT!r} expected)")
                continue
            documents.append((str(document.get("completed", "")), name, document))
    finally:
        for descriptor in opened:
            os.close(descriptor)
    for _, name, document in sorted(documents, key=lambda item: (item[0], item[1])):
        yield name, document


def _files(top: int) -> Iterator[tuple[str, int, str]]:
    """Every file below the open folder ``top`` (symbolic links included, not followed): its path,
    '/'-separated and relative to ``top``, the open folder it is in (valid until the next one) and its
    name there; the receipts' own folder left out."""
    for root, folders, names, descriptor in os.fwalk(".", dir_fd=top, follow_symlinks=False):
        relative = root.removeprefix("./").removeprefix(".")
        if not relative:
            folders[:] = [name for name in folders if name != HIDDEN_TOP]
        # fwalk lists a link to a folder among the folders and does not descend into it: a file here
        linked = [name for name in folders if _is_link(descriptor, name)]
        for name in [*names, *linked]:
            yield (f"{relative}/{name}" if relative else name), descriptor, name


def _is_link(folder: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _digest(folder: int, name: str, size: int) -> str | None:
    """The sha256 of the regular file ``name`` of the open ``folder`` (not through a link), None where
    it is none or its size is not ``size``."""
    try:
        handle = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
    except OSError:
        return None
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode) or info.st_size != size:
            return None
        digest = hashlib.sha256()
        while chunk := os.read(handle, CHUNK_SIZE):
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        os.close(handle)


def report(result: Verification, folder: Path) -> str:
    """The verification as lines a person reads."""
    if result.receipts == 0 and not result.problems:
        return f"{folder}: no receipts in {RECEIPTS_FOLDER}\n"
    lines = [f"{folder}: {result.receipts} receipt(s), {result.checked} file(s) checked"]
    lines += [f"modified: {path}" for path in result.modified]
    lines += [f"missing: {path}" for path in result.missing]
    lines += [f"added: {path}" for path in result.added]
    lines += [f"problem: {problem}" for problem in result.problems]
    lines.append("unchanged since received" if result.unchanged else "changed since received")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m shared.core.receipts <folder> [--json]``: exit 0 where nothing changed, 1 otherwise."""
    arguments = sys.argv[1:] if argv is None else argv
    as_json = "--json" in arguments
    folders = [argument for argument in arguments if argument != "--json"]
    if len(folders) != 1:
        sys.stderr.write("usage: verify <folder> [--json]\n")
        return 1
    folder = Path(folders[0])
    if not folder.is_dir():
        sys.stderr.write(f"{folder}: not a folder\n")
        return 1
    result = verify(folder)
    sys.stdout.write(json.dumps(result.as_json(), indent=2) + "\n" if as_json else report(result, folder))
    return 0 if result.unchanged else 1


if __name__ == "__main__":
    raise SystemExit(main())
