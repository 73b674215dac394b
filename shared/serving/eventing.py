"""Serving CloudEvent functions: decode, verify, validate, handle, and answer as Knative expects."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.core.errors import ContentTooLarge, Unavailable, WorkbenchError
from shared.serving import bodies

if TYPE_CHECKING:
    from flask import Request, Response
    from werkzeug.wrappers import Request as WsgiRequest

    from events.codec import Event
    from events.types import Payload
    from shared.bootstrap import Platform

log = logging.getLogger("workbench.events")


@dataclass
class EventCall:
    """One delivered event, as a handler sees it."""

    platform: Platform
    event: Event
    data: Any


EventHandler = Callable[[EventCall], None]


def is_cloud_event(request: Request) -> bool:
    """Whether a request carries a CloudEvent (binary mode headers or the structured media type)."""
    content_type = request.headers.get("Content-Type", "")
    return request.headers.get("ce-specversion") is not None or content_type.startswith(
        "application/cloudevents"
    )


def _answer(status: int, message: str | None = None) -> Response:
    from flask import Response

    if message is None:
        return Response(b"", status=status)
    # Knative treats a non-empty reply that is not a CloudEvent as a failure only on 2xx; errors may explain.
    return Response(json.dumps({"Error": message}), status=status, mimetype="application/json")


def verify(platform: Platform, event: Event) -> None:
    """Check the event's signature: Clowder's events with the pairing secret, a shovel's with its user's key."""
    from events import signing, types
    from events.errors import InvalidSignature

    if not platform.settings.clowder.require_signatures:
        return
    secret = platform.event_secret
    if event.type in types.FROM_SHOVELS:
        user = event.json().get("user") if isinstance(event.json(), dict) else None
        if not isinstance(user, str) or not user:
            raise InvalidSignature("a shovel's event must name its user")
        secret = signing.derive_key(secret, f"shovel:{user}")
    signing.verify(event.attributes, event.data, secret)


CLOCK_SKEW_SECONDS = 60
"""How far in the future an event's ``time`` may lie: the sender's clock may be ahead of ours."""


def made_at(platform: Platform, event: Event) -> int:
    """When the event was made, by its ``time``; refused when older than the window
    (``WORKBENCH_EVENT_MAX_AGE_SECONDS``), in the future, or missing where events must be signed
    (its ``time`` is signed, so a captured event cannot be made younger)."""
    from events.errors import InvalidEvent

    now = time.time()
    given = event.attributes.get("time")
    if given is None:
        if platform.settings.clowder.require_signatures:
            raise InvalidEvent("the event carries no time attribute; it says when it was made", field="time")
        return int(now)
    try:
        moment = datetime.fromisoformat(given)
    except ValueError:
        raise InvalidEvent(f"time {given[:40]!r} is not an RFC 3339 timestamp", field="time") from None
    if moment.tzinfo is None:
        raise InvalidEvent(f"time {given[:40]!r} has no time zone offset", field="time")
    made = moment.timestamp()
    window = platform.settings.clowder.event_max_age
    if now - made > window:
        raise InvalidEvent(
            f"the event's time {given} is {now - made:.0f} s ago; events older than {window} s are "
            "refused (WORKBENCH_EVENT_MAX_AGE_SECONDS)",
            field="time",
        )
    if made - now > CLOCK_SKEW_SECONDS:
        raise InvalidEvent(f"the event's time {given} lies {made - now:.0f} s in the future", field="time")
    return int(made)


def _first_delivery(platform: Platform, event: Event, made: int) -> bool:
    """Whether this delivery is to act on the event: (source, id) names one event, so a redelivery or a
    replay of one already taken does nothing."""
    lease = platform.settings.recovery.resume_after
    return platform.store.claim_event(event.source, event.id, event.type, made, lease)


def _handle_once(platform: Platform, event: Event, handle: Callable[[], None]) -> None:
    """Run the handler of a claimed event; the claim is kept when it acted or refused the event for good
    (so a replay cannot make it act later, when it might succeed), and given up when the event is to
    be delivered again (a 503 or an unexpected error)."""
    from events.errors import InvalidEvent

    try:
        handle()
    except Unavailable:
        platform.store.release_event(event.source, event.id)
        raise
    except (WorkbenchError, InvalidEvent):
        platform.store.finish_event(event.source, event.id)
        raise
    except Exception:
        platform.store.release_event(event.source, event.id)
        raise
    platform.store.finish_event(event.source, event.id)


Decode = Callable[[Mapping[str, str], bytes], "Event"]
"""How an adapter reads the delivered event from the request's headers and body."""


def event_body(request: WsgiRequest) -> bytes:
    """A delivered CloudEvent's body, within WORKBENCH_MAX_EVENT_BYTES."""
    from shared.bootstrap import platform

    return bodies.event_body(request, platform().settings.server.max_event_bytes)


def adapt(
    function_name: str,
    request: Request,
    act: Callable[[Event], None],
    *,
    handles: Collection[str] | None,
    decode: Decode | None = None,
) -> Response:
    """The one adapter of every CloudEvent function: read the event (413 past its limit, 400 when it is
    no CloudEvent), refuse a type the function does not ``handle`` (None: it takes any), ``act`` on it,
    and answer as Knative expects: 202 and an empty body when done, 400 when it can never succeed
    (Knative does not retry it), 503 when a dependency is down (retried), 500 for a fault of ours."""
    from shared.serving import api, metrics

    if request.path == metrics.PATH and request.method in ("GET", "HEAD"):
        return api.metrics_response(request)
    began = time.perf_counter()
    route, response = _adapt(function_name, request, act, handles=handles, decode=decode)
    metrics.REQUESTS.record(
        function_name, route, request.method, response.status_code, time.perf_counter() - began
    )
    return response


def _adapt(
    function_name: str,
    request: Request,
    act: Callable[[Event], None],
    *,
    handles: Collection[str] | None,
    decode: Decode | None,
) -> tuple[str, Response]:
    """The event's route for the metrics (its type, where the function handles it) and the answer."""
    from events import codec
    from events.errors import InvalidEvent
    from shared.serving import metrics

    unmatched = metrics.UNMATCHED
    read = decode or codec.from_http
    try:
        event = read(dict(request.headers), event_body(request))
    except ContentTooLarge as error:
        return unmatched, bodies.refusal(error)
    except InvalidEvent as error:
        return unmatched, _answer(400, f"not a valid CloudEvent: {error}")
    if handles is not None and event.type not in handles:
        known = ", ".join(sorted(handles))
        return unmatched, _answer(
            400, f"function '{function_name}' does not handle events of type {event.type}; it handles {known}"
        )
    # A type the function handles (a fixed few), or any type at the dead-letter sink: one series per
    # known type, the rest together, so that no sender can add series at will.
    route = event.type if handles is not None or event.type in _known_types() else unmatched
    try:
        act(event)
    except InvalidEvent as error:
        log.warning("refused event %s (%s) from %s: %s", event.id, event.type, event.source, error)
        return route, _answer(400, str(error))
    except Unavailable as error:
        log.warning("event %s (%s) must be retried: %s", event.id, event.type, error.message)
        return route, _answer(503, error.message)
    except WorkbenchError as error:
        # Bad input, unknown or foreign things, conflicts: delivering it again changes nothing.
        log.warning("refused event %s (%s): %s", event.id, event.type, error.message)
        return route, _answer(400, error.message)
    except Exception:
        log.exception("event %s (%s) failed", event.id, event.type)
        return route, _answer(500, "internal error; the server log has the details")
    return route, _answer(202)


def _known_types() -> Collection[str]:
    from events.types import DATA_MODELS

    return DATA_MODELS.keys()


def signed(handlers: Mapping[str, EventHandler]) -> Callable[[Event], None]:
    """Acting on an event of this platform or Clowder: signed, young enough, its data valid for its
    type, and acted on once however often it is delivered."""
    from events import codec
    from shared.bootstrap import platform

    def act(event: Event) -> None:
        current = platform()
        verify(current, event)
        data: Payload = codec.parse_data(event)
        if not _first_delivery(current, event, made_at(current, event)):
            log.info(
                "event %s (%s) from %s was taken before; nothing more to do",
                event.id,
                event.type,
                event.source,
            )
            return
        handler = handlers[event.type]
        _handle_once(current, event, lambda: handler(EventCall(current, event, data)))

    return act


def serve_event(function_name: str, request: Request, handlers: Mapping[str, EventHandler]) -> Response:
    """Answer a delivered event of this platform or Clowder as ``signed`` acts on it (``adapt`` gives
    the statuses)."""
    return adapt(function_name, request, signed(handlers), handles=handlers.keys())
