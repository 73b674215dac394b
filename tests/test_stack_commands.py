"""Clowder's starts and stops handed to the user's shovels (``WORKBENCH_STACK_ACTIONS=shovels``), driven as
production drives them: a signed event reaches the ``stack_action`` function, which puts a command on the
user's queue (in-process, or the real RabbitMQ), and a shovel of the user carries it out through the API
with the stack's control token, after the commands it took before."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from events import types
from events.codec import new_event, to_http
from shared.adapters.runtime.processes import free_port
from shared.bootstrap import Platform
from shared.domain import clowder_jobs, stacks
from shared.domain.messages import StackCommand, queue_for
from tests.clowder_pairing import Served
from tests.conftest import Api, Client
from tests.support import wait_until
from tests.test_shovel import AMQP_URL, delete_queue, require_rabbitmq
from tests.test_transfers import new_stack
from tests.users import Users

SECRET = "pairing-secret-of-the-stack-command-tests"
SOURCE = "https://clowder.example.org/"
WAIT = 30.0


@pytest.fixture(params=["memory", "amqp"])
def broker(request: pytest.FixtureRequest) -> str:
    """Where the user's queue is: the platform's in-process bus (shovels as threads), or RabbitMQ
    (shovels as processes of their own, as in a pod)."""
    if request.param == "amqp":
        require_rabbitmq()
    kind: str = request.param
    return kind


@pytest.fixture
def environment(broker: str) -> dict[str, str]:
    return {
        "WORKBENCH_STACK_ACTIONS": "shovels",
        "WORKBENCH_EVENT_SECRET": SECRET,
        "WORKBENCH_PORT": str(free_port()),
        "WORKBENCH_AMQP_URL": AMQP_URL if broker == "amqp" else "",
    }


@pytest.fixture
def user(broker: str) -> Iterator[str]:
    """A user of this test alone, so that no other test's commands wait in its RabbitMQ queue."""
    name = f"sc{uuid.uuid4().hex[:10]}"
    yield name
    if broker == "amqp":
        delete_queue(queue_for(name))


def status(platform: Platform, user: str, sid: str) -> str:
    return stacks.get(platform, user, sid).status


def deliver(client: Callable[[str], Client], event_type: str, user: str, sid: str) -> None:
    """A signed stack event, delivered to ``stack_action`` as a Trigger delivers it."""
    event = new_event(
        event_type, {"email": f"{user}@example.org", "stack_id": sid}, source=SOURCE, secret=SECRET.encode()
    )
    headers, body = to_http(event, "binary")
    response = client("stack_action").post("/", headers=headers, data=body)
    assert response.status_code == 202, response.get_data(as_text=True)


def shovels_said(platform: Platform, user: str, caplog: pytest.LogCaptureFixture) -> str:
    """What the user's shovels logged: threads log here, processes into the platform's log folder."""
    said = "\n".join(record.getMessage() for record in caplog.records if record.name == "shovel.daemon")
    for path in sorted((platform.data_dir / "logs" / user).glob("*-shovel.log")):
        said += "\n" + path.read_text(errors="replace")
    return said


def test_clowder_starts_and_stops_go_through_a_shovel_of_the_user(
    api: Api,
    users: Users,
    client: Callable[[str], Client],
    platform: Platform,
    shovels: Served,
    user: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="shovel.daemon")
    token = users.make(user)
    first, second = new_stack(api, token), new_stack(api, token)

    # None of the user's stacks runs, so no shovel would take a command: the platform starts it itself.
    deliver(client, types.STACK_START_REQUESTED, user, first)
    wait_until(lambda: status(platform, user, first) == "started", "the first stack started", WAIT)
    assert f"of stack {first} accepted" not in shovels_said(platform, user, caplog)

    # Now the first stack's shovel takes the user's stack actions, with a token for each stack alone.
    deliver(client, types.STACK_START_REQUESTED, user, second)
    wait_until(lambda: status(platform, user, second) == "started", "the second stack started", WAIT)
    wait_until(
        lambda: f"start of stack {second} accepted" in shovels_said(platform, user, caplog), "its log", WAIT
    )

    # A stop: the shovel of a stack may stop its own stack, which ends that very shovel.
    deliver(client, types.STACK_STOP_REQUESTED, user, first)
    wait_until(lambda: status(platform, user, first) == "stopped", "the first stack stopped", WAIT)
    deliver(client, types.STACK_STOP_REQUESTED, user, second)
    wait_until(lambda: status(platform, user, second) == "stopped", "the second stack stopped", WAIT)
    said = shovels_said(platform, user, caplog)
    for sid in (first, second):
        assert f"stop of stack {sid} accepted" in said or f"the stop of its own stack {sid}" in said, said
    assert "goes back to the queue" not in said and "gave up" not in said, said


def test_an_extractor_job_s_stop_is_handed_to_the_shovels_with_a_token_for_that_stack(
    api: Api, users: Users, platform: Platform, user: str
) -> None:
    """What a Clowder job hands over: one command on the user's queue, whose token the API takes for the
    start and stop of that stack only."""
    token = users.make(user)
    sid = new_stack(api, token)
    platform.store.update_stack(user, sid, lambda stack: stack.model_copy(update={"status": "started"}))
    message = clowder_jobs._stack_action(platform, user, "stop", sid)
    assert message == f"stack {sid}: the stop is handed to the shovel of your running stack"
    assert status(platform, user, sid) == "started"  # the platform did not stop it itself

    taken: list[bytes] = []
    stop = threading.Event()

    def take(delivery: Any) -> None:
        taken.append(delivery.body)
        delivery.ack()
        stop.set()

    platform.bus.consume(queue_for(user), take, prefetch=1, stop=stop)
    command = StackCommand.model_validate_json(taken[0])
    assert (command.kind, command.user, command.stack_id, command.failures) == ("stop", user, sid, 0)
    assert command.token not in repr(command)
    other = new_stack(api, token)
    assert api.call("GET", f"/api/stop/{other}", command.token).status_code == 401
    assert api.call("GET", "/api/stacks", command.token).status_code == 401
    assert api.call("GET", f"/api/stop/{sid}", command.token).status_code == 202
