"""Contract tests of the messaging port: MemoryBus in-process and AmqpBus on the real RabbitMQ."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from shared.adapters.bus import Delivery
from shared.adapters.bus.memory import MemoryBus
from shared.core.errors import Unavailable
from tests.conftest import need

AMQP_URL = os.environ.get("WORKBENCH_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
# Every wait in this module gives up after this long, so a broken bus fails instead of hanging.
WAIT = 15.0
# How long "nothing more arrives" is watched for.
QUIET = 0.5


class Backend:
    """A bus implementation under test, with unique names and a look at the broker's queues."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.prefix = f"test.bus.{uuid.uuid4().hex[:10]}"
        self.queues: list[str] = []
        self.buses: list[Any] = []

    def make_bus(self, *, drain_timeout: float = 0, name: str | None = None) -> Any:
        """A client of this test's broker: a new RabbitMQ connection, or the one in-process bus."""
        if self.kind == "memory":
            if not self.buses:
                self.buses.append(MemoryBus(drain_timeout=drain_timeout))
            return self.buses[0]
        from shared.adapters.bus.amqp import AmqpBus

        bus = AmqpBus(AMQP_URL, drain_timeout=drain_timeout, name=name or self.prefix)
        self.buses.append(bus)
        return bus

    def queue(self) -> str:
        name = f"{self.prefix}.q{len(self.queues)}"
        self.queues.append(name)
        return name

    def ready(self, queue: str) -> int:
        """Messages waiting in ``queue`` (not handed to a consumer)."""
        if self.kind == "memory":
            count: int = self.buses[0].message_count(queue)
            return count
        with raw_channel() as channel:
            return int(channel.queue_declare(queue, passive=True).method.message_count)

    def cleanup(self) -> None:
        for bus in self.buses:
            bus.close()
        if self.kind == "amqp":
            with raw_channel() as channel:
                for queue in self.queues:
                    channel.queue_delete(queue)


@contextmanager
def raw_channel() -> Iterator[Any]:
    """A plain pika channel on a fresh connection, to look at the broker behind the adapter's back."""
    import pika

    parameters = pika.URLParameters(AMQP_URL)
    parameters.socket_timeout = 3
    connection = pika.BlockingConnection(parameters)
    try:
        yield connection.channel()
    finally:
        if connection.is_open:
            connection.close()


def require_rabbitmq() -> None:
    try:
        with raw_channel():
            pass
    except Exception as error:
        need("RabbitMQ", repr(error))


@pytest.fixture(params=["memory", "amqp"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "amqp":
        require_rabbitmq()
    instance = Backend(request.param)
    yield instance
    instance.cleanup()


@pytest.fixture
def amqp() -> Iterator[Backend]:
    require_rabbitmq()
    instance = Backend("amqp")
    yield instance
    instance.cleanup()


class Recorder:
    """A handler that records deliveries and, unless told otherwise, acks each after ``delay`` seconds."""

    def __init__(self, *, ack: bool = True, delay: float = 0.0) -> None:
        self.ack = ack
        self.delay = delay
        self.deliveries: list[Delivery] = []
        self.condition = threading.Condition()

    def __call__(self, delivery: Delivery) -> None:
        with self.condition:
            self.deliveries.append(delivery)
            self.condition.notify_all()
        if self.delay:
            time.sleep(self.delay)
        if self.ack:
            delivery.ack()

    def wait_for(self, count: int) -> list[Delivery]:
        with self.condition:
            arrived = self.condition.wait_for(lambda: len(self.deliveries) >= count, WAIT)
            assert arrived, f"{len(self.deliveries)} of {count} messages arrived within {WAIT} s"
            return list(self.deliveries)

    def count_after(self, seconds: float) -> int:
        time.sleep(seconds)
        with self.condition:
            return len(self.deliveries)

    @property
    def bodies(self) -> list[bytes]:
        with self.condition:
            return [delivery.body for delivery in self.deliveries]


class Running:
    """``bus.consume`` on a thread of its own; ``finish`` stops it and re-raises what it raised."""

    def __init__(self, bus: Any, queue: str, handler: Callable[[Delivery], None], prefetch: int) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.connected: list[bool] = []
        """What the consumer said of its connection, in order."""
        self.thread = threading.Thread(target=self._run, args=(bus, queue, handler, prefetch), daemon=True)
        self.thread.start()

    def _run(self, bus: Any, queue: str, handler: Callable[[Delivery], None], prefetch: int) -> None:
        try:
            bus.consume(queue, handler, prefetch=prefetch, stop=self.stop, connected=self.connected.append)
        except BaseException as error:
            self.error = error

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), f"the consumer did not stop within {WAIT} s"
        if self.error is not None:
            raise self.error


@contextmanager
def consuming(
    bus: Any, queue: str, handler: Callable[[Delivery], None], prefetch: int = 10
) -> Iterator[Running]:
    running = Running(bus, queue, handler, prefetch)
    try:
        yield running
    finally:
        running.finish()


def nothing_arrives(bus: Any, queue: str) -> bool:
    recorder = Recorder()
    with consuming(bus, queue, recorder):
        return recorder.count_after(QUIET) == 0


def test_published_messages_reach_a_consumer_and_acked_ones_are_gone(backend: Backend) -> None:
    bus = backend.make_bus()
    queue = backend.queue()
    for body in (b"one", b"two", b"three"):
        bus.publish(queue, body)
    recorder = Recorder()
    with consuming(bus, queue, recorder):
        deliveries = recorder.wait_for(3)
        # Settling twice is ignored rather than a protocol error that would kill the channel.
        deliveries[0].ack()
        deliveries[0].reject(requeue=True)
        bus.publish(queue, b"four")
        recorder.wait_for(4)
    assert recorder.bodies == [b"one", b"two", b"three", b"four"]
    assert not any(delivery.redelivered for delivery in recorder.deliveries)
    assert backend.ready(queue) == 0
    assert nothing_arrives(bus, queue)


def test_a_consumer_that_stops_without_acking_gives_its_messages_back(backend: Backend) -> None:
    bus = backend.make_bus()
    queue = backend.queue()
    bus.publish(queue, b"first")
    bus.publish(queue, b"second")
    careless = Recorder(ack=False)
    with consuming(bus, queue, careless):
        careless.wait_for(2)
    assert backend.ready(queue) == 2
    recorder = Recorder()
    with consuming(backend.make_bus(), queue, recorder):
        recorder.wait_for(2)
    assert recorder.bodies == [b"first", b"second"]
    assert all(delivery.redelivered for delivery in recorder.deliveries)
    assert backend.ready(queue) == 0


def test_prefetch_bounds_the_unsettled_deliveries(backend: Backend) -> None:
    bus = backend.make_bus()
    queue = backend.queue()
    for number in range(5):
        bus.publish(queue, str(number).encode())
    recorder = Recorder(ack=False)
    with consuming(bus, queue, recorder, prefetch=2):
        first = recorder.wait_for(2)
        assert recorder.count_after(QUIET) == 2
        # Acks from this thread, not the consuming one, as the shovel's workers send them.
        for delivery in first:
            delivery.ack()
        recorder.wait_for(4)
        assert recorder.count_after(QUIET) == 4
        for delivery in recorder.deliveries[2:]:
            delivery.ack()
        recorder.wait_for(5)[4].ack()
    assert recorder.bodies == [b"0", b"1", b"2", b"3", b"4"]
    assert backend.ready(queue) == 0


def test_two_consumers_share_one_queue(backend: Backend) -> None:
    queue = backend.queue()
    publisher = backend.make_bus()
    sent = [f"m{number}".encode() for number in range(20)]
    for body in sent:
        publisher.publish(queue, body)
    left, right = Recorder(delay=0.02), Recorder(delay=0.02)
    with (
        consuming(backend.make_bus(), queue, left, prefetch=1),
        consuming(backend.make_bus(), queue, right, prefetch=1),
    ):
        deadline = time.monotonic() + WAIT
        while len(left.bodies) + len(right.bodies) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert sorted(left.bodies + right.bodies) == sorted(sent), "each message goes to exactly one consumer"
    assert left.bodies and right.bodies, "both consumers got a share"


def test_reject_drops_or_puts_the_message_back(backend: Backend) -> None:
    bus = backend.make_bus()
    queue = backend.queue()
    bus.publish(queue, b"drop")
    bus.publish(queue, b"again")
    seen: list[tuple[bytes, bool]] = []

    def handler(delivery: Delivery) -> None:
        seen.append((delivery.body, delivery.redelivered))
        if delivery.body == b"drop":
            delivery.reject(requeue=False)
        elif not delivery.redelivered:
            delivery.reject(requeue=True)
        else:
            delivery.ack()

    recorder = Recorder(ack=False)

    def record(delivery: Delivery) -> None:
        handler(delivery)
        recorder(delivery)

    with consuming(bus, queue, record):
        recorder.wait_for(3)
        assert recorder.count_after(QUIET) == 3
    assert seen == [(b"drop", False), (b"again", False), (b"again", True)]
    assert backend.ready(queue) == 0


def test_a_queue_keeps_its_order(backend: Backend) -> None:
    bus = backend.make_bus()
    queue = backend.queue()
    sent = [f"{number:03}".encode() for number in range(50)]
    for body in sent:
        bus.publish(queue, body)
    recorder = Recorder()
    with consuming(bus, queue, recorder, prefetch=10):
        recorder.wait_for(len(sent))
    assert recorder.bodies == sent


def test_a_consumer_says_once_it_takes_messages(backend: Backend) -> None:
    bus = backend.make_bus()
    queue = backend.queue()
    recorder = Recorder()
    with consuming(bus, queue, recorder) as running:
        deadline = time.monotonic() + WAIT
        while not running.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert running.connected == [True]
        bus.publish(queue, b"after")
        assert [delivery.body for delivery in recorder.wait_for(1)] == [b"after"]


def test_a_stopping_consumer_waits_for_settlements_under_way(backend: Backend) -> None:
    bus = backend.make_bus(drain_timeout=WAIT)
    queue = backend.queue()
    bus.publish(queue, b"slow work")
    workers: list[threading.Thread] = []

    def hand_to_worker(delivery: Delivery) -> None:
        def work() -> None:
            time.sleep(0.5)
            delivery.ack()

        worker = threading.Thread(target=work)
        workers.append(worker)
        worker.start()

    running = Running(bus, queue, hand_to_worker, prefetch=1)
    deadline = time.monotonic() + WAIT
    while not workers and time.monotonic() < deadline:
        time.sleep(0.02)
    running.finish()
    for worker in workers:
        worker.join(WAIT)
    assert len(workers) == 1
    assert backend.ready(queue) == 0
    assert nothing_arrives(bus, queue)


def test_a_failing_handler_ends_the_consumer_and_its_message_returns(backend: Backend) -> None:
    bus = backend.make_bus()
    queue = backend.queue()
    bus.publish(queue, b"poison")

    def fail(delivery: Delivery) -> None:
        raise RuntimeError("handler broke")

    running = Running(bus, queue, fail, prefetch=1)
    running.thread.join(WAIT)
    assert not running.thread.is_alive()
    assert isinstance(running.error, RuntimeError)
    recorder = Recorder()
    with consuming(bus, queue, recorder):
        recorder.wait_for(1)
    assert [(delivery.body, delivery.redelivered) for delivery in recorder.deliveries] == [(b"poison", True)]


def test_a_closed_bus_ends_its_consumers_and_refuses_to_publish(backend: Backend) -> None:
    bus = backend.make_bus()
    queue = backend.queue()
    running = Running(bus, queue, Recorder(), prefetch=1)
    time.sleep(0.3)
    bus.close()
    running.thread.join(WAIT)
    assert not running.thread.is_alive()
    with pytest.raises(Unavailable):
        bus.publish(queue, b"too late")


def close_connections(name: str) -> int:
    """Make RabbitMQ close the connections named ``name`` (only ours: other tests may share the broker)."""
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "--no-table-headers", "pid", "client_properties"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=True,
    )
    closed = 0
    for line in listing.stdout.splitlines():
        if f'{{"connection_name","{name}"}}' in line:
            pid = line.split("\t", 1)[0]
            subprocess.run(
                ["rabbitmqctl", "close_connection", pid, "test"],
                capture_output=True,
                timeout=WAIT,
                check=True,
            )
            closed += 1
    return closed


@pytest.fixture
def rabbitmqctl() -> None:
    try:
        subprocess.run(
            ["rabbitmqctl", "-q", "list_connections", "pid"], capture_output=True, timeout=WAIT, check=True
        )
    except (OSError, subprocess.SubprocessError) as error:
        need("rabbitmqctl", f"{shutil.which('rabbitmqctl') or 'not on PATH'}: {error!r}")


def test_a_forced_close_loses_nothing_and_redelivers_nothing_acked(
    amqp: Backend, rabbitmqctl: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="shared.adapters.bus.amqp")
    name = f"{amqp.prefix}.forced"
    bus = amqp.make_bus(name=name)
    queue = amqp.queue()
    total = 130
    for number in range(30):
        bus.publish(queue, str(number).encode())
    acked: set[int] = set()
    deliveries: list[tuple[int, bool, bool]] = []  # (id, redelivered, acked before this delivery)
    received = threading.Condition()
    closed: list[int] = []

    def handler(delivery: Delivery) -> None:
        number = int(delivery.body)
        with received:
            deliveries.append((number, delivery.redelivered, number in acked))
        if number == 10 and not closed:
            # Closed while this message is in hand: its ack below goes nowhere, so it must come back.
            closed.append(close_connections(name))
            delivery.ack()
        else:
            delivery.ack()
            with received:
                acked.add(number)
        with received:
            received.notify_all()

    publish_errors: list[BaseException] = []

    def publish_the_rest() -> None:
        try:
            for number in range(30, total):
                bus.publish(queue, str(number).encode())
                time.sleep(0.01)
        except BaseException as error:
            publish_errors.append(error)

    publisher = threading.Thread(target=publish_the_rest, daemon=True)
    with consuming(bus, queue, handler, prefetch=5) as running:
        publisher.start()
        with received:
            received.wait_for(lambda: len(acked) == total, 2 * WAIT)
        publisher.join(WAIT)
    assert not publish_errors
    assert closed and closed[0] >= 2, "the consuming and the publishing connection were closed"
    assert acked == set(range(total)), f"lost: {sorted(set(range(total)) - acked)}"
    assert not [entry for entry in deliveries if entry[1] and entry[2]], "an acked message was redelivered"
    assert (10, True, False) in deliveries, "the message in hand at the close came back"
    publish_retries = sum("attempt" in record.getMessage() for record in caplog.records)
    duplicates = sum(1 for _, redelivered, was_acked in deliveries if was_acked and not redelivered)
    # A publish whose confirm was lost with the connection is sent again: the only permitted duplicate.
    assert duplicates <= publish_retries
    assert any("lost the RabbitMQ connection" in record.getMessage() for record in caplog.records)
    assert running.connected == [True, False, True], "the consumer told of its lost and new connection"
    assert amqp.ready(queue) == 0


def test_a_deleted_queue_is_declared_again(amqp: Backend, caplog: pytest.LogCaptureFixture) -> None:
    bus = amqp.make_bus()
    queue = amqp.queue()
    bus.publish(queue, b"before")
    recorder = Recorder()
    with consuming(bus, queue, recorder):
        recorder.wait_for(1)
        with raw_channel() as channel:
            channel.queue_delete(queue)
        bus.publish(queue, b"after")
        recorder.wait_for(2)
    assert recorder.bodies == [b"before", b"after"]
    # The message came back unroutable once; the retry, at once, declared the queue again.
    retries = [record.getMessage() for record in caplog.records if "(attempt" in record.getMessage()]
    assert (
        len(retries) == 1 and f"publish to queue '{queue}'" in retries[0] and "(attempt 1 of 3)" in retries[0]
    )


def test_publishing_to_an_unreachable_broker_is_unavailable_without_the_password() -> None:
    from shared.adapters.bus.amqp import AmqpBus

    bus = AmqpBus("amqp://guest:do-not-leak@127.0.0.1:1/", connect_timeout=2)
    started = time.monotonic()
    with pytest.raises(Unavailable) as caught:
        bus.publish("workbench.shovel.alice", b"{}")
    assert time.monotonic() - started < 5
    assert "127.0.0.1:1" in str(caught.value)
    assert "do-not-leak" not in str(caught.value)
    assert "do-not-leak" not in repr(caught.value.__cause__)
    bus.close()


def test_a_consumer_of_an_unreachable_broker_keeps_trying_until_stopped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from shared.adapters.bus.amqp import AmqpBus

    bus = AmqpBus("amqp://guest:do-not-leak@127.0.0.1:1/", connect_timeout=2)
    running = Running(bus, "workbench.shovel.alice", Recorder(), prefetch=1)
    time.sleep(1.2)
    started = time.monotonic()
    running.finish()
    assert time.monotonic() - started < 2
    messages = [record.getMessage() for record in caplog.records]
    assert any("127.0.0.1:1" in message for message in messages)
    assert not any("do-not-leak" in message for message in messages)
    # The waits double from half a second (each between half and the whole of it).
    waits = [float(found) for found in re.findall(r"retrying in ([0-9.]+) s", "\n".join(messages))]
    assert len(waits) >= 2 and 0.2 <= waits[0] <= 0.5 and 0.5 <= waits[1] <= 1.0, waits


def test_messages_and_queues_are_durable(amqp: Backend) -> None:
    import pika.exceptions

    bus = amqp.make_bus()
    queue = amqp.queue()
    bus.publish(queue, b"kept")
    with raw_channel() as channel:
        _, properties, body = channel.basic_get(queue, auto_ack=True)
        assert body == b"kept"
        assert properties is not None and properties.delivery_mode == 2
    # Declaring an existing queue as transient fails exactly when it is durable.
    with raw_channel() as channel, pytest.raises(pika.exceptions.ChannelClosedByBroker, match="durable"):
        channel.queue_declare(queue, durable=False)
