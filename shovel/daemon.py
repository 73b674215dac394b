"""The shovel's main loop: consume the user's queue, carry out its commands, heartbeat and answer /healthz."""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter, ValidationError

from events.types import (
    EXPORT_UPLOADED,
    SHOVEL_COMMAND_ABANDONED,
    SHOVEL_HEARTBEAT,
    TRANSFER_PROGRESS,
    TRANSFER_VERIFIED,
    CommandAbandoned,
    ExportUploaded,
    FileProblem,
    Payload,
    TransferProgress,
    TransferVerified,
)
from shared.adapters.bus import Bus, Delivery
from shared.core.errors import InvalidInput
from shared.domain.messages import (
    Command,
    ExportCommand,
    ReceiptCommand,
    StackCommand,
    SyncCommand,
    VerifyCommand,
    queue_for,
)
from shovel.export import Exporter
from shovel.folders import check_home
from shovel.health import HealthServer
from shovel.heartbeat import Emit, Heartbeat, interval, version
from shovel.placing import PlacementError
from shovel.receipts import write_receipt
from shovel.settings import ShovelSettings
from shovel.sync import Stopping, Syncer
from shovel.verify import verify_target

log = logging.getLogger(__name__)

AnyCommand = SyncCommand | ExportCommand | StackCommand | ReceiptCommand | VerifyCommand
COMMANDS: TypeAdapter[AnyCommand] = TypeAdapter(Command)
RETRY_SECONDS = 5.0
"""Pause before a failed command goes back to the queue, so a lasting fault does not spin."""
STACK_TIMEOUT = 30.0
POLL_SECONDS = 0.1
"""How often a stack command waiting for the API looks whether the shovel is being stopped."""
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
        self.connected = False
        self.busy = 0
        self.last_sync: str | None = None
        self.lock = threading.Lock()
        self.taken: set[Future[None]] = set()
        """Sync and export commands under way, which a stack command waits for (see ``receive``)."""
        self.heartbeat = Heartbeat(settings, emit, self.version)
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
            if command is None:
                return
            if isinstance(command, StackCommand):
                # After the commands taken before it: the files sent before a stop are placed first.
                with self.lock:
                    earlier = list(self.taken)
                stacks.submit(self._handle, delivery, command, syncer, exporter, client, earlier)
                return
            future = commands.submit(self._handle, delivery, command, syncer, exporter, client, [])
            with self.lock:
                self.taken.add(future)
            future.add_done_callback(self._done)

        beats.start()
        try:
            self.consuming = True
            self.bus.consume(
                queue_for(settings.user),
                receive,
                prefetch=settings.prefetch,
                stop=self.stop,
                connected=self._connected,
            )
        finally:
            self.consuming = False
            self.ended.set()
            commands.shutdown(wait=True)
            stacks.shutdown(wait=True)
            files.shutdown(wait=True)
            syncer.close()
            beats.join(SHUTDOWN_SECONDS)
            self.heartbeat.beat("stopping", self.last_sync)
            client.close()
            health.close()
            log.info("shovel for %s (stack %s) stopped", settings.user, settings.stack_id)

    def _connected(self, up: bool) -> None:
        self.connected = up

    def _done(self, future: Future[None]) -> None:
        with self.lock:
            self.taken.discard(future)

    def health(self) -> tuple[int, dict[str, Any]]:
        """Ready while the consumer takes commands from the broker."""
        if not (self.consuming and self.connected):
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
        if not (self.consuming and self.connected):
            return "starting"
        return "syncing" if self.busy else "ready"

    def _beat_until_ended(self) -> None:
        while True:
            self.heartbeat.beat(self.status(), self.last_sync)
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

    def _accept(self, delivery: Delivery) -> AnyCommand | None:
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
        command: AnyCommand,
        syncer: Syncer,
        exporter: Exporter,
        client: httpx.Client,
        earlier: list[Future[None]],
    ) -> None:
        with self._working():
            try:
                if isinstance(command, SyncCommand):
                    progress = syncer.run(command)
                    self.emit(TRANSFER_PROGRESS, progress)
                    self.last_sync = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
                elif isinstance(command, ExportCommand):
                    self.emit(EXPORT_UPLOADED, exporter.run(command))
                elif isinstance(command, ReceiptCommand):
                    write_receipt(self.settings.home, command)
                elif isinstance(command, VerifyCommand):
                    report = verify_target(self.settings.home, command, stack_id=self.settings.stack_id)
                    self.emit(TRANSFER_VERIFIED, report)
                else:
                    wait(earlier)
                    if self.cancelled():
                        raise Stopping
                    self._stack(command, client)
            except Stopping:
                log.info("stopping: %s goes back to the queue", _describe(command))
                _settle(delivery, requeue=True)
            except (PlacementError, Refused) as error:
                log.warning("refused %s: %s", _describe(command), error.message)
                _settle(delivery, requeue=False)
            except Exception as error:
                log.exception("%s failed", _describe(command))
                self._failed(delivery, command, error)
            else:
                _settle(delivery, requeue=None)

    def _failed(self, delivery: Delivery, command: AnyCommand, error: Exception) -> None:
        """Put the command back at the end of the queue, counting the failure, or give it up at the
        last attempt: our own count, since a classic queue counts no deliveries and a quorum queue's
        would also count those of a shovel that stopped (which are no failures)."""
        failures = command.failures + 1
        if failures >= self.settings.attempts:
            self._give_up(command, failures, error)
            _settle(delivery, requeue=None)
            return
        self.pause(RETRY_SECONDS)
        again = command.model_copy(update={"failures": failures})
        try:
            # Published (and confirmed) before the ack: a crash in between delivers it twice, never
            # zero times, and every command is idempotent.
            self.bus.publish(queue_for(self.settings.user), again.model_dump_json().encode())
        except Exception as publish_error:
            log.warning(
                "could not put %s back on the queue (%s); it comes back as it was",
                _describe(command),
                publish_error,
            )
            _settle(delivery, requeue=True)
            return
        log.info(
            "%s goes back to the queue (failed %d of %d times)",
            _describe(command),
            failures,
            self.settings.attempts,
        )
        _settle(delivery, requeue=None)

    def _give_up(self, command: AnyCommand, failures: int, error: Exception) -> None:
        """Drop a command that failed every attempt, reporting its files (or its folder) failed with the
        reason, so that the transfer or export ends saying why instead of the command looping, and
        telling the platform, which keeps it as a dead letter for the operator."""
        reason = f"the shovel gave up after {failures} failed attempts: {_reason(error)}"
        log.error("%s dropped: %s", _describe(command), reason)
        for report in (self._failure_report(command, reason), self._abandoned(command, failures, reason)):
            if report is None:
                continue
            try:
                self.emit(*report)
            except Exception as report_error:
                # The platform's sweep resumes the transfer or export, then fails it, saying why; this
                # log line is then what is left of the dead letter.
                log.error("could not report that %s was given up: %s", _describe(command), report_error)

    def _abandoned(self, command: AnyCommand, failures: int, reason: str) -> tuple[str, Payload]:
        """The event of a command given up: what it was and why, not the command (its URLs, a token)."""
        if isinstance(command, SyncCommand | ReceiptCommand):
            subject = command.transfer_id
        elif isinstance(command, ExportCommand):
            subject = command.export_id
        elif isinstance(command, VerifyCommand):
            subject = command.check_id
        else:
            subject = command.stack_id
        abandoned = CommandAbandoned(
            user=command.user,
            stack_id=self.settings.stack_id,
            kind=command.kind,
            subject=subject,
            failures=failures,
            reason=reason,
        )
        return SHOVEL_COMMAND_ABANDONED, abandoned

    def _failure_report(self, command: AnyCommand, reason: str) -> tuple[str, Payload] | None:
        """The files of a sync command, the folder of an export, or the check of a verify command,
        reported failed with ``reason``."""
        if isinstance(command, SyncCommand):
            problems = [FileProblem(path=file.path, error=reason) for file in command.files]
            progress = TransferProgress(
                transfer_id=command.transfer_id,
                user=command.user,
                stack_id=self.settings.stack_id,
                errors=problems,
            )
            return TRANSFER_PROGRESS, progress
        if isinstance(command, ExportCommand):
            problem = FileProblem(path=command.folder, error=reason)
            return EXPORT_UPLOADED, ExportUploaded(
                export_id=command.export_id, user=command.user, errors=[problem]
            )
        if isinstance(command, VerifyCommand):
            return TRANSFER_VERIFIED, TransferVerified(
                check_id=command.check_id,
                transfer_id=command.transfer_id,
                user=command.user,
                stack_id=self.settings.stack_id,
                error=reason,
            )
        return None

    def _stack(self, command: StackCommand, client: httpx.Client) -> None:
        """Start or stop the stack through the API with the command's own token; what the API refuses
        is refused for good (an expired token, a stack gone), an outage is a failure tried again."""
        settings = self.settings
        if not settings.api_url:
            raise Refused("WORKBENCH_SHOVEL_API_URL is not set: stack commands cannot be carried out")
        url = f"{settings.api_url}/api/{command.kind}/{quote(command.stack_id, safe='')}"
        started = time.monotonic()
        answers: list[httpx.Response | Exception] = []
        answered = threading.Event()

        def call() -> None:
            try:
                answers.append(
                    client.get(
                        url, headers={"Authorization": f"Bearer {command.token}"}, timeout=STACK_TIMEOUT
                    )
                )
            except Exception as error:
                answers.append(error)
            finally:
                answered.set()

        # On a thread of its own: stopping its own stack stops this shovel, and a platform that waits
        # for its shovels to end before it answers would otherwise wait for this very call.
        threading.Thread(target=call, name="shovel-stack-call", daemon=True).start()
        own_stop = command.kind == "stop" and command.stack_id == settings.stack_id
        while not answered.wait(POLL_SECONDS):
            if own_stop and self.stop.is_set():
                log.info("stopping while the stop of its own stack %s is under way: done", command.stack_id)
                return
        answer = answers[0]
        if isinstance(answer, Exception):
            raise answer
        if answer.status_code >= 500 or answer.status_code == 429:
            raise Unreachable(f"the API answered HTTP {answer.status_code} {answer.text[:300]}")
        if not 200 <= answer.status_code < 300:
            raise Refused(f"the API answered HTTP {answer.status_code} {answer.text[:300]}")
        log.info(
            "%s of stack %s accepted (HTTP %d, %.1f s)",
            command.kind,
            command.stack_id,
            answer.status_code,
            time.monotonic() - started,
        )


class Refused(Exception):
    """A command that can never be carried out as it is: dropped, not tried again."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unreachable(Exception):
    """The API could not take a stack command now: tried again, counted."""


def _reason(error: Exception) -> str:
    """What went wrong, for the transfer's record: no query string, so no pre-signed URL's signature."""
    text = str(error) or type(error).__name__
    return re.sub(r"\?[^\s'\"]*", "?…", text)[:500]


def _describe(command: AnyCommand) -> str:
    if isinstance(command, SyncCommand):
        return f"sync command of transfer {command.transfer_id}"
    if isinstance(command, ExportCommand):
        return f"export {command.export_id}"
    if isinstance(command, ReceiptCommand):
        return f"receipt of transfer {command.transfer_id}"
    if isinstance(command, VerifyCommand):
        return f"verification {command.check_id} of transfer {command.transfer_id}"
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
