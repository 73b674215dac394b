"""A sent dataset inside the researcher's app, seen in a real browser: `workbench run` on a container
engine, a stack of the catalog started from the management page, a Clowder dataset sent to it, and the
app's own page, opened through its Connect link, listing the sent file with its content."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.adapters.runtime.docker_engine import OWNER_LABEL
from tests import engines
from tests.clowder_server import ClowderServer
from tests.conftest import ROOT
from tests.engines import APP_FOLDER, IMAGE, TAG, Engine, catalog_app, ours
from tests.test_e2e import Platform, user_with_spec
from tests.test_ui_browser import SLOW, log_in, screenshot, stack_card, status_of, view

# The fixture of each engine in turn (Chromium's is the conftest plugin's).
engine = engines.engine

CLOWDER_KEY = "clowder-api-key-of-the-app-browser-test"
PASSWORD = "dana-password"
README_IMAGE = "docs/app-sent-file.png"
# httpd runs the image's /www/cgi-bin/index.cgi for /, which lists the mounted home.
FILE_BROWSER_SPEC = catalog_app(
    "filebrowser",
    "File browser",
    "Lists the files of its folder, the content of each small text file beneath its name",
    serves="/www",
    probe="http",
)


@pytest.fixture
def clowder(tmp_path: Path) -> Iterator[ClowderServer]:
    with ClowderServer(tmp_path / "clowder", 2, CLOWDER_KEY) as server:
        yield server


@pytest.fixture
def workbench(tmp_path: Path, engine: Engine, clowder: ClowderServer) -> Iterator[Platform]:
    """`workbench run` with its stacks on the engine, paired with the Clowder test server; dana's
    catalog holds the file browser."""
    settings = {
        "WORKBENCH_CLOWDER_URL": clowder.url,
        "WORKBENCH_CLOWDER_API_KEY": CLOWDER_KEY,
        "WORKBENCH_RUNTIME": "docker",
        "DOCKER_HOST": engine.url,
    }
    platform = Platform(tmp_path / "data", settings=settings)
    platform.start()
    try:
        http = httpx.Client(base_url=platform.url, timeout=10)
        user_with_spec(http, "dana", PASSWORD, FILE_BROWSER_SPEC)
        yield platform
    finally:
        platform.stop()


@pytest.mark.browser
@pytest.mark.e2e
def test_the_apps_own_page_shows_a_sent_file_through_its_connect_link(
    browser: Any, workbench: Platform, clowder: ClowderServer, engine: Engine
) -> None:
    from playwright.sync_api import expect

    readme = b"Soil cores from the north field, 2024.\nDepth in cm; carbon in g/kg.\n"
    dataset_id = clowder.add_dataset("Soil samples")
    clowder.add_files(dataset_id, {"readme.txt": readme, "cores/core-01.csv": b"depth,carbon\n10,21.5\n"})

    context = browser.new_context(viewport={"width": 960, "height": 600})
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        log_in(page, workbench.url, "dana", PASSWORD)
        assert f"Stacks run as containers on the engine at {engine.url}" in workbench.log.read_text()

        # A stack of the file browser, from the catalog, started in a container.
        view(page, "Catalog")
        page.get_by_label("Search the catalog").fill("file browser")
        spec = page.get_by_role("listitem").filter(
            has=page.get_by_role("heading", name="File browser", exact=True)
        )
        spec.get_by_role("button", name="Create a stack").click()
        dialog = page.get_by_role("dialog", name="Create a stack of File browser")
        dialog.get_by_label("Name of the stack").fill("My files")
        dialog.get_by_role("button", name="Create").click()
        card = stack_card(page, "My files")
        card.get_by_role("button", name="Start").click()
        expect(status_of(card)).to_have_text("Status: started", timeout=SLOW)
        (container,) = ours(engine, **{OWNER_LABEL: "dana"})
        assert container.status == "running" and container.image.tags == [f"{IMAGE}:{TAG}"]

        # Send the dataset from the Send page; the page says where the app sees it.
        view(page, "Send & export")
        page.get_by_label("Clowder dataset URL or id").fill(dataset_id)
        page.get_by_role("button", name="Check").click()  # the plan first
        page.get_by_role("button", name="Send to my home").click()
        transfer = page.get_by_role("article", name="Soil samples")
        expect(transfer.get_by_text("completed", exact=True)).to_be_visible(timeout=SLOW)
        seen = transfer.get_by_role("list", name="Where your running apps see the files")
        expect(seen).to_contain_text(f"{APP_FOLDER}/clowder/Soil samples")

        # Connect: the app's own page, served from inside the container, lists the file and shows it.
        view(page, "My stacks")
        connect = card.get_by_role("link", name=re.compile(r"^Connect to filebrowser of My files"))
        with context.expect_page() as opened:
            connect.click()
        app = opened.value
        app.wait_for_load_state()
        expect(app.get_by_role("heading", level=1)).to_have_text(
            f"Files in {APP_FOLDER}, seen inside the container"
        )
        expect(app.get_by_text(f"Container {container.attrs['Config']['Hostname']}")).to_be_visible()
        sent = app.get_by_role("listitem").filter(has_text="clowder/Soil samples/readme.txt")
        expect(sent).to_contain_text(f"({len(readme)} bytes)")
        expect(sent.locator("pre")).to_have_text(readme.decode())
        expect(
            app.get_by_role("listitem").filter(has_text="clowder/Soil samples/cores/core-01.csv")
        ).to_be_visible()
        app.set_viewport_size({"width": 960, "height": 330})  # the page, without a blank half
        screenshot(app, f"app-sent-file-{engine.kind}")
        app.close()

        view(page, "My stacks")
        card.get_by_role("button", name="Stop").click()
        expect(status_of(card)).to_have_text("Status: stopped", timeout=SLOW)
        assert ours(engine, **{OWNER_LABEL: "dana"}) == []
    finally:
        context.close()


def test_the_readmes_images_exist_and_real_apps_show_a_sent_file() -> None:
    readme = (ROOT / "README.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", readme)
    assert images, "the README shows no image"
    for image in images:
        assert (ROOT / image).is_file(), f"the README shows {image}, which does not exist"
    section = readme.split("## Real apps on one machine", 1)[1].split("\n## ", 1)[0]
    assert f"]({README_IMAGE})" in section
    assert (ROOT / README_IMAGE).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert (ROOT / README_IMAGE).stat().st_size < 200_000
