"""CloudEvent function ``shovel_reports``: files placed, folders uploaded, folders verified, heartbeats and
commands given up, from the shovels."""

from __future__ import annotations

import logging

import functions_framework
from flask import Request, Response

from events import types
from events.codec import Event
from events.types import CommandAbandoned
from shared.domain import clowder_jobs, deadletters, exports, transfers, verifications
from shared.domain.messages import queue_for
from shared.serving.eventing import EventCall, serve_event

log = logging.getLogger("workbench.deadletters")


def progress(call: EventCall) -> None:
    transfer = transfers.record_progress(call.platform, call.data)

    def reply(queue: str, correlation_id: str | None, body: bytes) -> None:
        call.platform.clowder_queues().reply(queue, correlation_id, body)

    clowder_jobs.progress(call.platform, transfer, reply)  # a transfer a Clowder job asked for: its counts


def uploaded(call: EventCall) -> None:
    exports.record_uploaded(call.platform, call.data)


def verified(call: EventCall) -> None:
    verifications.record(call.platform, call.data)


def heartbeat(call: EventCall) -> None:
    beat = call.data
    call.platform.store.record_heartbeat(beat.user, beat.stack_id, beat.model_dump())


def abandoned(call: EventCall) -> None:
    """A command a shovel gave up on, kept among the dead letters for the operator: its user's queue is
    where it could not be delivered, the shovel's reason is the error."""
    given_up: CommandAbandoned = call.data
    marks = {
        deadletters.ERROR_DESTINATION: queue_for(given_up.user),
        deadletters.ERROR_CODE: "abandoned",
        deadletters.ERROR_DATA: deadletters.error_data(given_up.reason.encode()),
        "subject": f"{given_up.kind} {given_up.subject}",
    }
    deadletters.record(call.platform, Event({**call.event.attributes, **marks}, call.event.data))
    log.warning(
        "dead letter: %s %s of %s given up: %s",
        given_up.kind,
        given_up.subject,
        given_up.user,
        given_up.reason,
    )


@functions_framework.http
def shovel_reports(request: Request) -> Response:
    return serve_event(
        "shovel_reports",
        request,
        {
            types.TRANSFER_PROGRESS: progress,
            types.EXPORT_UPLOADED: uploaded,
            types.SHOVEL_HEARTBEAT: heartbeat,
            types.SHOVEL_COMMAND_ABANDONED: abandoned,
            types.TRANSFER_VERIFIED: verified,
        },
    )
