"""The composition root: adapters built from settings on first use, never at import time."""

from __future__ import annotations

import gc
import logging
import os
import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from shared.core.settings import Settings

if TYPE_CHECKING:
    from shared.adapters.bus import Bus
    from shared.adapters.clowder import ClowderClient
    from shared.adapters.clowder.amqp import ClowderQueues
    from shared.adapters.homespace import HomeSpacePort
    from shared.adapters.mail import Mailer
    from shared.adapters.objectstore import HomeStagingPort, ObjectStore
    from shared.adapters.runtime import Reporter, Runtime, StatusReport
    from shared.adapters.sink import EventSink
    from shared.adapters.store import Store
    from shared.domain.auth import Passwords, Tokens
    from shared.domain.catalog import SpecValidator

T = TypeVar("T")
log = logging.getLogger(__name__)


def _read_or_create_secret(path: Path) -> str:
    """A secret shared by every process on this machine: created once, atomically, mode 0600."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    try:
        os.link(partial, path)
    except FileExistsError:
        pass
    finally:
        partial.unlink()
    return path.read_text().strip()


class Platform:
    """Everything a function needs, each part built lazily and once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._parts: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._runtime_wrappers: list[Callable[[Runtime], Runtime]] = []
        self.home_staging: HomeStagingPort | None = None
        """Set where the platform reaches the users' homes and shovels place from them (one machine)."""
        self.home_space: HomeSpacePort | None = None
        """Set where the platform reaches the users' homes (one machine): a transfer plan reads their room."""

    def wrap_runtime(self, wrapper: Callable[[Runtime], Runtime]) -> None:
        """Have the runtime built through ``wrapper`` (e.g. to run a shovel beside each stack)."""
        if self.has("runtime"):
            raise RuntimeError("the runtime is already built; wrap it before its first use")
        self._runtime_wrappers.append(wrapper)

    def _once(self, name: str, build: Callable[[], T]) -> T:
        part = self._parts.get(name)
        if part is None:
            with self._lock:
                part = self._parts.get(name)
                if part is None:
                    part = build()
                    self._parts[name] = part
        return part

    def has(self, name: str) -> bool:
        """Whether the part ``name`` (e.g. ``runtime``) has been built in this process."""
        return name in self._parts

    @property
    def data_dir(self) -> Path:
        return self.settings.server.data_dir

    @property
    def store(self) -> Store:
        def build() -> Store:
            from shared.adapters.store.sql import open_store

            return open_store(self.settings.store.database_url)

        return self._once("store", build)

    @property
    def tokens(self) -> Tokens:
        def build() -> Tokens:
            from shared.domain.auth import Tokens

            secret = self.settings.auth.jwt_secret or _read_or_create_secret(
                self.data_dir / "secrets" / "jwt-secret"
            )
            from shared.domain.accounts import token_generation

            def generation_of(user: str) -> str | None:
                return token_generation(self.store, user)

            return Tokens(
                secret,
                lifetime_seconds=self.settings.auth.token_minutes * 60,
                refresh_seconds=self.settings.auth.refresh_hours * 3600,
                generation_of=generation_of,
            )

        return self._once("tokens", build)

    @property
    def passwords(self) -> Passwords:
        def build() -> Passwords:
            from shared.domain.auth import Passwords

            return Passwords()

        return self._once("passwords", build)

    @property
    def mailer(self) -> Mailer:
        def build() -> Mailer:
            from shared.adapters.mail import Outbox, SmtpMailer

            mail = self.settings.mail
            if mail.smtp_host:
                return SmtpMailer(mail.smtp_host, mail.smtp_port, mail.sender)
            return Outbox(self.data_dir / "outbox", mail.sender)

        return self._once("mailer", build)

    @property
    def validator(self) -> SpecValidator:
        def build() -> SpecValidator:
            from shared.domain.catalog import SpecValidator

            return SpecValidator()

        return self._once("validator", build)

    @property
    def runtime(self) -> Runtime:
        def build() -> Runtime:
            from shared.domain import stacks

            def report(status_report: StatusReport) -> None:
                stacks.report(self, status_report)

            runtime: Runtime
            if self.runtime_kind == "kubernetes":
                runtime = self._kubernetes_runtime(report)
            elif self.runtime_kind == "docker":
                from shared.adapters.runtime.docker_engine import DockerRuntime

                runtime = DockerRuntime(self.settings.runtime, data_dir=self.data_dir, report=report)
            else:
                from shared.adapters.runtime.local import LocalRuntime

                runtime = LocalRuntime(
                    self.settings.runtime, data_dir=self.data_dir, report=report, site_key=self.site_key
                )
            for wrapper in self._runtime_wrappers:
                runtime = wrapper(runtime)
            return runtime

        return self._once("runtime", build)

    @property
    def runtime_kind(self) -> str:
        """Where stacks run: the setting, or for ``auto`` a container engine when one answers (asked
        once, only when an address is set or a default socket exists), else local processes."""

        def build() -> str:
            kind = self.settings.runtime.kind
            if kind != "auto":
                return kind
            from shared.adapters.runtime.docker_engine import engine_answers

            return "docker" if engine_answers(self.settings.runtime.docker) else "local"

        return self._once("runtime_kind", build)

    def _kubernetes_runtime(self, report: Reporter) -> Runtime:
        from events.signing import derive_key
        from shared.adapters.runtime.kube_api import KubeApi
        from shared.adapters.runtime.kube_objects import ShovelSidecar
        from shared.adapters.runtime.kubernetes import KubernetesRuntime, ShovelSupply

        def shovel_secrets(user: str) -> dict[str, str]:
            return {
                "amqp-url": self.settings.amqp.url or "",
                "signing-key": derive_key(self.event_secret, f"shovel:{user}").hex(),
            }

        sidecar = ShovelSidecar(
            image=self.settings.runtime.kubernetes.shovel_image,
            events_url=self.events_url,
            api_url=self.settings.server.origin,
            attempts=self.settings.recovery.shovel_attempts,
        )
        return KubernetesRuntime(
            self.settings.runtime,
            api=KubeApi.from_environment(kubeconfig=self.settings.runtime.kubernetes.kubeconfig),
            report=report,
            shovel=ShovelSupply(sidecar, shovel_secrets),
        )

    @property
    def site_key(self) -> bytes:
        """The key of the access grants in a secure local stack's Connect URLs (generated once on one
        machine); the static sites each get a key derived from it for their own service only."""

        def build() -> bytes:
            return _read_or_create_secret(self.data_dir / "secrets" / "site-key").encode()

        return self._once("site_key", build)

    @property
    def event_secret(self) -> bytes:
        """The secret shared with Clowder for signing events (generated once on one machine)."""

        def build() -> bytes:
            secret = self.settings.clowder.event_secret or _read_or_create_secret(
                self.data_dir / "secrets" / "event-secret"
            )
            return secret.encode()

        return self._once("event_secret", build)

    @property
    def events_url(self) -> str:
        """Where outbound events go: the configured sink, else this platform's own /events."""
        server = self.settings.server
        return self.settings.clowder.events_url or f"http://{server.host}:{server.port}/events"

    @property
    def event_source(self) -> str:
        return self.settings.server.origin + "/"

    @property
    def sink(self) -> EventSink:
        """Where outbound events go (``events_url``), signed with the pairing secret."""

        def build() -> EventSink:
            from shared.adapters.sink.http import HttpSink

            return HttpSink(self.events_url, self.event_source, lambda: self.event_secret)

        return self._once("sink", build)

    @property
    def objects(self) -> ObjectStore:
        def build() -> ObjectStore:
            s3 = self.settings.s3
            if s3.bucket:
                from shared.adapters.objectstore.s3 import S3ObjectStore

                return S3ObjectStore(
                    bucket=s3.bucket,
                    endpoint_url=s3.endpoint,
                    region=s3.region,
                    access_key=s3.access_key,
                    secret_key=s3.secret_key,
                    presign_endpoint_url=s3.public_endpoint,
                    max_upload_bytes=s3.max_upload_bytes,
                )
            from shared.adapters.objectstore.local import LocalObjectStore

            secret = _read_or_create_secret(self.data_dir / "secrets" / "object-url-secret")
            return LocalObjectStore(
                self.data_dir / "objects",
                public_url=self.settings.server.origin,
                secret=secret.encode(),
                max_upload_bytes=s3.max_upload_bytes,
            )

        return self._once("objects", build)

    @property
    def bus(self) -> Bus:
        def build() -> Bus:
            if self.settings.amqp.url:
                from shared.adapters.bus.amqp import AmqpBus

                return AmqpBus(self.settings.amqp.url)
            from shared.adapters.bus.memory import MemoryBus

            return MemoryBus()

        return self._once("bus", build)

    def clowder(self) -> ClowderClient:
        """A client of the paired Clowder instance (built once; it keeps its connections)."""

        def build() -> ClowderClient:
            from shared.adapters.clowder import ClowderClient
            from shared.core.errors import Unavailable

            clowder = self.settings.clowder
            if not clowder.url or not clowder.api_key:
                raise Unavailable(
                    "no Clowder is paired: set WORKBENCH_CLOWDER_URL and WORKBENCH_CLOWDER_API_KEY"
                )
            return ClowderClient(clowder.url, clowder.api_key)

        return self._once("clowder", build)

    def clowder_queues(self) -> ClowderQueues:
        """Clowder's own RabbitMQ (its extractor jobs and their statuses), apart from the platform's bus."""

        def build() -> ClowderQueues:
            from shared.adapters.clowder.amqp import ClowderQueues
            from shared.core.errors import Unavailable

            url = self.settings.clowder.amqp_url
            if not url:
                raise Unavailable("Clowder's RabbitMQ is not set (WORKBENCH_CLOWDER_AMQP_URL)")
            return ClowderQueues(url)

        return self._once("clowder_queues", build)

    def close(self) -> None:
        with self._lock:
            parts, self._parts = self._parts, {}
        for name in ("runtime", "bus", "clowder", "clowder_queues", "store"):
            part = parts.get(name)
            if part is not None:
                part.close()


_platform: Platform | None = None
_platform_lock = threading.Lock()
_startup_settled = False


def platform() -> Platform:
    """The process's platform, built from the environment on first use."""
    global _platform
    if _platform is None:
        with _platform_lock:
            if _platform is None:
                settings = Settings.from_env()
                logging.basicConfig(level=settings.server.log_level)
                _settle_startup_objects()
                _platform = Platform(settings)
    return _platform


def _settle_startup_objects() -> None:
    """Move every object the process holds now (the modules it imported, the server) out of the
    cyclic garbage collector's sight, once per process: they live as long as the process, yet each
    full collection would traverse them all again.

    The first platform is built at a function's first request, just before that request imports
    what it alone needs (psycopg, on PostgreSQL): without this, those imports set off one or two
    full collections over every object of the startup, 20 to 40 ms of a cold start. Objects made
    from here on are collected as before, and a platform built again later (as tests do) freezes
    nothing more. Called under ``_platform_lock``."""
    global _startup_settled
    if not _startup_settled:
        gc.freeze()
        _startup_settled = True


def use_platform(instance: Platform | None) -> Platform | None:
    """Install ``instance`` as the process's platform (``None`` to rebuild from the environment)."""
    global _platform
    with _platform_lock:
        previous, _platform = _platform, instance
    return previous
