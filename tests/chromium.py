"""Headless Chromium (Debian's, driven by Playwright) for the management page's browser tests, and a
page in it that fails its test on any error the page logs (a plugin of conftest)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import services_required
from tests.test_e2e import Platform

CHROMIUM = Path(os.environ.get("WORKBENCH_TEST_CHROMIUM", "/usr/bin/chromium"))
WIDE = {"width": 1280, "height": 800}
NARROW = {"width": 360, "height": 740}


def missing(reason: str) -> None:
    """Skip when the browser is missing; with WORKBENCH_REQUIRE_SERVICES set (CI), fail instead."""
    message = f"the browser tests need Chromium and Playwright: {reason}"
    if services_required():
        pytest.fail(message + " (WORKBENCH_REQUIRE_SERVICES is set)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        missing(f"no {CHROMIUM} (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        missing(f"the Python package playwright is not installed ({error})")
    with sync_playwright() as playwright:
        # Debian's build, never one downloaded by Playwright.
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any, workbench: Platform) -> Iterator[Any]:
    """A page of the module's ``workbench`` (no address opened yet)."""
    context = browser.new_context(viewport=WIDE)
    context.set_default_timeout(10_000)
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    opened.on(
        "console",
        lambda message: (
            problems.append(message.text)
            if message.type == "error" and "Failed to load resource" not in message.text
            else None
        ),
    )
    try:
        yield opened
    finally:
        context.close()
    assert problems == [], "the page logged errors"
