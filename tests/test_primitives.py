"""The core primitives on their own: atomic writes, safe paths, numbered names."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from shared.core.durable import write_atomically


def test_an_atomic_write_replaces_the_file_with_its_mode_and_leaves_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    target.write_bytes(b"old")

    write_atomically(target, b"new", mode=0o644)

    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [path.name for path in tmp_path.iterdir()] == ["record.json"]


def test_a_failed_atomic_write_keeps_the_old_file_and_removes_its_partial(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()  # a folder cannot be replaced by a file: the rename fails after the write

    with pytest.raises(IsADirectoryError):
        write_atomically(taken, b"data", prefix=".", suffix=".partial")

    assert taken.is_dir()
    assert [path.name for path in tmp_path.iterdir()] == ["taken"]
