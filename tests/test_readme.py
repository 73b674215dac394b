"""The README's settings table names exactly the settings the code reads."""

from __future__ import annotations

import re

from tests.conftest import ROOT


def test_every_setting_is_documented_and_every_documented_setting_exists() -> None:
    code = (ROOT / "shared" / "core" / "settings.py").read_text()
    read = set(re.findall(r'"(WORKBENCH_[A-Z0-9_]+)"', code))
    table = set(
        re.findall(r"^\| `(WORKBENCH_[A-Z0-9_]+)` \|", (ROOT / "README.md").read_text(), re.MULTILINE)
    )
    assert read == table, {"undocumented": read - table, "not read": table - read}


def test_the_readme_shows_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme
    assert "make test" in readme
