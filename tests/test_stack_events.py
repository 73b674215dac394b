"""Stacks announce themselves: started, stopped and failed stacks become outbound CloudEvents."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from events import codec, types
from tests.conftest import Api
from tests.receiver import Receiver
from tests.support import wait_until

NOTEBOOK = {
    "key": "pages",
    "label": "Pages",
    "description": "Serves its folder",
    "image": {"name": "example/pages", "tags": ["latest"]},
    "access": "external",
    "ports": [{"port": 80, "protocol": "http"}],
    "resourceLimits": {"cpuMax": 100, "cpuDefault": 100, "memMax": 100, "memDefault": 50},
}
BROKEN = {**NOTEBOOK, "key": "broken", "label": "Broken"}


def events_of(receiver: Receiver, event_type: str | None = None) -> list[codec.Event]:
    """The events posted to the receiver so far (of one type, if given), in the order they came."""
    events = [codec.from_http(headers, body) for headers, body in list(receiver.requests)]
    return [event for event in events if event_type is None or event.type == event_type]


@pytest.fixture
def environment(receiver: Receiver) -> dict[str, str]:
    return {
        "WORKBENCH_EVENTS_URL": receiver.url,
        "WORKBENCH_LOCAL_COMMANDS": json.dumps({"broken": f"{sys.executable} -c 'raise SystemExit(4)'"}),
    }


def wait_for_event(receiver: Receiver, event_type: str, stack_id: str, seconds: float = 20) -> dict[str, Any]:
    """The data of the first ``event_type`` event about ``stack_id`` the receiver has been sent."""

    def announced() -> dict[str, Any] | None:
        for event in events_of(receiver, event_type):
            data = event.json()
            if isinstance(data, dict) and data.get("stack_id") == stack_id:
                return data
        return None

    return wait_until(
        announced,
        lambda: f"{event_type} for {stack_id} (received: {[e.type for e in events_of(receiver)]})",
        seconds,
    )


def test_started_stopped_and_failed_stacks_are_announced(api: Api, receiver: Receiver) -> None:
    token = api.make_user()
    assert api.call("POST", "/api/services", token, json=NOTEBOOK).status_code == 200
    # The admin's command runs for the admin's (system) spec only.
    assert api.call("POST", "/api/services?catalog=system", api.admin(), json=BROKEN).status_code == 200
    good = api.call("POST", "/api/stacks", token, json={"key": "pages"}).get_json()["id"]
    bad = api.call("POST", "/api/stacks", token, json={"key": "broken"}).get_json()["id"]

    assert api.call("GET", f"/api/start/{good}", token).status_code == 202
    started = wait_for_event(receiver, types.STACK_STARTED, good)
    assert started["user"] == "alice" and started["status"] == "started"
    assert started["endpoints"] and started["endpoints"][0].startswith("http://127.0.0.1:")

    assert api.call("GET", f"/api/stop/{good}", token).status_code == 202
    assert wait_for_event(receiver, types.STACK_STOPPED, good)["status"] == "stopped"

    assert api.call("GET", f"/api/start/{bad}", token).status_code == 202
    failed = wait_for_event(receiver, types.STACK_FAILED, bad)
    assert failed["status"] == "error"
    assert "exited with code 4" in failed["message"]
    assert len(events_of(receiver, types.STACK_STARTED)) == 1  # each change announced once
    assert api.call("GET", f"/api/stop/{bad}", token).status_code == 202
    wait_for_event(receiver, types.STACK_STOPPED, bad)
