"""A start's progress as server-sent events: each service's messages and status, the stack's outcome,
the owner's only, resumed from Last-Event-ID, ended when the start is over."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from shared.bootstrap import Platform
from shared.core.models import Stack, StackService
from shared.domain.stacks import progress
from tests import engines
from tests.conftest import Api
from tests.engines import TAG, Engine, catalog_app
from tests.support import remove_stacks
from tests.test_stacks import LOCAL_COMMANDS, add_spec, create, spec, start, wait_for


def parse(body: str) -> list[dict[str, Any]]:
    """The events of a text/event-stream body: each with its id, type and JSON data."""
    events = []
    for block in body.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            if name in ("id", "event", "data"):
                fields[name] = json.loads(value) if name == "data" else value
        if "event" in fields:
            events.append(fields)
    return events


def stream(api: Api, token: str | None, sid: str, last_event_id: str | None = None) -> Any:
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    return api.call("GET", f"/api/stacks/{sid}/events", token, headers=headers)


@pytest.fixture
def stacks_ended(platform: Platform) -> Iterator[None]:
    yield
    remove_stacks(platform)


# --- positions and resumption, on stored stacks ---------------------------------------------------


def stack_of(status: str, *services: tuple[str, str, list[str]]) -> Stack:
    return Stack(
        id="s1",
        key="web",
        status=status,  # type: ignore[arg-type]
        services=[
            StackService(id=f"s1-{key}", stack="s1", service=key, status=state, statusMessages=messages)  # type: ignore[arg-type]
            for key, state, messages in services
        ],
    )


def messages_of(events: list[progress.Event]) -> list[str | None]:
    return [event.data.get("message") for event in events if event.kind == "service"]  # type: ignore[misc]


def test_an_event_id_resumes_after_its_event_also_once_the_stored_window_slid() -> None:
    first = stack_of("starting", ("web", "starting", ["Pulling image a", "Pulled image a"]), ("db", "", []))
    events, position = progress.changes(first, progress.Position({}))
    assert messages_of(events) == ["Pulling image a", "Pulled image a", None]
    assert events[-1].kind == "stack" and events[-1].data == {"id": "s1", "status": "starting"}

    # Resumed from the first event's id (as a reconnecting client sends it): only what came after.
    resumed, _ = progress.changes(first, progress.parse_position(events[0].id))
    assert messages_of(resumed) == ["Pulled image a", None]
    assert [event.kind for event in resumed][-1] == "stack"

    # Nothing new, nothing sent; a new message and a status change are sent once each.
    assert progress.changes(first, position)[0] == []
    window = [f"message {n}" for n in range(3, 53)]  # the window of 50 slid past the first two
    later = stack_of("started", ("web", "ready", window), ("db", "ready", []))
    events, _ = progress.changes(later, position)
    assert messages_of(events) == [*window, None]
    assert [(e.data["service"], e.data["status"]) for e in events if e.kind == "service"][-1] == (
        "db",
        "ready",
    )
    assert events[-1].data["status"] == "started"
    slid = progress.parse_position(events[10].id)
    assert messages_of(progress.changes(later, slid)[0]) == [*window[11:], None]  # and db's status
    slid_on = [f"message {n}" for n in range(8, 58)]  # five more came; the first five left the window
    more = stack_of("started", ("web", "ready", slid_on), ("db", "ready", []))
    assert messages_of(progress.changes(more, slid)[0]) == [*(f"message {n}" for n in range(14, 58)), None]

    # A new start cleared the messages: they are all sent again.
    again = stack_of("starting", ("web", "starting", ["Pulling image a"]), ("db", "", []))
    assert messages_of(progress.changes(again, position)[0]) == ["Pulling image a"]


def test_an_id_that_is_not_a_position_starts_from_the_beginning() -> None:
    for foreign in ("", "garbage", "s1-web~x~y~z", "s1-web~1234567~ab~ready ~"):
        assert progress.parse_position(foreign).services == {}


# --- through the API, on the local runtime ----------------------------------------------------------


def test_a_start_streams_each_services_progress_until_it_is_started_and_resumes(
    api: Api, stacks_ended: None
) -> None:
    alice = api.make_user("alice")
    add_spec(api, alice, spec("pages"))
    sid = create(api, alice, {"key": "pages"})["id"]
    start(api, alice, sid)

    response = stream(api, alice, sid)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["Cache-Control"] == "no-cache"
    body = response.get_data(as_text=True)  # ends by itself: the stack became started
    assert body.startswith("retry: ")
    events = parse(body)
    services = [event["data"] for event in events if event["event"] == "service"]
    assert {data["id"] for data in services} == {f"{sid}-pages"}
    # Waiting to be started (no status yet), starting with messages, then ready.
    assert {data["status"] for data in services} <= {"", "starting", "ready"}, services
    assert next(data for data in services if data["message"])["status"] in ("starting", "ready")
    ready = [data for data in services if data["status"] == "ready"]
    assert ready and "serving the service's folder read-only on http://127.0.0.1:" in ready[-1]["message"]
    assert ready[-1]["endpoints"][0].startswith("http://127.0.0.1:")
    assert [e["data"]["status"] for e in events if e["event"] == "stack"][-1] == "started"
    assert events[-1]["event"] == "end" and events[-1]["data"] == {"id": sid, "status": "started"}
    stored = wait_for(api, alice, sid, "started")
    assert [data["message"] for data in services if data["message"]] == stored["services"][0][
        "statusMessages"
    ]

    # Resumed after the first message: the rest, not the first again.
    told_events = [e for e in events if e["event"] == "service" and e["data"]["message"]]
    told = [e["data"]["message"] for e in told_events]
    resumed = parse(stream(api, alice, sid, told_events[0]["id"]).get_data(as_text=True))
    assert [
        e["data"]["message"] for e in resumed if e["event"] == "service" and e["data"]["message"]
    ] == told[1:]
    assert resumed[-2:] == events[-2:]  # the stack started, and the end
    # Resumed after the last one: the end only.
    assert [e["event"] for e in parse(stream(api, alice, sid, events[-1]["id"]).get_data(as_text=True))] == [
        "end"
    ]


def test_a_failing_start_streams_its_error_and_ends(api: Api, stacks_ended: None) -> None:
    admin = api.admin()
    alice = api.make_user("alice")
    add_spec(api, admin, spec("crasher", volumeMounts=None), catalog="system")
    sid = create(api, alice, {"key": "crasher"})["id"]
    start(api, alice, sid)
    events = parse(stream(api, alice, sid).get_data(as_text=True))
    failed = [e["data"] for e in events if e["event"] == "service" and e["data"]["status"] == "error"]
    assert failed and "exited with code 3" in failed[-1]["message"]
    assert events[-1] == {**events[-1], "event": "end", "data": {"id": sid, "status": "error"}}


@pytest.fixture
def environment(request: pytest.FixtureRequest) -> dict[str, str]:
    """The admin's local commands; for a test on an engine, the container runtime on it."""
    if "engine" in request.fixturenames:
        engine: Engine = request.getfixturevalue("engine")
        return {"WORKBENCH_RUNTIME": "docker", "DOCKER_HOST": engine.url}
    return {"WORKBENCH_LOCAL_COMMANDS": json.dumps(LOCAL_COMMANDS)}


def test_only_the_owner_reads_the_stream(api: Api) -> None:
    alice = api.make_user("alice")
    bob = api.make_user("bob", "bob-password")
    add_spec(api, alice, spec("pages"))
    sid = create(api, alice, {"key": "pages"})["id"]
    refused = stream(api, bob, sid)
    assert refused.status_code == 404 and refused.get_json() == {"Error": f"stack '{sid}' not found"}
    anonymous = stream(api, None, sid)
    assert anonymous.status_code == 401 and anonymous.headers["Content-Type"] == "application/json"
    # A stopped stack's stream tells its state and ends at once.
    events = parse(stream(api, alice, sid).get_data(as_text=True))
    assert [event["event"] for event in events] == ["service", "stack", "end"]
    assert events[-1]["data"] == {"id": sid, "status": "stopped"}


# --- on the container runtime, with an image pulled from the local registry ---------------------------

engine = engines.engine


def test_a_container_start_streams_the_image_pull_and_readiness(
    engine: Engine, api: Api, platform: Platform
) -> None:
    alice = api.make_user("alice")
    app = {
        **catalog_app("fresh", "Fresh", "busybox httpd, its image pulled first", serves="/home/user/work"),
        "image": {"name": engine.pullable, "tags": [TAG]},
    }
    add_spec(api, alice, app)
    with contextlib.suppress(Exception):  # pulled by an earlier test: pulled again here
        engine.remove_image(f"{engine.pullable}:{TAG}")
    sid = create(api, alice, {"key": "fresh"})["id"]
    start(api, alice, sid)
    try:
        events = parse(stream(api, alice, sid).get_data(as_text=True))
        messages = [e["data"]["message"] for e in events if e["event"] == "service" and e["data"]["message"]]
        image = f"{engine.pullable}:{TAG}"
        assert messages[0] == f"Pulling image {image}"
        assert any(message.startswith(f"Pulling image {image}: ") for message in messages), messages
        assert f"Pulled image {image}" in messages
        assert any(message.startswith("Starting container ") for message in messages), messages
        assert events[-1]["data"] == {"id": sid, "status": "started"}, events[-3:]
    finally:
        api.call("GET", f"/api/stop/{sid}", alice)
        wait_for(api, alice, sid, "stopped", passing=("stopping", "started"))
        engine.remove_image(f"{engine.pullable}:{TAG}")
