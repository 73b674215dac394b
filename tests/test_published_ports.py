"""Containers are published on loopback ports the kernel never hands out as ephemeral ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.adapters.runtime import processes


@pytest.fixture
def port_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ip_local_port_range"
    monkeypatch.setattr(processes, "EPHEMERAL_RANGE", path)
    return path


@pytest.mark.parametrize(
    ("ephemeral", "expected"),
    [
        ("32768\t60999\n", [range(20000, 32768), range(61000, 65536)]),
        ("10000\t60999\n", [range(61000, 65536)]),
        ("20500\t65000\n", []),
        ("1024\t65535\n", []),
    ],
)
def test_ports_are_chosen_outside_the_ephemeral_range(
    port_range: Path, ephemeral: str, expected: list[range]
) -> None:
    port_range.write_text(ephemeral)
    assert processes.publishable_ranges() == expected


@pytest.mark.parametrize("ephemeral", ["32768\t60999\n", "10000\t60999\n"])
def test_a_published_port_is_free_and_outside_the_range(port_range: Path, ephemeral: str) -> None:
    port_range.write_text(ephemeral)
    first, last = (int(word) for word in ephemeral.split())
    for _ in range(20):
        port = processes.publishable_port()
        assert not first <= port <= last
        assert processes.port_is_free(port)


def test_a_host_whose_range_spans_every_port_still_gets_a_free_port(port_range: Path) -> None:
    port_range.write_text("1024\t65535\n")
    assert processes.port_is_free(processes.publishable_port())
