"""End to end: ``workbench run`` as a process, driven over HTTP as the UI and CLI drive it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.support import STATIC_SPEC
from shared.adapters.runtime.processes import free_port
from tests import support
from tests.conftest import ADMIN_PASSWORD, ROOT
from tests.support import wait_until

pytestmark = pytest.mark.e2e


class Platform:
    """A running ``workbench run`` on a free port with its own data dir."""

    def __init__(self, data_dir: Path, *, settings: Mapping[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.settings = dict(settings or {})
        """Settings of this platform, over those it always gets; none of the test's own ``WORKBENCH_*``."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / "workbench.log"

    def start(self) -> None:
        environment = {key: value for key, value in os.environ.items() if not key.startswith("WORKBENCH_")}
        environment.update(
            {
                # Local processes, whether or not a container engine answers on this machine.
                "WORKBENCH_RUNTIME": "local",
                **self.settings,
                "WORKBENCH_PORT": str(self.port),
                "WORKBENCH_DATA_DIR": str(self.data_dir),
                "WORKBENCH_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "WORKBENCH_READY_TIMEOUT": "30",
            }
        )
        executable = Path(sys.executable).with_name("workbench")
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                [str(executable), "run"], cwd=ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT
            )
        wait_until(self.healthy, lambda: "workbench run to come up:\n" + self.log.read_text(), 30, every=0.2)

    def healthy(self) -> bool:
        """Whether the platform answers; fails at once, with its log, when the process has ended."""
        try:
            if httpx.get(f"{self.url}/api/healthz", timeout=1).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        assert self.process is not None and self.process.poll() is None, self.log.read_text()
        return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)

    def __enter__(self) -> Platform:
        try:
            self.start()
        except BaseException:
            self.stop()  # one that never came up is not left running
            raise
        return self

    def __exit__(self, *exception: object) -> None:
        self.stop()

    def mails(self) -> list[Any]:
        return [
            message_from_bytes(path.read_bytes(), policy=policy.default)
            for path in sorted((self.data_dir / "outbox").glob("*.eml"))
        ]


def wait_for_status(
    http: httpx.Client, sid: str, wanted: str, token: str, seconds: float = 40
) -> dict[str, Any]:
    """Poll the stack through the platform's HTTP API until it is ``wanted`` (an error fails at once)."""

    def read() -> dict[str, Any]:
        stack: dict[str, Any] = http.get(f"/api/stacks/{sid}", headers=bearer(token)).json()
        return stack

    return support.wait_for_status(read, wanted, f"stack {sid}", seconds=seconds, every=0.2)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token(http: httpx.Client, username: str, password: str) -> str:
    response = http.post("/api/authenticate", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    value: str = response.json()["token"]
    return value


def user_with_spec(http: httpx.Client, user: str, password: str, spec: dict[str, Any]) -> str:
    """The token of ``user``, an account the admin made (``<user>@example.org``), which has added
    ``spec`` to its own catalog."""
    admin = token(http, "admin", ADMIN_PASSWORD)
    account = {"namespace": user, "name": user.title(), "email": f"{user}@example.org", "password": password}
    response = http.post("/api/accounts", json=account, headers=bearer(admin))
    assert response.status_code == 200, response.text
    user_token = token(http, user, password)
    response = http.post("/api/services", json=spec, headers=bearer(user_token))
    assert response.status_code == 200, response.text
    return user_token


def test_the_whole_journey(workbench: Platform) -> None:
    http = httpx.Client(base_url=workbench.url, timeout=10)

    # register → verify → approve → login
    account = {"namespace": "carol", "name": "Carol", "email": "carol@example.org", "password": "carol-pass"}
    response = http.post("/api/register", json=account)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "unverified"
    assert http.post("/api/register", json=account).status_code == 409
    assert (
        http.post("/api/authenticate", json={"username": "carol", "password": "carol-pass"}).status_code
        == 401
    )

    verify_link = workbench.mails()[-1].get_content()
    token, user = re.search(r"verify\?t=([^&\s]+)&u=(\w+)", verify_link).groups()  # type: ignore[union-attr]
    assert http.put("/api/register/verify", json={"u": user, "t": "wrong"}).status_code == 404
    assert http.put("/api/register/verify", json={"u": user, "t": token}).status_code == 200

    approval = workbench.mails()[-1]
    assert "support@" in approval["To"]
    approve_url = re.search(r"Approve: (\S+)", approval.get_content()).group(1)  # type: ignore[union-attr]
    approved = http.get(approve_url.replace("http://127.0.0.1:" + str(workbench.port), ""))
    assert approved.status_code == 200
    assert approved.json() == {"message": "Account has been approved."}

    assert http.post("/api/authenticate", json={"username": "carol", "password": "nope"}).status_code == 401
    login = http.post("/api/authenticate", json={"username": "carol@example.org", "password": "carol-pass"})
    assert login.status_code == 200
    carol = login.json()["token"]
    assert http.get("/api/stacks").status_code == 401

    # a user service, then a stack of it
    assert (
        http.post("/api/services", json={**STATIC_SPEC, "key": "x" * 18}, headers=bearer(carol)).status_code
        == 400
    )
    response = http.post("/api/services", json=STATIC_SPEC, headers=bearer(carol))
    assert response.status_code == 200, response.text
    assert http.post("/api/stacks", json={"key": "missing"}, headers=bearer(carol)).status_code == 404
    response = http.post(
        "/api/stacks", json={"key": "notebook", "name": "My notebook"}, headers=bearer(carol)
    )
    assert response.status_code == 200
    stack = response.json()
    sid = stack["id"]
    assert re.fullmatch(r"s[a-z0-9]{5}", sid)
    assert stack["status"] == "stopped"
    service = stack["services"][0]
    assert service["id"] == f"{sid}-notebook"
    (folder,) = service["volumeMounts"]
    assert re.fullmatch(rf"AppData/{sid}-notebook-[a-z0-9]{{5}}", folder)

    # someone else cannot see or start it
    admin = http.post("/api/authenticate", json={"username": "admin", "password": ADMIN_PASSWORD}).json()[
        "token"
    ]
    assert http.get(f"/api/stacks/{sid}", headers=bearer(admin)).status_code == 404
    assert http.get(f"/api/start/{sid}", headers=bearer(admin)).status_code == 404

    # start → started, its endpoint serves the data folder
    home = workbench.data_dir / "home" / "carol" / folder
    response = http.get(f"/api/start/{sid}", headers=bearer(carol))
    assert response.status_code == 202
    assert response.json()["status"] == "starting"
    assert http.get(f"/api/start/{sid}", headers=bearer(carol)).status_code == 409
    started = wait_for_status(http, sid, "started", carol)
    (endpoint,) = started["services"][0]["endpoints"]
    home.mkdir(parents=True, exist_ok=True)
    (home / "hello.txt").write_text("hello from the workbench")
    assert httpx.get(endpoint["url"] + "hello.txt", timeout=5).text == "hello from the workbench"
    host = httpx.URL(endpoint["url"]).netloc.decode()
    assert http.get("/api/check_token", params={"host": host}, headers=bearer(carol)).status_code == 200
    assert http.get("/api/check_token", params={"host": host}, headers=bearer(admin)).status_code == 403
    assert http.delete(f"/api/stacks/{sid}", headers=bearer(carol)).status_code == 409

    logs = http.get(f"/api/logs/{sid}-notebook", params={"lines": "20"}, headers=bearer(carol))
    assert logs.status_code == 200
    assert logs.json().startswith("STATUS MESSAGES\n=====================\n")
    assert "SERVICE LOG" in logs.json()
    assert (
        http.get(f"/api/logs/{sid}-notebook", params={"lines": "x"}, headers=bearer(carol)).status_code == 400
    )
    assert http.get(f"/api/logs/{sid}-nothing", headers=bearer(carol)).status_code == 404

    # stop → stopped, rename, delete
    response = http.get(f"/api/stop/{sid}", headers=bearer(carol))
    assert response.status_code == 202
    wait_for_status(http, sid, "stopped", carol)
    with pytest.raises(httpx.TransportError):
        httpx.get(endpoint["url"], timeout=2)
    assert http.get(f"/api/stop/{sid}", headers=bearer(carol)).status_code == 409
    renamed = http.put(f"/api/stacks/{sid}/rename", json={"name": "Renamed"}, headers=bearer(carol))
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Renamed"
    assert http.put(f"/api/stacks/{sid}/rename", json={"name": 5}, headers=bearer(carol)).status_code == 400
    assert http.delete(f"/api/stacks/{sid}", headers=bearer(carol)).status_code == 200
    assert http.get(f"/api/stacks/{sid}", headers=bearer(carol)).status_code == 404
    assert http.get("/api/stacks", headers=bearer(carol)).json() == []


def test_started_stacks_survive_a_restart(workbench: Platform) -> None:
    http = httpx.Client(base_url=workbench.url, timeout=10)
    admin = http.post("/api/authenticate", json={"username": "admin", "password": ADMIN_PASSWORD}).json()[
        "token"
    ]
    assert http.post("/api/services", json=STATIC_SPEC, headers=bearer(admin)).status_code == 200
    sid = http.post("/api/stacks", json={"key": "notebook"}, headers=bearer(admin)).json()["id"]
    assert http.get(f"/api/start/{sid}", headers=bearer(admin)).status_code == 202
    before = wait_for_status(http, sid, "started", admin)["services"][0]["endpoints"][0]["url"]

    workbench.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(before, timeout=2)  # the service ended with the platform
    workbench.start()

    after = wait_for_status(http, sid, "started", admin)["services"][0]["endpoints"][0]["url"]
    assert httpx.get(after, timeout=5).status_code == 200
