"""The console on the management page in headless Chromium, against the container runtime."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.engines import engine  # noqa: F401 (the fixture)
from tests.test_console import Site, site  # noqa: F401 (the fixture)
from tests.test_ui_browser import WIDE, browser, log_in, screenshot  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:  # noqa: F811
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
    assert problems == [], "the page logged errors"


def test_the_console_button_opens_a_terminal_on_a_shell_in_the_app(page: Any, site: Site) -> None:  # noqa: F811
    from playwright.sync_api import expect

    log_in(page, site.workbench.url, "carol", "carol-pw1")
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
