"""The shovel's main loop: consume the user's queue, carry out its commands, heartbeat and answer /healthz."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter, ValidationError

from events.types import EXPORT_UPLOADED, SHOVEL_HEARTBEAT, TRANSFER_PROGRESS, Payload
from shared.adapters.bus import Bus, Delivery
from shared.core.errors import InvalidInput
from shared.domain.messages import Command, ExportCommand, StackCommand, SyncCommand, queue_for
from shovel.export import Exporter
from shovel.folders import check_home
from shovel.health import HealthServer
from shovel.heartbeat import Emit, Heartbeat, interval, version
from shovel.placing import PlacementError
from shovel.settings import ShovelSettings
from shovel.sync import Stopping, Syncer

log = logging.getLogger(__name__)

COMMANDS: TypeAdapter[SyncCommand | ExportCommand | StackCommand] = TypeAdapter(Command)
RETRY_SECONDS = 5.0
"""Pause before a failed command goes back to the queue, so a lasting fault does not spin."""
STACK_TIMEOUT = 30.0
SHUTDOWN_SECONDS = 10.0


def run(*, settings: ShovelSettings, bus: Bus, stop: threading.Event, emit: Emit | None = None) -> None:
    """Serve until ``stop`` is set: consume the user's queue, heartbeat, answer /healthz.

    ``emit(type, payload)`` sends an outbound event; by default a signed CloudEvent POSTed to
    ``settings.events_url`` (only logged when that is unset).
    """
    Shovel(settings=settings, bus=bus, stop=stop, emit=emit or event_sender(settings)).run()


def event_sender(settings: ShovelSettings) -> Emit:
    """Events signed with the shovel's key and POSTed to the events URL; a 5xx or no answer raises."""
    from events.codec import new_event
    from events.errors import DeliveryError
    from events.producer import send

    def emit(event_type: str, payload: Payload) -> None:
        event = new_event(event_type, payload, source=settings.source, secret=settings.key)
        if settings.events_url is None:
            level = logging.DEBUG if event_type == SHOVEL_HEARTBEAT else logging.INFO
            log.log(
                level,
                "event %s (not sent: no WORKBENCH_EVENTS_URL): %s",
                event_type,
                event.data[:500].decode(),
            )
            return
        status = send(event, settings.events_url)
        if status >= 500 or status == 429:
            raise DeliveryError(f"{settings.events_url} answered HTTP {status} to an event {event_type}")
        if not 200 <= status < 300:
            # The receiver will never take it (a bad signature, an unknown transfer): retrying cannot help.
            log.error("%s refused an event %s with HTTP %d", settings.events_url, event_type, status)

    return emit


class Shovel:
    """One run of the daemon; the state /healthz and the heartbeats report lives here, not in globals."""

    def __init__(self, *, settings: ShovelSettings, bus: Bus, stop: threading.Event, emit: Emit) -> None:
        self.settings = settings
        self.bus = bus
        self.stop = stop
        self.emit = emit
        self.version = version()
        self.ended = threading.Event()
        self.consuming = False
        self.confirmed = False
        self.busy = 0
        self.last_sync: str | None = None
        self.lock = threading.Lock()
        self.heartbeat = Heartbeat(settings, bus, emit, self.version)
        self.chance = random.SystemRandom()

    def cancelled(self) -> bool:
        return self.stop.is_set() or self.ended.is_set()

    def pause(self, seconds: float) -> None:
        self.stop.wait(seconds)

    def run(self) -> None:
        settings = self.settings
        try:
            check_home(settings.home)
        except (PlacementError, OSError) as error:
            message = error.message if isinstance(error, PlacementError) else str(error)
            raise InvalidInput(
                f"cannot use the home {settings.home}: {message}", field="WORKBENCH_SHOVEL_HOME"
            ) from None
        health = HealthServer(settings.health_host, settings.health_port, self.health)
        health.start()
        log.info(
            "shovel for %s (stack %s) on %s; health on %s:%d",
            settings.user,
            settings.stack_id,
            settings.home,
            settings.health_host,
            health.port,
        )
        beats = threading.Thread(target=self._beat_until_ended, name="shovel-heartbeat", daemon=True)
        client = httpx.Client(follow_redirects=False)
        files = ThreadPoolExecutor(settings.parallel, thread_name_prefix="shovel-file")
        # The bus hands out at most ``prefetch`` unsettled commands, so this pool never queues; running
        # them here keeps the consumer's connection free for its own heartbeats during long transfers.
        commands = ThreadPoolExecutor(settings.prefetch, thread_name_prefix="shovel-command")
        # One at a time, in the order they came: a start followed by a stop must not end up started.
        stacks = ThreadPoolExecutor(1, thread_name_prefix="shovel-stack")
        # Downloads of staged files go over connections of their own, unless the environment names a
        # proxy for them: then through the client, which honours it.
        import urllib.request

        direct = not {"http", "https"} & set(urllib.request.getproxies())
        syncer = Syncer(
            settings, client=client, pool=files, cancelled=self.cancelled, pause=self.pause, direct=direct
        )
        exporter = Exporter(settings, client=client, pool=files, cancelled=self.cancelled, pause=self.pause)

        def receive(delivery: Delivery) -> None:
            command = self._accept(delivery)
            if command is not None:
                lane = stacks if isinstance(command, StackCommand) else commands
                lane.submit(self._handle, delivery, command, syncer, exporter, client)

        beats.start()
        try:
            self.consuming = True
            self.bus.consume(queue_for(settings.user), receive, prefetch=settings.prefetch, stop=self.stop)
        finally:
            self.consuming = False
            self.ended.set()
            commands.shutdown(wait=True)
            stacks.shutdown(wait=True)
            files.shutdown(wait=True)
            beats.join(SHUTDOWN_SECONDS)
            self.heartbeat.beat("stopping", self.last_sync)
            client.close()
            health.close()
            log.info("shovel for %s (stack %s) stopped", settings.user, settings.stack_id)

    def health(self) -> tuple[int, dict[str, Any]]:
        """Ready once the consumer runs and the broker confirmed the latest heartbeat."""
        if not (self.consuming and self.confirmed):
            return 503, {"status": "connecting"}
        return 200, {
            "status": "ready",
            "user": self.settings.user,
            "stack_id": self.settings.stack_id,
            "version": self.version,
            "busy": self.busy,
            "last_sync": self.last_sync,
        }

    def status(self) -> str:
        if not self.consuming:
            return "starting"
        return "syncing" if self.busy else "ready"

    def _beat_until_ended(self) -> None:
        while True:
            self.confirmed = self.heartbeat.beat(self.status(), self.last_sync)
            if self.ended.wait(interval(self.settings, self.chance)):
                return

    @contextmanager
    def _working(self) -> Iterator[None]:
        with self.lock:
            self.busy += 1
        try:
            yield
        finally:
            with self.lock:
                self.busy -= 1

    def _accept(self, delivery: Delivery) -> SyncCommand | ExportCommand | StackCommand | None:
        """The delivery's command, or None after rejecting a message that is none or not this user's."""
        try:
            command = COMMANDS.validate_json(delivery.body)
        except ValidationError as error:
            problem = error.errors()[0]
            where = ".".join(str(part) for part in problem["loc"]) or "body"
            log.warning("refused a message that is no command (%s: %s)", where, problem["msg"])
            _settle(delivery, requeue=False)
            return None
        if command.user != self.settings.user:
            log.warning(
                "refused a %s command for user %r: this shovel serves %r",
                command.kind,
                command.user,
                self.settings.user,
            )
            _settle(delivery, requeue=False)
            return None
        return command

    def _handle(
        self,
        delivery: Delivery,
        command: SyncCommand | ExportCommand | StackCommand,
        syncer: Syncer,
        exporter: Exporter,
        client: httpx.Client,
    ) -> None:
        with self._working():
            try:
                if isinstance(command, SyncCommand):
                    progress = syncer.run(command)
                    self.emit(TRANSFER_PROGRESS, progress)
                    self.last_sync = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
                elif isinstance(command, ExportCommand):
                    self.emit(EXPORT_UPLOADED, exporter.run(command))
                else:
                    self._stack(command, client)
            except Stopping:
                log.info("stopping: %s goes back to the queue", _describe(command))
                _settle(delivery, requeue=True)
            except PlacementError as error:
                log.warning("refused %s: %s", _describe(command), error.message)
                _settle(delivery, requeue=False)
            except Exception:
                log.exception("%s failed; it goes back to the queue", _describe(command))
                self.pause(RETRY_SECONDS)
                _settle(delivery, requeue=True)
            else:
                _settle(delivery, requeue=None)

    def _stack(self, command: StackCommand, client: httpx.Client) -> None:
        settings = self.settings
        if not settings.api_url or not settings.api_token:
            log.error(
                "cannot %s stack %s: WORKBENCH_SHOVEL_API_URL and WORKBENCH_SHOVEL_API_TOKEN are not both set",
                command.kind,
                command.stack_id,
            )
            return
        url = f"{settings.api_url}/api/{command.kind}/{quote(command.stack_id, safe='')}"
        started = time.monotonic()
        try:
            response = client.get(
                url, headers={"Authorization": f"Bearer {settings.api_token}"}, timeout=STACK_TIMEOUT
            )
        except httpx.HTTPError as error:
            log.warning("could not %s stack %s: %s", command.kind, command.stack_id, error)
            return
        if 200 <= response.status_code < 300:
            log.info(
                "%s of stack %s accepted (HTTP %d, %.1f s)",
                command.kind,
                command.stack_id,
                response.status_code,
                time.monotonic() - started,
            )
        else:
            log.warning(
                "%s of stack %s refused: HTTP %d %s",
                command.kind,
                command.stack_id,
                response.status_code,
                response.text[:300],
            )


def _describe(command: SyncCommand | ExportCommand | StackCommand) -> str:
    if isinstance(command, SyncCommand):
        return f"sync command of transfer {command.transfer_id}"
    if isinstance(command, ExportCommand):
        return f"export {command.export_id}"
    return f"{command.kind} of stack {command.stack_id}"


def _settle(delivery: Delivery, *, requeue: bool | None) -> None:
    """Ack (``requeue`` None) or reject; a bus that is gone already gives the message back by itself."""
    try:
        if requeue is None:
            delivery.ack()
        else:
            delivery.reject(requeue=requeue)
    except Exception as error:
        log.warning("could not settle a delivery (%s); the broker will deliver it again", error)
