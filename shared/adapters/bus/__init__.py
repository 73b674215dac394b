"""The messaging port: durable per-user queues to the shovels, with confirmed publishing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol


class Delivery(Protocol):
    """One message handed to a consumer; settle it once with ``ack`` or ``reject``, from any thread.

    ``redelivered`` is true when the message was handed out before and not acknowledged. Settling
    again is ignored; a settlement that arrives after the consumer lost its connection is dropped
    and the message is delivered again, so handlers must be idempotent.
    """

    body: bytes
    redelivered: bool

    def ack(self) -> None: ...
    def reject(self, *, requeue: bool) -> None: ...


class Bus(Protocol):
    def publish(self, queue: str, body: bytes) -> None:
        """Put a persistent message on the durable ``queue``; returns once the broker confirmed it."""
        ...

    def consume(
        self,
        queue: str,
        handler: Callable[[Delivery], None],
        *,
        prefetch: int,
        stop: threading.Event,
        connected: Callable[[bool], None] | None = None,
    ) -> None:
        """Deliver messages of ``queue`` to ``handler`` until ``stop`` is set; the handler acks or rejects.

        At most ``prefetch`` messages are unsettled at a time. ``handler`` runs on the consuming thread,
        so long work belongs on a worker thread that settles the delivery when done. Reconnects after a
        lost connection; unacknowledged messages are redelivered. An exception from ``handler`` ends
        the consumer and propagates; its unsettled messages go back to the queue. ``connected(True)``
        is called once the consumer takes messages, ``connected(False)`` whenever it lost its broker
        and reconnects (a shovel's health says so).
        """
        ...

    def close(self) -> None: ...
