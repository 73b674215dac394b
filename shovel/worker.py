"""What every kind of command work in the shovel shares: its settings, HTTP client, pool and stop signal."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor

import httpx

from shovel.settings import ShovelSettings


class CommandWorker:
    """Carries out commands of one kind, ``settings.parallel`` files at a time across commands."""

    def __init__(
        self,
        settings: ShovelSettings,
        *,
        client: httpx.Client,
        pool: Executor,
        cancelled: Callable[[], bool],
        pause: Callable[[float], object],
    ) -> None:
        self.settings = settings
        self.client = client
        self.pool = pool
        self.cancelled = cancelled
        self.pause = pause
