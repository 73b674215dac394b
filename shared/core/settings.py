"""Typed settings, read once from the environment (prefix ``WORKBENCH_``) by the composition root."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

from shared.core.errors import InvalidInput


class EnvironmentReader:
    """Reads typed values from an environment mapping; a bad value names its variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def optional(self, name: str) -> str | None:
        return self.environ.get(name, "").strip() or None

    def required(self, name: str) -> str:
        value = self.optional(name)
        if value is None:
            raise InvalidInput("must be set", field=name)
        return value

    def text(self, name: str, default: str) -> str:
        return self.optional(name) or default

    def integer(self, name: str, default: int, *, minimum: int = 0) -> int:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise InvalidInput(f"must be an integer, got {raw!r}", field=name) from None
        if value < minimum:
            raise InvalidInput(f"must be at least {minimum}, got {value}", field=name)
        return value

    def seconds(self, name: str, default: float) -> float:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise InvalidInput(f"must be a number of seconds, got {raw!r}", field=name) from None
        if not (math.isfinite(value) and value > 0):
            raise InvalidInput(f"must be a positive number of seconds, got {raw!r}", field=name)
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = (self.optional(name) or "").lower()
        if not raw:
            return default
        if raw in {"1", "true", "yes", "on"}:
            return True
        if raw in {"0", "false", "no", "off"}:
            return False
        raise InvalidInput(f"must be true or false, got {raw!r}", field=name)

    def mapping(self, name: str) -> dict[str, str]:
        raw = self.optional(name)
        if raw is None:
            return {}
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as error:
            raise InvalidInput(f"must be a JSON object: {error.msg}", field=name) from None
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise InvalidInput("must be a JSON object of strings", field=name)
        return value

    def networks(self, name: str) -> tuple[str, ...]:
        """Comma-separated IP networks (``10.0.0.0/8``, ``fd00::/8``) or addresses, normalised."""
        import ipaddress

        found: list[str] = []
        for part in (self.optional(name) or "").split(","):
            if not part.strip():
                continue
            try:
                found.append(str(ipaddress.ip_network(part.strip(), strict=False)))
            except ValueError:
                raise InvalidInput(f"must hold IP networks, got {part.strip()!r}", field=name) from None
        return tuple(found)

    def folders(self, name: str) -> tuple[Path, ...]:
        """Colon-separated absolute folders, as real paths (sources are compared by their real paths)."""
        roots: list[Path] = []
        for part in (self.optional(name) or "").split(":"):
            if not part:
                continue
            if not os.path.isabs(part):
                raise InvalidInput(f"must hold absolute paths, got {part!r}", field=name)
            roots.append(Path(os.path.realpath(part)))
        return tuple(roots)


# The groups are named tuples: immutable and typed as frozen dataclasses are, at a fraction of the
# cost to define, which every function pays at its cold start.


class ServerSettings(NamedTuple):
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("var")
    origin: str = "http://127.0.0.1:8080"
    log_level: str = "INFO"
    support_email: str = "support@workbench.localhost"
    forum_url: str = ""
    chat_url: str = ""
    max_body_bytes: int = 1 << 20
    """Largest API request body; refused with 413 (an account package of the 74 shipped specs is ~0.1 MiB)."""
    max_event_bytes: int = 1 << 20
    """Largest CloudEvent (attributes and data) the ingress and the event functions take."""


class StoreSettings(NamedTuple):
    database_url: str = "sqlite:///var/workbench.db"


class AuthSettings(NamedTuple):
    jwt_secret: str | None = None
    token_minutes: int = 30
    refresh_hours: int = 24
    admin_password: str | None = None
    require_approval: bool = True
    login_account_attempts: int = 10
    """Failed logins one account (or one unknown name) may have in a window; then 429 until it ends."""
    login_address_attempts: int = 50
    """Failed logins and reset requests one client address may make in a window; then 429."""
    login_window: int = 900
    """Seconds of a throttling window, from its first attempt."""
    reset_interval: int = 300
    """Seconds after a password reset e-mail during which another request for it sends none."""
    trusted_proxies: tuple[str, ...] = ()
    """Networks of the proxies in front of the functions, whose ``X-Forwarded-For`` names the client."""


class MailSettings(NamedTuple):
    smtp_host: str | None = None
    smtp_port: int = 25
    sender: str = "workbench@workbench.localhost"


class LimitSettings(NamedTuple):
    """Default account limits, as the Go server's ``DefaultLimits`` section."""

    cpu_max: int = 2000
    cpu_default: int = 1000
    mem_max: int = 8196
    mem_default: int = 100
    storage_quota: int = 10
    inactive_timeout: int = 8 * 60
    """Minutes without activity after which an account's running stacks are stopped (the Go
    ``DefaultLimits.InactiveTimeout``); an account's own ``inactiveTimeout`` wins; 0: never."""


# Like JupyterHub's ``env_keep``: enough of the platform's environment for local services' commands
# to be found and decode text, and nothing else (no credential of the platform reaches them). None
# of these changes what an interpreter loads or runs (PYTHONPATH, for one, may hold a relative entry,
# which a service would resolve in the user's home).
INHERITED_VARIABLES = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "VIRTUAL_ENV")


NAMESPACE_MODES = ("per-user", "shared")
STACK_ACTIONS = ("platform", "shovels")


class KubernetesSettings(NamedTuple):
    """Where and how the Kubernetes runtime places stacks."""

    namespace_mode: str = "per-user"
    """``per-user``: a namespace per user (quota, limits and isolation per namespace); ``shared``: one."""
    namespace: str = "workbench-stacks"
    """The one namespace of every user's stacks in ``shared`` mode."""
    namespace_prefix: str = "workbench-"
    """Per-user namespaces are this prefix and the user name, so no user can name a system namespace."""
    storage_class: str | None = None
    home_size: str | None = None
    """Size of each home volume; unset: the account's storage quota."""
    ingress_class: str | None = None
    ingress_namespace: str = "ingress-nginx"
    """The ingress controller's namespace: the only one from which users' pods accept connections."""
    tls_secret: str | None = None
    shovel_image: str = "workbench-shovel:latest"
    forward_auth_url: str = "http://127.0.0.1:8080/api/check_token"
    """Where the ingress controller checks a secure stack's visitors (forward authentication)."""
    kubeconfig: str | None = None
    """The kubeconfig outside a cluster (``$KUBECONFIG``, as kubectl reads it); unset: ``~/.kube/config``."""


class DockerSettings(NamedTuple):
    """Where the container runtime finds its engine (Docker Engine, or Podman's Docker-compatible service)."""

    host: str | None = None
    """The engine's address as the docker CLI reads it (``$DOCKER_HOST``); unset: the default sockets."""


RUNTIME_KINDS = ("local", "kubernetes", "docker", "auto")


class RuntimeSettings(NamedTuple):
    kind: str = "local"
    """``auto`` (a container engine when one answers, else local processes), ``local``, ``docker``
    or ``kubernetes``."""
    local_commands: Mapping[str, str] = MappingProxyType({})
    ready_timeout: int = 120
    domain: str | None = None
    inherited_environment: Mapping[str, str] = MappingProxyType({})
    """The variables of INHERITED_VARIABLES as the platform had them, passed on to local services."""
    kubernetes: KubernetesSettings = KubernetesSettings()
    docker: DockerSettings = DockerSettings()


class S3Settings(NamedTuple):
    """The object store: S3 when a bucket is set, else a folder under the data dir."""

    bucket: str | None = None
    endpoint: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    public_endpoint: str | None = None
    max_upload_bytes: int = 5 << 30
    """Largest file an upload grant admits (S3's own limit for one POST upload is 5 GiB)."""


class AmqpSettings(NamedTuple):
    """RabbitMQ for the shovels' queues; in-process queues when no URL is set."""

    url: str | None = None


class ClowderSettings(NamedTuple):
    """The paired Clowder instance and the secrets shared with it."""

    url: str | None = None
    api_key: str | None = None
    event_secret: str | None = None
    require_signatures: bool = True
    service_token: str | None = None
    link_roots: tuple[Path, ...] = ()
    events_url: str | None = None
    """Where outbound events go (the Broker, or K_SINK from a SinkBinding); default: this platform's /events."""
    event_max_age: int = 600
    """Events whose ``time`` is older than this many seconds are refused (each is acted on once
    within it): longer than the Broker's retries of one event take."""
    amqp_url: str | None = None
    """Clowder's own RabbitMQ (may be another server than the platform's): where its extractor jobs
    come from and their statuses go; unset: no extractor is announced and no job is taken."""
    extractor_prefix: str = "workbench"
    """The announced extractors (and their queues) are ``<prefix>.send``, ``.start`` and ``.stop``."""
    reply_queue: str | None = None
    """Where statuses go for a job that names no ``reply_to`` (one delivered by a RabbitmqSource):
    Clowder 2's ``clowder.<instance id>``."""
    stack_actions: str = "platform"
    """Who carries out the starts and stops Clowder asks for (events and extractor jobs): ``platform``
    itself, or ``shovels``: while one of the user's stacks is started, a command on the user's queue
    that a shovel of the user carries out, after the commands it took before (so files sent before a
    stop are placed first), with a token that starts and stops that one stack for an hour."""


class RecoverySettings(NamedTuple):
    """Accepted transfers and exports whose work stopped (a crash, an outage) are resumed, then failed."""

    resume_after: int = 120
    """Seconds of silence after which accepted, unfinished work is taken for abandoned and resumed
    (work in progress renews its lease every quarter of this)."""
    resume_attempts: int = 5
    """How often one transfer or export is resumed before it fails, saying why."""
    sweep_seconds: float = 60.0
    """How often ``workbench run`` looks for abandoned work."""
    shovel_attempts: int = 5
    """How often a shovel tries one command before it gives up on it (a sync command's files are then
    reported failed, saying why), so that a command that always fails does not loop for ever."""


class CatalogSettings(NamedTuple):
    catalog_dir: Path | None = None


class Settings(NamedTuple):
    server: ServerSettings = ServerSettings()
    store: StoreSettings = StoreSettings()
    auth: AuthSettings = AuthSettings()
    mail: MailSettings = MailSettings()
    limits: LimitSettings = LimitSettings()
    runtime: RuntimeSettings = RuntimeSettings()
    catalog: CatalogSettings = CatalogSettings()
    s3: S3Settings = S3Settings()
    amqp: AmqpSettings = AmqpSettings()
    clowder: ClowderSettings = ClowderSettings()
    recovery: RecoverySettings = RecoverySettings()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        read = EnvironmentReader(environ)
        data_dir = Path(read.text("WORKBENCH_DATA_DIR", "var")).resolve()
        port = read.integer("WORKBENCH_PORT", 8080, minimum=1)
        host = read.text("WORKBENCH_HOST", "127.0.0.1")
        runtime_kind = read.text("WORKBENCH_RUNTIME", "auto")
        if runtime_kind not in RUNTIME_KINDS:
            raise InvalidInput(
                f"unknown runtime {runtime_kind!r}; known: {', '.join(RUNTIME_KINDS)}",
                field="WORKBENCH_RUNTIME",
            )
        namespace_mode = read.text("WORKBENCH_KUBE_NAMESPACE_MODE", "per-user")
        if namespace_mode not in NAMESPACE_MODES:
            raise InvalidInput(
                f"must be one of {', '.join(NAMESPACE_MODES)}, got {namespace_mode!r}",
                field="WORKBENCH_KUBE_NAMESPACE_MODE",
            )
        stack_actions = read.text("WORKBENCH_STACK_ACTIONS", "platform")
        if stack_actions not in STACK_ACTIONS:
            raise InvalidInput(
                f"must be one of {', '.join(STACK_ACTIONS)}, got {stack_actions!r}",
                field="WORKBENCH_STACK_ACTIONS",
            )
        origin = read.text("WORKBENCH_ORIGIN", f"http://{host}:{port}").rstrip("/")
        catalog_dir = read.optional("WORKBENCH_CATALOG_DIR")
        return cls(
            server=ServerSettings(
                host=host,
                port=port,
                data_dir=data_dir,
                origin=origin,
                log_level=read.text("WORKBENCH_LOG_LEVEL", "INFO").upper(),
                support_email=read.text("WORKBENCH_SUPPORT_EMAIL", "support@workbench.localhost"),
                forum_url=read.text("WORKBENCH_FORUM_URL", ""),
                chat_url=read.text("WORKBENCH_CHAT_URL", ""),
                max_body_bytes=read.integer("WORKBENCH_MAX_BODY_BYTES", 1 << 20, minimum=1024),
                max_event_bytes=read.integer("WORKBENCH_MAX_EVENT_BYTES", 1 << 20, minimum=1024),
            ),
            store=StoreSettings(
                database_url=read.text("WORKBENCH_DATABASE_URL", f"sqlite:///{data_dir / 'workbench.db'}"),
            ),
            auth=AuthSettings(
                jwt_secret=read.optional("WORKBENCH_JWT_SECRET"),
                token_minutes=read.integer("WORKBENCH_TOKEN_MINUTES", 30, minimum=1),
                refresh_hours=read.integer("WORKBENCH_REFRESH_HOURS", 24, minimum=1),
                admin_password=read.optional("WORKBENCH_ADMIN_PASSWORD"),
                require_approval=read.flag("WORKBENCH_REQUIRE_APPROVAL", True),
                login_account_attempts=read.integer("WORKBENCH_LOGIN_ACCOUNT_ATTEMPTS", 10, minimum=1),
                login_address_attempts=read.integer("WORKBENCH_LOGIN_ADDRESS_ATTEMPTS", 50, minimum=1),
                login_window=read.integer("WORKBENCH_LOGIN_WINDOW_SECONDS", 900, minimum=1),
                reset_interval=read.integer("WORKBENCH_RESET_INTERVAL_SECONDS", 300, minimum=0),
                trusted_proxies=read.networks("WORKBENCH_TRUSTED_PROXIES"),
            ),
            mail=MailSettings(
                smtp_host=read.optional("WORKBENCH_SMTP_HOST"),
                smtp_port=read.integer("WORKBENCH_SMTP_PORT", 25, minimum=1),
                sender=read.text("WORKBENCH_MAIL_FROM", "workbench@workbench.localhost"),
            ),
            limits=LimitSettings(
                cpu_max=read.integer("WORKBENCH_CPU_MAX", 2000),
                cpu_default=read.integer("WORKBENCH_CPU_DEFAULT", 1000),
                mem_max=read.integer("WORKBENCH_MEM_MAX", 8196),
                mem_default=read.integer("WORKBENCH_MEM_DEFAULT", 100),
                storage_quota=read.integer("WORKBENCH_STORAGE_QUOTA", 10),
                inactive_timeout=read.integer("WORKBENCH_INACTIVE_TIMEOUT_MINUTES", 8 * 60),
            ),
            runtime=RuntimeSettings(
                kind=runtime_kind,
                local_commands=read.mapping("WORKBENCH_LOCAL_COMMANDS"),
                ready_timeout=read.integer("WORKBENCH_READY_TIMEOUT", 120, minimum=1),
                domain=read.optional("WORKBENCH_DOMAIN"),
                inherited_environment={
                    name: environ[name] for name in INHERITED_VARIABLES if name in environ
                },
                kubernetes=KubernetesSettings(
                    namespace_mode=namespace_mode,
                    namespace=read.text("WORKBENCH_KUBE_NAMESPACE", "workbench-stacks"),
                    namespace_prefix=read.text("WORKBENCH_KUBE_NAMESPACE_PREFIX", "workbench-"),
                    storage_class=read.optional("WORKBENCH_KUBE_STORAGE_CLASS"),
                    home_size=read.optional("WORKBENCH_KUBE_HOME_SIZE"),
                    ingress_class=read.optional("WORKBENCH_KUBE_INGRESS_CLASS"),
                    ingress_namespace=read.text("WORKBENCH_KUBE_INGRESS_NAMESPACE", "ingress-nginx"),
                    tls_secret=read.optional("WORKBENCH_KUBE_TLS_SECRET"),
                    shovel_image=read.text("WORKBENCH_SHOVEL_IMAGE", "workbench-shovel:latest"),
                    forward_auth_url=read.text("WORKBENCH_CHECK_TOKEN_URL", f"{origin}/api/check_token"),
                    kubeconfig=read.optional("KUBECONFIG"),
                ),
                docker=DockerSettings(host=read.optional("DOCKER_HOST")),
            ),
            catalog=CatalogSettings(catalog_dir=Path(catalog_dir) if catalog_dir else None),
            s3=S3Settings(
                bucket=read.optional("WORKBENCH_S3_BUCKET"),
                endpoint=read.optional("WORKBENCH_S3_ENDPOINT"),
                region=read.optional("WORKBENCH_S3_REGION"),
                access_key=read.optional("WORKBENCH_S3_ACCESS_KEY"),
                secret_key=read.optional("WORKBENCH_S3_SECRET_KEY"),
                public_endpoint=read.optional("WORKBENCH_S3_PUBLIC_ENDPOINT"),
                max_upload_bytes=read.integer("WORKBENCH_MAX_UPLOAD_BYTES", 5 << 30, minimum=1),
            ),
            amqp=AmqpSettings(url=read.optional("WORKBENCH_AMQP_URL")),
            clowder=ClowderSettings(
                url=(read.optional("WORKBENCH_CLOWDER_URL") or "").rstrip("/") or None,
                api_key=read.optional("WORKBENCH_CLOWDER_API_KEY"),
                event_secret=read.optional("WORKBENCH_EVENT_SECRET"),
                require_signatures=read.flag("WORKBENCH_REQUIRE_SIGNATURES", True),
                service_token=read.optional("WORKBENCH_CLOWDER_SERVICE_TOKEN"),
                link_roots=read.folders("WORKBENCH_LINK_ROOTS"),
                events_url=read.optional("WORKBENCH_EVENTS_URL") or read.optional("K_SINK"),
                event_max_age=read.integer("WORKBENCH_EVENT_MAX_AGE_SECONDS", 600, minimum=1),
                amqp_url=read.optional("WORKBENCH_CLOWDER_AMQP_URL"),
                extractor_prefix=read.text("WORKBENCH_CLOWDER_EXTRACTOR_PREFIX", "workbench"),
                reply_queue=read.optional("WORKBENCH_CLOWDER_REPLY_QUEUE"),
                stack_actions=stack_actions,
            ),
            recovery=RecoverySettings(
                resume_after=read.integer("WORKBENCH_RESUME_AFTER_SECONDS", 120, minimum=1),
                resume_attempts=read.integer("WORKBENCH_RESUME_ATTEMPTS", 5, minimum=1),
                sweep_seconds=read.seconds("WORKBENCH_SWEEP_SECONDS", 60.0),
                shovel_attempts=read.integer("WORKBENCH_SHOVEL_ATTEMPTS", 5, minimum=1),
            ),
        )
