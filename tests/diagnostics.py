"""What the host's network looked like when a test could not reach a loopback server.

Container engines publish ports by NAT rules on this host; a rule left behind, or one for a port
the kernel also hands to another program, sends loopback connections nowhere ("No route to host").
When a test fails that way, its report carries the NAT rules and the ephemeral port range of that
moment, which are gone by the time anybody looks."""

from __future__ import annotations

import subprocess
from collections.abc import Generator
from pathlib import Path

import pytest

UNREACHABLE = ("No route to host", "EHOSTUNREACH", "Errno 113")


def host_network() -> str:
    parts = []
    port_range = Path("/proc/sys/net/ipv4/ip_local_port_range")
    if port_range.is_file():
        parts.append(f"ephemeral ports: {port_range.read_text().strip()}")
    for command in (["nft", "list", "table", "ip", "nat"], ["ss", "-ltnp"]):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            parts.append(f"$ {' '.join(command)}: {error}")
            continue
        parts.append(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}")
    return "\n".join(parts)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.failed and any(sign in report.longreprtext for sign in UNREACHABLE):
        report.sections.append(("host network at the failure", host_network()))
