"""The console where stacks run as local processes: they have no container, so there is none (501)."""

from __future__ import annotations

import pytest

from tests.conftest import Api

UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


@pytest.fixture
def environment() -> dict[str, str]:
    return {"WORKBENCH_RUNTIME": "local"}


def test_local_processes_have_no_console_and_say_so(api: Api) -> None:
    alice = api.make_user("alice")
    bob = api.make_user("bob")
    stack = api.call("POST", "/api/stacks", alice, json={"key": "cloudcmd"}).get_json()
    ssid = stack["services"][0]["id"]

    answer = api.call("GET", f"/api/check_console?ssid={ssid}", alice)
    assert answer.status_code == 200  # the caller's own service, as Go's check_console said
    assert answer.get_json()["available"] is False
    assert "local processes" in answer.get_json()["reason"]
    answer = api.call("GET", f"/api/console?ssid={ssid}", alice, headers=dict(UPGRADE))
    assert answer.status_code == 501
    # Whose it is comes first: another user learns nothing of it, not even that it has no console.
    assert api.call("GET", f"/api/check_console?ssid={ssid}", bob).status_code == 404
    assert api.call("GET", f"/api/console?ssid={ssid}", bob, headers=dict(UPGRADE)).status_code == 404
    # The browser's way: the token as an offered subprotocol.
    offered = {**UPGRADE, "Sec-WebSocket-Protocol": f"workbench.console, bearer.{alice}"}
    assert api.call("GET", f"/api/console?ssid={ssid}", headers=offered).status_code == 501
    assert api.call("GET", f"/api/console?ssid={ssid}", headers=dict(UPGRADE)).status_code == 401
