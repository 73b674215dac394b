"""CloudEvent function ``transfer``: Clowder asks for a dataset in a user's workbench."""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from events import types
from shared.domain import transfers
from shared.serving.eventing import EventCall, serve_event


def requested(call: EventCall) -> None:
    transfers.accept(call.platform, call.event.source, call.event.id, call.data)


@functions_framework.http
def transfer(request: Request) -> Response:
    return serve_event("transfer", request, {types.TRANSFER_REQUESTED: requested})
