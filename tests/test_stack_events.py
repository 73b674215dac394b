"""Stacks announce themselves: started, stopped and failed stacks become outbound CloudEvents."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from events import codec, types
from tests.conftest import Api
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


class Sink:
    """A stand-in Broker that keeps every event POSTed to it."""

    def __init__(self) -> None:
        self.events: list[codec.Event] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                sink.events.append(codec.from_http(dict(self.headers.items()), body))
                self.send_response(202)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/"

    def of_type(self, event_type: str) -> list[codec.Event]:
        return [event for event in self.events if event.type == event_type]


@pytest.fixture
def sink() -> Iterator[Sink]:
    receiver = Sink()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def environment(sink: Sink) -> dict[str, str]:
    return {
        "WORKBENCH_EVENTS_URL": sink.url,
        "WORKBENCH_LOCAL_COMMANDS": json.dumps({"broken": f"{sys.executable} -c 'raise SystemExit(4)'"}),
    }


def wait_for_event(sink: Sink, event_type: str, stack_id: str, seconds: float = 20) -> dict[str, Any]:
    """The data of the first ``event_type`` event about ``stack_id`` the sink has received."""

    def announced() -> dict[str, Any] | None:
        for event in sink.of_type(event_type):
            data = event.json()
            if isinstance(data, dict) and data.get("stack_id") == stack_id:
                return data
        return None

    return wait_until(
        announced, lambda: f"{event_type} for {stack_id} (received: {[e.type for e in sink.events]})", seconds
    )


def test_started_stopped_and_failed_stacks_are_announced(api: Api, sink: Sink) -> None:
    token = api.make_user()
    assert api.call("POST", "/api/services", token, json=NOTEBOOK).status_code == 200
    # The admin's command runs for the admin's (system) spec only.
    assert api.call("POST", "/api/services?catalog=system", api.admin(), json=BROKEN).status_code == 200
    good = api.call("POST", "/api/stacks", token, json={"key": "pages"}).get_json()["id"]
    bad = api.call("POST", "/api/stacks", token, json={"key": "broken"}).get_json()["id"]

    assert api.call("GET", f"/api/start/{good}", token).status_code == 202
    started = wait_for_event(sink, types.STACK_STARTED, good)
    assert started["user"] == "alice" and started["status"] == "started"
    assert started["endpoints"] and started["endpoints"][0].startswith("http://127.0.0.1:")

    assert api.call("GET", f"/api/stop/{good}", token).status_code == 202
    assert wait_for_event(sink, types.STACK_STOPPED, good)["status"] == "stopped"

    assert api.call("GET", f"/api/start/{bad}", token).status_code == 202
    failed = wait_for_event(sink, types.STACK_FAILED, bad)
    assert failed["status"] == "error"
    assert "exited with code 4" in failed["message"]
    assert len(sink.of_type(types.STACK_STARTED)) == 1  # each change announced once
    assert api.call("GET", f"/api/stop/{bad}", token).status_code == 202
    wait_for_event(sink, types.STACK_STOPPED, bad)
