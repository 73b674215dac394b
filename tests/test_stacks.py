"""Stacks through the functions as served: compose, change, start, stop, logs, quickstart and failures."""

from __future__ import annotations

import json
import re
import shlex
import sys
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.bootstrap import Platform
from shared.domain import stacks
from tests.conftest import Api
from tests.support import remove_stacks, wait_for_status
from tests.test_auth import error_of
from tests.users import Users

STACK_ID = re.compile(r"^s[a-z0-9]{5}$")
LOG_HEADER = "STATUS MESSAGES\n=====================\n"  # the local runtime's title of them

# Listens on PORT half a second after it starts, and records when it began to listen.
BACKEND = """
import os, socket, time
time.sleep(0.5)
server = socket.socket()
server.bind(("127.0.0.1", int(os.environ["PORT"])))
with open(os.path.join(os.environ["WORKBENCH_HOME"], "backend-listening"), "w") as handle:
    handle.write(repr(time.time()))
server.listen()
time.sleep(60)
"""
# Records when it started, its environment and whether the backend answered, then listens on PORT.
FRONTEND = """
import json, os, socket, time
started = time.time()
host = os.environ.get("BACKEND_PORT_7000_TCP_ADDR", "")
port = os.environ.get("BACKEND_PORT_7000_TCP_PORT", "0")
try:
    socket.create_connection((host, int(port)), timeout=1).close()
    reached = True
except (OSError, ValueError):
    reached = False
record = {"started": started, "reached": reached, "environment": dict(os.environ)}
with open(os.path.join(os.environ["WORKBENCH_HOME"], "frontend.json"), "w") as handle:
    json.dump(record, handle)
server = socket.socket()
server.bind(("127.0.0.1", int(os.environ["PORT"])))
server.listen()
time.sleep(60)
"""
# The admin's commands, run only for the admin's specs (the system catalog's).
LOCAL_COMMANDS = {
    "crasher": shlex.join(["sh", "-c", "echo boom; exit 3"]),
    "sleeper": shlex.join(["sleep", "30"]),
    "backend": shlex.join([sys.executable, "-c", BACKEND]),
    "frontend": shlex.join([sys.executable, "-c", FRONTEND]),
}


def spec(key: str, **changes: Any) -> dict[str, Any]:
    """A user spec that passes every check; without a local command it serves its folder over HTTP."""
    document: dict[str, Any] = {
        "key": key,
        "label": key.title(),
        "description": f"The {key} service",
        "image": {"name": f"example/{key}", "tags": ["latest", "2.0"]},
        "access": "external",
        "display": "stack",
        "ports": [{"port": 8888, "protocol": "http"}],
        "volumeMounts": [{"mountPath": "/home/user/work"}],
        "resourceLimits": {"cpuMax": 500, "cpuDefault": 100, "memMax": 1000, "memDefault": 50},
    }
    document.update(changes)
    return {name: value for name, value in document.items() if value is not None}


NOTEBOOK = spec(
    "notebook",
    config=[
        {"name": "GREETING", "value": "hello", "canOverride": True},
        {"name": "MODE", "value": "fixed", "canOverride": False},
        {"name": "SECRET", "value": "", "isPassword": True},
    ],
)


# --- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture
def environment() -> dict[str, str]:
    return {"WORKBENCH_LOCAL_COMMANDS": json.dumps(LOCAL_COMMANDS)}


@pytest.fixture(autouse=True)
def no_process_left(platform: Platform) -> Iterator[None]:
    """Every stack still in the store has its processes ended, waiting until they are gone."""
    yield
    if not platform.has("runtime"):
        return
    remove_stacks(platform)
    assert not list((platform.data_dir / "run").glob("*/*.json")), "a process record is left"


def add_spec(api: Api, token: str, document: dict[str, Any], catalog: str = "") -> None:
    path = "/api/services" + (f"?catalog={catalog}" if catalog else "")
    response = api.call("POST", path, token, json=document)
    assert response.status_code == 200, response.get_json()


def create(api: Api, token: str, body: dict[str, Any]) -> dict[str, Any]:
    response = api.call("POST", "/api/stacks", token, json=body)
    assert response.status_code == 200, response.get_json()
    stack: dict[str, Any] = response.get_json()
    return stack


def read(api: Api, token: str, sid: str) -> dict[str, Any]:
    response = api.call("GET", f"/api/stacks/{sid}", token)
    assert response.status_code == 200, response.get_json()
    stack: dict[str, Any] = response.get_json()
    return stack


def refused(response: Any, status: int, *named: str) -> str:
    """The error message of a refusal with ``status``, checked to name each of ``named``."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    message = error_of(response)
    for part in named:
        assert part in message, (part, message)
    return message


def wait_for(
    api: Api, token: str, sid: str, wanted: str, *, passing: Collection[str] | None = None
) -> dict[str, Any]:
    """Poll the stack until it is ``wanted``; any status but those in ``passing`` (without it: ``error``)
    fails at once."""
    return wait_for_status(lambda: read(api, token, sid), wanted, f"stack {sid}", passing=passing)


def start(api: Api, token: str, sid: str) -> dict[str, Any]:
    response = api.call("GET", f"/api/start/{sid}", token)
    assert response.status_code == 202, response.get_json()
    stack: dict[str, Any] = response.get_json()
    assert stack["status"] == "starting"
    return stack


def stop(api: Api, token: str, sid: str) -> dict[str, Any]:
    response = api.call("GET", f"/api/stop/{sid}", token)
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["status"] == "stopping"
    return wait_for(api, token, sid, "stopped", passing=("stopping",))


def started(api: Api, token: str, sid: str) -> dict[str, Any]:
    start(api, token, sid)
    return wait_for(api, token, sid, "started", passing=("starting",))


def service_of(stack: dict[str, Any], key: str) -> dict[str, Any]:
    found = [service for service in stack["services"] if service["service"] == key]
    assert len(found) == 1, (key, stack["services"])
    return found[0]


def answers(url: str) -> int | None:
    """The HTTP status ``url`` answers with, or None when nothing listens there."""
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.TransportError:
        return None


# --- composing a stack -------------------------------------------------------------------------


def test_create_fills_in_ids_name_folders_and_required_dependencies(api: Api, alice: str) -> None:
    stack = create(api, alice, {"key": "clowder"})

    sid = stack["id"]
    assert STACK_ID.match(sid), sid
    assert stack["status"] == "stopped"
    assert stack["key"] == "clowder"
    assert stack["name"] == "Clowder"  # the spec's label
    assert [service["service"] for service in stack["services"]] == ["clowder", "mongo"]  # mongo is required
    for service in stack["services"]:
        assert service["id"] == f"{sid}-{service['service']}"
        assert service["stack"] == sid
        assert service["status"] == ""
    assert service_of(stack, "clowder")["imageTag"] == "1.1.1"  # the first of the spec's tags
    assert service_of(stack, "clowder")["volumeMounts"] == {}  # the spec mounts nothing
    mongo_mounts = service_of(stack, "mongo")["volumeMounts"]
    assert list(mongo_mounts.values()) == ["/data/db"]
    assert re.fullmatch(rf"AppData/{sid}-mongo-[a-z0-9]{{5}}", next(iter(mongo_mounts))), mongo_mounts

    assert read(api, alice, sid) == stack
    listed = api.call("GET", "/api/stacks", alice)
    assert listed.status_code == 200
    assert listed.get_json() == [stack]


def test_create_ignores_the_id_and_state_in_the_body(api: Api, alice: str) -> None:
    body = {
        "id": "sabcde",
        "key": "mongo",
        "status": "started",
        "services": [
            {
                "id": "sabcde-mongo",
                "service": "mongo",
                "status": "ready",
                "statusMessages": ["Serving"],
                "endpoints": [{"host": "example.org", "url": "http://example.org/"}],
            }
        ],
    }
    stack = create(api, alice, body)
    assert stack["id"] != "sabcde"
    assert stack["status"] == "stopped"
    service = stack["services"][0]
    assert service["id"] == f"{stack['id']}-mongo"
    assert (service["status"], service["statusMessages"], service["endpoints"]) == ("", [], None)
    host = "example.org"
    refused(api.call("GET", f"/api/check_token?host={host}", alice), 403, host)


def test_create_adds_optional_dependencies_only_when_asked(api: Api, alice: str) -> None:
    stack = create(api, alice, {"key": "clowder", "name": " Mine ", "services": [{"service": "rabbitmq"}]})
    assert [service["service"] for service in stack["services"]] == ["rabbitmq", "clowder", "mongo"]
    assert stack["name"] == "Mine"

    second = create(api, alice, {"key": "clowder"})
    assert second["id"] != stack["id"]
    # Each stack has folders of its own.
    first_folder, second_folder = (
        next(iter(service_of(created, "mongo")["volumeMounts"])) for created in (stack, second)
    )
    assert first_folder != second_folder


def test_create_adds_dependencies_required_through_any_path(api: Api, alice: str) -> None:
    # m requires y, which requires x, which requires z; m also lists x as optional, first reached.
    portless = {"ports": None, "volumeMounts": None}
    add_spec(api, alice, spec("z", **portless))
    add_spec(api, alice, spec("x", depends=[{"key": "z", "required": True}], **portless))
    add_spec(api, alice, spec("y", depends=[{"key": "x", "required": True}], **portless))
    add_spec(
        api,
        alice,
        spec(
            "m",
            depends=[{"key": "y", "required": True}, {"key": "x", "required": False}],
            **portless,
        ),
    )

    stack = create(api, alice, {"key": "m"})
    assert sorted(service["service"] for service in stack["services"]) == ["m", "x", "y", "z"]


def test_create_refuses_what_cannot_be_composed(api: Api, alice: str) -> None:
    add_spec(api, alice, NOTEBOOK)
    refused(api.call("POST", "/api/stacks", alice, json={"key": "nothing"}), 404, "nothing")
    refused(api.call("POST", "/api/stacks", alice, json={"name": "keyless"}), 400, "key")
    refused(
        api.call(
            "POST",
            "/api/stacks",
            alice,
            json={"key": "clowder", "services": [{"service": "mongo"}, {"service": "postgres"}]},
        ),
        400,
        "services.1.service",
        "postgres",
    )
    refused(
        api.call(
            "POST",
            "/api/stacks",
            alice,
            json={"key": "clowder", "services": [{"service": "mongo"}, {"service": "mongo"}]},
        ),
        400,
        "services.1.service",
    )
    bad_services: list[tuple[dict[str, Any], tuple[str, ...]]] = [
        ({"config": {"COLOUR": "blue"}}, ("services.0.config.COLOUR", "COLOUR")),
        ({"config": {"MODE": "changed"}}, ("services.0.config.MODE", "cannot be overridden")),
        ({"imageTag": "3.0"}, ("services.0.imageTag", "latest, 2.0")),
        ({"volumeMounts": {"/etc": "/home/user/work"}}, ("services.0.volumeMounts./etc",)),
        ({"volumeMounts": {"../bob": "/home/user/work"}}, ("services.0.volumeMounts.../bob",)),
        ({"volumeMounts": {"data/../../bob": "/home/user/work"}}, ("services.0.volumeMounts",)),
        ({"volumeMounts": {"data/..": "/home/user/work"}}, ("services.0.volumeMounts",)),  # the home itself
        (
            {"volumeMounts": {"one": "/home/user/work", "two": "/home/user/work"}},
            ("services.0.volumeMounts", "/home/user/work"),
        ),
    ]
    for change, named in bad_services:
        body = {"key": "notebook", "services": [{"service": "notebook", **change}]}
        refused(api.call("POST", "/api/stacks", alice, json=body), 400, *named)
    refused(api.call("POST", "/api/stacks", alice, data="{not json", content_type="application/json"), 400)

    assert api.call("GET", "/api/stacks", alice).get_json() == []


def test_config_overrides_and_generated_passwords(api: Api, alice: str) -> None:
    add_spec(api, alice, NOTEBOOK)
    body = {
        "key": "notebook",
        "services": [
            {
                "service": "notebook",
                "imageTag": "2.0",
                "config": {"GREETING": "good morning", "MODE": "fixed"},
                "volumeMounts": {"projects/mine": "/home/user/work"},
            }
        ],
    }
    service = create(api, alice, body)["services"][0]
    assert service["imageTag"] == "2.0"
    assert service["volumeMounts"] == {"projects/mine": "/home/user/work"}
    config = service["config"]
    assert config["GREETING"] == "good morning"
    assert config["MODE"] == "fixed"
    assert len(config["SECRET"]) >= 12

    other = create(api, alice, {"key": "notebook"})["services"][0]["config"]
    assert other["GREETING"] == "hello"
    assert other["SECRET"] and other["SECRET"] != config["SECRET"]

    postgres = create(api, alice, {"key": "postgres"})["services"][0]["config"]
    assert postgres["POSTGRES_PASSWORD"]  # empty in the spec, so generated
    assert postgres["POSTGRES_USER"] == "myuser"


def test_missing_dependency_is_not_found(api: Api, alice: str, users: Users) -> None:
    # A spec whose dependency is missing cannot be posted, so the admin removes a system spec
    # that a user's spec depends on (only the system catalog's own dependants are checked).
    admin = users.admin()
    add_spec(api, admin, spec("helper", ports=None, volumeMounts=None), catalog="system")
    add_spec(api, alice, spec("needy", depends=[{"key": "helper", "required": True}]))
    assert api.call("DELETE", "/api/services/helper?catalog=system", admin).status_code == 200

    refused(api.call("POST", "/api/stacks", alice, json={"key": "needy"}), 404, "Missing dependency helper")
    assert api.call("GET", "/api/stacks", alice).get_json() == []


# --- other users -------------------------------------------------------------------------------


def test_another_users_stack_is_not_found_and_unchanged(api: Api, alice: str, bob: str) -> None:
    add_spec(api, alice, NOTEBOOK)
    stack = create(api, alice, {"key": "notebook"})
    sid = stack["id"]
    ssid = stack["services"][0]["id"]
    bobs = create(api, bob, {"key": "mongo"})

    assert api.call("GET", "/api/stacks", bob).get_json() == [bobs]
    assert api.call("GET", "/api/stacks", alice).get_json() == [stack]
    attempts = [
        api.call("GET", f"/api/stacks/{sid}", bob),
        api.call("PUT", f"/api/stacks/{sid}", bob, json={**stack, "name": "taken"}),
        api.call("PUT", f"/api/stacks/{sid}/rename", bob, json={"name": "taken"}),
        api.call("DELETE", f"/api/stacks/{sid}", bob),
        api.call("GET", f"/api/start/{sid}", bob),
        api.call("GET", f"/api/stop/{sid}", bob),
        api.call("GET", f"/api/logs/{ssid}", bob),
    ]
    for response in attempts:
        refused(response, 404, sid)
    assert read(api, alice, sid) == stack
    assert api.call("GET", "/api/stacks").status_code == 401


# --- changing a stopped stack ------------------------------------------------------------------


def test_update_replaces_the_services_of_a_stopped_stack(api: Api, alice: str) -> None:
    stack = create(api, alice, {"key": "clowder"})
    sid = stack["id"]
    mongo = service_of(stack, "mongo")

    body = {**stack, "services": [*stack["services"], {"service": "rabbitmq"}]}
    response = api.call("PUT", f"/api/stacks/{sid}", alice, json=body)
    assert response.status_code == 200, response.get_json()
    updated = response.get_json()
    assert [service["service"] for service in updated["services"]] == ["clowder", "mongo", "rabbitmq"]
    assert service_of(updated, "mongo")["id"] == mongo["id"]
    assert service_of(updated, "mongo")["volumeMounts"] == mongo["volumeMounts"]
    assert service_of(updated, "rabbitmq")["id"] == f"{sid}-rabbitmq"
    assert updated["id"] == sid
    assert updated["createdTime"] == stack["createdTime"]
    assert read(api, alice, sid) == updated

    # Leaving out services keeps the required ones and their folders.
    response = api.call("PUT", f"/api/stacks/{sid}", alice, json={"key": "clowder"})
    assert response.status_code == 200, response.get_json()
    again = response.get_json()
    assert [service["service"] for service in again["services"]] == ["clowder", "mongo"]
    assert service_of(again, "mongo")["volumeMounts"] == mongo["volumeMounts"]

    before = read(api, alice, sid)
    refused(api.call("PUT", f"/api/stacks/{sid}", alice, json={**before, "id": "sother"}), 400, "id", sid)
    refused(api.call("PUT", f"/api/stacks/{sid}", alice, data="{", content_type="application/json"), 400)
    refused(
        api.call("PUT", f"/api/stacks/{sid}", alice, json={"key": "clowder", "services": [{"service": "x"}]}),
        400,
        "services.0.service",
    )
    refused(api.call("PUT", "/api/stacks/snone0", alice, json={"key": "clowder"}), 404, "snone0")
    assert read(api, alice, sid) == before


def test_rename(api: Api, alice: str) -> None:
    stack = create(api, alice, {"key": "mongo"})
    sid = stack["id"]
    for name in ("", "   "):
        refused(api.call("PUT", f"/api/stacks/{sid}/rename", alice, json={"name": name}), 400, "name")
    refused(api.call("PUT", f"/api/stacks/{sid}/rename", alice, json={}), 400, "name")
    refused(
        api.call("PUT", f"/api/stacks/{sid}/rename", alice, data="name=x", content_type="application/json"),
        400,
    )
    assert read(api, alice, sid) == stack

    response = api.call("PUT", f"/api/stacks/{sid}/rename", alice, json={"name": "x"})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["name"] == "x"
    assert read(api, alice, sid)["name"] == "x"
    assert read(api, alice, sid)["services"] == stack["services"]
    refused(api.call("PUT", "/api/stacks/snone0/rename", alice, json={"name": "x"}), 404, "snone0")


# --- running -----------------------------------------------------------------------------------


def test_start_serve_check_logs_stop_and_delete(api: Api, platform: Platform, alice: str, bob: str) -> None:
    add_spec(api, alice, NOTEBOOK)
    stack = create(api, alice, {"key": "notebook"})
    sid = stack["id"]
    ssid = stack["services"][0]["id"]
    folder = platform.data_dir / "home" / "alice" / next(iter(stack["services"][0]["volumeMounts"]))
    folder.mkdir(parents=True)
    (folder / "hello.txt").write_text("hello from the folder\n")

    start(api, alice, sid)
    refused(api.call("GET", f"/api/start/{sid}", alice), 409, sid)
    running = wait_for(api, alice, sid, "started", passing=("starting",))
    service = running["services"][0]
    assert service["status"] == "ready"
    assert service["endpoints"], service
    for endpoint in service["endpoints"]:
        assert answers(endpoint["url"]) == 200
    url = service["endpoints"][0]["url"]
    assert httpx.get(url + "hello.txt", timeout=2).text == "hello from the folder\n"

    host = httpx.URL(url).netloc.decode()
    assert api.call("GET", f"/api/check_token?host={host}", alice).status_code == 200
    assert api.call("GET", "/api/check_token", bob).status_code == 200
    refused(api.call("GET", f"/api/check_token?host={host}", bob), 403, host)
    assert api.call("GET", f"/api/check_token?host={host}").status_code == 401

    refused(api.call("DELETE", f"/api/stacks/{sid}", alice), 409, sid)
    refused(api.call("PUT", f"/api/stacks/{sid}", alice, json={"key": "notebook"}), 409, sid)
    for method, path in [
        ("GET", f"/api/stop/{sid}"),
        ("DELETE", f"/api/stacks/{sid}"),
        ("GET", f"/api/logs/{ssid}"),
    ]:
        refused(api.call(method, path, bob), 404, sid)
    assert api.call("GET", "/api/stop_all", bob).get_json() == []
    assert read(api, alice, sid) == running
    assert answers(url) == 200

    response = api.call("GET", f"/api/logs/{ssid}?lines=5", alice)
    assert response.status_code == 200
    text = response.get_json()
    assert isinstance(text, str)
    assert text.startswith(LOG_HEADER)
    assert "\nSERVICE LOG\n=====================\n" in text
    assert "File preview: serving the service's folder read-only on" in text  # a status message
    assert "Serving" in text.split("SERVICE LOG")[1]  # the static site's own log line
    refused(api.call("GET", f"/api/logs/{ssid}?lines=abc", alice), 400, "lines", "abc")
    refused(api.call("GET", f"/api/logs/{ssid}?lines=-1", alice), 400, "lines")
    refused(api.call("GET", f"/api/logs/{sid}-nothing", alice), 404, f"{sid}-nothing")

    stopped = stop(api, alice, sid)
    assert all(service["endpoints"] is None for service in stopped["services"])
    assert all(service["status"] == "stopped" for service in stopped["services"])
    assert answers(url) is None
    refused(api.call("GET", f"/api/stop/{sid}", alice), 409, sid)
    refused(api.call("GET", f"/api/check_token?host={host}", alice), 403, host)

    response = api.call("DELETE", f"/api/stacks/{sid}", alice)
    assert response.status_code == 200
    refused(api.call("GET", f"/api/stacks/{sid}", alice), 404, sid)
    refused(api.call("DELETE", f"/api/stacks/{sid}", alice), 404, sid)
    refused(api.call("GET", f"/api/logs/{ssid}", alice), 404, ssid)


def test_service_that_exits_at_once_is_an_error(api: Api, users: Users, alice: str) -> None:
    add_spec(api, users.admin(), spec("crasher", volumeMounts=None), catalog="system")
    sid = create(api, alice, {"key": "crasher"})["id"]
    start(api, alice, sid)

    failed = wait_for(api, alice, sid, "error", passing=("starting",))
    service = failed["services"][0]
    assert service["status"] == "error"
    assert service["endpoints"] is None
    explanation = " ".join(service["statusMessages"])
    assert "exited with code 3" in explanation, service["statusMessages"]
    assert "boom" in explanation, service["statusMessages"]
    refused(api.call("GET", f"/api/start/{sid}", alice), 409, "error")

    logs = api.call("GET", f"/api/logs/{service['id']}", alice).get_json()
    assert "boom" in logs.split("SERVICE LOG")[1]

    stopped = stop(api, alice, sid)
    assert stopped["services"][0]["status"] == "stopped"


def test_service_that_never_opens_its_port_times_out(api: Api, users: Users, alice: str) -> None:
    probe = {"type": "tcp", "path": "", "port": 8888, "initialDelay": 0, "timeout": 1}
    add_spec(api, users.admin(), spec("sleeper", volumeMounts=None, readinessProbe=probe), catalog="system")
    sid = create(api, alice, {"key": "sleeper"})["id"]
    started_at = time.monotonic()
    start(api, alice, sid)

    failed = wait_for(api, alice, sid, "error", passing=("starting",))
    assert time.monotonic() - started_at >= 1.0
    service = failed["services"][0]
    assert service["status"] == "timeout"
    assert any("timed out" in message for message in service["statusMessages"]), service
    stop(api, alice, sid)


def add_frontend_requiring_backend(api: Api, users: Users) -> None:
    """Two system specs: ``frontend`` (port 7001) requires ``backend`` (port 7000)."""
    admin = users.admin()
    backend = spec("backend", ports=[{"port": 7000, "protocol": "tcp"}], volumeMounts=None)
    add_spec(api, admin, backend, catalog="system")
    add_spec(
        api,
        admin,
        spec(
            "frontend",
            ports=[{"port": 7001, "protocol": "http"}],
            volumeMounts=None,
            depends=[{"key": "backend", "required": True}],
        ),
        catalog="system",
    )


def test_dependency_is_ready_before_its_dependant_starts(
    api: Api, platform: Platform, users: Users, alice: str
) -> None:
    add_frontend_requiring_backend(api, users)
    stack = create(api, alice, {"key": "frontend"})
    assert [service["service"] for service in stack["services"]] == ["frontend", "backend"]

    running = started(api, alice, stack["id"])
    home = platform.data_dir / "home" / "alice"
    backend_listening = float((home / "backend-listening").read_text())
    frontend = json.loads((home / "frontend.json").read_text())
    assert frontend["started"] >= backend_listening
    assert frontend["reached"] is True
    backend_port = service_of(running, "backend")["endpoints"][0]["nodePort"]
    environment = frontend["environment"]
    assert environment["BACKEND_PORT_7000_TCP_ADDR"] == "127.0.0.1"
    assert environment["BACKEND_PORT_7000_TCP_PORT"] == str(backend_port)
    assert environment["NDSLABS_STACK"] == stack["id"]
    assert environment["NDSLABS_SERVICE"] == f"{stack['id']}-frontend"
    assert environment["PORT"] == str(service_of(running, "frontend")["endpoints"][0]["nodePort"])
    stop(api, alice, stack["id"])


def test_stop_while_starting_ends_every_process(
    api: Api, platform: Platform, users: Users, alice: str
) -> None:
    add_frontend_requiring_backend(api, users)
    sid = create(api, alice, {"key": "frontend"})["id"]
    start(api, alice, sid)
    stopped = stop(api, alice, sid)  # the backend is not listening yet, the frontend not started

    assert [service["status"] for service in stopped["services"]] == ["stopped", "stopped"]
    assert not list((platform.data_dir / "run").glob("*/*.json"))
    home = platform.data_dir / "home" / "alice"
    # Past the moment the backend would have listened, nothing has come back to life.
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert read(api, alice, sid)["status"] == "stopped"
        time.sleep(0.1)
    assert not (home / "backend-listening").exists()
    assert not (home / "frontend.json").exists()
    start(api, alice, sid)  # and it starts again
    wait_for(api, alice, sid, "started", passing=("starting",))


# --- quickstart and stopping all ---------------------------------------------------------------


def test_quickstart(api: Api, alice: str) -> None:
    add_spec(api, alice, NOTEBOOK)
    response = api.call("GET", "/api/start?key=notebook", alice)
    assert response.status_code == 200, response.get_json()  # server.go QuickstartStack: WriteJson
    stack = response.get_json()
    assert stack["key"] == "notebook"
    assert stack["status"] == "starting"
    assert STACK_ID.match(stack["id"])

    again = api.call("GET", "/api/start?key=notebook", alice)
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["id"] == stack["id"]
    assert [listed["id"] for listed in api.call("GET", "/api/stacks", alice).get_json()] == [stack["id"]]

    refused(api.call("GET", "/api/start", alice), 400, "key")
    refused(api.call("GET", "/api/start?key=", alice), 400, "key")
    refused(api.call("GET", "/api/start?key=nothing", alice), 404, "nothing")
    refused(api.call("GET", "/api/start?key=clowder", alice), 422, "clowder", "mongo")
    assert len(api.call("GET", "/api/stacks", alice).get_json()) == 1

    wait_for(api, alice, stack["id"], "started", passing=("starting",))
    stop(api, alice, stack["id"])
    restarted = api.call("GET", "/api/start?key=notebook", alice)
    assert restarted.status_code == 200
    assert restarted.get_json()["id"] == stack["id"]  # the stopped stack, started again
    wait_for(api, alice, stack["id"], "started", passing=("starting",))

    # With a second (stopped) stack of the spec, quickstart leads to the one that runs.
    newer = api.call("POST", "/api/stacks", alice, json={"key": "notebook"}).get_json()
    assert api.call("GET", "/api/start?key=notebook", alice).get_json()["id"] == stack["id"]
    assert api.call("GET", f"/api/stacks/{newer['id']}", alice).get_json()["status"] == "stopped"


def test_stop_all_stops_only_the_callers_running_stacks(api: Api, alice: str, bob: str) -> None:
    add_spec(api, alice, NOTEBOOK)
    add_spec(api, bob, NOTEBOOK)
    first, second, idle = (create(api, alice, {"key": "notebook"})["id"] for _ in range(3))
    bobs = create(api, bob, {"key": "notebook"})["id"]
    for token, sid in ((alice, first), (alice, second), (bob, bobs)):
        start(api, token, sid)
    for token, sid in ((alice, first), (alice, second), (bob, bobs)):
        wait_for(api, token, sid, "started", passing=("starting",))

    response = api.call("GET", "/api/stop_all", alice)
    assert response.status_code == 202, response.get_json()
    answered = response.get_json()
    assert sorted(stack["id"] for stack in answered) == sorted([first, second])
    assert {stack["status"] for stack in answered} == {"stopping"}
    for sid in (first, second):
        wait_for(api, alice, sid, "stopped", passing=("stopping",))
    assert read(api, alice, idle)["status"] == "stopped"
    assert read(api, bob, bobs)["status"] == "started"

    nothing = api.call("GET", "/api/stop_all", alice)
    assert nothing.status_code == 202
    assert nothing.get_json() == []


def test_a_stack_that_cannot_be_restored_is_marked_failed_and_the_others_start(
    api: Api, platform: Platform, alice: str
) -> None:
    """Restart recovery: one stack whose spec vanished must not keep the others down."""
    from shared.adapters.store import SYSTEM_CATALOG
    from shared.domain import stacks

    add_spec(api, alice, NOTEBOOK)
    healthy = api.call("POST", "/api/stacks", alice, json={"key": "notebook"}).get_json()
    orphan = api.call("POST", "/api/stacks", alice, json={"key": "cloudcmd"}).get_json()
    for sid in (healthy["id"], orphan["id"]):
        platform.store.update_stack(
            "alice", sid, lambda stack: stack.model_copy(update={"status": "started"})
        )
    platform.store.delete_spec(SYSTEM_CATALOG, "cloudcmd")  # as if removed while the platform was down

    assert stacks.restore(platform) == [healthy["id"]]
    failed = api.call("GET", f"/api/stacks/{orphan['id']}", alice).get_json()
    assert failed["status"] == "error"
    assert "Missing dependency cloudcmd" in failed["services"][0]["statusMessages"][-1]
    wait_for(api, alice, healthy["id"], "started", passing=("starting",))


# --- the listing: stored documents served as they are, or through the model ---------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'listing' / 'workbench.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def platform_on(database_url: str, data_dir: Path, **settings: str) -> Platform:
    """A platform of its own on ``database_url``, initialised as ``workbench run`` does, with alice."""
    from shared.adapters.store import AccountRecord
    from shared.core.models import Account
    from shared.core.settings import Settings
    from shared.tools.cli import initialise

    instance = Platform(
        Settings.from_env(
            {
                "WORKBENCH_DATA_DIR": str(data_dir),
                "WORKBENCH_DATABASE_URL": database_url,
                "WORKBENCH_RUNTIME": "local",
                **settings,
            }
        )
    )
    initialise(instance)
    instance.store.insert_account(
        AccountRecord(Account(id="alice", namespace="alice", name="Alice", status="approved"), "hash")
    )
    return instance


def listed_through_the_model(platform: Platform, owner: str) -> str:
    """The listing as it was before stored documents were served as they are: validated, serialized."""
    from pydantic import TypeAdapter

    from shared.core.models import Stack

    return TypeAdapter(list[Stack]).dump_json(stacks.list_stacks(platform, owner)).decode()


def store_as_older_model(platform: Platform, sid: str, document: dict[str, Any]) -> None:
    """Replace the stored document of ``sid`` with one an older ``Stack`` model wrote."""
    dialect = platform.store.dialect  # type: ignore[attr-defined]
    connection = dialect.connect()  # both dialects' connections commit each statement
    try:
        connection.execute(
            dialect.sql("UPDATE stacks SET model_version = NULL, data = ? WHERE id = ?"),
            (json.dumps(document), sid),
        )
    finally:
        connection.close()


def test_the_listing_is_the_same_whether_documents_are_served_as_stored_or_through_the_model(
    database_url: str, tmp_path: Path
) -> None:
    from shared.core.models import Stack, StackService

    platform = platform_on(database_url, tmp_path / "listing-data")
    try:
        assert stacks.list_stacks_json(platform, "alice") == "[]"
        for number, status in enumerate(("stopped", "starting", "started", "error", "stopped")):
            sid = f"s{number}list"
            platform.store.insert_stack(
                "alice",
                Stack(
                    id=sid,
                    key="cloudcmd",
                    name=f"Stack «{number}»",  # not ASCII: stored and served in UTF-8 alike
                    status=status,
                    createdTime=number,
                    services=[
                        StackService(
                            id=f"{sid}-cloudcmd", stack=sid, service="cloudcmd", config={"B": "1", "A": "2"}
                        )
                    ],
                ),
            )
        # Written by an older model: without fields the current one has, with one it dropped.
        store_as_older_model(
            platform,
            "s4list",
            {
                "id": "s4list",
                "key": "cloudcmd",
                "name": "old",
                "status": "stopped",
                "retired": "field",
                "services": [{"id": "s4list-cloudcmd", "service": "cloudcmd"}],
            },
        )
        stored = platform.store.list_stored_stacks("alice")
        assert [item.current for item in stored] == [True, True, True, True, False]

        listed = stacks.list_stacks_json(platform, "alice")
        assert listed == listed_through_the_model(platform, "alice")
        older = json.loads(listed)[-1]
        assert "retired" not in older
        assert older["secure"] is False and older["services"][0]["internalIP"] == ""  # the new defaults
    finally:
        platform.close()


def test_the_listing_reconciles_the_stacks_a_cluster_may_have_changed(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Kubernetes a stack waiting for the cluster is reconciled, not served as stored."""
    from shared.adapters.runtime import Runtime, StackPlan, StatusReport
    from shared.core.models import Stack
    from tests.kube_server import KubeServer

    class Observed:
        """The runtime, with the cluster seeing every service of a stack ready."""

        def __init__(self, runtime: Runtime) -> None:
            self.runtime = runtime
            self.observed: list[str] = []

        def observe(self, plan: StackPlan) -> list[StatusReport]:
            self.observed.append(plan.sid)
            return [StatusReport(plan.owner, plan.sid, service.ssid, "ready") for service in plan.services]

        def __getattr__(self, name: str) -> Any:
            return getattr(self.runtime, name)

    with KubeServer() as kube:
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        # Named in the settings: the client reads $KUBECONFIG only when it is first imported.
        platform = platform_on(
            database_url,
            tmp_path / "reconciled-data",
            WORKBENCH_RUNTIME="kubernetes",
            WORKBENCH_DOMAIN="workbench.example.org",
            KUBECONFIG=str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
        )
        observing: list[Observed] = []
        platform.wrap_runtime(lambda runtime: observing.append(Observed(runtime)) or observing[-1])  # type: ignore[func-returns-value]
        try:
            waiting = stacks.create(platform, "alice", Stack(key="cloudcmd"))
            resting = stacks.create(platform, "alice", Stack(key="cloudcmd"))
            platform.store.update_stack(
                "alice", waiting.id, lambda stack: stack.model_copy(update={"status": "starting"})
            )
            listed = json.loads(stacks.list_stacks_json(platform, "alice"))
            assert {stack["id"]: stack["status"] for stack in listed} == {
                waiting.id: "started",
                resting.id: "stopped",
            }
            assert observing[0].observed == [waiting.id]  # the stopped stack was served as stored
            assert resting.id not in observing[0].observed
            assert stacks.list_stacks_json(platform, "alice") == listed_through_the_model(platform, "alice")
        finally:
            platform.close()
