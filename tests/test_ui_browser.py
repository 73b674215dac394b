"""The management page in a real browser: headless Chromium driven by Playwright against ``workbench run``."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.chromium import NARROW
from tests.clowder_server import ClowderServer
from tests.conftest import ADMIN_PASSWORD, ROOT
from tests.crates import payload
from tests.support import wait_until
from tests.test_e2e import STATIC_SPEC, Platform, bearer, token

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

SCREENSHOTS = ROOT / "var" / "screenshots"
CLOWDER_KEY = "clowder-api-key"
PASSWORD = "carol-password"
SLOW = 40_000
"""Milliseconds a stack may take to start or stop, or a transfer to finish, before a test fails."""

FAILING_SPEC = {
    **STATIC_SPEC,
    "key": "failing",
    "label": "Failing service",
    "description": "Exits at once, so every start of it fails",
}
FAILING_COMMAND = "sh -c 'echo cannot open the data folder >&2; exit 3'"


@pytest.fixture(scope="module")
def clowder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClowderServer]:
    with ClowderServer(tmp_path_factory.mktemp("clowder"), 2, CLOWDER_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def workbench(tmp_path_factory: pytest.TempPathFactory, clowder: ClowderServer) -> Iterator[Platform]:
    """One platform for the module, paired with the Clowder test server, with a service that fails."""
    settings = {
        "WORKBENCH_CLOWDER_URL": clowder.url,
        "WORKBENCH_CLOWDER_API_KEY": CLOWDER_KEY,
        "WORKBENCH_LOCAL_COMMANDS": json.dumps({"failing": FAILING_COMMAND}),
    }
    platform = Platform(tmp_path_factory.mktemp("workbench") / "data", settings=settings)
    platform.start()
    try:
        http = httpx.Client(base_url=platform.url, timeout=10)
        admin = token(http, "admin", ADMIN_PASSWORD)
        account = {"namespace": "carol", "name": "Carol", "email": "carol@example.org", "password": PASSWORD}
        assert http.post("/api/accounts", json=account, headers=bearer(admin)).status_code == 200
        carol = token(http, "carol", PASSWORD)
        response = http.post("/api/services", json=STATIC_SPEC, headers=bearer(carol))
        assert response.status_code == 200, response.text
        # The admin's command runs for the admin's (system) spec only.
        response = http.post("/api/services?catalog=system", json=FAILING_SPEC, headers=bearer(admin))
        assert response.status_code == 200, response.text
        yield platform
    finally:
        platform.stop()


def screenshot(page: Any, name: str, *, full_page: bool = False) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.mouse.move(0, 0)  # no hover effect in the picture
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def log_in(page: Any, url: str, username: str, password: str) -> None:
    from playwright.sync_api import expect

    page.goto(url + "/")
    page.get_by_label("User name or e-mail").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="My stacks", level=1)).to_be_visible()


def view(page: Any, name: str) -> None:
    page.get_by_role("navigation", name="Views").get_by_role("link", name=name, exact=True).click()


def stack_card(page: Any, name: str) -> Any:
    return page.get_by_role("article", name=name, exact=True)


def status_of(card: Any) -> Any:
    return card.locator(".stack-status")


# --- the journey --------------------------------------------------------------------------------------


def test_create_start_connect_send_export_stop_and_delete(
    page: Any, workbench: Platform, clowder: ClowderServer
) -> None:
    from playwright.sync_api import expect

    content = {"readme.txt": b"hello from Clowder\n", "raw/data.bin": os.urandom(300_000)}
    dataset_id = clowder.add_dataset("Field Study")
    file_ids = clowder.add_files(dataset_id, content)
    # The last file stages slowly: the page shows the transfer under way before it completes.
    clowder.slow(f"/api/v2/files/{file_ids['readme.txt']}", seconds=4, times=1)

    log_in(page, workbench.url, "carol", PASSWORD)
    expect(page.get_by_text("You have no stacks yet.")).to_be_visible()

    # create a stack from the catalog (a spec of carol's own)
    view(page, "Catalog")
    page.get_by_label("Search the catalog").fill("notebook")
    spec = page.get_by_role("listitem").filter(has=page.get_by_role("heading", name="Notebook", exact=True))
    expect(spec.get_by_text("my spec")).to_be_visible()
    screenshot(page, "catalog")
    spec.get_by_role("button", name="Create a stack").click()
    dialog = page.get_by_role("dialog", name="Create a stack of Notebook")
    dialog.get_by_label("Name of the stack").fill("My notebook")
    dialog.get_by_role("button", name="Create").click()
    expect(page.get_by_role("status")).to_contain_text("Created the stack My notebook")
    card = stack_card(page, "My notebook")
    expect(status_of(card)).to_have_text("Status: stopped")

    # start it and see it started, with a Connect link to the served page
    card.get_by_role("button", name="Start").click()
    expect(status_of(card)).to_have_text("Status: started", timeout=SLOW)
    http = httpx.Client(base_url=workbench.url, timeout=10)
    carol = token(http, "carol", PASSWORD)
    (stack,) = http.get("/api/stacks", headers=bearer(carol)).json()
    (folder,) = stack["services"][0]["volumeMounts"]
    served = workbench.data_dir / "home" / "carol" / folder
    served.mkdir(parents=True, exist_ok=True)
    (served / "hello.txt").write_text("hello from the workbench")
    connect = card.get_by_role("link", name=re.compile(r"^Connect to notebook of My notebook"))
    with page.context.expect_page() as opened:
        connect.click()
    endpoint = opened.value
    endpoint.wait_for_load_state()
    assert endpoint.url == stack["services"][0]["endpoints"][0]["url"]
    expect(endpoint.get_by_role("link", name="hello.txt")).to_be_visible()
    endpoint.close()

    # the logs of its service
    card.get_by_role("button", name="Logs of notebook in My notebook").click()
    logs = page.get_by_role("region", name=re.compile(r"^Logs of notebook in My notebook"))
    expect(logs.locator("pre")).to_contain_text("SERVICE LOG")
    screenshot(page, "stacks")
    logs.get_by_role("button", name="Close the logs").click()
    expect(logs).to_be_hidden()

    # send a dataset by its Clowder URL, and watch its files arrive
    view(page, "Send & export")
    page.get_by_label("Clowder dataset URL or id").fill(f"{clowder.url}/datasets/{dataset_id}")
    page.get_by_label("Folder in my data folder (optional)").fill("incoming")
    page.get_by_role("button", name="Check").click()  # the plan first
    page.get_by_role("button", name="Send to my home").click()
    expect(page.get_by_role("heading", name="Transfers and exports", level=1)).to_be_visible()
    transfer = page.get_by_role("article", name="Field Study")
    expect(transfer.get_by_text("staging", exact=True)).to_be_visible()  # while the last file stages
    expect(transfer.locator(".counts")).to_have_text("0 of 2 files · 0 B of 300 kB")
    expect(transfer.locator(".counts")).to_have_text("2 of 2 files · 300 kB of 300 kB", timeout=SLOW)
    expect(transfer.get_by_text("completed", exact=True)).to_be_visible()
    progress = transfer.get_by_role("progressbar", name="Progress of Field Study")
    expect(progress).to_have_attribute("value", str(sum(len(data) for data in content.values())))
    home = workbench.data_dir / "home" / "carol"
    assert (home / "Clowder" / "incoming" / "readme.txt").read_bytes() == content["readme.txt"]
    assert (home / "Clowder" / "incoming" / "raw" / "data.bin").read_bytes() == content["raw/data.bin"]
    # where the running app sees them, and the app serving them there
    seen = transfer.get_by_role("list", name="Where your running apps see the files")
    expect(seen).to_contain_text("/home/user/work/clowder/incoming")
    app_url = stack["services"][0]["endpoints"][0]["url"]
    assert httpx.get(app_url + "clowder/incoming/readme.txt", timeout=10).content == content["readme.txt"]
    in_app = page.context.new_page()
    in_app.goto(app_url + "clowder/incoming/")
    expect(in_app.get_by_role("link", name="readme.txt")).to_be_visible()
    expect(in_app.get_by_role("link", name="raw/")).to_be_visible()
    screenshot(in_app, "app-sent-files")
    in_app.close()

    # the receipt the shovel left next to the files: Verify re-hashes them, and names a change
    receipt = home / "Clowder" / "incoming" / ".workbench" / "receipts"
    wait_until(lambda: any(receipt.glob("*.json")), "the transfer's receipt")
    transfer.get_by_role("button", name="Verify").click()
    expect(transfer.get_by_role("status")).to_have_text(
        "Unchanged since received: 2 files checked against the receipt."
    )
    (home / "Clowder" / "incoming" / "readme.txt").write_bytes(b"edited\n")
    transfer.get_by_role("button", name="Verify").click()
    expect(transfer.get_by_role("list", name="Changes since received")).to_have_text("modified: readme.txt")

    # a dataset with a file Clowder cannot hand out: that file's error is shown
    broken_id = clowder.add_dataset("Broken Study")
    broken_files = clowder.add_files(broken_id, {"good.txt": b"fine\n", "bad.txt": b"never arrives\n"})
    clowder.fail(f"/api/v2/files/{broken_files['bad.txt']}", status=404)
    view(page, "Send & export")
    page.get_by_label("Clowder dataset URL or id").fill(broken_id)
    page.get_by_role("button", name="Check").click()  # the plan first
    page.get_by_role("button", name="Send to my home").click()
    failed = page.get_by_role("article", name="Broken Study")
    expect(failed.get_by_text("failed", exact=True)).to_be_visible(timeout=SLOW)
    expect(failed.get_by_role("list", name="Files that failed")).to_contain_text("bad.txt")

    # export a folder of the home to a new Clowder dataset
    results = home / "Clowder" / "results"
    results.mkdir()
    (results / "summary.txt").write_bytes(b"all fine\n")
    view(page, "Send & export")
    page.get_by_label("Folder", exact=True).fill("/home/user/work/clowder/results")
    page.get_by_label("Name of the new dataset").fill("Results")
    page.get_by_label("Description (optional)").fill("What the notebook found")
    page.get_by_role("button", name="Export to Clowder").click()
    exported = page.get_by_role("article", name="Clowder/results → Results")
    expect(exported.get_by_text("completed", exact=True)).to_be_visible(timeout=SLOW)
    (made,) = [dataset for dataset in clowder.datasets.values() if dataset.name == "Results"]
    expect(exported.get_by_role("link", name=made.id)).to_be_visible()
    # its lineage: made in a home that received Field Study (the broken one never completed)
    expect(exported.get_by_text("Derived from")).to_have_text(
        "Derived from Field Study · recorded in its ro-crate-metadata.json"
    )
    expect(exported.get_by_role("link", name="Field Study")).to_have_attribute(
        "href", f"{clowder.url}/datasets/{dataset_id}"
    )
    assert payload(clowder.read_tree(made.id)) == {"summary.txt": b"all fine\n"}
    screenshot(page, "transfers")

    # a folder outside the home is refused with the server's message
    view(page, "Send & export")
    screenshot(page, "send")
    page.get_by_label("Folder", exact=True).fill("../outside")
    page.get_by_label("Name of the new dataset").fill("No")
    page.get_by_role("button", name="Export to Clowder").click()
    expect(page.get_by_role("alert")).to_contain_text("../outside")

    # stop, then delete
    view(page, "My stacks")
    card = stack_card(page, "My notebook")
    expect(card.get_by_role("button", name="Delete")).to_be_disabled()
    card.get_by_role("button", name="Stop").click()
    expect(status_of(card)).to_have_text("Status: stopped", timeout=SLOW)
    card.get_by_role("button", name="Delete").click()
    confirm = page.get_by_role("dialog")
    expect(confirm).to_contain_text("Delete the stack “My notebook”")
    confirm.get_by_role("button", name="Delete").click()
    expect(card).to_have_count(0)
    expect(page.get_by_text("You have no stacks yet.")).to_be_visible()
    assert http.get("/api/stacks", headers=bearer(carol)).json() == []


# --- the error paths ----------------------------------------------------------------------------------


def test_a_wrong_password_and_a_failing_start_show_clear_messages(page: Any, workbench: Platform) -> None:
    from playwright.sync_api import expect

    # The keyboard alone: the skip link first, then the login form.
    page.goto(workbench.url + "/")
    expect(page.get_by_label("User name or e-mail")).to_be_focused()
    page.keyboard.type("carol")
    page.keyboard.press("Tab")
    page.keyboard.type("not the password")
    page.keyboard.press("Enter")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("invalid user name or password")
    expect(page.get_by_label("Password")).to_be_focused()
    screenshot(page, "login-error")

    page.get_by_label("Password").fill(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="My stacks", level=1)).to_be_visible()
    expect(alert).to_be_hidden()

    http = httpx.Client(base_url=workbench.url, timeout=10)
    carol = token(http, "carol", PASSWORD)
    response = http.post("/api/stacks", json={"key": "failing", "name": "Doomed"}, headers=bearer(carol))
    assert response.status_code == 200, response.text
    card = stack_card(page, "Doomed")
    card.get_by_role("button", name="Start").focus()
    page.keyboard.press("Enter")
    expect(status_of(card)).to_have_text("Status: error", timeout=SLOW)
    expect(card.locator(".service-error")).to_contain_text("exited with code 3")
    screenshot(page, "start-failed")

    card.get_by_role("button", name="Stop").click()
    expect(status_of(card)).to_have_text("Status: stopped", timeout=SLOW)
    card.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(card).to_have_count(0)


def test_a_session_is_refreshed_before_it_expires_and_ends_when_refused(
    page: Any, workbench: Platform
) -> None:
    from playwright.sync_api import expect

    from shared.domain.auth import Tokens

    log_in(page, workbench.url, "carol", PASSWORD)
    secret = (workbench.data_dir / "secrets" / "jwt-secret").read_text().strip()
    session = Tokens(secret, lifetime_seconds=60, refresh_seconds=3600).decode(
        page.evaluate("sessionStorage.getItem('workbench.token')")
    )
    # Of the session the page logged in to.
    expiring = Tokens(secret, lifetime_seconds=60, refresh_seconds=3600).issue(
        "carol", generation=session.claims["gen"]
    )
    page.evaluate("token => sessionStorage.setItem('workbench.token', token)", expiring)
    view(page, "Transfers")
    expect(page.get_by_role("heading", name="Transfers and exports", level=1)).to_be_visible()
    page.wait_for_function("token => sessionStorage.getItem('workbench.token') !== token", arg=expiring)
    refreshed = page.evaluate("sessionStorage.getItem('workbench.token')")
    assert Tokens(secret, lifetime_seconds=60, refresh_seconds=3600).verify(refreshed).user == "carol"

    page.evaluate("sessionStorage.setItem('workbench.token', 'not-a-token')")
    view(page, "My stacks")
    expect(page.get_by_role("heading", name="Log in to the Workbench")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("You are signed out")
    expect(page.get_by_role("navigation", name="Views")).to_be_hidden()


# --- the admin --------------------------------------------------------------------------------------------


def test_the_admin_approves_an_account_and_sees_shovels_and_dead_letters(
    page: Any, workbench: Platform
) -> None:
    from playwright.sync_api import expect

    http = httpx.Client(base_url=workbench.url, timeout=10)
    account = {
        "namespace": "dave",
        "name": "Dave",
        "email": "dave@example.org",
        "password": "dave-password",
        "organization": "Field Lab",
        "description": "Needs a notebook for the field study",
    }
    assert http.post("/api/register", json=account).status_code == 200
    verify = re.search(r"(/#/register/verify\?\S+)", workbench.mails()[-1].get_content())
    assert verify is not None
    page.goto(workbench.url + verify.group(1))  # the e-mailed link opens this page
    expect(page.get_by_role("status")).to_contain_text("Your e-mail address is verified")

    log_in(page, workbench.url, "admin", ADMIN_PASSWORD)
    view(page, "Admin")
    pending = page.get_by_role("region", name="Accounts awaiting approval")
    row = pending.get_by_role("row", name=re.compile("Dave"))
    expect(row).to_contain_text("Needs a notebook for the field study")
    expect(page.get_by_role("heading", name="Shovels")).to_be_visible()
    expect(page.get_by_role("heading", name="Dead-lettered events")).to_be_visible()
    screenshot(page, "admin")
    row.get_by_role("button", name="Approve dave").click()
    expect(page.get_by_role("status")).to_contain_text("dave: Account has been approved.")
    expect(page.get_by_text("No account is waiting for approval.")).to_be_visible()
    assert token(http, "dave", "dave-password")

    # only the admin sees the view at all
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("status")).to_contain_text("You are logged out.")
    assert page.evaluate("() => sessionStorage.getItem('workbench.token')") is None  # gone at once
    log_in(page, workbench.url, "carol", PASSWORD)
    expect(page.get_by_role("navigation", name="Views").get_by_role("link", name="Admin")).to_be_hidden()
    page.goto(workbench.url + "/#/admin")
    expect(page.get_by_role("heading", name="My stacks", level=1)).to_be_visible()


# --- a narrow screen --------------------------------------------------------------------------------------


def test_the_connect_link_of_a_secure_stack_opens_its_site(page: Any, workbench: Platform) -> None:
    from playwright.sync_api import expect

    http = httpx.Client(base_url=workbench.url, timeout=10)
    carol = token(http, "carol", PASSWORD)
    body = {"key": "notebook", "name": "Private notebook", "secure": True}
    sid = http.post("/api/stacks", json=body, headers=bearer(carol)).json()["id"]
    assert http.get(f"/api/start/{sid}", headers=bearer(carol)).status_code == 202
    log_in(page, workbench.url, "carol", PASSWORD)
    card = stack_card(page, "Private notebook")
    expect(status_of(card)).to_have_text("Status: started", timeout=SLOW)
    (service,) = http.get(f"/api/stacks/{sid}", headers=bearer(carol)).json()["services"]
    site = service["endpoints"][0]["url"].split("?")[0]
    assert httpx.get(site, timeout=10).status_code == 403  # without the owner's link

    with page.context.expect_page() as opened:
        card.get_by_role("link", name=re.compile(r"^Connect to notebook of Private notebook")).click()
    endpoint = opened.value
    endpoint.wait_for_load_state()
    assert endpoint.url == site  # admitted, and the grant has left the address
    expect(endpoint.get_by_role("heading", name=re.compile(r"^Directory listing"))).to_be_visible()
    endpoint.close()

    assert http.get(f"/api/stop/{sid}", headers=bearer(carol)).status_code == 202
    expect(status_of(card)).to_have_text("Status: stopped", timeout=SLOW)
    assert http.delete(f"/api/stacks/{sid}", headers=bearer(carol)).status_code == 200


def test_every_view_fits_a_narrow_screen(browser: Any, workbench: Platform) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport=NARROW, device_scale_factor=1)
    try:
        page = context.new_page()
        http = httpx.Client(base_url=workbench.url, timeout=10)
        carol = token(http, "carol", PASSWORD)
        http.post("/api/stacks", json={"key": "notebook", "name": "Narrow notebook"}, headers=bearer(carol))
        log_in(page, workbench.url, "carol", PASSWORD)
        for name, link, heading, loaded in (
            ("stacks", "My stacks", "My stacks", "#stack-list"),
            ("catalog", "Catalog", "Catalog", "#catalog-list"),
            ("transfers", "Transfers", "Transfers and exports", "#export-list"),
            ("send", "Send & export", "Send and export", None),
        ):
            view(page, link)
            expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()
            if loaded:
                expect(page.locator(loaded)).to_have_attribute("aria-busy", "false")
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"the {name} view is {overflow} px wider than a narrow screen"
            screenshot(page, f"narrow-{name}")
            if name == "catalog":
                page.get_by_role("button", name="Create a stack").first.click()
                dialog = page.get_by_role("dialog")
                expect(dialog.get_by_label("Name of the stack")).to_be_focused()
                screenshot(page, "narrow-create")
                page.keyboard.press("Escape")
                expect(dialog).to_be_hidden()
        for stack in http.get("/api/stacks", headers=bearer(carol)).json():
            http.delete(f"/api/stacks/{stack['id']}", headers=bearer(carol))
    finally:
        context.close()
