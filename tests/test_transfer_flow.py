"""Clowder to container through the local platform: a signed event in, the files in a stack's volume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from events import types
from events.codec import new_event
from events.producer import send
from tests import support
from tests.clowder_pairing import SECRET
from tests.clowder_server import ClowderServer
from tests.conftest import ADMIN_PASSWORD
from tests.support import wait_until
from tests.test_e2e import STATIC_SPEC, Platform, bearer, wait_for_status

pytestmark = pytest.mark.e2e


def signed_request(
    clowder: ClowderServer,
    dataset_id: str,
    *,
    event_id: str | None = None,
    secret: str | None = SECRET,
    **changes: Any,
) -> Any:
    data = {"clowder_url": clowder.url, "dataset_id": dataset_id, "email": "carol@example.org", **changes}
    return new_event(
        types.TRANSFER_REQUESTED,
        data,
        source="https://clowder.example.org/",
        secret=secret.encode() if secret else None,
        event_id=event_id,
    )


def wait_for_transfer(http: httpx.Client, token: str, state: str, seconds: float = 60) -> dict[str, Any]:
    """Poll the user's newest transfer through the platform's HTTP API until it is ``state``."""

    def newest() -> dict[str, Any]:
        listed: list[dict[str, Any]] = http.get("/api/transfers", headers=bearer(token)).json()
        return listed[0] if listed else {}

    return support.wait_for_status(
        newest, state, "the newest transfer", field="state", seconds=seconds, every=0.2
    )


def every_file(folder: Path) -> dict[str, bytes]:
    """The files received in ``folder``, without the receipts kept beside them (``.workbench/``)."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).parts[0] != ".workbench"
    }


def test_a_dataset_reaches_the_running_stack(paired_workbench: Platform, clowder: ClowderServer) -> None:
    content = {
        "readme.txt": b"hello from Clowder\n",
        "raw/2024/measurements.csv": os.urandom(300_000),
        "raw/big.bin": os.urandom(3_000_000),
    }
    dataset_id = clowder.add_dataset("Field Study")
    clowder.add_files(dataset_id, content)

    http = httpx.Client(base_url=paired_workbench.url, timeout=10)
    admin = http.post("/api/authenticate", json={"username": "admin", "password": ADMIN_PASSWORD}).json()[
        "token"
    ]
    created = http.post(
        "/api/accounts",
        headers=bearer(admin),
        json={
            "namespace": "carol",
            "name": "Carol",
            "email": "carol@example.org",
            "password": "carol-password",
        },
    )
    assert created.status_code == 200, created.text
    carol = http.post("/api/authenticate", json={"username": "carol", "password": "carol-password"}).json()[
        "token"
    ]
    assert http.post("/api/services", json=STATIC_SPEC, headers=bearer(carol)).status_code == 200
    sid = http.post("/api/stacks", json={"key": "notebook"}, headers=bearer(carol)).json()["id"]
    assert http.get(f"/api/start/{sid}", headers=bearer(carol)).status_code == 202
    wait_for_status(http, sid, "started", carol)

    # As a person (or Clowder) would: `workbench events send`, signed with the pairing secret.
    command = subprocess.run(
        [
            str(Path(sys.executable).with_name("workbench")),
            "events",
            "send",
            types.TRANSFER_REQUESTED,
            "--data",
            json.dumps({"clowder_url": clowder.url, "dataset_id": dataset_id, "email": "carol@example.org"}),
            "--to",
            f"{paired_workbench.url}/events",
        ],
        env={**os.environ, "WORKBENCH_EVENT_SECRET": SECRET},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert command.returncode == 0, command.stderr
    assert "HTTP 202" in command.stdout
    transfer = wait_for_transfer(http, carol, "completed")
    assert transfer["filesDone"] == transfer["filesTotal"] == 3
    assert transfer["bytesDone"] == sum(len(data) for data in content.values())
    assert transfer["target"] == "Clowder/Field Study"

    home = paired_workbench.data_dir / "home" / "carol"
    assert every_file(home / "Clowder" / "Field Study") == content
    receipt = home / "Clowder" / "Field Study" / ".workbench" / "receipts" / f"{transfer['id']}.json"
    wait_until(receipt.exists, "the transfer's receipt beside the data", 30, every=0.2)
    assert sorted(entry["path"] for entry in json.loads(receipt.read_text())["files"]) == sorted(content)

    # The same event again (a redelivery) changes nothing: one transfer, no second copy of any file.
    event = signed_request(clowder, dataset_id, event_id="redelivered")
    assert send(event, f"{paired_workbench.url}/events") == 202
    wait_until(
        lambda: len(http.get("/api/transfers", headers=bearer(carol)).json()) >= 2,
        "the second request to be recorded",
        30,
        every=0.2,
    )
    assert send(event, f"{paired_workbench.url}/events") == 202
    time.sleep(2)
    transfers = http.get("/api/transfers", headers=bearer(carol)).json()
    assert len(transfers) == 2  # the CLI's event and the redelivered one, each once
    wait_for_transfer(http, carol, "completed")
    # The second transfer found the same files already in place: nothing overwritten or doubled up.
    assert every_file(home / "Clowder" / "Field Study") == content

    # A forged event (wrong secret) is refused and records nothing.
    forged = signed_request(clowder, dataset_id, secret="not-the-secret")
    # The local Broker checks the signature before it accepts an event, so it keeps nothing of it.
    assert send(forged, f"{paired_workbench.url}/events") == 401
    assert not list((paired_workbench.data_dir / "deadletter").glob("*.json"))
    assert len(http.get("/api/transfers", headers=bearer(carol)).json()) == 2
