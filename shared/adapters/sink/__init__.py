"""The event sink port: where the platform's outbound CloudEvents go (stack, transfer and export outcomes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from events.types import Payload


class EventSink(Protocol):
    def emit(self, event_type: str, data: Payload, *, subject: str | None = None) -> None:
        """Send one signed event. A sink that cannot be reached is logged, not raised: the state the
        event reports is already recorded."""
        ...
