"""Fixtures: an isolated environment per test, a platform on a temporary data dir, function clients."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.bootstrap import Platform, use_platform
from shared.core.settings import Settings

pytest_plugins = [
    "tests.diagnostics",
    # The fixtures that several modules use: accounts and their tokens, a platform paired with the
    # Clowder test server, ``workbench run`` as a process, the browser tests' Chromium, a Kubernetes
    # runtime on the Kubernetes stand-in, a receiver of events, local runtimes on the test's data dir, and
    # the console tests' platform on a container engine.
    "tests.users",
    "tests.clowder_pairing",
    "tests.workbench_process",
    "tests.chromium",
    "tests.kubernetes_runtime",
    "tests.receiver",
    "tests.local_runtime",
    "tests.console_site",
]

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("WORKBENCH_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
ADMIN_PASSWORD = "admin-secret-password"


def services_required() -> bool:
    return os.environ.get("WORKBENCH_REQUIRE_SERVICES", "") in {"1", "true", "yes"}


def need(service: str, problem: str) -> None:
    """Skip (or, in CI, fail) a test whose service is missing."""
    message = f"{service} is not reachable: {problem}"
    if services_required():
        pytest.fail(message + " (WORKBENCH_REQUIRE_SERVICES is set)")
    pytest.skip(message)


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No WORKBENCH_* setting leaks in; every test has its own data dir, secret and database."""
    for name in list(os.environ):
        if (
            name.startswith("WORKBENCH_")
            and name != "WORKBENCH_REQUIRE_SERVICES"
            and not name.startswith("WORKBENCH_TEST_")
        ):
            monkeypatch.delenv(name)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(data_dir))
    monkeypatch.setenv("WORKBENCH_JWT_SECRET", secrets.token_urlsafe(48))
    monkeypatch.setenv("WORKBENCH_ADMIN_PASSWORD", ADMIN_PASSWORD)
    monkeypatch.setenv("WORKBENCH_READY_TIMEOUT", "20")
    # Stacks run as local processes unless a test says otherwise, whether or not an engine answers here.
    monkeypatch.setenv("WORKBENCH_RUNTIME", "local")
    previous = use_platform(None)
    yield data_dir
    current = use_platform(previous)
    if current is not None:
        current.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose search path is a fresh schema, dropped afterwards."""
    try:
        import psycopg

        connection = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except Exception as error:
        need("PostgreSQL", str(error))
    schema = f"wb_{uuid.uuid4().hex[:12]}"
    connection.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        connection.execute(f"DROP SCHEMA {schema} CASCADE")
        connection.close()


@pytest.fixture
def environment() -> dict[str, str]:
    """Settings for this test's platform (an empty value unsets one); override or parametrize it."""
    return {}


@pytest.fixture
def platform(
    isolated_environment: Path, environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Platform]:
    """The platform the functions use, initialised as ``workbench run`` does (admin, catalog)."""
    from shared.tools.cli import initialise

    for name, value in environment.items():
        if value:
            monkeypatch.setenv(name, value)
        else:
            monkeypatch.delenv(name, raising=False)
    instance = Platform(Settings.from_env())
    use_platform(instance)
    initialise(instance)
    yield instance


Client = Any


@pytest.fixture
def client(platform: Platform) -> Callable[[str], Client]:
    """``client(name)``: a test client of the function ``name`` served as functions-framework serves it."""
    import functions_framework

    from shared.serving import registry

    clients: dict[str, Client] = {}

    def make(name: str) -> Client:
        if name not in clients:
            function = registry.function(name)
            app = functions_framework.create_app(function.target, str(ROOT / function.source), "http")
            clients[name] = app.test_client()
        return clients[name]

    return make


class Api:
    """Calls any route through the function that owns it, with a token when given."""

    def __init__(self, client: Callable[[str], Client]) -> None:
        from shared.tools.gateway import Gateway

        self.client = client
        self.gateway = Gateway()

    def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        name = self.gateway.function_for(method, path.split("?")[0])
        assert name is not None, f"no function answers {method} {path}"
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.client(name).open(path, method=method, headers=headers, **kwargs)

    def login(self, username: str, password: str) -> str:
        response = self.call("POST", "/api/authenticate", json={"username": username, "password": password})
        assert response.status_code == 200, response.get_json()
        token: str = response.get_json()["token"]
        return token

    def admin(self) -> str:
        return self.login("admin", ADMIN_PASSWORD)

    def make_user(self, user: str = "alice", password: str = "alice-password") -> str:
        """An approved account made by the admin; returns the user's token."""
        response = self.call(
            "POST",
            "/api/accounts",
            self.admin(),
            json={
                "namespace": user,
                "name": user.title(),
                "email": f"{user}@example.org",
                "password": password,
            },
        )
        assert response.status_code == 200, response.get_json()
        return self.login(user, password)


@pytest.fixture
def api(client: Callable[[str], Client]) -> Api:
    return Api(client)
