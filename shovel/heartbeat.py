"""Heartbeats of a shovel: an event and a broadcast on RabbitMQ (the platform, not each shovel, announces
its actions to Clowder as extractors: shared/domain/clowder_jobs.py)."""

from __future__ import annotations

import logging
import random
import shutil
from collections.abc import Callable
from importlib import metadata

from events.codec import new_event, to_amqp
from events.types import SHOVEL_HEARTBEAT, Payload, ShovelHeartbeat
from shared.adapters.bus import Bus
from shovel.settings import ShovelSettings

log = logging.getLogger(__name__)

HEARTBEAT_EXCHANGE = "workbench.heartbeats"
Emit = Callable[[str, Payload], None]


def version() -> str:
    try:
        return metadata.version("workbench-functions")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def interval(settings: ShovelSettings, chance: random.Random) -> float:
    """The next wait: the configured interval stretched or shrunk by up to the jitter fraction."""
    spread = settings.heartbeat_jitter
    return settings.heartbeat_seconds * chance.uniform(1 - spread, 1 + spread)


class Heartbeat:
    """Sends one heartbeat on every channel; a failing channel is logged and never stops the others."""

    def __init__(self, settings: ShovelSettings, bus: Bus, emit: Emit, shovel_version: str) -> None:
        self.settings = settings
        self.bus = bus
        self.emit = emit
        self.version = shovel_version

    def beat(self, status: str, last_sync: str | None) -> bool:
        """Send a heartbeat; returns whether the broker confirmed it."""
        settings = self.settings
        payload = ShovelHeartbeat.model_validate(
            {
                "user": settings.user,
                "stack_id": settings.stack_id,
                "version": self.version,
                "status": status,
                "free_bytes": _free_bytes(settings),
                "last_sync": last_sync,
            }
        )
        confirmed = False
        try:
            event = new_event(SHOVEL_HEARTBEAT, payload, source=settings.source, secret=settings.key)
            _, body = to_amqp(event)
            self.bus.broadcast(HEARTBEAT_EXCHANGE, body)
            confirmed = True
        except Exception as error:
            log.warning("could not broadcast a heartbeat to %s: %s", HEARTBEAT_EXCHANGE, error)
        # Last: an events endpoint that is down may take its whole timeout to say so.
        try:
            self.emit(SHOVEL_HEARTBEAT, payload)
        except Exception as error:
            log.warning("could not send a heartbeat event: %s", error)
        return confirmed


def _free_bytes(settings: ShovelSettings) -> int:
    try:
        return shutil.disk_usage(settings.home).free
    except OSError:
        return 0
