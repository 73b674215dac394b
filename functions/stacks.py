"""HTTP function ``stacks``: the caller's stacks, to list, add, read, change, rename and delete."""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from shared.core.models import Stack
from shared.domain import stacks as stack_service
from shared.domain.stacks import progress
from shared.serving.api import Call, RawJson, Upgraded, json_errors, serve


def list_stacks(call: Call) -> RawJson:
    return RawJson(stack_service.list_stacks_json(call.platform, call.principal.user))


def create(call: Call) -> Stack:
    return stack_service.create(call.platform, call.principal.user, call.body)


def read(call: Call) -> Stack:
    return stack_service.read(call.platform, call.principal.user, call.params["sid"])


def update(call: Call) -> Stack:
    return stack_service.update(call.platform, call.principal.user, call.params["sid"], call.body)


def rename(call: Call) -> Stack:
    return stack_service.rename(call.platform, call.principal.user, call.params["sid"], call.body.name)


def delete(call: Call) -> None:
    stack_service.delete(call.platform, call.principal.user, call.params["sid"])


def events(call: Call) -> Upgraded:
    last_event_id = call.request.headers.get("Last-Event-ID")
    body = progress.stream(call.platform, call.principal.user, call.params["sid"], last_event_id)
    return Upgraded(
        Response(
            body,
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            direct_passthrough=True,
        )
    )


json_errors()


@functions_framework.http
def stacks(request: Request) -> Response:
    return serve(
        "stacks",
        request,
        {
            "list": list_stacks,
            "create": create,
            "read": read,
            "update": update,
            "rename": rename,
            "delete": delete,
            "events": events,
        },
    )
