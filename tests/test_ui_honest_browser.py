"""The management page is honest where no engine runs the apps: file previews say so, internal services
offer no Connect link, and a dataset sent while no stack runs says it waits and offers to start one."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.clowder_server import ClowderServer
from tests.test_e2e import STATIC_SPEC, Platform, bearer
from tests.test_ui_browser import (
    PASSWORD,
    SLOW,
    clowder,
    log_in,
    pytestmark,
    stack_card,
    status_of,
    token,
    view,
    workbench,
)

__all__ = ["clowder", "pytestmark", "workbench"]

INTERNAL_SPEC = {
    **STATIC_SPEC,
    "key": "cache",
    "label": "Cache",
    "description": "A service for the stack's other services only",
    "access": "internal",
}
WAITING = "None of your stacks is running: the files arrive when one of your stacks starts."


def test_a_send_without_a_running_stack_waits_and_offers_to_start_one(
    page: Any, workbench: Platform, clowder: ClowderServer
) -> None:
    from playwright.sync_api import expect

    dataset_id = clowder.add_dataset("Waiting Study")
    clowder.add_files(dataset_id, {"notes.txt": b"waiting for a stack\n"})
    http = httpx.Client(base_url=workbench.url, timeout=10)
    carol = token(http, "carol", PASSWORD)

    log_in(page, workbench.url, "carol", PASSWORD)
    view(page, "Send & export")
    page.get_by_label("Clowder dataset URL or id").fill(dataset_id)
    page.get_by_role("button", name="Check").click()  # the plan first
    page.get_by_role("button", name="Send to my home").click()
    expect(page.get_by_role("heading", name="Transfers and exports", level=1)).to_be_visible()
    expect(page.locator("#notice")).to_contain_text(WAITING)
    transfer = page.get_by_role("article", name="Waiting Study")
    expect(transfer.locator(".waiting")).to_contain_text(WAITING)
    # carol has no stack yet: the page offers the catalog
    expect(transfer.get_by_role("link", name="Create a stack from the catalog")).to_have_attribute(
        "href", "#/catalog"
    )

    # once she has a stopped stack, the page offers to start it, and the files arrive when it runs
    body = {"key": "notebook", "name": "Receiver"}
    sid = http.post("/api/stacks", json=body, headers=bearer(carol)).json()["id"]
    start = transfer.get_by_role("button", name="Start Receiver")
    expect(start).to_be_visible(timeout=SLOW)
    start.click()
    expect(transfer.get_by_text("completed", exact=True)).to_be_visible(timeout=SLOW)
    expect(transfer.locator(".waiting")).to_have_count(0)
    assert http.get(f"/api/stacks/{sid}", headers=bearer(carol)).json()["status"] in ("starting", "started")

    assert http.get(f"/api/stop/{sid}", headers=bearer(carol)).status_code == 202
    view(page, "My stacks")
    expect(status_of(stack_card(page, "Receiver"))).to_have_text("Status: stopped", timeout=SLOW)


def test_a_file_preview_says_so_and_an_internal_service_has_no_connect_link(
    page: Any, workbench: Platform
) -> None:
    from playwright.sync_api import expect

    http = httpx.Client(base_url=workbench.url, timeout=10)
    carol = token(http, "carol", PASSWORD)
    assert http.post("/api/services", json=INTERNAL_SPEC, headers=bearer(carol)).status_code == 200
    preview = http.post("/api/stacks", json={"key": "notebook", "name": "Preview"}, headers=bearer(carol))
    internal = http.post("/api/stacks", json={"key": "cache", "name": "Internal"}, headers=bearer(carol))
    sids = [preview.json()["id"], internal.json()["id"]]
    for sid in sids:
        assert http.get(f"/api/start/{sid}", headers=bearer(carol)).status_code == 202

    log_in(page, workbench.url, "carol", PASSWORD)
    card = stack_card(page, "Preview")
    expect(status_of(card)).to_have_text("Status: started", timeout=SLOW)
    expect(card.get_by_text("file preview", exact=True)).to_be_visible()
    note = card.locator(".service-note")
    expect(note).to_contain_text("File preview:")
    expect(note).to_contain_text("run Docker or Podman so that workbench run starts the catalog's containers")
    expect(note).to_contain_text("WORKBENCH_LOCAL_COMMANDS")
    expect(card.get_by_role("link", name=re.compile(r"^Connect to notebook of Preview"))).to_be_visible()

    card.get_by_role("button", name="Logs of notebook in Preview").click()
    logs = page.get_by_role("region", name=re.compile(r"^Logs of notebook in Preview .*, a file preview$"))
    expect(logs.locator("pre")).to_contain_text("STATUS MESSAGES")
    expect(logs.locator("pre")).to_contain_text("File preview: serving")
    expect(logs.locator("pre")).not_to_contain_text("KUBERNETES")
    logs.get_by_role("button", name="Close the logs").click()

    other = stack_card(page, "Internal")
    expect(status_of(other)).to_have_text("Status: started", timeout=SLOW)
    expect(other.get_by_role("link")).to_have_count(0)
    expect(other.locator(".endpoint")).to_have_count(0)
    (service,) = http.get(f"/api/stacks/{sids[1]}", headers=bearer(carol)).json()["services"]
    (endpoint,) = service["endpoints"]
    assert endpoint["url"] == "" and endpoint["nodePort"] > 0  # the address is still listed

    for sid in sids:
        assert http.get(f"/api/stop/{sid}", headers=bearer(carol)).status_code == 202
    expect(status_of(card)).to_have_text("Status: stopped", timeout=SLOW)
    expect(card.locator(".service-note")).to_have_count(0)
