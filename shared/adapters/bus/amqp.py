"""RabbitMQ adapter of the messaging port (pika): confirmed persistent publishing, reconnecting consumers."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from shared.adapters.bus import Delivery
from shared.core.errors import Unavailable
from shared.core.retry import Again, Attempt, Policy

log = logging.getLogger(__name__)

PERSISTENT = BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
# pika wraps socket failures in its own errors, except in a few paths of its I/O loop.
CONNECTION_ERRORS = (pika.exceptions.AMQPError, OSError)
# How often a consumer looks at its stop event between deliveries.
POLL_SECONDS = 0.25
RECONNECT = Policy(retries=0, backoff=0.5, max_backoff=30.0)
"""A consumer's waits before connecting again (it tries for ever): 0.5 s doubling up to 30 s, each
between half and the whole of that, so that many shovels do not reconnect to a restarted broker at once."""


class _HandlerFailed(Exception):
    """Carries an exception of the consumer's handler out of pika's callback, past the reconnect logic."""

    def __init__(self, error: Exception) -> None:
        super().__init__(repr(error))
        self.error = error


class _ConsumerCancelled(pika.exceptions.AMQPChannelError):
    """The broker ended the consumer (its queue was deleted); consume again on a fresh connection."""


class _ConnectionLost(pika.exceptions.AMQPConnectionError):
    """The consumer's connection or channel closed while a settlement, not the reading loop, noticed."""


class AmqpBus:
    """The ``Bus`` on RabbitMQ; connections open on first use, never at construction.

    Thread safety: pika's ``BlockingConnection`` is not thread-safe. Every ``publish`` shares one
    connection behind a lock, so concurrent callers take turns (one confirm round trip each) and a process holds one publishing connection however many
    threads it runs. Every ``consume`` call opens its own connection, used only by the calling
    thread; its deliveries may be settled from any thread: settlements from other threads are handed
    to that connection with ``add_callback_threadsafe`` and carried out between its reads.

    A publish is retried on a fresh connection when the one in use turns out to be dropped, so a
    message whose confirm was lost with the connection can arrive twice (consumers are idempotent).
    ``drain_timeout`` is how long a stopping consumer waits for deliveries already handed out to be
    settled before closing its connection, after which RabbitMQ redelivers the rest.
    """

    def __init__(
        self,
        url: str,
        *,
        heartbeat: int = 30,
        connect_timeout: float = 5,
        drain_timeout: float = 2.0,
        publish_attempts: int = 3,
        name: str = "workbench",
    ) -> None:
        parameters = pika.URLParameters(url)
        parameters.heartbeat = heartbeat
        parameters.socket_timeout = connect_timeout
        parameters.stack_timeout = connect_timeout
        # A broker in a memory or disk alarm blocks publishers; fail (503) rather than hang a request.
        parameters.blocked_connection_timeout = heartbeat if heartbeat > 0 else None
        # Shown by rabbitmqctl and the management UI, which is how operators (and tests) find them.
        parameters.client_properties = {"connection_name": name}
        self._parameters = parameters
        self._address = f"{parameters.host}:{parameters.port}"
        credentials = parameters.credentials
        self._password = credentials.password if isinstance(credentials, pika.PlainCredentials) else ""
        self._drain_timeout = drain_timeout
        self._publish_attempts = publish_attempts
        # At once: a dropped connection (the usual cause) is mended by connecting again, not by waiting.
        self._publishing = Policy(retries=publish_attempts - 1, backoff=0.0, jitter=False)
        self._lock = threading.Lock()
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._declared: set[str] = set()
        """The queues declared on the publishing connection."""
        self._closed = threading.Event()

    def publish(self, queue: str, body: bytes) -> None:
        def send(channel: BlockingChannel) -> None:
            self._declare(channel, queue)
            # Mandatory: a queue deleted since we declared it makes the broker return the message
            # (UnroutableError) instead of dropping it; the retry declares it again.
            channel.basic_publish("", queue, body, PERSISTENT, mandatory=True)

        self._run(f"publish to queue '{queue}'", send)

    def consume(
        self,
        queue: str,
        handler: Callable[[Delivery], None],
        *,
        prefetch: int,
        stop: threading.Event,
        connected: Callable[[bool], None] | None = None,
    ) -> None:
        """Consume until ``stop`` is set or the bus is closed, reconnecting with backoff meanwhile."""
        tell = connected or (lambda _: None)
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, not {prefetch}")
        failures = 0  # connections failed in a row: each waits longer, up to the policy's longest wait
        while not self._finished(stop):
            try:
                connection = pika.BlockingConnection(self._parameters)
            except CONNECTION_ERRORS as error:
                failures += 1
                wait = RECONNECT.delay(failures)
                log.warning(
                    "cannot reach RabbitMQ at %s to consume '%s' (%s); retrying in %.1f s",
                    self._address,
                    queue,
                    self._describe(error),
                    wait,
                )
                self._pause(stop, wait)
                continue
            consumer = _Consumer(connection, self._drain_timeout, tell)
            try:
                consumer.run(queue, handler, prefetch, lambda: self._finished(stop))
            except _HandlerFailed as failure:
                raise failure.error from None
            except CONNECTION_ERRORS as error:
                if consumer.started:
                    tell(False)
                    failures = 0
                failures += 1
                wait = RECONNECT.delay(failures)
                log.warning(
                    "lost the RabbitMQ connection to %s consuming '%s' (%s); reconnecting in %.1f s",
                    self._address,
                    queue,
                    self._describe(error),
                    wait,
                )
                self._pause(stop, wait)
            finally:
                _close_quietly(connection)

    def close(self) -> None:
        """Close the publishing connection, end running consumers and refuse further publishing."""
        self._closed.set()
        with self._lock:
            self._drop_publisher()

    def _run(self, what: str, action: Callable[[BlockingChannel], None]) -> None:
        """Do ``action`` on the publishing channel, on a fresh connection when the current one dropped."""
        with self._lock:
            if self._closed.is_set():
                raise Unavailable(f"cannot {what}: the RabbitMQ client for {self._address} is closed")

            def attempt(now: Attempt) -> None:
                try:
                    channel = self._publishing_channel()
                except CONNECTION_ERRORS as error:
                    # Connecting is already the retry: a broker that refuses it now is down.
                    raise self._unavailable(what, error) from error
                try:
                    action(channel)
                    return
                except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as error:
                    # The channel is still usable; the queue was deleted or the broker could not take it.
                    self._declared.clear()
                    failure: Exception = error
                except CONNECTION_ERRORS as error:
                    self._drop_publisher()
                    failure = error
                if now.last:
                    self._failed_attempt(what, now.number, self._describe(failure))
                    raise self._unavailable(what, failure) from failure
                raise Again(self._describe(failure)) from failure

            def on_retry(number: int, again: Again) -> None:
                self._failed_attempt(what, number, again.reason)

            self._publishing.run(attempt, on_retry)

    def _failed_attempt(self, what: str, number: int, reason: str) -> None:
        log.warning(
            "cannot %s on RabbitMQ at %s (attempt %d of %d): %s",
            what,
            self._address,
            number,
            self._publish_attempts,
            reason,
        )

    def _publishing_channel(self) -> BlockingChannel:
        if self._channel is None or not self._channel.is_open:
            self._drop_publisher()
            connection = pika.BlockingConnection(self._parameters)
            try:
                channel = connection.channel()
                channel.confirm_delivery()
            except BaseException:
                _close_quietly(connection)
                raise
            self._connection, self._channel = connection, channel
        return self._channel

    def _drop_publisher(self) -> None:
        if self._connection is not None:
            _close_quietly(self._connection)
        self._connection = self._channel = None
        # Declarations are cheap to repeat and a new connection may reach a broker that lost them.
        self._declared.clear()

    def _declare(self, channel: BlockingChannel, queue: str) -> None:
        if queue in self._declared:
            return
        channel.queue_declare(queue, durable=True)
        self._declared.add(queue)

    def _finished(self, stop: threading.Event) -> bool:
        return stop.is_set() or self._closed.is_set()

    def _pause(self, stop: threading.Event, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._finished(stop) and (remaining := deadline - time.monotonic()) > 0:
            stop.wait(min(remaining, POLL_SECONDS))

    def _describe(self, error: BaseException) -> str:
        # pika's repr names the failing step ("AMQPConnectorSocketConnectError: ...") where str is empty.
        text = repr(error)
        return text.replace(self._password, "***") if self._password else text

    def _unavailable(self, what: str, error: BaseException) -> Unavailable:
        return Unavailable(
            f"cannot {what}: RabbitMQ at {self._address} is unavailable ({self._describe(error)})"
        )


class _Consumer:
    """One consumer session on one connection; everything but ``settle`` runs on the consuming thread."""

    def __init__(
        self, connection: pika.BlockingConnection, drain_timeout: float, connected: Callable[[bool], None]
    ) -> None:
        self.connection = connection
        self.drain_timeout = drain_timeout
        self.connected = connected
        self.thread = threading.get_ident()
        self.started = False
        self.unsettled: set[int] = set()
        self.cancelled = False
        # A settlement that met the connection's end first; the reading loop reports it.
        self.failure: Exception | None = None

    def run(
        self,
        queue: str,
        handler: Callable[[Delivery], None],
        prefetch: int,
        finished: Callable[[], bool],
    ) -> None:
        channel = self.connection.channel()
        channel.queue_declare(queue, durable=True)
        channel.basic_qos(prefetch_count=prefetch)
        channel.add_on_cancel_callback(self._on_cancel)

        def on_message(
            channel: BlockingChannel, method: Basic.Deliver, properties: BasicProperties, body: bytes
        ) -> None:
            if not channel.is_open:
                # Read before the connection dropped; RabbitMQ delivers it again, so skip the work.
                return
            tag = method.delivery_tag
            assert tag is not None, "RabbitMQ numbers every delivery"
            self.unsettled.add(tag)
            try:
                handler(AmqpDelivery(self, channel, tag, body, redelivered=bool(method.redelivered)))
            except Exception as error:
                raise _HandlerFailed(error) from error

        consumer_tag = channel.basic_consume(queue, on_message, auto_ack=False)
        self.started = True
        self.connected(True)
        while not finished():
            self._read(channel, POLL_SECONDS)
            if self.cancelled:
                raise _ConsumerCancelled(f"RabbitMQ cancelled the consumer of '{queue}'")
        # Take no more messages, but let settlements of those already handed out reach the broker.
        channel.basic_cancel(consumer_tag)
        deadline = time.monotonic() + self.drain_timeout
        while self.unsettled and (remaining := deadline - time.monotonic()) > 0:
            self._read(channel, min(remaining, POLL_SECONDS))

    def _read(self, channel: BlockingChannel, seconds: float) -> None:
        """Dispatch deliveries and settlements for up to ``seconds``."""
        # A failed ack may have consumed pika's report of the close, and reading a closed connection
        # fails with a ValueError of pika's timer instead of a connection error.
        if not (self.connection.is_open and channel.is_open):
            raise self.failure or _ConnectionLost("the connection to RabbitMQ closed")
        self.connection.process_data_events(time_limit=seconds)

    def settle(self, channel: BlockingChannel, tag: int, requeue: bool | None) -> None:
        """Ack (``requeue`` None) or reject a delivery, from any thread."""
        if threading.get_ident() == self.thread:
            self._settle_here(channel, tag, requeue)
            return
        try:
            self.connection.add_callback_threadsafe(
                functools.partial(self._settle_here, channel, tag, requeue)
            )
        except CONNECTION_ERRORS:
            log.info("delivery %d settled after its connection closed; RabbitMQ will deliver it again", tag)

    def _settle_here(self, channel: BlockingChannel, tag: int, requeue: bool | None) -> None:
        self.unsettled.discard(tag)
        if not channel.is_open:
            log.info("delivery %d settled after its channel closed; RabbitMQ will deliver it again", tag)
            return
        try:
            if requeue is None:
                channel.basic_ack(tag)
            else:
                channel.basic_reject(tag, requeue=requeue)
        except CONNECTION_ERRORS as error:
            # The consuming loop meets the same failure on its next read and reconnects.
            log.info("settling delivery %d failed (%r); RabbitMQ will deliver it again", tag, error)
            self.failure = error

    def _on_cancel(self, frame: object) -> None:
        self.cancelled = True


class AmqpDelivery:
    """A message handed to an ``AmqpBus`` consumer; settled at most once."""

    def __init__(
        self, consumer: _Consumer, channel: BlockingChannel, tag: int, body: bytes, *, redelivered: bool
    ) -> None:
        self.body = body
        self.redelivered = redelivered
        self._consumer = consumer
        self._channel = channel
        self._tag = tag
        self._lock = threading.Lock()
        self._settled = False

    def ack(self) -> None:
        self._settle(None)

    def reject(self, *, requeue: bool) -> None:
        self._settle(requeue)

    def _settle(self, requeue: bool | None) -> None:
        # A second ack of one delivery tag is a protocol error that would close the whole channel.
        with self._lock:
            if self._settled:
                return
            self._settled = True
        self._consumer.settle(self._channel, self._tag, requeue)


def _close_quietly(connection: pika.BlockingConnection) -> None:
    try:
        if connection.is_open:
            connection.close()
    except CONNECTION_ERRORS as error:
        log.debug("closing a RabbitMQ connection failed: %r", error)
