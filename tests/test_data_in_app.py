"""A sent dataset is where the app looks: read through the running service, at the path the transfer
reports, on the local platform (``workbench run``, local processes)."""

from __future__ import annotations

import os
from urllib.parse import quote

import httpx
import pytest

from tests.clowder_server import ClowderServer
from tests.test_e2e import STATIC_SPEC, Platform, bearer, user_with_spec, wait_for_status
from tests.test_transfer_flow import wait_for_transfer

pytestmark = pytest.mark.e2e


def test_the_running_service_serves_a_sent_file_where_the_transfer_says_it_is(
    paired_workbench: Platform, clowder: ClowderServer
) -> None:
    content = {"readme.txt": b"hello from Clowder\n", "raw/data.bin": os.urandom(200_000)}
    dataset_id = clowder.add_dataset("Soil samples")
    clowder.add_files(dataset_id, content)

    http = httpx.Client(base_url=paired_workbench.url, timeout=10)
    dana = user_with_spec(http, "dana", "dana-password", STATIC_SPEC)
    sid = http.post("/api/stacks", json={"key": "notebook"}, headers=bearer(dana)).json()["id"]
    assert http.get(f"/api/start/{sid}", headers=bearer(dana)).status_code == 202
    stack = wait_for_status(http, sid, "started", dana)
    (service,) = stack["services"]
    connect = service["endpoints"][0]["url"]

    sent = http.post("/api/transfers", headers=bearer(dana), json={"datasetId": dataset_id})
    assert sent.status_code == 202, sent.text
    transfer = wait_for_transfer(http, dana, "completed")
    assert transfer["target"] == "Clowder/Soil samples"
    # Where the files are, in the app's terms: the spec mounts its folder at /home/user/work.
    read = http.get(f"/api/transfers/{transfer['id']}", headers=bearer(dana)).json()
    assert read["locations"] == [{"service": service["id"], "path": "/home/user/work/clowder/Soil samples"}]

    # From the app's side: its Connect URL serves its folder, the data folder at clowder/ beneath it.
    beneath = read["locations"][0]["path"].removeprefix("/home/user/work/")
    for name, data in content.items():
        fetched = httpx.get(connect.rstrip("/") + "/" + quote(f"{beneath}/{name}"), timeout=10)
        assert (fetched.status_code, fetched.content) == (200, data), name
    listing = httpx.get(connect, timeout=10)
    assert listing.status_code == 200 and "clowder/" in listing.text

    # Once the stack stops, no service sees the files: the locations follow the stacks.
    assert http.get(f"/api/stop/{sid}", headers=bearer(dana)).status_code == 202
    wait_for_status(http, sid, "stopped", dana)
    assert http.get(f"/api/transfers/{transfer['id']}", headers=bearer(dana)).json()["locations"] == []
