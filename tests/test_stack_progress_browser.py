"""The stacks view shows a start's progress live, from the stack's event stream through ``workbench run``."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bench.support import STATIC_SPEC
from tests.conftest import ADMIN_PASSWORD
from tests.test_e2e import Platform, bearer, token

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

PASSWORD = "dana-password"
SLOW_START = """
import os, socket, time
time.sleep(4)
server = socket.socket()
server.bind(("127.0.0.1", int(os.environ["PORT"])))
server.listen()
time.sleep(600)
"""
"""Listens on its port only after a while: the stack stays starting long enough to watch."""
SLOW_SPEC = {**STATIC_SPEC, "key": "slow", "label": "Slow service", "description": "Takes a while to listen"}


@pytest.fixture(scope="module")
def workbench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    settings = {
        "WORKBENCH_LOCAL_COMMANDS": json.dumps({"slow": shlex.join([sys.executable, "-c", SLOW_START])})
    }
    platform = Platform(tmp_path_factory.mktemp("workbench") / "data", settings=settings)
    platform.start()
    try:
        with httpx.Client(base_url=platform.url, timeout=10) as http:
            admin = token(http, "admin", ADMIN_PASSWORD)
            account = {"namespace": "dana", "name": "Dana", "email": "dana@example.org", "password": PASSWORD}
            assert http.post("/api/accounts", json=account, headers=bearer(admin)).status_code == 200
            # The admin's command runs for the admin's (system) spec only.
            response = http.post("/api/services?catalog=system", json=SLOW_SPEC, headers=bearer(admin))
            assert response.status_code == 200, response.text
        yield platform
    finally:
        platform.stop()


def test_a_starting_stack_shows_its_services_progress_live(page: Any, workbench: Platform) -> None:
    from playwright.sync_api import expect

    with httpx.Client(base_url=workbench.url, timeout=10) as http:
        dana = token(http, "dana", PASSWORD)
        response = http.post("/api/stacks", json={"key": "slow", "name": "Patient"}, headers=bearer(dana))
        assert response.status_code == 200, response.text
        sid = response.json()["id"]
    streams: list[dict[str, str]] = []
    page.on("request", lambda request: streams.append(request.headers) if "/events" in request.url else None)

    page.goto(workbench.url + "/")
    page.get_by_label("User name or e-mail").fill("dana")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    card = page.get_by_role("article", name="Patient", exact=True)
    card.get_by_role("button", name="Start").click()

    # While the service is not yet listening, its progress came from the stream (not the poll) as it
    # happened: the stream only ends once the stack is started, so a buffered one would show nothing.
    line = card.locator(f'[data-progress="{sid}-slow"][data-live="true"]')
    expect(line).to_contain_text("(process ", timeout=10_000)
    expect(card.locator(".stack-status")).to_have_text("Status: starting")
    assert streams and streams[0]["authorization"].startswith("Bearer ")
    assert streams[0]["accept"] == "text/event-stream"

    expect(card.locator(".stack-status")).to_have_text("Status: started", timeout=30_000)
    expect(card.locator(".service-progress")).to_have_count(0)

    card.get_by_role("button", name="Stop").click()
    expect(card.locator(".stack-status")).to_have_text("Status: stopped", timeout=30_000)


def test_workbench_run_passes_the_stream_on_as_it_comes(workbench: Platform) -> None:
    """Through the gateway and werkzeug's server, each event arrives while the start is still going on
    (a buffered stream would arrive only once the stack is started, all at once)."""
    with httpx.Client(base_url=workbench.url, timeout=10) as http:
        dana = token(http, "dana", PASSWORD)
        sid = http.post("/api/stacks", json={"key": "slow", "name": "Streamed"}, headers=bearer(dana)).json()[
            "id"
        ]
        assert http.get(f"/api/start/{sid}", headers=bearer(dana)).status_code == 202
        try:
            with http.stream("GET", f"/api/stacks/{sid}/events", headers=bearer(dana)) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                for line in response.iter_lines():
                    if line.startswith("data: ") and "(process " in line:
                        break
                status = http.get(f"/api/stacks/{sid}", headers=bearer(dana)).json()["status"]
                assert status == "starting"
        finally:
            assert http.get(f"/api/stop/{sid}", headers=bearer(dana)).status_code == 202
