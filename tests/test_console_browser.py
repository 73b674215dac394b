"""The console on the management page in headless Chromium, against the container runtime."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.chromium import WIDE
from tests.console_site import Site
from tests.engines import engine  # noqa: F401 (the fixture)
from tests.test_ui_browser import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=WIDE)
    context.set_default_timeout(15_000)
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    opened.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    try:
        yield opened
    finally:
        context.close()
    # Chromium drops the loads in flight when the host's interfaces change, as an engine's networks
    # come and go beside the test: the machine's doing, not the page's.
    assert [problem for problem in problems if NETWORK_CHANGED not in problem] == [], "the page logged errors"


NETWORK_CHANGED = "net::ERR_NETWORK_CHANGED"


PAGE_LOAD_MS = 60_000
"""How long the page and a login may take while the engine starts stacks beside the test (a
busy machine serves the page's modules and hashes the password slowly): bounded, so that a page that
never comes up still fails, with Playwright's account of what it waited for."""


def log_in_steadily(page: Any, url: str, username: str, password: str) -> None:
    """Log in on the page, loading it again only when Chromium dropped one of its loads because an
    engine's network changed (``net::ERR_NETWORK_CHANGED``); any other load that does not bring up
    the login form within ``PAGE_LOAD_MS`` is the page's failure and raises."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    dropped: list[str] = []
    page.on("requestfailed", lambda request: dropped.append(f"{request.url}: {request.failure}"))
    name_field = page.get_by_label("User name or e-mail")
    for attempt in range(3):
        dropped.clear()
        page.goto(url + "/", timeout=PAGE_LOAD_MS)
        try:
            name_field.wait_for(state="visible", timeout=PAGE_LOAD_MS)
            break
        except PlaywrightTimeout:
            if attempt == 2 or not any(NETWORK_CHANGED in failure for failure in dropped):
                raise
    # The form as loaded, not a new load of the page (which a network change could drop again).
    name_field.fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="My stacks", level=1)).to_be_visible(timeout=PAGE_LOAD_MS)


def test_the_console_button_opens_a_terminal_on_a_shell_in_the_app(page: Any, site: Site) -> None:
    from playwright.sync_api import expect

    log_in_steadily(page, site.workbench.url, "carol", "carol-pw1")
    page.goto(site.workbench.url + "/#/stacks")
    page.get_by_role("button", name="Console of notebook").click()
    panel = page.locator("#console-panel")
    expect(panel.get_by_role("status")).to_contain_text("Connected")
    rows = panel.locator(".xterm-rows")
    page.keyboard.type("echo from-the-$((6*7))-console; cat /home/user/work/clowder/Field*/readme.txt\n")
    expect(rows).to_contain_text("from-the-42-console")
    expect(rows).to_contain_text("hello from Clowder")
    screenshot(page, "console")
    panel.get_by_role("button", name="Close the console").click()
    expect(panel).to_be_hidden()
