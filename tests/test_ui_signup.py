"""Sign-up, verification and password reset as the management page does them: its calls, the mails'
links (whole on one line, opening the page's views) and the answers that must not tell who exists."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from shared.bootstrap import Platform
from shared.domain.accounts import RESET_TOKEN_SECONDS
from shared.serving import ui as page
from tests.conftest import ROOT, Client
from tests.test_auth import RecordingApi, claims_of, error_of, recording_api

ASSETS = page.ASSETS
LINK = re.compile(r"https?://\S+")
ERIN = {
    "namespace": "erin",
    "name": "Erin Smith",
    "email": "erin@example.org",
    "password": "erin-password",
    "organization": "Field Lab",
    "description": "Notebooks for the field study",
}


@pytest.fixture
def api(client: Callable[[str], Client], platform: Platform) -> Iterator[RecordingApi]:
    yield from recording_api(client, platform)


# --- what the page sends -----------------------------------------------------------------------------


def page_text(name: str) -> str:
    return (ASSETS / "js" / name).read_text()


def test_the_sign_up_form_sends_the_fields_the_register_api_takes() -> None:
    from shared.core.models import Account

    signup = page_text("views/signup.js")
    sent = set(re.findall(r"^\s+(\w+): controls\.\w+\.value", signup, re.MULTILINE))
    assert sent == {"namespace", "name", "email", "password", "organization", "description"}
    assert sent <= set(Account.model_fields)
    assert 'register: (account) => request("POST", "/api/register", account, { auth: false })' in page_text(
        "api.js"
    )


def test_the_page_routes_the_sign_up_forgot_verify_and_reset_views_without_a_login() -> None:
    main = page_text("main.js")
    for view, module in (
        ("signup", "signup"),
        ("forgot", "forgot"),
        ("register", "links"),
        ("recover", "links"),
    ):
        assert re.search(
            rf"^  {view}: {{ module: {module}, title: \"[^\"]+\", public: true }},$", main, re.MULTILINE
        ), view
    login = page_text("views/login.js")
    assert 'href: "#/signup"' in login and 'href: "#/forgot"' in login


def test_the_forgot_view_says_the_same_whatever_the_api_answers() -> None:
    """Its words are fixed: nothing of the reply (which is alike for every name anyway) is shown."""
    forgot = page_text("views/forgot.js")
    assert "await api.requestReset(userId.value.trim());" in forgot
    assert ".message" not in forgot and "= await" not in forgot
    assert f"within {RESET_TOKEN_SECONDS // 60} minutes" in forgot
    assert f"works for {RESET_TOKEN_SECONDS // 60} minutes" in page_text("views/links.js")
    readme = (ROOT / "README.md").read_text()
    assert f"once, within {RESET_TOKEN_SECONDS // 60} minutes" in readme


# --- sign-up through the page's call -----------------------------------------------------------------


def register(api: RecordingApi, **changes: Any) -> Any:
    return api.call("POST", "/api/register", json=ERIN | changes)


def test_sign_up_verify_approve_and_log_in_through_the_pages_calls(
    api: RecordingApi, platform: Platform
) -> None:
    response = register(api)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "unverified"

    (link,) = links_in(last_mail(platform, "erin@example.org"))
    user, token = opened(platform, link, "register/verify", ("u", "t"))
    assert (user, token) == ("erin", account_token(platform, "erin"))

    # The verify view's one call; its answer picks the words the page shows.
    answer = api.call("PUT", "/api/register/verify", json={"u": user, "t": token})
    assert answer.get_json() == {"message": "Account has been verified."}
    assert '"Account has been verified.": {' in page_text("views/links.js")
    again = api.call("PUT", "/api/register/verify", json={"u": user, "t": token})
    assert again.status_code == 404  # the page says "already used" (it kept the spent token) or "not valid"

    assert (
        api.call(
            "POST", "/api/authenticate", json={"username": "erin", "password": "erin-password"}
        ).status_code
        == 401
    )
    approve, deny = links_in(last_mail(platform, platform.settings.server.support_email))
    assert urlsplit(approve).path == "/api/register/approve" and urlsplit(deny).path == "/api/register/deny"
    decided = api.call("GET", approve.removeprefix(platform.settings.server.origin))
    assert decided.status_code == 200, decided.get_json()
    assert api.login("erin", "erin-password")


@pytest.mark.parametrize(
    ("changes", "status", "message"),
    [
        ({}, 409, "Username is in use"),
        ({"namespace": "erin2", "email": "ERIN@example.org"}, 409, "Email address is already associated"),
        ({"namespace": "erin2", "email": "erin@localhost"}, 400, "email: must be an e-mail address"),
        ({"namespace": "Erin_2"}, 400, "namespace: must be 3 to 32 lowercase letters"),
        (
            {"namespace": "erin2", "email": "erin2@example.org", "password": "short"},
            400,
            "password: must be at least 6",
        ),
    ],
)
def test_a_refused_sign_up_names_its_fault_and_changes_nothing(
    api: RecordingApi, platform: Platform, changes: dict[str, str], status: int, message: str
) -> None:
    assert register(api).status_code == 200
    before = [record.account for record in platform.store.list_accounts()]
    mailed = len(outbox(platform))

    response = register(api, **changes)
    assert response.status_code == status
    assert error_of(response).startswith(message)
    assert [record.account for record in platform.store.list_accounts()] == before
    assert len(outbox(platform)) == mailed
    # The form marks the field the message names.
    signup = page_text("views/signup.js")
    field = error_of(response).split(":")[0]
    if status == 400:
        assert f"{field}: " in signup
    else:
        assert "error.status === 409" in signup


# --- forgot and reset ----------------------------------------------------------------------------------


def reset_path(user_id: str) -> str:
    """The page's call: ``POST /api/reset?userId=…`` (the Go apiserver's form value)."""
    from urllib.parse import urlencode

    return "/api/reset?" + urlencode({"userId": user_id})


def test_forgot_answers_alike_for_a_user_an_address_and_nobody(api: RecordingApi, platform: Platform) -> None:
    api.make_user("alice", "alice-password")
    api.make_user("bob", "bob-password")
    answers = [
        api.call("POST", reset_path(name))
        for name in ("alice", "bob@example.org", "nobody", "nobody@example.org", "ALICE")
    ]
    assert {answer.status_code for answer in answers} == {200}
    assert len({answer.get_data() for answer in answers}) == 1
    assert {message["To"] for _, message in outbox(platform)} == {"alice@example.org", "bob@example.org"}
    assert len(outbox(platform)) == 2  # ALICE within the interval after alice: no second mail


def test_the_reset_link_sets_a_new_password_once(api: RecordingApi, platform: Platform) -> None:
    api.make_user("alice", "alice-password")
    assert api.call("POST", reset_path("alice@example.org")).status_code == 200

    (link,) = links_in(last_mail(platform, "alice@example.org"))
    assert len(link) > 78  # longer than a quoted-printable line: it would have been cut in two
    (token,) = opened(platform, link, "recover", ("t",))
    assert claims_of(token)["scope"] == "reset" and claims_of(token)["user"] == "alice"

    changed = api.call("PUT", "/api/change_password", token, json={"password": "alice-new-password"})
    assert changed.status_code == 200, changed.get_json()
    assert api.login("alice", "alice-new-password")
    spent = api.call("PUT", "/api/change_password", token, json={"password": "alice-third-password"})
    assert spent.status_code == 401
    assert "ask for a new password reset e-mail" in error_of(spent)
    assert api.login("alice", "alice-new-password")


# --- the mails' links -------------------------------------------------------------------------------------


def outbox(platform: Platform) -> list[tuple[bytes, EmailMessage]]:
    found = []
    for path in sorted(Path(platform.data_dir / "outbox").glob("*.eml")):
        raw = path.read_bytes()
        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        found.append((raw, parsed))
    return found


def last_mail(platform: Platform, to: str) -> tuple[bytes, EmailMessage]:
    mails = [mail for mail in outbox(platform) if mail[1]["To"] == to]
    assert mails, f"no mail to {to}"
    return mails[-1]


def links_in(mail: tuple[bytes, EmailMessage]) -> list[str]:
    """Every link of the decoded text, each checked to end its line (nothing after it to be taken for
    part of it), and, when the body travels as it is, to read the same in the raw message."""
    raw, message = mail
    assert message["Content-Transfer-Encoding"] in ("7bit", "base64"), message["Content-Transfer-Encoding"]
    text = message.get_content()
    found = []
    for line in text.splitlines():
        links = LINK.findall(line)
        if links:
            (link,) = links
            assert line.endswith(link), f"text follows a link on its line: {line!r}"
            found.append(link)
    for link in found:
        assert "=\n" not in link and "=3D" not in link
        if message["Content-Transfer-Encoding"] == "7bit":
            assert link.encode() in raw, "the raw message holds the link as it is"
    return found


def opened(platform: Platform, link: str, view: str, parameters: tuple[str, ...]) -> list[str]:
    """Checks that ``link`` opens the page's ``view`` (in the address's fragment, which the browser
    never sends to a server) with exactly ``parameters``; their values, in that order."""
    parts = urlsplit(link)
    assert f"{parts.scheme}://{parts.netloc}" == platform.settings.server.origin
    assert parts.path == "/" and parts.query == ""
    route, _, query = parts.fragment.partition("?")
    assert route == f"/{view}"
    values = dict(parse_qsl(query, strict_parsing=True))
    assert set(values) == set(parameters)
    return [values[name] for name in parameters]


def account_token(platform: Platform, user: str) -> str:
    record = platform.store.get_account(user)
    assert record is not None
    return record.account.token


def test_every_mail_of_the_flows_keeps_its_links_whole(api: RecordingApi, platform: Platform) -> None:
    """A name with an accent makes the body non-ASCII (base64), a long token makes long lines (7bit):
    in both the decoded text holds each link on one line, the link the flow's next step takes."""
    assert register(api, name="Zoë Ångström").status_code == 200
    raw, message = last_mail(platform, "erin@example.org")
    assert message["Content-Transfer-Encoding"] == "base64"
    (link,) = links_in((raw, message))
    user, token = opened(platform, link, "register/verify", ("u", "t"))
    assert api.call("PUT", "/api/register/verify", json={"u": user, "t": token}).status_code == 200
    approve, _ = links_in(last_mail(platform, platform.settings.server.support_email))
    assert api.call("GET", approve.removeprefix(platform.settings.server.origin)).status_code == 200
    (ready,) = links_in(last_mail(platform, "erin@example.org"))
    assert ready == platform.settings.server.origin

    alice = api.make_user("alice", "alice-password")
    assert api.call("POST", reset_path("alice")).status_code == 200
    raw, message = last_mail(platform, "alice@example.org")
    assert message["Content-Transfer-Encoding"] == "7bit"
    assert max(len(line) for line in raw.splitlines()) > 78
    (reset,) = links_in((raw, message))
    opened(platform, reset, "recover", ("t",))

    changed = api.call("PUT", "/api/accounts/alice", alice, json={"email": "alice@lab.example.org"})
    assert changed.status_code == 200, changed.get_json()
    (confirm,) = links_in(last_mail(platform, "alice@lab.example.org"))
    user, token = opened(platform, confirm, "register/verify", ("u", "t"))
    answer = api.call("PUT", "/api/register/verify", json={"u": user, "t": token})
    assert answer.get_json() == {"message": "E-mail address has been changed."}
    assert '"E-mail address has been changed.": {' in page_text("views/links.js")


def test_a_mail_travels_as_it_is_or_in_base64_never_quoted_printable(tmp_path: Path) -> None:
    from shared.adapters.mail import Outbox

    mailbox = Outbox(tmp_path, "workbench@example.org")
    long_link = "http://127.0.0.1:8080/#/recover?t=" + "x" * 900
    for body in (f"Hello\n\n{long_link}\n", f"Hello Zoë\n\n{long_link}\n", "Hello\n\n" + "y" * 1200 + "\n"):
        mailbox.send("someone@example.org", "Subject", body)
    encodings = [message["Content-Transfer-Encoding"] for message in mailbox.messages()]
    assert encodings == ["7bit", "base64", "base64"]  # the last has a line SMTP cannot carry whole
    for message in mailbox.messages():
        assert message.get_content().splitlines()[2] in (long_link, "y" * 1200)


# --- the page keeps the links' tokens to itself -------------------------------------------------------


def test_the_page_loads_nothing_from_elsewhere_and_sends_no_referrer(client: Callable[[str], Client]) -> None:
    response = client("ui").get("/")
    assert response.headers["Referrer-Policy"] == "no-referrer"
    policy_text = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy_text and "'unsafe-inline'" not in policy_text
    for directive in policy_text.split(";"):
        assert "http" not in directive and "*" not in directive, directive
    for name, asset in page.assets().items():
        # Vendored widgets name their projects' sites in comments; the policy above is what keeps
        # their code (and ours) from loading anything from elsewhere.
        if name.endswith((".html", ".js", ".css")) and not name.startswith("vendor/"):
            text = asset.body.decode()
            # Only an example shown as text may name another site.
            for link in LINK.findall(text):
                assert link.startswith("https://clowder.example.org/"), (name, link)


def test_the_links_views_take_the_token_out_of_the_address_once_spent() -> None:
    links = page_text("views/links.js")
    assert links.count('history.replaceState(null, "", "#/register/verify")') == 1
    assert links.count('history.replaceState(null, "", "#/recover")') == 2
