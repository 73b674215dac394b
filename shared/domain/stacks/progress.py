"""A stack's start as a stream of progress events, read from the stored stack (which every replica
shares): each service's new status messages and status changes, then the stack's outcome.

A stream's position is its last event's id: per service, how many of its messages were seen and a
digest of the last one (the stored messages are a window, so a count alone would drift once it
slides), then the stack's status. Any replica resumes a stream from it, with nothing kept between."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.core.errors import NotFound
from shared.core.models import Stack, StackService
from shared.domain.stacks.crud import get
from shared.domain.stacks.reconciliation import reconcile

if TYPE_CHECKING:
    from shared.domain.stacks.ports import StackPorts

POLL_SECONDS = 0.5
"""How often a stream reads the stored stack."""
STREAM_SECONDS = 90.0
"""How long one stream lasts at most (within the function's request timeout); the client resumes it."""
RECONCILE_SECONDS = 2.0
"""How often a stream of a stack on a cluster asks the cluster itself (image pulls and container
creations change no pod, so no pod event reports them)."""
HEARTBEAT_SECONDS = 15.0
"""A comment line this often keeps proxies from closing a quiet stream."""
RETRY_MILLISECONDS = 1000
FINAL = frozenset({"started", "error", "stopped"})
"""A stack in one of these is no longer starting: its stream ends."""


@dataclass(frozen=True)
class Seen:
    """How far a stream got in one service: its messages seen, the last one's digest, its status."""

    count: int = 0
    digest: str = ""
    status: str = ""


@dataclass(frozen=True)
class Position:
    services: dict[str, Seen]
    status: str = ""

    def event_id(self) -> str:
        parts = [f"{ssid}~{seen.count}~{seen.digest}~{seen.status}" for ssid, seen in self.services.items()]
        return " ".join([*parts, f"~{self.status}"])


def digest(message: str) -> str:
    return hashlib.sha256(message.encode()).hexdigest()[:12]


def parse_position(event_id: str | None) -> Position:
    """The position an event id names; an id that is not one of ours starts from the beginning."""
    services: dict[str, Seen] = {}
    status = ""
    for part in (event_id or "").split():
        fields = part.split("~")
        if len(fields) == 2 and not fields[0]:
            status = fields[1]
        elif len(fields) == 4 and fields[1].isdigit() and len(fields[1]) < 6:
            services[fields[0]] = Seen(int(fields[1]), fields[2], fields[3])
    return Position(services, status)


def _new_messages(messages: list[str], seen: Seen) -> list[str]:
    """The messages after those seen; all of them when the seen ones are no longer there (a new start)."""
    if not seen.digest:
        return messages
    if 0 < seen.count <= len(messages) and digest(messages[seen.count - 1]) == seen.digest:
        return messages[seen.count :]
    for index in range(len(messages) - 1, -1, -1):  # the window slid: find the last one seen
        if digest(messages[index]) == seen.digest:
            return messages[index + 1 :]
    return messages


@dataclass(frozen=True)
class Event:
    """One server-sent event: its type, JSON data and id (the position after it)."""

    kind: str
    data: dict[str, object]
    id: str

    def encode(self) -> bytes:
        return f"id: {self.id}\nevent: {self.kind}\ndata: {json.dumps(self.data)}\n\n".encode()


def _service_data(service: StackService, message: str | None) -> dict[str, object]:
    return {
        "stack": service.stack,
        "id": service.id,
        "service": service.service,
        "status": service.status,
        "message": message,
        "endpoints": [endpoint.url for endpoint in service.endpoints or () if endpoint.url],
    }


def changes(stack: Stack, position: Position) -> tuple[list[Event], Position]:
    """The events that bring a stream at ``position`` up to ``stack``, and the position after them."""
    events: list[Event] = []
    services = dict(position.services)
    for service in stack.services:
        seen = services.get(service.id, Seen())
        for message in _new_messages(service.statusMessages, seen):
            seen = Seen(seen.count + 1, digest(message), service.status)
            services[service.id] = seen
            event_id = Position(services, position.status).event_id()
            events.append(Event("service", _service_data(service, message), event_id))
        if seen.status != service.status or service.id not in services:
            # a status without a new message, or the first sight of a service
            services[service.id] = Seen(seen.count, seen.digest, service.status)
            event_id = Position(services, position.status).event_id()
            events.append(Event("service", _service_data(service, None), event_id))
    after = Position(services, stack.status)
    if stack.status != position.status:
        events.append(Event("stack", {"id": stack.id, "status": stack.status}, after.event_id()))
    return events, after


def stream(
    ports: StackPorts,
    owner: str,
    sid: str,
    last_event_id: str | None,
    *,
    seconds: float = STREAM_SECONDS,
    poll_seconds: float = POLL_SECONDS,
    reconcile_seconds: float = RECONCILE_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[bytes]:
    """The owner's stack's progress as server-sent events until it is started, failed or stopped (an
    ``end`` event) or ``seconds`` passed. The stack is read once first, so that a stack that is not
    the owner's fails before the stream begins. A stack on a cluster is reconciled with it every
    ``reconcile_seconds`` meanwhile, which brings what its pods went through into its messages."""
    stack = get(ports, owner, sid)
    position = parse_position(last_event_id)

    def events() -> Iterator[bytes]:
        nonlocal stack, position
        yield f"retry: {RETRY_MILLISECONDS}\n\n".encode()
        deadline = time.monotonic() + seconds
        quiet_since = time.monotonic()
        reconciled_at = time.monotonic()
        while True:
            found, position = changes(stack, position)
            for event in found:
                yield event.encode()
            if found:
                quiet_since = time.monotonic()
            if stack.status in FINAL:
                yield Event("end", {"id": sid, "status": stack.status}, position.event_id()).encode()
                return
            if time.monotonic() >= deadline:
                return  # the client resumes from the last id
            if time.monotonic() - quiet_since >= HEARTBEAT_SECONDS:
                yield b": waiting\n\n"
                quiet_since = time.monotonic()
            sleep(poll_seconds)
            try:
                stack = get(ports, owner, sid)
                if time.monotonic() - reconciled_at >= reconcile_seconds:
                    stack = reconcile(ports, owner, stack)
                    reconciled_at = time.monotonic()
            except NotFound:
                yield Event("end", {"id": sid, "status": "deleted"}, position.event_id()).encode()
                return

    return events()
