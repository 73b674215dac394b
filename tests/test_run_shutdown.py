"""``workbench run`` ends every process it started when it stops: with many stacks running on the local
runtime, a SIGTERM leaves no page server and no shovel behind."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import httpx
import pytest

from bench.support import STATIC_SPEC
from tests.conftest import ADMIN_PASSWORD
from tests.test_e2e import Platform, bearer, token, wait_for_status
from tests.test_shovel import AMQP_URL, require_rabbitmq

STACKS = 20
GRACE_SECONDS = 10.0
"""How long a supervisor lets ``workbench run`` end after SIGTERM before it kills it (as the bench's
``stop`` does); what it has not ended by then runs on."""


def processes() -> Iterator[tuple[int, int, int]]:
    """(pid, parent pid, session) of every live process (zombies left out: they run nothing)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        # Fields after the command name, which may hold spaces: state, ppid, pgrp, session, ...
        fields = raw[raw.rfind(b")") + 2 :].split()
        if fields[0] not in (b"Z", b"X"):
            yield int(entry), int(fields[1]), int(fields[3])


def mentions(pid: int, text: bytes) -> bool:
    """Whether the process's command line or environment holds ``text``."""
    for name in ("cmdline", "environ"):
        try:
            if text in Path(f"/proc/{pid}/{name}").read_bytes():
                return True
        except OSError:
            pass
    return False


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "(ended)"


def started_by(parent: int, data_dir: Path) -> set[int]:
    """The live processes in the sessions of ``parent``'s children (each child leads its own), and
    any other that names ``data_dir`` in its command line or environment."""
    everything = list(processes())
    sessions = {session for _, ppid, session in everything if ppid == parent}
    marker = str(data_dir).encode()
    return {
        pid
        for pid, _, session in everything
        if pid != parent and (session in sessions or mentions(pid, marker))
    }


@pytest.fixture
def rabbitmq() -> str:
    """With RabbitMQ each stack's shovel is a process of its own, as the sidecar is in a pod."""
    require_rabbitmq()
    return AMQP_URL


@pytest.mark.parametrize("started", [True, False], ids=["stacks-started", "stacks-still-starting"])
def test_a_stopped_workbench_run_leaves_no_process_behind(
    tmp_path: Path, rabbitmq: str, started: bool
) -> None:
    """``STACKS`` stacks started (or only asked to start: their processes come up while the platform
    stops), then SIGTERM: within the grace everything has ended, and the platform exited by itself."""
    data_dir = tmp_path / "data"
    platform = Platform(data_dir, settings={"WORKBENCH_AMQP_URL": rabbitmq})
    with platform:
        assert platform.process is not None
        http = httpx.Client(base_url=platform.url, timeout=30)
        admin = token(http, "admin", ADMIN_PASSWORD)
        assert http.post("/api/services", json=STATIC_SPEC, headers=bearer(admin)).status_code == 200
        sids = []
        for _ in range(STACKS):
            response = http.post("/api/stacks", json={"key": STATIC_SPEC["key"]}, headers=bearer(admin))
            assert response.status_code == 200, response.text
            sids.append(response.json()["id"])
        for sid in sids:
            assert http.get(f"/api/start/{sid}", headers=bearer(admin)).status_code == 202
        if started:
            for sid in sids:
                wait_for_status(http, sid, "started", admin, seconds=120)
        running = started_by(platform.process.pid, data_dir)
        if started:  # a page server and a shovel per stack, at least
            assert len(running) >= 2 * STACKS, running

        platform.process.send_signal(signal.SIGTERM)
        began = time.monotonic()
        try:
            platform.process.wait(timeout=GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            platform.process.kill()
            platform.process.wait()
        took = time.monotonic() - began
    alive = {pid for pid, _, _ in processes()}
    marker = str(data_dir).encode()
    left = (running & alive) | {pid for pid in alive if mentions(pid, marker)}
    commands = {pid: command_line(pid) for pid in left}
    for pid in left:  # not left running for the tests after this one
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"still running {took:.1f} s after SIGTERM: {commands}"
    assert platform.process.returncode == 0, f"killed after {took:.1f} s"
    print(f"workbench run ended {len(running)} processes in {took:.1f} s")
