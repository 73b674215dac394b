"""From "submit to the extractor" in Clowder to the files inside a running stack, with "done" back in
Clowder: ``workbench run`` taking Clowder's jobs itself (Clowder 1 and 2, the real RabbitMQ)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.clowder_pairing import API_KEY, SECRET
from tests.clowder_server import ClowderServer
from tests.support import wait_until
from tests.test_clowder_jobs import delete_queues, final_status, submit
from tests.test_e2e import STATIC_SPEC, Platform, bearer, user_with_spec, wait_for_status
from tests.test_shovel import AMQP_URL, require_rabbitmq

pytestmark = pytest.mark.e2e

PREFIX = f"wbe2e{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=[1, 2], ids=["clowder1", "clowder2"])
def clowder(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ClowderServer]:
    require_rabbitmq()
    try:
        with ClowderServer(tmp_path / "clowder", request.param, API_KEY, amqp_url=AMQP_URL) as server:
            yield server
    finally:
        delete_queues(PREFIX)


@pytest.fixture
def workbench(tmp_path: Path, clowder: ClowderServer) -> Iterator[Platform]:
    settings = {
        "WORKBENCH_CLOWDER_URL": clowder.url,
        "WORKBENCH_CLOWDER_API_KEY": API_KEY,
        "WORKBENCH_EVENT_SECRET": SECRET,
        "WORKBENCH_RUNTIME": "local",
        "WORKBENCH_CLOWDER_AMQP_URL": AMQP_URL,
        "WORKBENCH_CLOWDER_EXTRACTOR_PREFIX": PREFIX,
    }
    with Platform(tmp_path / "data", settings=settings) as platform:
        yield platform


def test_a_dataset_submitted_to_send_to_workbench_is_read_inside_the_running_app_and_clowder_says_done(
    workbench: Platform, clowder: ClowderServer
) -> None:
    content = {"readme.txt": b"hello from Clowder\n", "raw/data.csv": b"a,b\n1,2\n"}
    dataset_id = clowder.add_dataset("Soil samples")
    clowder.add_files(dataset_id, content)
    key = clowder.add_user("dana@example.org")

    http = httpx.Client(base_url=workbench.url, timeout=10)
    dana = user_with_spec(http, "dana", "dana-password", STATIC_SPEC)
    sid = http.post("/api/stacks", json={"key": "notebook"}, headers=bearer(dana)).json()["id"]
    assert http.get(f"/api/start/{sid}", headers=bearer(dana)).status_code == 202
    (service,) = wait_for_status(http, sid, "started", dana)["services"]
    connect = service["endpoints"][0]["url"]

    # What the Clowder user does: the extractor is listed; they submit the dataset to it.
    wait_until(lambda: f"{PREFIX}.send" in clowder.heartbeats, "Send to Workbench announced")
    job_id = submit(clowder, key, dataset_id, f"{PREFIX}.send")
    done = final_status(clowder, job_id, seconds=60)
    assert done["message_type"] == "StatusMessage.done", done
    (transfer,) = http.get("/api/transfers", headers=bearer(dana)).json()
    assert transfer["state"] == "completed" and transfer["user"] == "dana"
    path = "/home/user/work/clowder/Soil samples"
    assert done["message"] == (
        f"transfer {transfer['id']}: 2 of 2 files ({sum(map(len, content.values()))} bytes) in "
        f"Clowder/Soil samples; inside your apps: {service['id']}: {path}"
    )
    kinds = [status["message_type"] for status in clowder.statuses_of(job_id)]
    assert kinds[0] == "StatusMessage.start" and kinds[-1] == "StatusMessage.done"
    assert all(status["file_id"] == dataset_id for status in clowder.statuses_of(job_id))

    # From the app's side: its Connect URL serves the files where the final status says they are.
    beneath = path.removeprefix("/home/user/work/")
    for name, data in content.items():
        fetched = httpx.get(connect.rstrip("/") + "/" + quote(f"{beneath}/{name}"), timeout=10)
        assert (fetched.status_code, fetched.content) == (200, data), name
