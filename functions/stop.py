"""HTTP function ``stop``: stop a stack, or all of the caller's (202, asynchronous)."""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from shared.core.models import Stack
from shared.domain import stacks
from shared.serving.api import Call, json_errors, serve


def stop_stack(call: Call) -> Stack:
    return stacks.stop(call.platform, call.principal.user, call.params["sid"])


def stop_all(call: Call) -> list[Stack]:
    return stacks.stop_all(call.platform, call.principal.user)


json_errors()


@functions_framework.http
def stop(request: Request) -> Response:
    return serve("stop", request, {"stop": stop_stack, "stop_all": stop_all})
