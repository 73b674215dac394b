"""CloudEvent function ``stack_status``: a stack's pod changed in the cluster, so the stack is reconciled."""

# The events come from the cluster's ApiServerSource, which cannot sign them, so none is trusted: the
# pod in an event only names a stack (by its labels), whose status is then read from the cluster
# itself. A forged event can at most make a stack's reconciliation happen sooner; it sets no status.

from __future__ import annotations

import json
import logging

import functions_framework
from flask import Request, Response

from shared.core.errors import Unavailable, WorkbenchError
from shared.domain import stacks
from shared.serving.registry import APISERVER_EVENTS

log = logging.getLogger(__name__)


def _answer(status: int, message: str | None = None) -> Response:
    if message is None:
        return Response(b"", status=status)
    return Response(json.dumps({"Error": message}), status=status, mimetype="application/json")


@functions_framework.http
def stack_status(request: Request) -> Response:
    from events import codec
    from events.errors import InvalidEvent
    from shared.bootstrap import platform
    from shared.core.errors import ContentTooLarge
    from shared.serving.bodies import event_body, refusal

    try:
        event = codec.from_http(dict(request.headers), event_body(request))
    except ContentTooLarge as error:
        return refusal(error)
    except InvalidEvent as error:
        return _answer(400, f"not a valid CloudEvent: {error}")
    if event.type not in APISERVER_EVENTS:
        known = ", ".join(APISERVER_EVENTS)
        return _answer(
            400, f"function 'stack_status' does not handle events of type {event.type}; it handles {known}"
        )
    pod = event.json() if event.data else None
    if not isinstance(pod, dict) or pod.get("kind", "Pod") != "Pod":
        return _answer(202)  # not a pod: nothing of a stack to reconcile
    try:
        stacks.reconcile_pod(platform(), pod)
    except Unavailable as error:
        log.warning("event %s (%s) must be retried: %s", event.id, event.type, error.message)
        return _answer(503, error.message)
    except WorkbenchError as error:
        log.warning("could not reconcile after event %s (%s): %s", event.id, event.type, error.message)
        return _answer(400, error.message)
    return _answer(202)
