"""CloudEvent function ``clowder_job``: a job from Clowder's extractor queue (delivered by a
RabbitmqSource), or the outcome of the transfer a job asked for, told back to Clowder."""

from __future__ import annotations

from typing import TYPE_CHECKING

import functions_framework
from flask import Request, Response

from events import codec, types
from events.errors import InvalidEvent
from shared.core.errors import ContentTooLarge
from shared.domain import clowder_jobs
from shared.serving.eventing import EventCall, adapt, event_body, serve_event

if TYPE_CHECKING:
    from events.codec import Event


def carry_out(event: Event) -> None:
    """A job as a RabbitmqSource delivers it (its data the job's body, unsigned: the job's own key is
    checked with Clowder instead); refused jobs end in Clowder, so only an outage is an error here."""
    from shared.adapters.clowder.amqp import Received
    from shared.bootstrap import platform

    current = platform()
    queue = clowder_jobs.queue_of(current.settings.clowder.extractor_prefix, event.source)
    clowder_jobs.take(current, Received(queue, event.data, None, None, event.id, False))


def told(call: EventCall) -> None:
    """Tell the job that asked for the transfer how it ended. Clowder's RabbitMQ is reached only for a
    transfer a job asked for: every transfer's outcome comes here, also on a platform that takes no jobs."""

    def reply(queue: str, correlation_id: str | None, body: bytes) -> None:
        call.platform.clowder_queues().reply(queue, correlation_id, body)

    clowder_jobs.outcome(call.platform, call.data, call.event.type == types.TRANSFER_FAILED, reply)


def _carries_a_job(request: Request) -> bool:
    """Whether the request is a RabbitmqSource's job event; what cannot be read at all goes the way of
    this platform's own events, whose adapter answers it (413, 400)."""
    try:
        event = codec.from_http(dict(request.headers), event_body(request))
    except (ContentTooLarge, InvalidEvent):
        return False
    return event.type == clowder_jobs.JOB_EVENT


@functions_framework.http
def clowder_job(request: Request) -> Response:
    if _carries_a_job(request):
        return adapt("clowder_job", request, carry_out, handles={clowder_jobs.JOB_EVENT})
    return serve_event("clowder_job", request, {types.TRANSFER_COMPLETED: told, types.TRANSFER_FAILED: told})
