"""The plan before sending on the page's Send form, in a real browser (headless Chromium against
``workbench run``): Check shows what would move and whether it fits; only then does Send send it, and
a transfer that would not fit cannot be sent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.clowder_server import ClowderServer
from tests.conftest import ADMIN_PASSWORD
from tests.test_e2e import Platform, bearer, token
from tests.test_ui_browser import log_in, view

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CLOWDER_KEY = "clowder-api-key"
PASSWORD = "erin-password"
GIB = 1 << 30


@pytest.fixture(scope="module")
def clowder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClowderServer]:
    with ClowderServer(tmp_path_factory.mktemp("clowder"), 2, CLOWDER_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def workbench(tmp_path_factory: pytest.TempPathFactory, clowder: ClowderServer) -> Iterator[Platform]:
    settings = {"WORKBENCH_CLOWDER_URL": clowder.url, "WORKBENCH_CLOWDER_API_KEY": CLOWDER_KEY}
    platform = Platform(tmp_path_factory.mktemp("workbench") / "data", settings=settings)
    platform.start()
    try:
        http = httpx.Client(base_url=platform.url, timeout=10)
        admin = token(http, "admin", ADMIN_PASSWORD)
        account = {"namespace": "erin", "name": "Erin", "email": "erin@example.org", "password": PASSWORD}
        assert http.post("/api/accounts", json=account, headers=bearer(admin)).status_code == 200
        yield platform
    finally:
        platform.stop()


def transfers_of_erin(workbench: Platform) -> list[Any]:
    http = httpx.Client(base_url=workbench.url, timeout=10)
    listed: list[Any] = http.get("/api/transfers", headers=bearer(token(http, "erin", PASSWORD))).json()
    return listed


def test_the_send_form_shows_the_plan_before_it_sends(
    page: Any, workbench: Platform, clowder: ClowderServer
) -> None:
    from playwright.sync_api import expect

    dataset_id = clowder.add_dataset("Lake Cores")
    clowder.add_files(dataset_id, {"core-1.csv": b"1" * 1500, "deep/core-2.csv": b"2" * 500})
    log_in(page, workbench.url, "erin", PASSWORD)
    view(page, "Send & export")
    page.get_by_label("Clowder dataset URL or id").fill(f"{clowder.url}/datasets/{dataset_id}")
    send = page.get_by_role("button", name="Send to my home")
    expect(send).to_be_hidden()  # nothing can be sent before it is checked

    page.get_by_role("button", name="Check").click()
    plan = page.get_by_role("region", name="Plan: Lake Cores → Clowder/Lake Cores")
    expect(plan).to_be_visible()
    expect(plan.locator("dt")).to_have_text(
        [
            "Files",
            "Already staged",
            "Already in the folder",
            "To fetch from Clowder",
            "Storage quota",
            "Free space",
            "Time",
        ]
    )
    expect(plan.locator("dd").nth(0)).to_have_text("2 files, 2.0 kB")
    expect(plan.locator("dd").nth(4)).to_contain_text("fits: 2.0 kB needed")
    expect(plan.locator("dd").nth(5)).to_contain_text("fits:")
    expect(plan.locator("dd").nth(6)).to_have_text("no estimate yet")
    expect(plan).to_contain_text("It fits: nothing has moved yet")
    expect(send).to_be_visible()
    assert transfers_of_erin(workbench) == []  # a check moves nothing

    # Changing the request takes the plan away: it must be checked again.
    page.get_by_label("Folder in my data folder (optional)").fill("cores")
    expect(plan).to_be_hidden()
    expect(send).to_be_hidden()
    page.get_by_role("button", name="Check").click()
    expect(page.get_by_role("region", name="Plan: Lake Cores → Clowder/cores")).to_be_visible()

    send.click()
    expect(page.get_by_role("heading", name="Transfers and exports", level=1)).to_be_visible()
    expect(page.get_by_role("article", name="Lake Cores")).to_be_visible()
    (sent,) = transfers_of_erin(workbench)
    assert (sent["target"], sent["filesTotal"], sent["bytesTotal"]) == ("Clowder/cores", 2, 2000)


def test_a_transfer_that_would_not_fit_cannot_be_sent_from_the_form(
    page: Any, workbench: Platform, clowder: ClowderServer
) -> None:
    from playwright.sync_api import expect

    http = httpx.Client(base_url=workbench.url, timeout=10)
    admin = token(http, "admin", ADMIN_PASSWORD)
    account = http.get("/api/accounts/erin", headers=bearer(admin)).json()
    account["resourceLimits"]["storageQuota"] = 1
    response = http.put("/api/accounts/erin", json=account, headers=bearer(admin))
    assert response.status_code == 200, response.text
    home = workbench.data_dir / "home" / "erin"
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "large.bin", "wb") as handle:
        handle.truncate(GIB)  # sparse: the quota is used up, the disk is not
    before = len(transfers_of_erin(workbench))

    dataset_id = clowder.add_dataset("Too Much")
    clowder.add_files(dataset_id, {"a.csv": b"a" * 100})
    log_in(page, workbench.url, "erin", PASSWORD)
    view(page, "Send & export")
    page.get_by_label("Clowder dataset URL or id").fill(dataset_id)
    page.get_by_role("button", name="Check").click()
    plan = page.get_by_role("region", name="Plan: Too Much → Clowder/Too Much")
    expect(plan.locator("dd.over")).to_contain_text("does not fit")
    expect(plan).to_contain_text("It would not fit, so it cannot be sent.")
    expect(page.get_by_role("button", name="Send to my home")).to_be_hidden()
    assert len(transfers_of_erin(workbench)) == before
