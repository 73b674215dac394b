"""CloudEvent function ``stack_action``: Clowder asks to start or stop a user's stack."""

from __future__ import annotations

import logging

import functions_framework
from flask import Request, Response

from events import types
from shared.core.errors import Conflict, Forbidden, NotFound, Unavailable
from shared.domain import stacks
from shared.domain.accounts import account_for_email
from shared.serving.eventing import EventCall, serve_event

log = logging.getLogger(__name__)


# Where a stack already is, or is going, what the event asks for: nothing is left to do.
_DONE = {"start": ("starting", "started"), "stop": ("stopping", "stopped")}
# Where it is on its way to the other end: the event can be carried out once it gets there.
_PASSING = {"start": ("stopping",), "stop": ()}


def _act(call: EventCall, action: str) -> None:
    user = account_for_email(call.platform, call.data.email)
    sid = call.data.stack_id
    try:
        stack = stacks.get(call.platform, user, sid)
    except NotFound:
        raise Forbidden(f"stack '{sid}' is not one of {user}'s stacks") from None
    if stack.status in _DONE[action]:
        return
    if stack.status in _PASSING[action]:
        # 503: the Broker delivers it again, by when the stack has stopped and can start.
        raise Unavailable(f"stack '{sid}' is {stack.status}; it can {action} once that is done")
    from shared.domain import stack_actions

    if stack_actions.by_shovel(call.platform, user):
        stack_actions.send(call.platform, user, sid, "start" if action == "start" else "stop")
        log.info("%s of stack %s of %s handed to the user's shovels", action, sid, user)
        return
    try:
        if action == "start":
            stacks.start(call.platform, user, sid)
        else:
            stacks.stop(call.platform, user, sid)
    except Conflict as error:
        current = stacks.get(call.platform, user, sid)
        if current.status not in _DONE[action]:
            raise  # e.g. a stack in error must be stopped before it can start again
        log.info("stack %s of %s was already %s: %s", sid, user, current.status, error.message)


def start_requested(call: EventCall) -> None:
    _act(call, "start")


def stop_requested(call: EventCall) -> None:
    _act(call, "stop")


@functions_framework.http
def stack_action(request: Request) -> Response:
    return serve_event(
        "stack_action",
        request,
        {
            types.STACK_START_REQUESTED: start_requested,
            types.STACK_STOP_REQUESTED: stop_requested,
        },
    )
