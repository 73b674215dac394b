"""HTTP function ``check_token``: is the token valid, and may it reach the given host."""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from shared.core.errors import Forbidden
from shared.domain import stacks
from shared.serving.api import Call, json_errors, serve


def check(call: Call) -> None:
    principal = call.principal
    host = call.query("host")
    if host:
        mine = stacks.endpoint_hosts(call.platform.store.list_stacks(principal.user))
        if host.lower() not in mine:
            raise Forbidden(f"host '{host}' is not one of your stacks' endpoints")


json_errors()


@functions_framework.http
def check_token(request: Request) -> Response:
    return serve("check_token", request, {"check": check})
