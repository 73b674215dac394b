"""Sending events over HTTP, for producers such as Clowder that should need no CloudEvents code."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import httpx

from events.codec import Event, Mode, new_event, to_http
from events.errors import DeliveryError
from events.types import Payload

__all__ = ["Delivery", "DeliveryError", "deliver", "emit", "send"]

REPLY_EXCERPT = 500
"""How much of the receiver's reply a ``Delivery`` keeps: enough for an error message, never a whole page."""


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
        response = httpx.post(url, headers=headers, content=body, timeout=timeout)
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
