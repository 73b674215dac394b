"""A copy Clowder withdrew, as its owner meets it: on the page's transfers view (headless Chromium against
``workbench run``) and in ``workbench transfers``; the withdrawal reaches the platform as Clowder sends
it, a signed event posted to the local Broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from events import types
from events.codec import new_event, to_http
from shared.adapters.store.sql import open_store
from shared.core import clock
from shared.core.models import Transfer
from tests.clowder_pairing import SECRET, SOURCE
from tests.clowder_server import ClowderServer
from tests.conftest import ADMIN_PASSWORD
from tests.support import wait_until
from tests.test_client_cli import Cli
from tests.test_e2e import Platform, bearer, token
from tests.test_ui_browser import log_in, view

pytestmark = pytest.mark.e2e

CLOWDER_KEY = "clowder-api-key"
PASSWORD = "dana-password"
DATASET = "5f1ed0c4"


@pytest.fixture(scope="module")
def clowder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClowderServer]:
    with ClowderServer(tmp_path_factory.mktemp("clowder"), 2, CLOWDER_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def workbench(tmp_path_factory: pytest.TempPathFactory, clowder: ClowderServer) -> Iterator[Platform]:
    """The platform, with dana's completed copy of a dataset that Clowder has since deleted."""
    settings = {
        "WORKBENCH_CLOWDER_URL": clowder.url,
        "WORKBENCH_CLOWDER_API_KEY": CLOWDER_KEY,
        "WORKBENCH_EVENT_SECRET": SECRET,
    }
    platform = Platform(tmp_path_factory.mktemp("workbench") / "data", settings=settings)
    platform.start()
    try:
        http = httpx.Client(base_url=platform.url, timeout=10)
        admin = token(http, "admin", ADMIN_PASSWORD)
        account = {"namespace": "dana", "name": "Dana", "email": "dana@example.org", "password": PASSWORD}
        assert http.post("/api/accounts", json=account, headers=bearer(admin)).status_code == 200
        record_copy(platform, clowder)
        withdraw(platform, clowder)
        yield platform
    finally:
        platform.stop()


def record_copy(platform: Platform, clowder: ClowderServer) -> None:
    """A completed transfer in the platform's own database, as its transfer function leaves one."""
    store = open_store(f"sqlite:///{platform.data_dir / 'workbench.db'}")
    try:
        copy = Transfer(
            id="copy-of-lake-cores",
            user="dana",
            state="completed",
            source=clowder.url,
            datasetId=DATASET,
            datasetName="Lake Cores",
            target="Clowder/Lake Cores",
            filesTotal=2,
            filesDone=2,
            bytesTotal=2000,
            bytesDone=2000,
            createdTime=clock.now(),
            updateTime=clock.now(),
        )
        assert store.insert_transfer(copy)
    finally:
        store.close()


def withdraw(platform: Platform, clowder: ClowderServer) -> None:
    """Clowder's event, posted to the local Broker; it is delivered to the withdrawal function."""
    data = {
        "clowder_url": clowder.url,
        "dataset_id": DATASET,
        "reason": "deleted",
        "message": "Retracted by its authors",
    }
    event = new_event(types.DATASET_WITHDRAWN, data, source=SOURCE, secret=SECRET.encode())
    headers, body = to_http(event, "binary")
    assert httpx.post(f"{platform.url}/events", headers=headers, content=body, timeout=10).status_code == 202

    http = httpx.Client(base_url=platform.url, timeout=10)
    dana = bearer(token(http, "dana", PASSWORD))
    wait_until(
        lambda: http.get("/api/transfers", headers=dana).json()[0]["withdrawn"] is not None,
        "the withdrawal to flag dana's copy",
    )


@pytest.mark.browser
def test_the_transfers_view_tells_the_owner_clowder_withdrew_the_dataset(
    page: Any, workbench: Platform
) -> None:
    from playwright.sync_api import expect

    log_in(page, workbench.url, "dana", PASSWORD)
    view(page, "Transfers")
    card = page.get_by_role("article", name="Lake Cores")
    note = card.get_by_role("note", name="Withdrawn by Clowder")
    expect(note).to_contain_text("Clowder withdrew this dataset (deleted) on ")
    expect(note).to_contain_text(": Retracted by its authors")
    expect(note).to_contain_text("Nothing was deleted: the copy in Clowder/Lake Cores stays yours.")
    expect(card.get_by_text("completed", exact=True)).to_be_visible()  # the copy itself is as it was


def test_workbench_transfers_marks_the_withdrawn_copy(workbench: Platform, tmp_path: Path) -> None:
    cli = Cli(tmp_path / "dana.json", workbench.url)
    cli.login("dana", PASSWORD)
    assert "completed (withdrawn: deleted)" in cli.ok("transfers", "list")
    shown = cli.ok("transfers", "show", "copy-of-lake-cores")
    assert "Clowder withdrew this dataset (deleted) on " in shown
    assert (
        ": Retracted by its authors. Nothing was deleted: the copy in Clowder/Lake Cores stays yours."
        in shown
    )
