"""Sending events over HTTP, for producers such as Clowder that should need no CloudEvents code."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, NamedTuple

import httpx

from events.codec import Event, Mode, new_event, to_http
from events.errors import DeliveryError
from events.types import Payload

__all__ = ["Delivery", "DeliveryError", "deliver", "emit", "send"]

REPLY_EXCERPT = 500
"""How much of the receiver's reply a ``Delivery`` keeps: enough for an error message, never a whole page."""


_client: httpx.Client | None = None
_client_lock = threading.Lock()


def _shared_client() -> httpx.Client:
    """The process's one client for sending events, made on first use.

    Making an ``httpx.Client`` loads the CA certificates, tens of milliseconds of CPU, which a client
    per event would spend on every event. It keeps no connection open between events, so an event
    never goes out on a connection the receiver has meanwhile closed."""
    global _client
    if _client is None:
        with _client_lock:
            if _client is None:
                _client = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))
    return _client


class Delivery(NamedTuple):
    """What became of one event: the receiver's HTTP status and the start of its reply."""

    event: Event
    status: int
    reply: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def deliver(event: Event, url: str, *, mode: Mode = "binary", timeout: float = 10) -> Delivery:
    """POST the event to ``url``; ``DeliveryError`` when no answer comes (refused, timeout, bad URL)."""
    headers, body = to_http(event, mode)
    try:
        response = _shared_client().post(url, headers=headers, content=body, timeout=timeout)
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        raise DeliveryError(f"could not deliver event {event.id} to {url}: {error}") from error
    return Delivery(event, response.status_code, response.text[:REPLY_EXCERPT])


def send(event: Event, url: str, *, mode: Mode = "binary", timeout: float = 10) -> int:
    """POST the event to ``url`` and return the receiver's HTTP status."""
    return deliver(event, url, mode=mode, timeout=timeout).status


def emit(
    event_type: str,
    data: Payload | Mapping[str, Any],
    *,
    url: str,
    source: str,
    secret: bytes | None,
    subject: str | None = None,
    mode: Mode = "binary",
    timeout: float = 10,
) -> Delivery:
    """Make a (signed, when a secret is given) event of ``event_type`` and POST it to ``url``."""
    event = new_event(event_type, data, source=source, subject=subject, secret=secret)
    return deliver(event, url, mode=mode, timeout=timeout)
