"""Signing up and resetting a password on the management page in headless Chromium, following the links
of the mails the platform wrote into its outbox."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.chromium import NARROW
from tests.conftest import ADMIN_PASSWORD
from tests.test_e2e import Platform, bearer
from tests.test_ui_browser import screenshot, token

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

LINK = re.compile(r"https?://\S+")


@pytest.fixture(scope="module")
def workbench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    platform = Platform(tmp_path_factory.mktemp("workbench") / "data")
    platform.start()
    try:
        yield platform
    finally:
        platform.stop()


def mailed_link(workbench: Platform, to: str, fragment: str) -> str:
    """The link into the page (``#/…``) of the last mail to ``to``, as a reader copies it: whole on its line."""
    for message in reversed(workbench.mails()):
        if message["To"] == to:
            text: str = message.get_content()
            for line in text.splitlines():
                found = LINK.fullmatch(line)
                if found and f"/#/{fragment}" in line:
                    return line
    raise AssertionError(f"no mail to {to} links to #/{fragment}")


def requests_of(page: Any) -> list[Any]:
    """Every request the page makes from now on (to check where each goes and what it tells)."""
    made: list[Any] = []
    page.on("request", lambda request: made.append(request))
    return made


def test_sign_up_verify_get_approved_and_log_in(page: Any, workbench: Platform) -> None:
    from playwright.sync_api import expect

    made = requests_of(page)
    page.goto(workbench.url + "/")
    page.get_by_role("link", name="Sign up").click()
    expect(page.get_by_role("heading", name="Sign up for the Workbench")).to_be_visible()
    page.get_by_label("Full name").fill("Erin Smith")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("E-mail").fill("erin@example.org")
    page.get_by_label("Password", exact=True).fill("erin-password")
    page.get_by_label("Password again").fill("erin-passwort")
    page.get_by_label("Organization (optional)").fill("Field Lab")
    page.get_by_label("What you will use the Workbench for (optional)").fill("Notebooks for the field study")
    page.get_by_role("button", name="Sign up").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("The two passwords differ")
    expect(page.get_by_label("Password again")).to_be_focused()

    page.get_by_label("Password again").fill("erin-password")
    page.get_by_role("button", name="Sign up").click()
    expect(alert).to_contain_text("Username is in use: choose another user name.")
    expect(page.get_by_label("User name")).to_be_focused()
    expect(page.get_by_label("User name")).to_have_attribute("aria-invalid", "true")

    page.get_by_label("User name").fill("erin")
    page.get_by_label("E-mail").fill("erin@example")  # the browser takes it; the API does not
    page.get_by_role("button", name="Sign up").click()
    expect(alert).to_contain_text("email: must be an e-mail address")
    expect(page.get_by_label("E-mail")).to_be_focused()
    # Told beside the field too (the alert is at the top of a long form); the earlier faults are gone.
    expect(page.locator(".field-error")).to_have_text(["email: must be an e-mail address"])
    expect(page.get_by_label("User name")).not_to_have_attribute("aria-invalid", "true")
    screenshot(page, "signup-error")

    page.get_by_label("E-mail").fill("erin@example.org")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", name="Check your e-mail")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("Check your e-mail to verify your address.")
    expect(page.get_by_text("erin@example.org", exact=True)).to_be_visible()
    screenshot(page, "signup-sent")

    # The verification mail's link, as copied from the mail, opens the page's verify view once.
    link = mailed_link(workbench, "erin@example.org", "register/verify")
    spent = link.rsplit("t=", 1)[1].split("&")[0]
    page.goto(link)
    expect(page.get_by_role("heading", name="Your e-mail address is verified")).to_be_visible()
    expect(page.get_by_text("An administrator will approve your account")).to_be_visible()
    assert page.url == workbench.url + "/#/register/verify"  # the spent token has left the address
    screenshot(page, "verified")
    page.reload()
    expect(page.get_by_role("heading", name="Your e-mail address is verified")).to_be_visible()
    page.goto(link)  # the same link again, in this browser
    expect(page.get_by_role("heading", name="This link was already used")).to_be_visible()
    page.goto(workbench.url + "/#/register/verify?t=not-a-token&u=erin")
    expect(page.get_by_role("heading", name="This link is not valid")).to_be_visible()

    page.get_by_role("link", name="Log in").click()
    page.get_by_label("User name or e-mail").fill("erin")
    page.get_by_label("Password").fill("erin-password")
    page.get_by_role("button", name="Log in").click()
    expect(alert).to_contain_text("account 'erin' is unapproved")

    # The admin approves with the link mailed to the support address.
    http = httpx.Client(base_url=workbench.url, timeout=10)
    admin = token(http, "admin", ADMIN_PASSWORD)
    (waiting,) = [
        account
        for account in http.get("/api/accounts", headers=bearer(admin)).json()
        if account["id"] == "erin"
    ]
    assert waiting["status"] == "unapproved" and waiting["organization"] == "Field Lab"
    support = [
        message for message in workbench.mails() if "new account request from erin" in message["Subject"]
    ]
    (approve,) = [
        line.removeprefix("Approve: ")
        for line in support[-1].get_content().splitlines()
        if line.startswith("Approve: ")
    ]
    assert http.get(approve).json() == {"message": "Account has been approved."}

    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="My stacks", level=1)).to_be_visible()
    expect(page.locator("#user-name")).to_have_text("erin")

    for request in made:
        assert request.url.startswith(workbench.url + "/"), f"the page reached out to {request.url}"
        assert not request.headers.get("referer"), f"{request.url} was told {request.headers['referer']}"
        assert spent not in request.url, f"the link's token went out in {request.url}"


def test_forgot_the_password_then_set_a_new_one_from_the_mail(page: Any, workbench: Platform) -> None:
    from playwright.sync_api import expect

    http = httpx.Client(base_url=workbench.url, timeout=10)
    admin = token(http, "admin", ADMIN_PASSWORD)
    account = {
        "namespace": "frank",
        "name": "Frank",
        "email": "frank@example.org",
        "password": "frank-password",
    }
    assert http.post("/api/accounts", json=account, headers=bearer(admin)).status_code == 200

    made = requests_of(page)
    answers = []
    for name in ("nobody@example.org", "frank@example.org"):
        page.goto(workbench.url + "/")
        page.get_by_role("link", name="Forgot your password?").click()
        expect(page.get_by_role("heading", name="Forgot your password?")).to_be_visible()
        page.get_by_label("User name or e-mail").fill(name)
        page.get_by_role("button", name="Send the link").click()
        expect(page.get_by_role("heading", name="Check your e-mail")).to_be_visible()
        answers.append(page.locator("main").inner_text())
    assert answers[0] == answers[1]  # who has an account is not told
    screenshot(page, "forgot-sent")

    link = mailed_link(workbench, "frank@example.org", "recover")
    page.goto(link)
    expect(page.get_by_role("heading", name="Set a new password")).to_be_visible()
    expect(page.get_by_text("For the account frank.")).to_be_visible()
    page.get_by_label("New password", exact=True).fill("frank-new-password")
    page.get_by_label("New password again").fill("frank-new-password")
    screenshot(page, "recover")
    page.get_by_role("button", name="Set the password").click()
    expect(page.get_by_role("heading", name="Your new password is set")).to_be_visible()
    assert page.url == workbench.url + "/#/recover"
    assert (
        http.post("/api/authenticate", json={"username": "frank", "password": "frank-password"}).status_code
        == 401
    )

    page.get_by_role("link", name="Log in").click()
    page.get_by_label("User name or e-mail").fill("frank")
    page.get_by_label("Password").fill("frank-new-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="My stacks", level=1)).to_be_visible()
    page.get_by_role("button", name="Log out").click()

    # The link works once.
    page.goto(link)
    page.get_by_label("New password", exact=True).fill("frank-third-password")
    page.get_by_label("New password again").fill("frank-third-password")
    page.get_by_role("button", name="Set the password").click()
    expect(page.get_by_role("heading", name="This link cannot be used any more")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("ask for a new password reset e-mail")
    assert token(http, "frank", "frank-new-password")

    for request in made:
        assert request.url.startswith(workbench.url + "/"), f"the page reached out to {request.url}"
        assert not request.headers.get("referer"), f"{request.url} was told {request.headers['referer']}"


def test_the_account_views_fit_a_narrow_screen(browser: Any, workbench: Platform) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport=NARROW, device_scale_factor=1)
    try:
        page = context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
        for fragment, heading in (
            ("signup", "Sign up for the Workbench"),
            ("forgot", "Forgot your password?"),
            ("register/verify?t=not-a-token&u=nobody", "This link is not valid"),
            ("recover?t=not-a-token", "This link is not valid"),
        ):
            page.goto(f"{workbench.url}/#/{fragment}")
            expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible(timeout=10_000)
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"#/{fragment} is {overflow} px wider than a narrow screen"
        screenshot(page, "narrow-signup-invalid-link")
        assert problems == [], "the page logged errors"
    finally:
        context.close()
