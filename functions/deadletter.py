"""Function ``deadletter``: the Broker's dead-letter sink, and the admin's list of what it kept."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import functions_framework
from flask import Request, Response

from shared.core.models import DeadLetter
from shared.domain import deadletters
from shared.serving.api import Call, json_errors, serve
from shared.serving.eventing import adapt, is_cloud_event

if TYPE_CHECKING:
    from events.codec import Event

log = logging.getLogger("workbench.deadletters")


def list_dead_letters(call: Call) -> list[DeadLetter]:
    return deadletters.newest(call.platform, call.query("limit"))


def keep(event: Event) -> None:
    """Keep a dead-lettered event (202 once kept, 400 for what is no dead letter, 503 to be retried).

    No signature is asked for: a dead letter is often an event refused for its signature, and what
    delivers here is the Broker's dispatcher, not the event's producer. That is safe because keeping
    the record is all that happens: nothing here acts on the event or its data."""
    from shared.bootstrap import platform

    dead_letter = deadletters.record(platform(), event)
    log.warning(
        "dead letter %s (%s) from %s: %s answered %s",
        dead_letter.eventId,
        dead_letter.type,
        dead_letter.source,
        dead_letter.errorDestination,
        dead_letter.errorCode or "nothing",
    )


json_errors()


@functions_framework.http
def deadletter(request: Request) -> Response:
    # Dispatchers deliver to the Service's root; the public route reaches /api/deadletters only, so
    # an event posted from outside can never be taken for a dead letter.
    if is_cloud_event(request) and request.path == "/":
        # Any type: a dead letter is whatever event could not be delivered, its data kept as it came.
        return adapt("deadletter", request, keep, handles=None, decode=deadletters.lenient_event)
    return serve("deadletter", request, {"list": list_dead_letters})
