"""Fixtures of a platform paired with the Clowder test server, for the modules of transfer, export and
replay tests (a plugin of conftest, so each such module uses them without importing them).

A module overrides conftest's ``environment`` with ``paired_environment`` and, for the transfer tests,
uses ``quick_retries`` and ``no_stack_left`` on every test (``pytestmark``); ``version``, ``ranges``,
``database`` and ``extra_environment`` are parametrized or overridden where a test needs another
Clowder, store or setting.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from shared.adapters.runtime.processes import free_port
from shared.bootstrap import Platform
from shared.tools.gateway import Gateway
from shovel.local import attach_shovels
from tests.clowder_server import ClowderServer
from tests.support import WAIT_SECONDS, remove_stacks

SECRET = "pairing-secret-shared-with-clowder"
API_KEY = "clowder-api-key"
SERVICE_TOKEN = "clowder-service-token-for-containers"
SOURCE = "https://clowder.example.org/"


@pytest.fixture
def version() -> Literal[1, 2]:
    """The Clowder major version the test server plays (parametrize to change it)."""
    return 2


@pytest.fixture
def ranges() -> bool:
    """Whether the test server answers byte ranges (Clowder 2's streaming download does not)."""
    return True


@pytest.fixture
def database() -> Literal["sqlite", "postgres"]:
    """The platform's store (parametrize to run on the PostgreSQL server)."""
    return "sqlite"


@pytest.fixture
def extra_environment(database: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """More settings for the platform (parametrize to set others; ``link_roots`` mounts a Clowder disk)."""
    extra: dict[str, str] = {}
    if database == "postgres":
        extra["WORKBENCH_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    if request.node.get_closest_marker("link_roots"):
        extra["WORKBENCH_LINK_ROOTS"] = str(tmp_path / "clowder-disk")
    if request.node.get_closest_marker("s3"):
        extra.update(
            {
                "WORKBENCH_S3_BUCKET": S3_BUCKET,
                "WORKBENCH_S3_ENDPOINT": request.getfixturevalue("moto_s3"),
                "WORKBENCH_S3_REGION": "us-east-1",
                "WORKBENCH_S3_ACCESS_KEY": "testing",
                "WORKBENCH_S3_SECRET_KEY": "testing",
            }
        )
    return extra


S3_BUCKET = "workbench-staging"


@pytest.fixture
def moto_s3() -> Iterator[str]:
    """An S3 API (moto in its HTTP server mode) with the staging bucket; yields its endpoint."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket=S3_BUCKET)
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def clowder(tmp_path: Path, version: Literal[1, 2], ranges: bool) -> Iterator[ClowderServer]:
    with ClowderServer(tmp_path / "clowder", version, API_KEY, ranges=ranges) as server:
        yield server


@pytest.fixture
def paired_environment(clowder: ClowderServer, extra_environment: dict[str, str]) -> dict[str, str]:
    """The settings of a platform paired with ``clowder``: a module of such tests overrides conftest's
    ``environment`` with it."""
    return {
        "WORKBENCH_CLOWDER_URL": clowder.url,
        "WORKBENCH_CLOWDER_API_KEY": API_KEY,
        "WORKBENCH_EVENT_SECRET": SECRET,
        "WORKBENCH_CLOWDER_SERVICE_TOKEN": SERVICE_TOKEN,
        "WORKBENCH_PORT": str(free_port()),
        **extra_environment,
    }


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Clowder client's backoff in milliseconds: the retries still happen, just not slowly."""
    monkeypatch.setattr("shared.adapters.clowder.client.MAX_BACKOFF_SECONDS", 0.01)


@pytest.fixture
def no_stack_left(platform: Platform) -> Iterator[None]:
    """Ends the stacks the test started (``pytestmark = pytest.mark.usefixtures("no_stack_left")`` in a
    module whose tests start stacks)."""
    yield
    remove_stacks(platform)


class _QuietHandler(WSGIRequestHandler):
    def log(self, type: str, message: str, *args: Any) -> None:
        pass


class Served:
    """The platform's Gateway (API, /events, /objects) on the platform's own port, in a thread."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.gateway = Gateway(data_dir=platform.data_dir)
        settings = platform.settings.server
        self.server: BaseWSGIServer = make_server(
            settings.host, settings.port, self.gateway, threaded=True, request_handler=_QuietHandler
        )
        self.url = f"http://{settings.host}:{settings.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def wait_idle(self) -> None:
        assert self.gateway.ingress is not None
        assert self.gateway.ingress.wait_idle(WAIT_SECONDS), "the local Broker still delivers events"

    def close(self) -> None:
        remove_stacks(self.platform)  # while /events still answers the shovels' last words
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        if self.gateway.ingress is not None:
            self.gateway.ingress.wait_idle(5)
            self.gateway.ingress.close()


@pytest.fixture
def served(platform: Platform) -> Iterator[Served]:
    server = Served(platform)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def shovels(platform: Platform, served: Served) -> Served:
    """A shovel beside every stack the platform starts (in-process threads, or processes with RabbitMQ)."""
    attach_shovels(platform, heartbeat_seconds=60)
    return served
