"""CloudEvent function ``withdrawal``: Clowder deleted a dataset or withdrew access to it."""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from events import types
from shared.domain import withdrawals
from shared.serving.eventing import EventCall, serve_event


def withdrawn(call: EventCall) -> None:
    withdrawals.withdraw(call.platform, call.data)


@functions_framework.http
def withdrawal(request: Request) -> Response:
    return serve_event("withdrawal", request, {types.DATASET_WITHDRAWN: withdrawn})
