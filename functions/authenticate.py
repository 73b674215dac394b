"""HTTP function ``authenticate``: log in (POST) and out (DELETE)."""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from shared import accounts
from shared.api import Call, json_errors, serve
from shared.models import Token


def login(call: Call) -> Token:
    return Token(token=accounts.login(call.platform, call.body.username, call.body.password))


def logout(call: Call) -> None:
    """Tokens are stateless, as in the Go apiserver: logging out is the client forgetting it."""


json_errors()


@functions_framework.http
def authenticate(request: Request) -> Response:
    return serve("authenticate", request, {"login": login, "logout": logout})
