"""Two function processes on one database: concurrent starts of one stack give one 202 and one 409."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.bootstrap import Platform, use_platform
from shared.core.settings import Settings
from shared.tools.cli import initialise
from tests.conftest import ROOT

STATIC_SPEC = {
    "key": "pages",
    "label": "Pages",
    "description": "Serves its data folder",
    "image": {"name": "example/pages", "tags": ["latest"]},
    "access": "external",
    "ports": [{"port": 80, "protocol": "http"}],
    "volumeMounts": [{"mountPath": "/data"}],
    "resourceLimits": {"cpuMax": 100, "cpuDefault": 100, "memMax": 100, "memDefault": 50},
}

# One function process: wait for the common moment, start the stack through the `start` function as
# served, and (if it won) stay up until the stack is started so that its runtime launches the service.
START_ONCE = """
import json, sys, time
import functions_framework
from shared.bootstrap import platform

sid, token, moment = sys.argv[1], sys.argv[2], float(sys.argv[3])
client = functions_framework.create_app("start", "functions/start.py", "http").test_client()
while time.time() < moment:
    time.sleep(0.001)
response = client.get(f"/api/start/{sid}", headers={"Authorization": f"Bearer {token}"})
if response.status_code == 202:
    deadline = time.monotonic() + 30
    while platform().store.list_stacks("racer")[0].status == "starting" and time.monotonic() < deadline:
        time.sleep(0.05)
print(json.dumps({"status": response.status_code}))
"""


@pytest.fixture(params=["sqlite", "postgres"])
def shared_platform(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    if request.param == "postgres":
        monkeypatch.setenv("WORKBENCH_DATABASE_URL", request.getfixturevalue("postgres_url"))
    instance = Platform(Settings.from_env())
    use_platform(instance)
    initialise(instance)
    yield instance


def processes_of(sid: str) -> list[int]:
    """Live processes whose environment names the stack (every service process carries NDSLABS_STACK)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environment = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"NDSLABS_STACK={sid}".encode() in environment.split(b"\0"):
            found.append(int(entry.name))
    return found


def test_two_processes_start_one_stack_once(shared_platform: Platform) -> None:
    from shared.core.models import Account, Stack
    from shared.domain import accounts, specs, stacks
    from shared.domain.auth import Principal

    accounts.create(
        shared_platform,
        Account(namespace="racer", name="Racer", email="racer@example.org", password="racer-password"),
    )
    specs.create(shared_platform, Principal("racer"), STATIC_SPEC, "user")
    stack = stacks.create(shared_platform, "racer", Stack(key="pages"))
    token = shared_platform.tokens.issue("racer")
    moment = time.time() + 3
    environment = {**os.environ}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", START_ONCE, stack.id, token, str(moment)],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        outcomes = []
        for racer in racers:
            output, errors = racer.communicate(timeout=60)
            assert racer.returncode == 0, errors
            outcomes.append(json.loads(output.strip().splitlines()[-1])["status"])
        assert sorted(outcomes) == [202, 409]
        assert shared_platform.store.get_stack("racer", stack.id).status == "started"  # type: ignore[union-attr]
        assert len(processes_of(stack.id)) == 1
    finally:
        current = shared_platform.store.get_stack("racer", stack.id)
        assert current is not None
        shared_platform.runtime.remove(stacks.plan_for(shared_platform, "racer", current))
    assert processes_of(stack.id) == []
