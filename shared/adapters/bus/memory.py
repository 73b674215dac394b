"""In-process messaging for the embedded platform and tests, with the RabbitMQ semantics shovels rely on."""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.adapters.bus import Delivery
from shared.core.errors import Unavailable

# How often a waiting consumer looks at its stop event, which cannot wake the bus's condition itself.
POLL_SECONDS = 0.1


@dataclass(frozen=True)
class _Message:
    body: bytes
    redelivered: bool = False


@dataclass
class _Consumer:
    queue: str
    unsettled: dict[int, _Message] = field(default_factory=dict)


class MemoryDelivery:
    """A message handed to a ``MemoryBus`` consumer."""

    def __init__(self, bus: MemoryBus, consumer: _Consumer, tag: int, message: _Message) -> None:
        self.body = message.body
        self.redelivered = message.redelivered
        self._bus = bus
        self._consumer = consumer
        self._tag = tag

    def ack(self) -> None:
        self._bus._settle(self._consumer, self._tag, requeue=False)

    def reject(self, *, requeue: bool) -> None:
        self._bus._settle(self._consumer, self._tag, requeue=requeue)


class MemoryBus:
    """Queues that live as long as the process: FIFO, prefetch-bounded, redelivering what was not acked.

    Every method is thread-safe and deliveries may be settled from any thread. Queues come into being
    on first use, as durable queues are declared on RabbitMQ. ``drain_timeout`` is how long a
    stopping consumer waits for deliveries already handed out to be settled before it puts the rest
    back on the queue.
    """

    def __init__(self, *, drain_timeout: float = 2.0) -> None:
        self._drain_timeout = drain_timeout
        self._condition = threading.Condition()
        self._queues: dict[str, deque[_Message]] = {}
        self._tags = itertools.count(1)
        self._closed = False

    def publish(self, queue: str, body: bytes) -> None:
        with self._condition:
            self._check_open()
            self._queue(queue).append(_Message(bytes(body)))
            self._condition.notify_all()

    def message_count(self, queue: str) -> int:
        """How many messages of ``queue`` wait for a consumer (handed-out ones do not count)."""
        with self._condition:
            return len(self._queues.get(queue, ()))

    def consume(
        self,
        queue: str,
        handler: Callable[[Delivery], None],
        *,
        prefetch: int,
        stop: threading.Event,
        connected: Callable[[bool], None] | None = None,
    ) -> None:
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, not {prefetch}")
        consumer = _Consumer(queue)
        if connected is not None:
            connected(True)  # no broker to reach: consuming starts at once
        try:
            while True:
                with self._condition:
                    delivery = self._next(consumer, prefetch, stop)
                if delivery is None:
                    break
                handler(delivery)
            self._drain(consumer)
        finally:
            self._release(consumer)

    def close(self) -> None:
        """Refuse further publishing and end every running consumer."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    def _next(self, consumer: _Consumer, prefetch: int, stop: threading.Event) -> MemoryDelivery | None:
        """Wait (holding the condition) until a message may be handed out, or the consumer should end."""
        while not (stop.is_set() or self._closed):
            messages = self._queues.get(consumer.queue)
            if messages and len(consumer.unsettled) < prefetch:
                message = messages.popleft()
                tag = next(self._tags)
                consumer.unsettled[tag] = message
                return MemoryDelivery(self, consumer, tag, message)
            self._condition.wait(POLL_SECONDS)
        return None

    def _drain(self, consumer: _Consumer) -> None:
        deadline = time.monotonic() + self._drain_timeout
        with self._condition:
            while consumer.unsettled and (remaining := deadline - time.monotonic()) > 0:
                self._condition.wait(remaining)

    def _release(self, consumer: _Consumer) -> None:
        """Put what the consumer still holds back at the head of its queue, in the order it was taken."""
        with self._condition:
            messages = self._queue(consumer.queue)
            for tag in sorted(consumer.unsettled, reverse=True):
                messages.appendleft(_Message(consumer.unsettled[tag].body, redelivered=True))
            consumer.unsettled.clear()
            self._condition.notify_all()

    def _settle(self, consumer: _Consumer, tag: int, *, requeue: bool) -> None:
        with self._condition:
            # Absent when settled before or when its consumer already gave it back to the queue.
            message = consumer.unsettled.pop(tag, None)
            if message is None:
                return
            if requeue:
                self._queue(consumer.queue).appendleft(_Message(message.body, redelivered=True))
            self._condition.notify_all()

    def _queue(self, name: str) -> deque[_Message]:
        return self._queues.setdefault(name, deque())

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the in-process message bus is closed")
