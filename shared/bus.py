"""The messaging port: durable per-user queues to the shovels, with confirmed publishing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol


class Delivery(Protocol):
    body: bytes
    redelivered: bool

    def ack(self) -> None: ...
    def reject(self, *, requeue: bool) -> None: ...


class Bus(Protocol):
    def publish(self, queue: str, body: bytes) -> None:
        """Put a persistent message on the durable ``queue``; returns once the broker confirmed it."""
        ...

    def broadcast(self, exchange: str, body: bytes) -> None:
        """Publish to a durable fanout exchange (heartbeats); confirmed like ``publish``."""
        ...

    def consume(
        self, queue: str, handler: Callable[[Delivery], None], *, prefetch: int, stop: threading.Event
    ) -> None:
        """Deliver messages of ``queue`` to ``handler`` until ``stop`` is set; the handler acks or rejects.

        Reconnects after a lost connection; unacknowledged messages are redelivered.
        """
        ...

    def close(self) -> None: ...
