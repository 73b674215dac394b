"""HTTP function ``console``: a shell in one of the caller's running stack services, over a websocket."""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from shared.core.models import ConsoleCheck
from shared.domain import console as consoles
from shared.serving import console as websocket
from shared.serving.api import Call, Upgraded, json_errors, serve


def check(call: Call) -> ConsoleCheck:
    return consoles.check(call.platform, call.principal.user, call.query("ssid"), call.query("namespace"))


def open_console(call: Call) -> Upgraded:
    websocket.require_upgrade(call.request.headers)
    owner = call.principal.user
    service = consoles.openable(call.platform, owner, call.query("ssid"), call.query("namespace"))
    size = consoles.terminal_size(call.query("cols"), call.query("rows"))
    session = consoles.open_session(call.platform, owner, service.id, size)
    return Upgraded(websocket.serve(call.request.environ, session, service.id))


json_errors()
websocket.accept_websockets()


@functions_framework.http
def console(request: Request) -> Response:
    return serve("console", request, {"check": check, "open": open_console})
