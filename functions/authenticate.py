"""HTTP function ``authenticate``: log in (POST) and out (DELETE)."""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from shared.core.models import Token
from shared.domain import accounts, throttle
from shared.serving.api import Call, json_errors, serve


def login(call: Call) -> Token:
    address = throttle.client_address(
        call.request.remote_addr,
        call.request.headers.get("X-Forwarded-For"),
        call.platform.settings.auth.trusted_proxies,
    )
    return Token(token=accounts.login(call.platform, call.body.username, call.body.password, address=address))


def logout(call: Call) -> None:
    """Ends the sessions of the token's account; answers the same with no token or a bad one."""
    accounts.logout(call.platform, call.bearer_token())


json_errors()


@functions_framework.http
def authenticate(request: Request) -> Response:
    return serve("authenticate", request, {"login": login, "logout": logout})
