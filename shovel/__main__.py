"""``python -m shovel`` (and ``workbench shovel``): a shovel in a process of its own, on RabbitMQ."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from types import FrameType

from shared.core.errors import WorkbenchError
from shovel.daemon import run
from shovel.settings import ShovelSettings

log = logging.getLogger("shovel")


def main(environ: Mapping[str, str] | None = None) -> int:
    """Run until SIGTERM or SIGINT; 1 when the settings are incomplete."""
    settings = ShovelSettings.from_env(os.environ if environ is None else environ)
    if not settings.amqp_url:
        print(
            "shovel: WORKBENCH_AMQP_URL is not set. A shovel in a process of its own reaches the platform "
            "through RabbitMQ; with in-process queues (no RabbitMQ) the platform starts its shovels itself.",
            file=sys.stderr,
        )
        return 1
    from shared.adapters.bus.amqp import AmqpBus

    bus = AmqpBus(settings.amqp_url, name=f"shovel {settings.user}/{settings.stack_id}")
    stop = threading.Event()

    def request_stop(number: int, frame: FrameType | None) -> None:
        log.info("%s received: stopping", signal.Signals(number).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        run(settings=settings, bus=bus, stop=stop)
    finally:
        bus.close()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        sys.exit(main())
    except WorkbenchError as error:
        print(f"shovel: {error.message}", file=sys.stderr)
        sys.exit(1)
