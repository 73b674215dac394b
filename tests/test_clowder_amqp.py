"""Clowder's RabbitMQ client publishing on the test RabbitMQ: a lost connection is replaced once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pika
import pytest

from shared.adapters.clowder.amqp import HEARTBEAT_EXCHANGE, ClowderQueues
from shared.core.errors import Unavailable
from tests.test_shovel import AMQP_URL, require_rabbitmq


class DroppingHeartbeats:
    """Heartbeats whose first ``drops`` readings fail as a connection lost while publishing would."""

    def __init__(self, bodies: list[bytes], drops: int) -> None:
        self.bodies, self.drops, self.readings = bodies, drops, 0

    def __iter__(self) -> Iterator[bytes]:
        self.readings += 1
        if self.readings <= self.drops:
            raise ConnectionResetError("connection reset by peer")
        return iter(self.bodies)


@pytest.fixture
def heard() -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    """A channel to the test RabbitMQ, where the heartbeat exchange exists."""
    require_rabbitmq()
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        channel.exchange_declare(HEARTBEAT_EXCHANGE, exchange_type="fanout", durable=True)
        yield channel
    finally:
        connection.close()


def received(
    channel: pika.adapters.blocking_connection.BlockingChannel, queue: str, marker: bytes
) -> list[bytes]:
    bodies = []
    while True:
        method, _, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return bodies
        if marker in body:  # other tests announce their extractors on the same exchange
            bodies.append(body)


def test_a_lost_connection_is_replaced_once(heard: pika.adapters.blocking_connection.BlockingChannel) -> None:
    queue = heard.queue_declare("", exclusive=True).method.queue
    heard.queue_bind(queue, HEARTBEAT_EXCHANGE)
    marker = uuid.uuid4().hex.encode()
    queues = ClowderQueues(AMQP_URL)
    try:
        once = DroppingHeartbeats([marker + b" first"], drops=1)
        queues.announce(once)
        assert once.readings == 2

        twice = DroppingHeartbeats([marker + b" second"], drops=2)
        with pytest.raises(Unavailable, match="could not announce the extractors: ConnectionResetError"):
            queues.announce(twice)
        assert twice.readings == 2

        queues.announce([marker + b" third"])  # a fresh connection again after giving up
    finally:
        queues.close()
    assert received(heard, queue, marker) == [marker + b" first", marker + b" third"]
