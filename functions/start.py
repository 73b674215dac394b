"""HTTP function ``start``: start a stack (202, asynchronous), or quickstart a one-service spec."""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from shared.core.models import Stack
from shared.domain import stacks
from shared.serving.api import Call, Reply, json_errors, serve


def start_stack(call: Call) -> Stack:
    return stacks.start(call.platform, call.principal.user, call.params["sid"])


def quickstart(call: Call) -> Reply:
    # 200, not the route's 202: the stack is answered as it is, starting or already running.
    return Reply(200, stacks.quickstart(call.platform, call.principal.user, call.query("key")))


json_errors()


@functions_framework.http
def start(request: Request) -> Response:
    return serve("start", request, {"start": start_stack, "quickstart": quickstart})
