"""HTTP function ``refresh_token``: a fresh token for one issued within the refresh window."""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from shared.core.errors import Unauthorized
from shared.core.models import Token
from shared.domain import accounts
from shared.serving.api import Call, json_errors, serve


def refresh(call: Call) -> Token:
    token = call.bearer_token()
    if token is None:
        raise Unauthorized("missing bearer token")
    return Token(token=accounts.refresh(call.platform, token))


json_errors()


@functions_framework.http
def refresh_token(request: Request) -> Response:
    return serve("refresh_token", request, {"refresh": refresh})
