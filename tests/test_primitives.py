"""The core primitives on their own: atomic writes, safe paths, numbered names."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from shared.core.durable import new_durable_file, write_atomically
from shared.core.errors import InvalidInput
from shared.core.names import first_free, numbered
from shared.core.paths import (
    MAX_COMPONENT_BYTES,
    path_problem,
    safe_component,
    safe_name,
    safe_relative,
    stays_inside,
)


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


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("a\x00b", "contains a NUL or control character"),
        ("/etc/passwd", "is an absolute path"),
        ("a\\b", "contains a backslash"),
        ("a/\ud800", "is not valid UTF-8"),
        ("./", "names no file or folder"),
        ("a/../../b", "leads out of its folder ('..')"),
        ("x" * 256, "has a name longer than 255 bytes"),
        ("/".join(["x" * 200] * 21), "is longer than 4096 bytes"),
    ],
)
def test_each_unsafe_path_is_refused_with_its_reason(path: str, problem: str) -> None:
    assert path_problem(path) == problem
    with pytest.raises(InvalidInput) as caught:
        safe_relative(path, field="where")
    assert caught.value.message.endswith(problem)
    assert caught.value.field == "where"


def test_safe_relative_drops_empty_and_dot_names_where_exact_rules_refuse_them() -> None:
    assert safe_relative("./a//b/") == "a/b"
    assert path_problem("a//b", exact=True) == "has an empty or '.' name"
    assert path_problem("a\x85b") is None
    assert path_problem("a\x85b", c1=True) == "contains a NUL or control character"
    assert path_problem("y" * 300, max_name_bytes=None) is None


@pytest.mark.parametrize("name", ["a/b", ".", "..", "a/", "./a", "", " "])
def test_a_component_is_one_plain_name(name: str) -> None:
    with pytest.raises(InvalidInput):
        safe_component(name)
    assert safe_component("s1-web") == "s1-web"
    assert safe_name("Soil/samples\\2024") == "Soil_samples_2024"


def test_a_path_that_a_link_leads_out_of_its_folder_does_not_stay_inside(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "real").mkdir(parents=True)
    (home / "inner").symlink_to(home / "real")
    (home / "outer").symlink_to(tmp_path)
    (home / "loop").symlink_to(home / "loop")

    assert stays_inside(home, "inner/new")
    assert not stays_inside(home, "outer/new")
    assert not stays_inside(home, "loop")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "report (2).pdf"),
        ("archive.tar.gz", "archive.tar (2).gz"),
        ("README", "README (2)"),
        (".bashrc", ".bashrc (2)"),
        ("x" * 255, "x" * 251 + " (2)"),
        ("é" * 124 + ".txt", "é" * 123 + " (2).txt"),  # shortened by whole characters
    ],
)
def test_a_numbered_name_keeps_its_extension_and_the_length_of_a_file_name(name: str, expected: str) -> None:
    assert numbered(name, 2) == expected
    assert len(numbered(name, 2).encode()) <= MAX_COMPONENT_BYTES


def test_the_first_free_path_numbers_only_the_last_name() -> None:
    taken = {"a.b/notes.txt", "a.b/notes (1).txt", "a.b/notes (2).txt"}
    assert first_free("a.b/notes.txt", taken) == "a.b/notes (3).txt"
    assert first_free("notes.txt", set()) == "notes (1).txt"


def test_a_new_durable_file_replaces_a_leftover_without_following_it(tmp_path: Path) -> None:
    (tmp_path / "1.part").symlink_to(tmp_path / "elsewhere")
    folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with new_durable_file(folder, "1.part", size=3) as output:
            output.write(b"abc")
    finally:
        os.close(folder)

    assert not (tmp_path / "1.part").is_symlink()
    assert (tmp_path / "1.part").read_bytes() == b"abc"
    assert not (tmp_path / "elsewhere").exists()
