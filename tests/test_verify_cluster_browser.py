"""The page's Verify where the platform does not reach the homes (as on a cluster), in headless Chromium:
it asks the user's shovel, follows the check until it is settled and shows what changed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared.bootstrap import Platform
from tests import test_stacks
from tests.chromium import WIDE
from tests.clowder_pairing import Served
from tests.clowder_server import ClowderServer
from tests.conftest import Api
from tests.test_receipts import completed_transfer, receipt_of
from tests.test_transfers import ClientFactory
from tests.test_ui_browser import log_in, view

CHECK_WAITING = (
    "Waiting for one of your stacks to start: its shovel checks the folder where your apps see it."
)
"""What the page says of a check no shovel takes yet (views/transfers.js)."""

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("quick_retries", "no_stack_left")]


@pytest.fixture
def environment(paired_environment: dict[str, str]) -> dict[str, str]:
    return paired_environment


@pytest.fixture
def tab(browser: Any) -> Iterator[Any]:
    """A page of the in-process platform, failing the test on any error it logs."""
    context = browser.new_context(viewport=WIDE)
    context.set_default_timeout(15_000)
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    opened.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    try:
        yield opened
    finally:
        context.close()
    assert problems == [], "the page logged errors"


def test_verify_on_a_cluster_shows_the_shovel_s_result(
    tab: Any,
    api: Api,
    client: ClientFactory,
    platform: Platform,
    clowder: ClowderServer,
    shovels: Served,
    alice: str,
) -> None:
    from playwright.sync_api import expect

    _, transfer_id, _, target = completed_transfer(api, client, platform, clowder, alice)
    receipt_of(target, transfer_id)
    platform.home_space = None  # as on a cluster: only the shovels reach the homes
    log_in(tab, shovels.url, "alice", "secret-alice")
    view(tab, "Transfers")
    transfer = tab.get_by_role("article", name="Field Study")

    transfer.get_by_role("button", name="Verify").click()
    expect(transfer.get_by_role("status")).to_have_text(
        "Unchanged since received: 3 files checked against the receipt."
    )
    [check] = [api.call("GET", f"/api/transfers/{transfer_id}/verify", alice).get_json()]
    assert check["state"] == "completed"  # the shovel's, recorded: the platform did not reach the home

    (target / "readme.txt").write_bytes(b"edited in the app\n")
    (target / "notes.md").write_bytes(b"mine")
    transfer.get_by_role("button", name="Verify").click()
    expect(transfer.get_by_role("list", name="Changes since received").locator("li")).to_have_text(
        ["modified: readme.txt", "added: notes.md"]
    )

    # With no stack running no shovel takes the check: the page says what it waits for.
    [stack] = api.call("GET", "/api/stacks", alice).get_json()
    assert api.call("GET", f"/api/stop/{stack['id']}", alice).status_code == 202
    test_stacks.wait_for(api, alice, stack["id"], "stopped")
    transfer.get_by_role("button", name="Verify").click()
    expect(transfer.get_by_role("status")).to_have_text(CHECK_WAITING)
