"""Clowder's RabbitMQ (pika), apart from the platform's: extractor heartbeats, job queues, status replies."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from shared.core.errors import Unavailable
from shared.core.retry import Again, Attempt, Policy

log = logging.getLogger(__name__)

HEARTBEAT_EXCHANGE = "extractors"
"""Clowder's fanout exchange, where extractors announce themselves (pyclowder's ``RabbitMQBroadcast``)."""
CONNECTION_ERRORS = (pika.exceptions.AMQPError, OSError)
POLL_SECONDS = 0.25
RECONNECT_SECONDS = 2.0
_RECONNECT_ONCE = Policy(retries=1, backoff=0.0)


@dataclass(frozen=True)
class Received:
    """One job taken from a queue, with the properties Clowder set on it."""

    queue: str
    body: bytes
    reply_to: str | None
    correlation_id: str | None
    message_id: str | None
    redelivered: bool


Handler = Callable[[Received], None]
"""Carries out one job; once it returns the job is acknowledged. It raises ``Unavailable`` only when
the job is to be delivered again (a dependency is down)."""


class ClowderQueues:
    """Clowder's broker. Publishing shares one connection behind a lock; ``consume`` opens its own."""

    def __init__(self, url: str, *, connect_timeout: float = 5, name: str = "workbench-clowder-jobs") -> None:
        parameters = pika.URLParameters(url)
        parameters.socket_timeout = connect_timeout
        parameters.stack_timeout = connect_timeout
        parameters.client_properties = {"connection_name": name}
        self._parameters = parameters
        self.address = f"{parameters.host}:{parameters.port}"
        self._lock = threading.Lock()
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    def announce(self, heartbeats: Iterable[bytes], queues: Iterable[str] = ()) -> None:
        """Declare each extractor's queue and its ``error.<queue>`` durable, as pyclowder does when it
        connects (a RabbitmqSource only reads a predeclared queue, and Clowder drops a job sent to a
        queue that does not exist), then send each heartbeat to the ``extractors`` fanout exchange,
        which Clowder 1 and 2 listen to."""
        names = list(queues)

        def send(channel: BlockingChannel) -> None:
            for queue in names:
                channel.queue_declare(queue, durable=True)
                channel.queue_declare(f"error.{queue}", durable=True)
            channel.exchange_declare(HEARTBEAT_EXCHANGE, exchange_type="fanout", durable=True)
            for body in heartbeats:
                channel.basic_publish(HEARTBEAT_EXCHANGE, "", body)

        self._publish("announce the extractors", send)

    def reply(self, queue: str, correlation_id: str | None, body: bytes) -> None:
        """A status message to Clowder's reply queue, as pyclowder sends it (default exchange)."""
        properties = pika.BasicProperties(delivery_mode=2, correlation_id=correlation_id)

        def send(channel: BlockingChannel) -> None:
            channel.basic_publish("", queue, body, properties)

        self._publish("send a status to Clowder", send)

    def reject(self, queue: str, received: Received) -> None:
        """A job given up on, to ``error.<queue>`` as pyclowder moves it (Clowder's admins look there)."""
        properties = pika.BasicProperties(delivery_mode=2, reply_to=received.reply_to)

        def send(channel: BlockingChannel) -> None:
            channel.queue_declare(f"error.{queue}", durable=True)
            channel.basic_publish("", f"error.{queue}", received.body, properties)

        self._publish("keep a refused job", send)

    def _publish(self, what: str, action: Callable[[BlockingChannel], None]) -> None:
        """``action`` on the publishing channel; on a lost connection, once more on a fresh one, at once
        (a connection that dropped while idle is the usual cause, not a broker that is down)."""

        def attempt(now: Attempt) -> None:
            try:
                if self._channel is None or not self._channel.is_open:
                    self._drop()
                    self._connection = pika.BlockingConnection(self._parameters)
                    self._channel = self._connection.channel()
                    self._channel.confirm_delivery()
                action(self._channel)
            except CONNECTION_ERRORS as error:
                self._drop()
                if now.last:
                    raise Unavailable(
                        f"Clowder's RabbitMQ at {self.address}: could not {what}: {error!r}"
                    ) from None
                raise Again(repr(error)) from None

        with self._lock:
            _RECONNECT_ONCE.run(attempt)

    def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(*CONNECTION_ERRORS):
                connection.close()

    def consume(self, queues: Iterable[str], handler: Handler, *, stop: threading.Event) -> None:
        """Hand each job of ``queues`` (declared durable, as pyclowder does) to ``handler``, one at a
        time, until ``stop`` is set; reconnect when the connection is lost."""
        names = list(queues)
        while not stop.is_set():
            connection: pika.BlockingConnection | None = None
            try:
                connection = pika.BlockingConnection(self._parameters)
                channel = connection.channel()
                channel.basic_qos(prefetch_count=1)
                for name in names:
                    channel.queue_declare(name, durable=True)
                while not stop.is_set():
                    taken = False
                    for name in names:
                        method, properties, body = channel.basic_get(name, auto_ack=False)
                        if method is None or properties is None or body is None:
                            continue
                        tag = method.delivery_tag
                        assert tag is not None
                        taken = True
                        received = Received(
                            queue=name,
                            body=body,
                            reply_to=properties.reply_to,
                            correlation_id=properties.correlation_id,
                            message_id=properties.message_id,
                            redelivered=bool(method.redelivered),
                        )
                        try:
                            handler(received)
                        except Unavailable as error:
                            log.warning("a Clowder job goes back to %s: %s", name, error.message)
                            channel.basic_nack(tag, requeue=True)
                            stop.wait(RECONNECT_SECONDS)
                            continue
                        channel.basic_ack(tag)
                    if not taken:
                        connection.sleep(POLL_SECONDS)
            except CONNECTION_ERRORS as error:
                log.warning("Clowder's RabbitMQ at %s: %r; connecting again", self.address, error)
                stop.wait(RECONNECT_SECONDS)
            finally:
                if connection is not None and connection.is_open:
                    with contextlib.suppress(*CONNECTION_ERRORS):
                        connection.close()

    def close(self) -> None:
        with self._lock:
            self._drop()
