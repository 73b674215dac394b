"""HTTP function ``logs``: a stack service's status messages and log tail."""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from shared.domain import stacks
from shared.serving.api import Call, json_errors, serve


def read(call: Call) -> str:
    return stacks.logs(call.platform, call.principal.user, call.params["ssid"], call.query("lines"))


json_errors()


@functions_framework.http
def logs(request: Request) -> Response:
    return serve("logs", request, {"read": read})
