"""The system function (paths, version, health, vocabularies, contact, support, log level, OpenAPI),
its behaviour without a database, and that each function answers only its own routes."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.exceptions import NotFound as NoRoute
from werkzeug.routing import Map, Rule

from shared import __version__
from shared.adapters.mail import Outbox
from shared.bootstrap import Platform, use_platform
from shared.core.settings import Settings
from shared.serving import registry
from tests.conftest import ROOT, Api, Client

UNREACHABLE_DATABASE = "postgresql://127.0.0.1:1/none"
SUPPORT_ADDRESS = "help@workbench.example.org"
METHODS = ("GET", "POST", "PUT", "DELETE")


def error_of(response: Any) -> str:
    body = response.get_json()
    assert isinstance(body, dict) and set(body) == {"Error"}, body
    message: str = body["Error"]
    return message


def function_client(name: str) -> Client:
    """A test client of the function ``name``, built as functions-framework serves it."""
    import functions_framework

    create_app: Callable[..., Any] = functions_framework.create_app
    function = registry.function(name)
    return create_app(function.target, str(ROOT / function.source), "http").test_client()


def concrete(path: str) -> str:
    """A route path with each ``<parameter>`` filled in."""
    return re.sub(r"<(\w+)>", lambda match: f"{match.group(1)}1", path)


@pytest.fixture
def alice(api: Api, platform: Platform) -> str:
    account = {
        "namespace": "alice",
        "name": "Alice",
        "email": "alice@example.org",
        "password": "alice-secret",
    }
    response = api.call("POST", "/api/accounts", platform.tokens.issue("admin", admin=True), json=account)
    assert response.status_code == 200, response.get_json()
    return platform.tokens.issue("alice")


@pytest.fixture
def admin(platform: Platform) -> str:
    return platform.tokens.issue("admin", admin=True)


@pytest.fixture
def root_log_level() -> Iterator[None]:
    """The log level routes change the process's root logger; put it back."""
    root = logging.getLogger()
    before = root.level
    yield
    root.setLevel(before)


# --- paths and version -------------------------------------------------------------------------


def test_paths_list_every_top_level_path(api: Api, platform: Platform) -> None:
    response = api.call("GET", "/api/")
    assert response.status_code == 200
    paths = response.get_json()
    assert paths == sorted(set(paths))
    assert {
        "/api/accounts",
        "/api/authenticate",
        "/api/configs",
        "/api/healthz",
        "/api/services",
        "/api/stacks",
        "/api/start",
        "/api/stop",
        "/api/version",
        "/api/vocabulary",
    } <= set(paths)
    assert "/api/" not in paths
    route_paths = [route.path for function in registry.http_functions() for route in function.routes]
    for path in paths:
        assert any(route == path or route.startswith(path + "/") for route in route_paths), path
    for route in route_paths:
        if route.startswith("/api/") and route != "/api/":  # not the management page's / and /ui/
            assert "/api/" + route.removeprefix("/api/").split("/")[0] in paths, route
    # The same answer without the trailing slash.
    assert api.call("GET", "/api").get_json() == paths


def test_version_is_a_json_string(api: Api, platform: Platform) -> None:
    response = api.call("GET", "/api/version")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == __version__
    assert response.get_data(as_text=True) == f'"{__version__}"'


# --- health and an unreachable database --------------------------------------------------------


def test_healthz_with_the_database(api: Api, platform: Platform) -> None:
    response = api.call("GET", "/api/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


@pytest.fixture(params=["postgresql", "sqlite"])
def platform_without_database(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, isolated_environment: Path
) -> tuple[Platform, str]:
    """A platform whose database cannot be reached, and how its messages name the database.

    Nothing initialises it. The SQLite variant has a plain file where the database's folder
    should be.
    """
    if request.param == "postgresql":
        url, culprit = UNREACHABLE_DATABASE, "PostgreSQL 127.0.0.1:1/none"
    else:
        blocker = isolated_environment.parent / "plain-file"
        blocker.write_text("not a folder")
        url, culprit = f"sqlite:///{blocker / 'workbench.db'}", str(blocker)
    monkeypatch.setenv("WORKBENCH_DATABASE_URL", url)
    instance = Platform(Settings.from_env())
    use_platform(instance)
    return instance, culprit


def test_unreachable_database_answers_503(platform_without_database: tuple[Platform, str]) -> None:
    platform, culprit = platform_without_database
    system = function_client("system")
    started = time.monotonic()
    response = system.get("/api/healthz")
    assert response.status_code == 503
    health = response.get_json()
    assert health["status"] == "unavailable"
    assert health["database"].startswith("database unavailable"), health
    assert culprit in health["database"]

    token = platform.tokens.issue("someone", generation="unchecked")  # issuing reads no database
    headers = {"Authorization": f"Bearer {token}"}
    services = function_client("services")
    for _ in range(2):  # a failed connection is not kept: the second call tries again and fails the same
        response = services.get("/api/services", headers=headers)
        assert response.status_code == 503
        message = error_of(response)
        assert message.startswith("database unavailable"), message
        assert culprit in message
    response = system.post("/api/support", headers=headers, json={"type": "bug", "message": "down?"})
    assert response.status_code == 503
    assert error_of(response).startswith("database unavailable")
    # Routes that need no database still answer.
    assert system.get("/api/version").status_code == 200
    assert time.monotonic() - started < 20


# --- vocabularies and contact ------------------------------------------------------------------


def test_vocabulary(api: Api, platform: Platform) -> None:
    response = api.call("GET", "/api/vocabulary/tags")
    assert response.status_code == 200
    vocabulary = response.get_json()
    assert vocabulary["name"] == "tags"
    assert len(vocabulary["terms"]) > 10
    assert all(term["id"] and term["name"] for term in vocabulary["terms"])
    # Specs are tagged with term ids of this vocabulary.
    mongo = platform.store.get_spec("", "mongo")
    assert mongo is not None and mongo.tags
    assert set(mongo.tags) <= {term["id"] for term in vocabulary["terms"]}

    response = api.call("GET", "/api/vocabulary/colours")
    assert response.status_code == 404
    assert "colours" in error_of(response)


@pytest.fixture
def contact_settings(monkeypatch: pytest.MonkeyPatch, isolated_environment: Path) -> None:
    monkeypatch.setenv("WORKBENCH_SUPPORT_EMAIL", SUPPORT_ADDRESS)
    monkeypatch.setenv("WORKBENCH_FORUM_URL", "https://forum.example.org/workbench")


def test_contact(contact_settings: None, api: Api, platform: Platform) -> None:
    response = api.call("GET", "/api/contact")
    assert response.status_code == 200
    assert response.get_json() == {
        "email": SUPPORT_ADDRESS,
        "forum": "https://forum.example.org/workbench",
        "chat": "",
    }


# --- support -----------------------------------------------------------------------------------


def outbox_of(platform: Platform) -> Outbox:
    mailer = platform.mailer
    assert isinstance(mailer, Outbox)
    return mailer


def test_support_request_is_mailed_to_support(
    contact_settings: None, api: Api, platform: Platform, alice: str
) -> None:
    response = api.call("POST", "/api/support", alice, json={"type": "bug", "message": "The stack hangs."})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["message"]

    messages = outbox_of(platform).messages()
    assert len(messages) == 1
    mail = messages[0]
    assert mail["To"] == SUPPORT_ADDRESS
    assert "bug" in mail["Subject"]
    body = mail.get_content()
    assert "The stack hangs." in body
    assert "alice@example.org" in body


def test_anonymous_support_request_does_not_name_the_sender(api: Api, platform: Platform, alice: str) -> None:
    response = api.call(
        "POST", "/api/support", alice, json={"type": "wish", "message": "Dark mode", "anonymous": True}
    )
    assert response.status_code == 200, response.get_json()
    [mail] = outbox_of(platform).messages()
    body = mail.get_content()
    assert "Dark mode" in body
    assert "alice" not in body.lower()


def test_bad_support_requests_send_nothing(api: Api, platform: Platform, alice: str) -> None:
    response = api.call("POST", "/api/support", alice, json={"type": "complaint", "message": "x"})
    assert response.status_code == 400
    assert error_of(response).startswith("type:")

    response = api.call("POST", "/api/support", alice, json={"type": "help"})
    assert response.status_code == 400
    assert error_of(response).startswith("message:")

    response = api.call("POST", "/api/support", json={"type": "help", "message": "x"})
    assert response.status_code == 401

    assert not (platform.data_dir / "outbox").exists() or outbox_of(platform).messages() == []


# --- log level ---------------------------------------------------------------------------------


def test_log_level(api: Api, admin: str, alice: str, root_log_level: None) -> None:
    logging.getLogger().setLevel(logging.WARNING)
    response = api.call("PUT", "/api/log_level/DEBUG", admin)
    assert response.status_code == 200
    assert response.get_json() == {"level": "DEBUG"}
    assert logging.getLogger().level == logging.DEBUG

    response = api.call("PUT", "/api/log_level/error", admin)
    assert response.status_code == 200
    assert response.get_json() == {"level": "ERROR"}
    assert logging.getLogger().level == logging.ERROR

    response = api.call("PUT", "/api/log_level/DEBUG", alice)
    assert response.status_code == 403
    assert error_of(response)
    assert api.call("PUT", "/api/log_level/DEBUG").status_code == 401

    response = api.call("PUT", "/api/log_level/LOUD", admin)
    assert response.status_code == 400
    assert error_of(response).startswith("level:")
    assert logging.getLogger().level == logging.ERROR


# --- OpenAPI -----------------------------------------------------------------------------------


def test_openapi_document_has_every_route(api: Api, platform: Platform) -> None:
    response = api.call("GET", "/api/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"] == "3.1.0"
    assert document["info"]["version"] == __version__
    for function in registry.http_functions():
        for route in function.routes:
            if not route.path.startswith("/api/"):
                continue  # the management page is not part of the API
            path = re.sub(r"<(\w+)>", r"{\1}", route.path)
            assert path in document["paths"], path
            operation = document["paths"][path].get(route.method.lower())
            assert operation is not None, f"{route.method} {path}"
            assert str(route.status) in operation["responses"]
            assert operation["security"] == ([] if route.access == "public" else [{"bearer": []}])


# --- each function answers only its own routes -------------------------------------------------


def routing_of(function: registry.Function) -> Map:
    return Map(
        [Rule(route.path, methods=[route.method]) for route in function.routes],
        strict_slashes=False,
        merge_slashes=False,
    )


def allowed_methods(routing: Map, path: str) -> set[str]:
    """The methods of ``METHODS`` that some route of the function answers at ``path``."""
    allowed = set()
    adapter = routing.bind("")
    for method in METHODS:
        try:
            adapter.match(path, method=method)
        except (MethodNotAllowed, NoRoute):
            continue
        allowed.add(method)
    return allowed


def test_the_system_function_does_not_answer_stacks(
    client: Callable[[str], Client], platform: Platform
) -> None:
    token = platform.tokens.issue("admin", admin=True)
    response = client("system").get("/api/stacks", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 404
    message = error_of(response)
    assert "/api/stacks" in message and "system" in message, message
    assert client("stacks").get("/api/version").status_code == 404


def test_each_function_answers_only_its_own_routes(client: Callable[[str], Client]) -> None:
    functions = registry.http_functions()
    for function in functions:
        served = client(function.name)
        routing = routing_of(function)
        for other in functions:
            if other is function:
                continue
            for route in other.routes:
                path = concrete(route.path)
                if allowed_methods(routing, path):
                    continue  # also a path of this function
                response = served.open(path, method=route.method)
                assert response.status_code == 404, (function.name, route.method, path)
                assert function.name in error_of(response)


def test_a_wrong_method_on_a_known_path_is_405_with_allow(client: Callable[[str], Client]) -> None:
    checked = 0
    for function in registry.http_functions():
        served = client(function.name)
        routing = routing_of(function)
        for route in function.routes:
            path = concrete(route.path)
            allowed = allowed_methods(routing, path)
            assert route.method in allowed
            for method in sorted(set(METHODS) - allowed):
                response = served.open(path, method=method)
                assert response.status_code == 405, (function.name, method, path)
                assert method in error_of(response)
                offered = {part.strip() for part in response.headers["Allow"].split(",")}
                assert allowed <= offered, (function.name, method, path, offered)
                assert method not in offered
                checked += 1
    assert checked > 50


def test_405_through_the_gateway_names_the_allowed_methods(api: Api, platform: Platform) -> None:
    response = api.call("DELETE", "/api/version")
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    response = api.call("POST", "/api/services/mongo")
    assert response.status_code == 405
    assert {part.strip() for part in response.headers["Allow"].split(",")} >= {"GET", "PUT", "DELETE"}
