"""Heartbeats of a shovel: a signed event to the platform, which keeps the latest of each shovel
(``GET /api/shovels``). The platform, not each shovel, announces its actions to Clowder as extractors
(shared/domain/clowder_jobs.py)."""

from __future__ import annotations

import logging
import random
import shutil
from collections.abc import Callable
from importlib import metadata

from events.types import SHOVEL_HEARTBEAT, Payload, ShovelHeartbeat
from shovel.settings import ShovelSettings

log = logging.getLogger(__name__)

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
    """Sends one heartbeat; a failure is logged and never stops the shovel."""

    def __init__(self, settings: ShovelSettings, emit: Emit, shovel_version: str) -> None:
        self.settings = settings
        self.emit = emit
        self.version = shovel_version

    def beat(self, status: str, last_sync: str | None) -> None:
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
        try:
            self.emit(SHOVEL_HEARTBEAT, payload)
        except Exception as error:
            log.warning("could not send a heartbeat event: %s", error)


def _free_bytes(settings: ShovelSettings) -> int:
    try:
        return shutil.disk_usage(settings.home).free
    except OSError:
        return 0
