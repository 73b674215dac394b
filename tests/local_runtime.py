"""A harness of local runtimes on the test's data dir, for the local runtime's tests and the local
preview's (a plugin of conftest)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_runtime_local import Harness


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    """Removes every plan its runtimes started, and closes them, when the test ends."""
    harness = Harness(tmp_path / "data")
    try:
        yield harness
    finally:
        harness.cleanup()
