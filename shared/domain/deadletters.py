"""Dead letters: events no function could take, kept with the reasons Knative gave, for the admin to see."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from shared.core import clock
from shared.core.models import DeadLetter

if TYPE_CHECKING:
    from events.codec import Event
    from shared.adapters.store import Store

log = logging.getLogger("workbench.deadletters")

ERROR_CODE = "knativeerrorcode"
ERROR_DATA = "knativeerrordata"
ERROR_DESTINATION = "knativeerrordest"
ERROR_DATA_LIMIT = 1024
"""Knative truncates the failed reply to this many bytes before encoding it into ``knativeerrordata``."""
DATA_LIMIT = 16 * 1024
"""How much of a dead letter's data is kept: enough to see what it was about, bounded for junk."""
TEXT_LIMIT = 1024
"""How much of each attribute (type, source, subject, …) and of the error a dead letter keeps."""
DEFAULT_LIST = 100
MAX_LIST = 1000


class DeadLetterPorts(Protocol):
    """Dead letters are kept in the store only."""

    @property
    def store(self) -> Store: ...


def excerpt(data: bytes, limit: int = DATA_LIMIT) -> str:
    """The start of ``data`` as text, at most ``limit`` bytes of it, marked when the rest was left out."""
    if len(data) <= limit:
        return data.decode("utf-8", "replace")
    return data[:limit].decode("utf-8", "replace") + f"… [{len(data) - limit} more bytes not kept]"


def _excerpt_text(text: str, limit: int = TEXT_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"… [{len(text) - limit} more characters not kept]"


def error_data(reply: bytes) -> str:
    """``knativeerrordata`` as Knative sends it: the reply's first bytes, base64-encoded."""
    return base64.b64encode(reply[:ERROR_DATA_LIMIT]).decode("ascii")


def _decoded(value: str) -> str:
    """Knative sends the reply base64-encoded (older dispatchers sent it as is): show it as text."""
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return value


def dead_letter_id(source: str, event_id: str, destination: str) -> str:
    """One record per event and destination, so a redelivered dead letter is kept once."""
    digest = hashlib.sha256("\0".join((source, event_id, destination)).encode("utf-8"))
    return digest.hexdigest()[:32]


def lenient_event(headers: Mapping[str, str], body: bytes) -> Event:
    """The dead-lettered event of a request, even when its data is what made it fail (not JSON, say):
    the attributes are read as usual, the data kept as it came."""
    from events import codec
    from events.errors import InvalidEvent

    try:
        return codec.from_http(headers, body)
    except InvalidEvent:
        lowered = {name.lower(): value for name, value in headers.items()}
        if lowered.get("content-type", "").lower().startswith("application/cloudevents"):
            return _structured_without_data(body)
        # Binary mode: the attributes are headers; read them without the data they describe.
        kept = {
            name: value
            for name, value in lowered.items()
            if name.startswith("ce-") and name != "ce-datacontenttype"
        }
        return codec.Event(codec.from_http(kept, b"").attributes, body)


def _structured_without_data(body: bytes) -> Event:
    from events import codec, safe_json
    from events.errors import InvalidEvent

    try:
        envelope = safe_json.loads(body)
    except safe_json.RefusedJson as error:
        raise InvalidEvent(f"not a CloudEvent envelope: {error}") from None
    if not isinstance(envelope, dict):
        raise InvalidEvent("not a CloudEvent envelope: not a JSON object")
    data = envelope.pop("data", None)
    encoded = envelope.pop("data_base64", None)
    envelope.pop("datacontenttype", None)
    event = codec.from_http(
        {"content-type": "application/cloudevents+json"}, json.dumps(envelope).encode("utf-8")
    )
    if isinstance(encoded, str):
        try:
            kept = base64.b64decode(encoded)
        except binascii.Error:
            kept = encoded.encode("utf-8")
    elif data is None:
        kept = b""
    else:
        kept = (data if isinstance(data, str) else json.dumps(data)).encode("utf-8")
    return codec.Event(event.attributes, kept)


def from_event(event: Event, *, now: int | None = None) -> DeadLetter:
    """The record of a dead-lettered event; ``InvalidEvent`` when it does not say where it failed."""
    from events.errors import InvalidEvent

    attributes = event.attributes
    destination = attributes.get(ERROR_DESTINATION)
    if not destination:
        # Every dispatcher that dead-letters names the destination it gave up on; an event without
        # one was sent here directly, and is no dead letter.
        raise InvalidEvent(
            f"not a dead-lettered event: it lacks the {ERROR_DESTINATION} extension", field=ERROR_DESTINATION
        )
    return DeadLetter(
        id=dead_letter_id(event.source, event.id, destination),
        type=_excerpt_text(event.type),
        eventId=_excerpt_text(event.id),
        source=_excerpt_text(event.source),
        subject=_excerpt_text(attributes.get("subject", "")),
        eventTime=_excerpt_text(attributes.get("time", "")),
        errorCode=_excerpt_text(attributes.get(ERROR_CODE, "")),
        errorData=_excerpt_text(_decoded(attributes.get(ERROR_DATA, ""))),
        errorDestination=_excerpt_text(destination),
        data=excerpt(event.data),
        receivedTime=clock.now() if now is None else now,
    )


def record(ports: DeadLetterPorts, event: Event) -> DeadLetter:
    """Keep a dead-lettered event (once, however often it is delivered here) and return its record."""
    dead_letter = from_event(event)
    ports.store.insert_dead_letter(dead_letter)
    return dead_letter


def newest(ports: DeadLetterPorts, limit: str | None) -> list[DeadLetter]:
    """The newest dead letters; ``limit`` (text from a query) between 1 and MAX_LIST, default 100."""
    from shared.core.errors import InvalidInput

    count = DEFAULT_LIST
    if limit:
        try:
            count = int(limit)
        except ValueError:
            raise InvalidInput(f"must be an integer, got {limit!r}", field="limit") from None
        if not 1 <= count <= MAX_LIST:
            raise InvalidInput(f"must be between 1 and {MAX_LIST}, got {count}", field="limit")
    return ports.store.list_dead_letters(count)
