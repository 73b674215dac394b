"""The exceptions of the events package; callers map them to HTTP answers (400, or 503 for delivery)."""

from __future__ import annotations


class InvalidEvent(Exception):
    """An event that cannot be used as it is; ``field`` names the attribute or data field at fault."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class UnknownEventType(InvalidEvent):
    """An event whose type has no data model: nothing may act on it."""

    def __init__(self, event_type: str) -> None:
        super().__init__(f"unknown event type '{event_type}'", field="type")
        self.event_type = event_type


class InvalidSignature(InvalidEvent):
    """An event whose ``wbsignature`` is missing, malformed or does not match its attributes and data."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="wbsignature")


class DeliveryError(Exception):
    """An event could not be handed to its receiver (connection refused, timeout, bad URL); retry later."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
