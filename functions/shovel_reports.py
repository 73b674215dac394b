"""CloudEvent function ``shovel_reports``: files placed, folders uploaded and heartbeats from the shovels."""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from events import types
from shared.domain import exports, transfers
from shared.serving.eventing import EventCall, serve_event


def progress(call: EventCall) -> None:
    transfers.record_progress(call.platform, call.data)


def uploaded(call: EventCall) -> None:
    exports.record_uploaded(call.platform, call.data)


def heartbeat(call: EventCall) -> None:
    beat = call.data
    call.platform.store.record_heartbeat(beat.user, beat.stack_id, beat.model_dump())


@functions_framework.http
def shovel_reports(request: Request) -> Response:
    return serve_event(
        "shovel_reports",
        request,
        {
            types.TRANSFER_PROGRESS: progress,
            types.EXPORT_UPLOADED: uploaded,
            types.SHOVEL_HEARTBEAT: heartbeat,
        },
    )
