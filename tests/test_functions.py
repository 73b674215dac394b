"""Each function is its own deployable: it answers its own routes, alone, and imports little."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from shared.adapters.runtime.processes import free_port
from shared.serving import registry
from tests.conftest import ROOT, Api
from tests.support import wait_until


def first_answer(url: str, server: subprocess.Popen[bytes], log: Path, seconds: float = 20) -> httpx.Response:
    """The first answer of a server process that is starting; its log when it dies or never answers."""

    def answer() -> httpx.Response | None:
        try:
            return httpx.get(url, timeout=1)
        except httpx.TransportError:
            assert server.poll() is None, log.read_text()
            return None

    return wait_until(answer, lambda: f"{url} to answer:\n{log.read_text()}", seconds, every=0.1)


def sample_path(path: str) -> str:
    """A concrete path for a route pattern (``<sid>`` → ``sunknown``)."""
    for name in ("account_id", "key", "sid", "ssid", "name", "level"):
        path = path.replace(f"<{name}>", "sunknown" if name != "level" else "INFO")
    return path


@pytest.mark.parametrize("function", registry.http_functions(), ids=lambda function: function.name)
def test_every_route_reaches_a_handler(api: Api, function: registry.Function) -> None:
    """No route of a function lacks a handler (that would answer 500) or falls through to 'no route'."""
    token = api.admin()
    for route in function.routes:
        response = api.client(function.name).open(
            sample_path(route.path),
            method=route.method,
            headers={"Authorization": f"Bearer {token}"},
            json={} if route.body is not None else None,
        )
        assert response.status_code < 500, (route.path, response.get_data(as_text=True))
        body = response.get_data(as_text=True)
        assert "no route" not in body, (route.method, route.path)


@pytest.mark.parametrize("function", registry.http_functions(), ids=lambda function: function.name)
def test_a_function_answers_only_its_own_routes(api: Api, function: registry.Function) -> None:
    token = api.admin()
    others = [
        route for other in registry.http_functions() if other.name != function.name for route in other.routes
    ]
    for route in others:
        response = api.client(function.name).open(
            sample_path(route.path), method=route.method, headers={"Authorization": f"Bearer {token}"}
        )
        if response.status_code == 405:
            continue  # the same path with another method belongs to this function (e.g. /api/reset)
        assert response.status_code == 404, (function.name, route.method, route.path)
        assert "no route" in response.get_json()["Error"]


def test_every_route_is_owned_by_exactly_one_function() -> None:
    seen: dict[tuple[str, str], str] = {}
    for function in registry.http_functions():
        assert (ROOT / function.source).is_file(), function.source
        for route in function.routes:
            key = (route.method, route.path)
            assert key not in seen, f"{key} in both {seen[key]} and {function.name}"
            seen[key] = function.name


def test_importing_a_function_loads_no_heavy_library() -> None:
    """Cold start: no function module imports boto3, pika, kubernetes, psycopg or an ORM."""
    modules = [function.module for function in registry.FUNCTIONS]
    heavy = ["boto3", "botocore", "pika", "kubernetes", "psycopg", "sqlalchemy", "jsonschema", "argon2"]
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(output) == []


def test_the_first_platform_puts_the_startup_objects_out_of_the_collectors_sight(tmp_path: Path) -> None:
    """Cold start: what a function imported before its first request lives as long as the process,
    so the imports of that request (psycopg on PostgreSQL) must not set off full collections over it;
    a platform built again later freezes nothing more (tests build many)."""
    script = (
        "import gc, json\n"
        "import functions.stacks\n"
        "from shared.bootstrap import platform, use_platform\n"
        "before = (gc.get_freeze_count(), len(gc.get_objects()))\n"
        "platform()\n"
        "after = (gc.get_freeze_count(), len(gc.get_objects()))\n"
        "use_platform(None)\n"
        "platform()\n"
        "print(json.dumps([before, after, gc.get_freeze_count()]))\n"
    )
    environment = {
        **os.environ,
        "WORKBENCH_DATA_DIR": str(tmp_path / "data"),
        "WORKBENCH_JWT_SECRET": "x" * 48,
    }
    output = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True, check=True
    ).stdout
    (frozen_before, tracked_before), (frozen_after, tracked_after), frozen_again = json.loads(output)
    assert frozen_before == 0
    assert frozen_after >= tracked_before > 10_000  # pydantic and the models, among others
    assert tracked_after < tracked_before / 10
    assert frozen_again <= frozen_after  # (frozen objects freed since are counted no more)


def test_a_function_served_alone_by_functions_framework(tmp_path: Path) -> None:
    """``functions-framework --source functions/system.py --target system`` serves that function only."""
    port = free_port()
    environment = {
        **os.environ,
        "WORKBENCH_DATA_DIR": str(tmp_path / "data"),
        "WORKBENCH_JWT_SECRET": "x" * 48,
    }
    executable = Path(sys.executable).with_name("functions-framework")
    log = tmp_path / "function.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [str(executable), "--source", "functions/system.py", "--target", "system", "--port", str(port)],
            cwd=ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        response = first_answer(f"http://127.0.0.1:{port}/api/version", server, log)
        assert response.status_code == 200
        assert isinstance(response.json(), str)
        assert httpx.get(f"http://127.0.0.1:{port}/api/healthz", timeout=5).json()["status"] == "ok"
        assert httpx.get(f"http://127.0.0.1:{port}/api/stacks", timeout=5).status_code == 404
        unparsable = httpx.get(f"http://127.0.0.1:{port}/api/vocabulary/a%0Ab", timeout=5)
        assert unparsable.status_code == 404
        assert "Error" in unparsable.json()  # JSON even for paths the framework cannot route
    finally:
        server.terminate()
        server.wait(timeout=10)
