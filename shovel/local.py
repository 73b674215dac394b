"""Shovels beside the local platform's stacks: threads on the in-process bus, or processes with RabbitMQ."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shared.adapters.bus import Bus
from shared.adapters.runtime import ConsoleSession, Runtime, StackPlan, StatusReport
from shared.bootstrap import Platform
from shovel.settings import PREFIX, ShovelSettings

log = logging.getLogger(__name__)

STOP_SECONDS = 8.0
"""How long a shovel may take to end before it is killed: within the 10 s a supervisor (systemd, a
container engine) gives `workbench run` to end, so that none outlives it."""


@dataclass(frozen=True)
class ShovelTemplate:
    """What every shovel of this platform shares; per stack only the user, stack and home differ."""

    events_url: str
    key_for: Callable[[str], str]
    """The hex signing key of a user's shovels (derived from the pairing secret)."""
    api_url: str
    """Where the shovels carry out stack commands (each carries its own token for its stack)."""
    home_for: Callable[[str], Path]
    link_roots: tuple[Path, ...] = ()
    staging_dir: Path | None = None
    """The local object store's directory, where the shovels copy staged files from."""
    heartbeat_seconds: float = 30.0
    attempts: int = 5
    amqp_url: str | None = field(default=None, repr=False)

    def settings(self, user: str, stack_id: str) -> ShovelSettings:
        return ShovelSettings(
            user=user,
            stack_id=stack_id,
            home=self.home_for(user),
            amqp_url=self.amqp_url,
            events_url=self.events_url,
            signing_key=self.key_for(user),
            api_url=self.api_url,
            attempts=self.attempts,
            health_host="127.0.0.1",
            health_port=0,
            heartbeat_seconds=self.heartbeat_seconds,
            link_roots=self.link_roots,
            staging_dir=self.staging_dir,
        )


class LocalShovels:
    """Starts and stops one shovel per running stack. Without RabbitMQ the shovels must share the
    platform's in-process bus, so they run as threads; with RabbitMQ each is a ``workbench shovel``
    process, as the sidecar is in a pod."""

    def __init__(self, template: ShovelTemplate, bus: Bus) -> None:
        self.template = template
        self.bus = bus
        self._threads: dict[tuple[str, str], tuple[threading.Thread, threading.Event]] = {}
        self._processes: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def start(self, user: str, stack_id: str) -> None:
        key = (user, stack_id)
        with self._lock:
            if key in self._threads or key in self._processes:
                return
            settings = self.template.settings(user, stack_id)
            settings.home.mkdir(parents=True, exist_ok=True)
            if self.template.amqp_url:
                self._processes[key] = self._spawn(settings)
            else:
                self._threads[key] = self._thread(settings)

    def _thread(self, settings: ShovelSettings) -> tuple[threading.Thread, threading.Event]:
        from shovel.daemon import run

        stop = threading.Event()

        def serve() -> None:
            try:
                run(settings=settings, bus=self.bus, stop=stop)
            except Exception:
                log.exception("the shovel of %s/%s failed", settings.user, settings.stack_id)

        thread = threading.Thread(
            target=serve, name=f"shovel {settings.user}/{settings.stack_id}", daemon=True
        )
        thread.start()
        return thread, stop

    def _spawn(self, settings: ShovelSettings) -> subprocess.Popen[bytes]:
        environment = {name: value for name, value in os.environ.items() if not name.startswith("WORKBENCH_")}
        environment.update(
            {
                f"{PREFIX}USER": settings.user,
                f"{PREFIX}STACK_ID": settings.stack_id,
                f"{PREFIX}HOME": str(settings.home),
                f"{PREFIX}SIGNING_KEY": settings.signing_key or "",
                f"{PREFIX}API_URL": settings.api_url or "",
                f"{PREFIX}ATTEMPTS": str(settings.attempts),
                f"{PREFIX}HEALTH_HOST": settings.health_host,
                f"{PREFIX}HEALTH_PORT": "0",
                f"{PREFIX}HEARTBEAT_SECONDS": str(settings.heartbeat_seconds),
                f"{PREFIX}LINK_ROOTS": ":".join(str(root) for root in settings.link_roots),
                f"{PREFIX}STAGING_DIR": str(settings.staging_dir or ""),
                "WORKBENCH_AMQP_URL": settings.amqp_url or "",
                "WORKBENCH_EVENTS_URL": settings.events_url or "",
            }
        )
        log_path = settings.home.parent.parent / "logs" / settings.user / f"{settings.stack_id}-shovel.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as output:
            return subprocess.Popen(
                [sys.executable, "-m", "shovel"],
                env=environment,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self, user: str, stack_id: str) -> None:
        key = (user, stack_id)
        with self._lock:
            thread = self._threads.pop(key, None)
            process = self._processes.pop(key, None)
        if thread is not None:
            thread[1].set()
            thread[0].join(STOP_SECONDS)
        if process is not None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop_user(self, user: str) -> None:
        with self._lock:
            keys = [key for key in (*self._threads, *self._processes) if key[0] == user]
        for key in keys:
            self.stop(*key)

    def close(self) -> None:
        with self._lock:
            keys = [*self._threads, *self._processes]
        for key in keys:
            self.stop(*key)


class ShovelingRuntime:
    """A runtime whose running stacks each have a shovel beside them (the sidecar of a pod)."""

    def __init__(self, inner: Runtime, shovels: LocalShovels) -> None:
        self.inner = inner
        self.shovels = shovels

    def start(self, plan: StackPlan) -> None:
        self.inner.start(plan)
        self.shovels.start(plan.owner, plan.sid)

    def stop(self, plan: StackPlan) -> None:
        self.shovels.stop(plan.owner, plan.sid)
        self.inner.stop(plan)

    def remove(self, plan: StackPlan) -> None:
        self.shovels.stop(plan.owner, plan.sid)
        self.inner.remove(plan)

    def observe(self, plan: StackPlan) -> list[StatusReport]:
        return self.inner.observe(plan)

    def logs(self, owner: str, ssid: str, lines: int | None) -> str:
        return self.inner.logs(owner, ssid, lines)

    @property
    def consoles(self) -> bool:
        return self.inner.consoles

    def console(self, owner: str, ssid: str, columns: int, rows: int) -> ConsoleSession:
        return self.inner.console(owner, ssid, columns, rows)

    def remove_account(self, owner: str) -> None:
        self.shovels.stop_user(owner)
        self.inner.remove_account(owner)

    def close(self) -> None:
        self.shovels.close()
        self.inner.close()


def attach_shovels(platform: Platform, *, heartbeat_seconds: float = 30.0) -> None:
    """Give every stack the platform runs a shovel beside it (call before the runtime is first used)."""
    if platform.runtime_kind == "kubernetes":
        return  # on a cluster the shovel is a sidecar in each stack's pod; containers here share the home
    from shared.adapters.homespace import HomeSpace
    from shared.adapters.objectstore.home import HomeStaging

    template = shovel_template(platform, heartbeat_seconds=heartbeat_seconds)
    platform.home_space = HomeSpace(template.home_for)
    if template.staging_dir is not None:
        # No S3 bucket set: the shovels and the platform share the machine and the homes, and a
        # transfer is staged into the home where it will be placed, instead of the objects folder.
        platform.home_staging = HomeStaging(template.home_for)
    platform.wrap_runtime(lambda runtime: ShovelingRuntime(runtime, LocalShovels(template, platform.bus)))


def shovel_template(platform: Platform, *, heartbeat_seconds: float = 30.0) -> ShovelTemplate:
    """What the local platform's shovels share. Where the platform stages into its own directory (no
    S3 bucket), its shovels, on the same machine, copy staged files from there instead of over HTTP."""
    from events.signing import derive_key
    from shared.adapters.objectstore.local import LocalObjectStore

    settings = platform.settings
    server = settings.server
    objects = platform.objects
    staging_dir = None
    if isinstance(objects, LocalObjectStore):
        staging_dir = objects.root
        staging_dir.mkdir(parents=True, exist_ok=True)
    return ShovelTemplate(
        events_url=platform.events_url,
        key_for=lambda user: derive_key(platform.event_secret, f"shovel:{user}").hex(),
        api_url=f"http://{server.host}:{server.port}",
        home_for=lambda user: platform.data_dir / "home" / user,
        link_roots=settings.clowder.link_roots,
        staging_dir=staging_dir,
        heartbeat_seconds=heartbeat_seconds,
        attempts=settings.recovery.shovel_attempts,
        amqp_url=settings.amqp.url,
    )
