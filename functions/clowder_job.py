"""CloudEvent function ``clowder_job``: a job from Clowder's extractor queue (delivered by a
RabbitmqSource), or the outcome of the transfer a job asked for, told back to Clowder."""

from __future__ import annotations

from typing import TYPE_CHECKING

import functions_framework
from flask import Request, Response

from events import types
from shared.domain import clowder_jobs
from shared.serving.eventing import EventCall, adapt, signed

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


OUTCOMES = {types.TRANSFER_COMPLETED: told, types.TRANSFER_FAILED: told}


@functions_framework.http
def clowder_job(request: Request) -> Response:
    outcome = signed(OUTCOMES)

    def act(event: Event) -> None:
        if event.type == clowder_jobs.JOB_EVENT:
            carry_out(event)
        else:
            outcome(event)

    return adapt("clowder_job", request, act, handles={clowder_jobs.JOB_EVENT, *OUTCOMES})
