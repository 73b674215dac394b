"""Function ``deadletter``: the Broker's dead-letter sink, and the admin's list of what it kept."""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from shared.core.models import DeadLetter
from shared.domain import deadletters
from shared.serving.api import Call, json_errors, serve
from shared.serving.eventing import is_cloud_event


def list_dead_letters(call: Call) -> list[DeadLetter]:
    return deadletters.newest(call.platform, call.query("limit"))


json_errors()


@functions_framework.http
def deadletter(request: Request) -> Response:
    # Dispatchers deliver to the Service's root; the public route reaches /api/deadletters only, so
    # an event posted from outside can never be taken for a dead letter.
    if is_cloud_event(request) and request.path == "/":
        return deadletters.serve(request)
    return serve("deadletter", request, {"list": list_dead_letters})
