"""The console: a shell in a running stack service over a websocket, on a real container engine."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import ADMIN_PASSWORD
from tests.console_site import SENT, SENT_TEXT, Site
from tests.engines import Engine, engine  # noqa: F401 (the fixture)
from tests.support import wait_until
from tests.test_e2e import bearer

pytestmark = pytest.mark.e2e


class Terminal:
    """A websocket client typing into the console and reading its screen's bytes."""

    def __init__(self, url: str, *, token: str, browser: bool = False) -> None:
        import websocket

        self.socket = websocket.WebSocket()
        try:
            if browser:  # the token as a subprotocol, as the page sends it
                self.socket.connect(url, subprotocols=["workbench.console", f"bearer.{token}"], timeout=15)
            else:
                self.socket.connect(url, header=[f"Authorization: Bearer {token}"], timeout=15)
        except websocket.WebSocketException:
            self.socket.shutdown()  # a refused handshake leaves the client's socket open
            raise
        self.screen = b""

    def type(self, text: str) -> None:
        self.socket.send_binary(b"\x00" + text.encode())

    def resize(self, columns: int, rows: int) -> None:
        self.socket.send_binary(b"\x04" + json.dumps({"Width": columns, "Height": rows}).encode())

    def wait_for(self, text: str, seconds: float = 15) -> str:
        import websocket

        deadline = time.monotonic() + seconds
        while text.encode() not in self.screen:
            assert time.monotonic() < deadline, f"{text!r} never came; the screen: {self.screen!r}"
            self.socket.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                opcode, data = self.socket.recv_data()
            except websocket.WebSocketTimeoutException:
                continue
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                raise AssertionError(f"the console closed before {text!r}; the screen: {self.screen!r}")
            self.screen += data
        return self.screen.decode("utf-8", "replace")

    def close(self) -> None:
        try:
            self.socket.close(timeout=3)
        finally:
            self.socket.shutdown()  # a close the server answered first leaves the socket open


def processes(engine: Engine, site: Site) -> list[str]:  # noqa: F811
    """The command lines of the processes in carol's container."""
    import docker

    client = docker.DockerClient(base_url=engine.url)
    try:
        (container,) = client.containers.list(
            filters={"label": [f"org.ndslabs.workbench/service={site.ssid}"]}
        )
        listing: bytes = container.exec_run(["ps", "-o", "args"]).output
    finally:
        client.close()
    return [line.strip() for line in listing.decode().splitlines()[1:]]


def of_the_console(lines: list[str]) -> list[str]:
    """The console's shell (``sh`` once it replaced itself), what it started, and its ending."""
    return [
        line
        for line in lines
        if line in ("sh", "bash") or line.startswith("sleep 4") or "WORKBENCH_CONSOLE" in line
    ]


def test_the_owner_types_into_a_shell_in_the_container_and_reads_the_sent_file(
    site: Site,
    engine: Engine,  # noqa: F811
) -> None:
    assert (
        site.http.get(f"/api/check_console?ssid={site.ssid}", headers=bearer(site.carol)).status_code == 200
    )
    terminal = Terminal(site.socket_url(site.ssid, cols="100", rows="30"), token=site.carol)
    try:
        terminal.type(f"echo hel''lo; cat '/home/user/work/clowder/{SENT}'\r")
        screen = terminal.wait_for(SENT_TEXT)
        assert "hello\r\n" in screen  # the shell's output, not the echo of what was typed
        terminal.type("stty size\r")
        terminal.wait_for("30 100")
        terminal.resize(132, 43)
        terminal.type("stty size\r")
        terminal.wait_for("43 132")
    finally:
        terminal.close()


def test_closing_the_socket_ends_the_shell_and_what_it_started(site: Site, engine: Engine) -> None:  # noqa: F811
    def console_processes() -> list[str]:
        return of_the_console(processes(engine, site))

    def shell_and_jobs() -> list[str] | None:
        found = console_processes()
        return found if len(found) >= 4 else None

    def all_processes() -> str:
        return f"the console's processes (all processes now: {processes(engine, site)})"

    wait_until(lambda: not console_processes(), all_processes, 10, every=0.2)  # earlier sessions ended
    terminal = Terminal(site.socket_url(site.ssid), token=site.carol, browser=True)
    assert terminal.socket.getsubprotocol() == "workbench.console"  # never the token back
    terminal.type("sleep 4242 & sleep 4343\r")
    running = sorted(wait_until(shell_and_jobs, all_processes, 10, every=0.2))
    assert running[1:] == ["sh", "sleep 4242", "sleep 4343"], running  # and the session's first shell
    terminal.close()
    wait_until(lambda: not console_processes(), all_processes, 10, every=0.3)  # they end with the session


def test_exit_ends_the_session_and_closes_the_socket(site: Site) -> None:
    import websocket

    terminal = Terminal(site.socket_url(site.ssid), token=site.carol)
    terminal.type("exit\r")
    terminal.socket.settimeout(15)
    while True:
        opcode, data = terminal.socket.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            break
    terminal.close()
    assert int.from_bytes(data[:2], "big") == 1000


def test_only_the_owner_gets_in(site: Site) -> None:
    import websocket

    other = {"Authorization": f"Bearer {site.dave}"}
    assert site.http.get(f"/api/check_console?ssid={site.ssid}", headers=other).status_code == 404
    answer = site.http.get(f"/api/check_console?ssid={site.ssid}&namespace=carol", headers=other)
    assert answer.status_code == 404
    for token, status in ((site.dave, 404), ("not-a-token", 401)):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            Terminal(site.socket_url(site.ssid), token=token)
        assert refused.value.status_code == status
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        Terminal(site.socket_url(site.ssid, namespace="dave"), token=site.carol)
    assert refused.value.status_code == 404
    assert site.http.get(f"/api/check_console?ssid={site.ssid}").status_code == 401
    # The admin has no more right into a user's container than anyone else (the Go apiserver's 404).
    admin = site.login("admin", ADMIN_PASSWORD)
    assert site.http.get(f"/api/check_console?ssid={site.ssid}", headers=bearer(admin)).status_code == 404


def test_a_stopped_service_has_no_console_and_bad_input_is_named(site: Site) -> None:
    mine = bearer(site.carol)
    # check_console answers 200 for any service of the caller's, as Go's did, and says why no shell opens.
    answer = site.http.get(f"/api/check_console?ssid={site.stopped_ssid}", headers=mine)
    assert answer.status_code == 200
    assert answer.json()["available"] is False
    assert "not running" in answer.json()["reason"]
    running = site.http.get(f"/api/check_console?ssid={site.ssid}", headers=mine).json()
    assert running == {"ssid": site.ssid, "available": True, "reason": ""}
    import websocket

    with pytest.raises(websocket.WebSocketBadStatusException) as not_running:
        Terminal(site.socket_url(site.stopped_ssid), token=site.carol)
    assert not_running.value.status_code == 409
    assert site.http.get("/api/check_console", headers=mine).json()["Error"] == "ssid: names no stack service"
    answer = site.http.get(f"/api/console?ssid={site.ssid}", headers=mine)
    assert answer.status_code == 400 and "websocket" in answer.json()["Error"]
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        Terminal(site.socket_url(site.ssid, cols="wide"), token=site.carol)
    assert refused.value.status_code == 400
