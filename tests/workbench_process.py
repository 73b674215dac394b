"""Fixtures of the platform as ``workbench run`` runs it, a process on a free port with its own data
folder (a plugin of conftest): alone, or paired with the Clowder test server of ``clowder_pairing``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clowder_pairing import API_KEY, SECRET
from tests.clowder_server import ClowderServer
from tests.test_e2e import Platform


@pytest.fixture
def workbench(tmp_path: Path) -> Iterator[Platform]:
    with Platform(tmp_path / "data") as running:
        yield running


@pytest.fixture
def paired_workbench(tmp_path: Path, clowder: ClowderServer) -> Iterator[Platform]:
    """``workbench run`` paired with ``clowder``: its API key, and the secret of the events it sends."""
    settings = {
        "WORKBENCH_CLOWDER_URL": clowder.url,
        "WORKBENCH_CLOWDER_API_KEY": API_KEY,
        "WORKBENCH_EVENT_SECRET": SECRET,
    }
    with Platform(tmp_path / "data", settings=settings) as running:
        yield running
