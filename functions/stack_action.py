"""CloudEvent function ``stack_action``: Clowder asks to start or stop a user's stack."""

from __future__ import annotations

from contextlib import suppress

import functions_framework
from flask import Request, Response

from events import types
from shared import stacks
from shared.errors import Conflict, Forbidden, NotFound
from shared.eventing import EventCall, serve_event
from shared.transfers import account_for_email


def _act(call: EventCall, action: str) -> None:
    user = account_for_email(call.platform, call.data.email)
    sid = call.data.stack_id
    try:
        stacks.get(call.platform, user, sid)
    except NotFound:
        raise Forbidden(f"stack '{sid}' is not one of {user}'s stacks") from None
    # Already started (or stopped): what the event asks for holds, so it is done.
    with suppress(Conflict):
        if action == "start":
            stacks.start(call.platform, user, sid)
        else:
            stacks.stop(call.platform, user, sid)


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
