"""HTTP function ``register``: registration, e-mail verification, approval and password reset."""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from shared.core.errors import InvalidInput
from shared.core.models import Account, Message
from shared.domain import accounts, throttle
from shared.serving.api import Call, json_errors, serve


def register_account(call: Call) -> Account:
    return accounts.register(call.platform, call.body)


def _token(value: str) -> str:
    """The ``t`` of a link; every token issued is ASCII, so other text is refused as no token."""
    if not value.isascii():
        raise InvalidInput("a token is ASCII text", field="t")
    return value


def verify(call: Call) -> Message:
    return Message(message=accounts.verify(call.platform, call.body.u, _token(call.body.t)))


def approve(call: Call) -> Message:
    user, token = call.query("u") or "", _token(call.query("t") or "")
    return Message(message=accounts.decide(call.platform, user, token, approve=True))


def deny(call: Call) -> Message:
    user, token = call.query("u") or "", _token(call.query("t") or "")
    return Message(message=accounts.decide(call.platform, user, token, approve=False))


def reset(call: Call) -> Message:
    name = call.params.get("account_id") or call.query("userId") or ""
    address = throttle.client_address(
        call.request.remote_addr,
        call.request.headers.get("X-Forwarded-For"),
        call.platform.settings.auth.trusted_proxies,
    )
    return Message(message=accounts.request_reset(call.platform, name, address=address))


def change_password(call: Call) -> Message:
    return Message(message=accounts.change_password(call.platform, call.bearer_token(), call.body.password))


json_errors()


@functions_framework.http
def register(request: Request) -> Response:
    return serve(
        "register",
        request,
        {
            "register": register_account,
            "verify": verify,
            "approve": approve,
            "deny": deny,
            "reset": reset,
            "change_password": change_password,
        },
    )
