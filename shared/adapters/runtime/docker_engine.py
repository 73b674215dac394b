"""Runs each stack service as a container on a Docker Engine API: Docker Engine, or Podman's service."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.adapters.runtime import (
    LOG_DEFAULT_LINES,
    LOG_MAX_LINES,
    ConsoleSession,
    Reporter,
    ServicePlan,
    StackPlan,
    StatusReport,
    Workers,
    console_command,
    console_end_command,
)
from shared.adapters.runtime.kube_objects import image_of
from shared.adapters.runtime.processes import (
    LOG_MAX_BYTES,
    LOOPBACK,
    accepts_connections,
    checked_name,
    port_is_free,
    publishable_port,
    remove_folder,
    volume_problem,
    write_json_atomically,
)
from shared.core.datafolder import DATA_FOLDER
from shared.core.errors import Conflict, InvalidInput, NotFound, Unavailable, WorkbenchError
from shared.core.models import AccountResourceLimits, Endpoint, ResourceLimits, ServiceStatus
from shared.core.settings import DockerSettings, RuntimeSettings

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

log = logging.getLogger(__name__)

DEFAULT_SOCKETS = ("/var/run/docker.sock", "/run/podman/podman.sock")
"""Where an engine listens when DOCKER_HOST names none: Docker Engine's socket, then Podman's (root)."""
LABEL_PREFIX = "org.ndslabs.workbench/"
INSTANCE_LABEL = LABEL_PREFIX + "instance"
OWNER_LABEL = LABEL_PREFIX + "owner"
STACK_LABEL = LABEL_PREFIX + "stack"
SERVICE_LABEL = LABEL_PREFIX + "service"
KEY_LABEL = LABEL_PREFIX + "key"
CONFIG_LABEL = LABEL_PREFIX + "config"
"""A digest of everything the container was created with: a running container whose digest matches
the plan is kept (a start after the platform restarted), any other is replaced."""
PING_SECONDS = 3.0
ENGINE_SECONDS = 120
STOP_SECONDS = 10
POLL_SECONDS = 0.25
WATCH_SECONDS = 2.0
PULL_REPORT_SECONDS = 1.0
LAYER_DONE = frozenset({"Download complete", "Pull complete", "Already exists"})
"""A pulled layer's last statuses: Docker Engine's and Podman's (which ends at "Download complete")."""
CLOSE_WAIT_SECONDS = 2.0
PROBE_SECONDS = 2.0
LAST_LINE_LIMIT = 200
MEBIBYTE = 1024 * 1024
NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")
VARIABLE_NAME = re.compile(r"[^=\0]{1,256}")
ADDRESS_PREFIX = re.compile(r"[A-Z0-9_]{1,64}")


def engine_url(settings: DockerSettings) -> str | None:
    """The engine's address: DOCKER_HOST, else the first default socket that exists."""
    if settings.host:
        return settings.host
    for path in DEFAULT_SOCKETS:
        if os.path.exists(path):
            return f"unix://{path}"
    return None


def engine_answers(settings: DockerSettings) -> bool:
    """Whether an engine answers at the settings' address (no address: none, without asking)."""
    url = engine_url(settings)
    if url is None or _missing_socket(url):
        return False
    try:
        import docker

        client = docker.DockerClient(base_url=url, timeout=int(PING_SECONDS))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception as error:
        log.info("no container engine answers at %s: %s", url, error)
        return False


def _missing_socket(url: str) -> bool:
    # Asked before connecting: the SDK leaves the socket of a failed connection open.
    return url.startswith("unix://") and not os.path.exists(url.removeprefix("unix://"))


def instance_of(data_dir: Path) -> str:
    """The platform instance a container belongs to: one per data folder, so two platforms on one
    machine never touch each other's containers."""
    return hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]


def engine_error(error: Exception, doing: str) -> WorkbenchError:
    """The project's exception for an error of the ``docker`` SDK (or of its HTTP transport)."""
    from docker import errors

    if isinstance(error, WorkbenchError):
        return error
    if isinstance(error, errors.NotFound):
        return NotFound("container engine object", message=f"{doing}: {_explanation(error)}")
    if isinstance(error, errors.APIError):
        status = error.status_code or 0
        if status == 409:
            return Conflict(f"{doing}: {_explanation(error)}")
        if status == 400:
            return InvalidInput(f"{doing}: {_explanation(error)}")
        return Unavailable(f"{doing}: the container engine answered {status}: {_explanation(error)}")
    return Unavailable(f"{doing}: the container engine cannot be reached: {error}")


def _explanation(error: Any) -> str:
    explanation = getattr(error, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", "replace")
    return str(explanation or error)


@dataclass(eq=False)
class ContainerRun:
    """One start of a stack: what became of each service. Once halted it reports nothing more."""

    plan: StackPlan
    halted: threading.Event = field(default_factory=threading.Event)
    ready: dict[str, str] = field(default_factory=dict)
    """Keys of the services that became ready → their container ids."""
    failed: set[str] = field(default_factory=set)


class DockerRuntime:
    """Stacks as labelled containers on one user-defined network per stack, the home bind-mounted.

    A thread per start pulls, creates and starts the services in dependency order and waits for each
    to be ready; another watches the ready ones until the stack stops. Containers outlive the platform:
    a start after a restart keeps those still running as planned."""

    def __init__(
        self,
        settings: RuntimeSettings,
        *,
        data_dir: Path,
        report: Reporter,
        client_factory: Callable[[], DockerClient] | None = None,
        instance: str | None = None,
        stop_grace: int = STOP_SECONDS,
    ) -> None:
        self._settings = settings
        self._data_dir = data_dir
        self._client_factory = client_factory
        self._instance = instance or instance_of(data_dir)
        self._stop_grace = stop_grace
        self._client: DockerClient | None = None
        self._cpus: int | None = None
        self._lock = threading.Lock()
        self._runs: dict[tuple[str, str], ContainerRun] = {}
        self._stack_locks: dict[tuple[str, str], threading.Lock] = {}
        self._workers = Workers("container runtime", report)
        self._closed = False

    @property
    def instance(self) -> str:
        return self._instance

    # --- The port --------------------------------------------------------------------------

    def start(self, plan: StackPlan) -> None:
        self._check(plan)
        self._engine()  # an engine that is down fails the start at once, as Unavailable
        run = ContainerRun(plan)
        previous = self._replace_run(plan, run)
        if previous is not None:
            previous.halted.set()
        self._workers.spawn(f"start {plan.sid}", lambda: self._start_stack(run))

    def stop(self, plan: StackPlan) -> None:
        self._check(plan)
        previous = self._replace_run(plan, None)
        if previous is not None:
            previous.halted.set()
        self._workers.spawn(f"stop {plan.sid}", lambda: self._stop_stack(plan, report=True))

    def remove(self, plan: StackPlan) -> None:
        """Stop and remove the stack's containers and network, returning once they are gone."""
        self._check(plan)
        previous = self._replace_run(plan, None)
        if previous is not None:
            previous.halted.set()
        self._stop_stack(plan, report=False)

    def observe(self, plan: StackPlan) -> list[StatusReport]:
        # The start and watch threads report every change as they see it.
        return []

    def logs(self, owner: str, ssid: str, lines: int | None) -> str:
        checked_name(owner, "owner")
        checked_name(ssid, "ssid")
        count = LOG_DEFAULT_LINES if lines is None else max(0, min(lines, LOG_MAX_LINES))
        if count == 0:
            return ""
        found = self._containers({OWNER_LABEL: owner, SERVICE_LABEL: ssid})
        if not found:
            return ""
        try:
            output = found[0].logs(stdout=True, stderr=True, tail=count)
        except Exception as error:
            mapped = engine_error(error, f"reading the log of {ssid}")
            if isinstance(mapped, NotFound):
                return ""
            raise mapped from error
        return bytes(output[-LOG_MAX_BYTES:]).decode("utf-8", "replace")

    consoles = True

    def console(self, owner: str, ssid: str, columns: int, rows: int) -> ConsoleSession:
        checked_name(owner, "owner")
        checked_name(ssid, "ssid")
        running = [
            container
            for container in self._containers({OWNER_LABEL: owner, SERVICE_LABEL: ssid})
            if container.status == "running"
        ]
        if not running:
            raise NotFound("running container of stack service", ssid)
        return EngineConsole(self._engine(), str(running[0].id), columns, rows)

    def remove_account(self, owner: str) -> None:
        checked_name(owner, "owner")
        with self._lock:
            runs = [run for key, run in self._runs.items() if key[0] == owner]
            for run in runs:
                del self._runs[(owner, run.plan.sid)]
        for run in runs:
            run.halted.set()
        labels = {OWNER_LABEL: owner}
        for container in self._containers(labels):
            self._remove_container(container)
        self._remove_networks(labels)
        remove_folder(self._home(owner))
        remove_folder(self._data_dir / "run" / owner)  # the ports it remembers

    def close(self) -> None:
        """Stop watching and reporting; the containers keep running for the next platform to find."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            runs = list(self._runs.values())
        for run in runs:
            run.halted.set()
        self._workers.join(CLOSE_WAIT_SECONDS)
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # --- Starting --------------------------------------------------------------------------

    def _start_stack(self, run: ContainerRun) -> None:
        plan = run.plan
        with self._stack_lock(plan):
            if run.halted.is_set():
                return
            try:
                wanted = {service.ssid for service in plan.services}
                stack_labels = {OWNER_LABEL: plan.owner, STACK_LABEL: plan.sid}
                for container in self._containers(stack_labels):
                    if container.labels.get(SERVICE_LABEL) not in wanted:
                        self._remove_container(container)  # of a service the stack no longer has
                network = self._network(plan)
                for service in plan.services:
                    if run.halted.is_set():
                        return
                    self._start_service(run, service, network)
            except Exception as error:
                # A stack must never stay "starting" because the runtime itself failed.
                log.exception("starting stack %s failed", plan.sid)
                reason = engine_error(error, "starting the stack").message
                for service in plan.services:
                    if service.key not in run.ready and service.key not in run.failed:
                        self._fail(run, service, "error", reason)
                return
        if run.ready:
            self._workers.spawn(f"watch {plan.sid}", lambda: self._watch(run))

    def _start_service(self, run: ContainerRun, service: ServicePlan, network: str) -> None:
        failed = [key for key in service.requires if key in run.failed or key not in run.ready]
        if failed:
            self._fail(run, service, "error", f"Not started: required service {failed[0]!r} failed")
            return
        try:
            options = self._container_options(run.plan, service, network)
        except (InvalidInput, OSError) as error:
            message = error.message if isinstance(error, InvalidInput) else str(error)
            self._fail(run, service, "error", message)
            return
        digest = hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()
        container = self._adopt(run.plan, service, digest)
        if container is None:
            image = options["image"]
            if not self._ensure_image(run, service, image):
                return
            container = self._create(run.plan, service, options, digest, network)
            self._report(run, service, "starting", f"Starting container {container.short_id} of {image}")
        else:
            self._report(run, service, "starting", f"Found its running container {container.short_id}")
        self._await_ready(run, service, container)

    def _container_options(self, plan: StackPlan, service: ServicePlan, network: str) -> dict[str, Any]:
        """Everything the container is created with but its name and labels, checked, as plain data."""
        spec = service.spec
        home = self._home(plan.owner)
        mounts: list[tuple[str, str]] = []
        wanted = dict(service.volumes)
        if service.data_mount:
            wanted[DATA_FOLDER] = service.data_mount
        for relative, target in sorted(wanted.items(), key=lambda item: item[1]):
            problem = volume_problem(home, relative)
            if problem is not None:
                raise InvalidInput(problem)
            if not target.startswith("/") or "\0" in target:
                raise InvalidInput(f"Mount path {target!r} of {relative!r} must be an absolute path")
            source = home / relative
            source.mkdir(parents=True, exist_ok=True)
            mounts.append((target, str(source.resolve())))
        environment = {}
        for name, value in service.env.items():
            if not VARIABLE_NAME.fullmatch(name) or "\0" in value:
                raise InvalidInput(f"Config {name!r} cannot be set in a container's environment")
            environment[name] = value
        by_key = {other.key: other for other in plan.services}
        for key in service.uses:
            # The names Docker links and Kubernetes give a linked service's address.
            prefix = key.upper().replace("-", "_")
            dependency = by_key.get(key)
            if dependency is None or not ADDRESS_PREFIX.fullmatch(prefix):
                continue
            for port in dependency.spec.ports or ():
                environment[f"{prefix}_PORT_{port.port}_TCP_ADDR"] = key
                environment[f"{prefix}_PORT_{port.port}_TCP_PORT"] = str(port.port)
        ports = sorted(
            {port.port for port in spec.ports or () if port.port} | {spec.readinessProbe.port} - {0}
        )
        options: dict[str, Any] = {
            "image": image_of(service),
            "environment": environment,
            "mounts": mounts,
            "ports": [f"{port}/tcp" for port in ports],
            "network": network,
        }
        if spec.command:
            options["entrypoint"] = list(spec.command)
        if spec.args:
            options["command"] = list(spec.args)
        options.update(container_resources(spec.resourceLimits, plan.limits, self._engine_cpus()))
        return options

    def _engine_cpus(self) -> int:
        """How many CPUs the engine's machine has: Docker Engine refuses a CPU limit above it."""
        if self._cpus is None:
            try:
                self._cpus = int(self._engine().info().get("NCPU") or 0)
            except Exception as error:
                raise engine_error(error, "asking the engine for its CPUs") from error
        return self._cpus

    def _adopt(self, plan: StackPlan, service: ServicePlan, digest: str) -> Container | None:
        """The service's running container when it was made from the same options; others go."""
        kept = None
        for container in self._containers({OWNER_LABEL: plan.owner, SERVICE_LABEL: service.ssid}):
            if (
                kept is None
                and container.status == "running"
                and container.labels.get(CONFIG_LABEL) == digest
            ):
                kept = container
            else:
                self._remove_container(container)
        return kept

    def _ensure_image(self, run: ContainerRun, service: ServicePlan, image: str) -> bool:
        """Pull the image unless the engine has it, its progress in the service's status; False when
        it cannot be had (the service has failed with the engine's reason)."""
        from docker import errors

        client = self._engine()
        try:
            client.images.get(image)
            return True
        except errors.ImageNotFound:
            pass
        except Exception as error:
            self._fail(run, service, "error", engine_error(error, f"looking up image {image}").message)
            return False
        self._report(run, service, "starting", f"Pulling image {image}")
        repository, tag = _split_image(image)
        layers: set[str] = set()
        downloaded: set[str] = set()
        received: dict[str, tuple[int, int]] = {}
        reported = (0, 0)
        last_report = time.monotonic()
        try:
            for progress in client.api.pull(repository, tag=tag, stream=True, decode=True):
                if run.halted.is_set():
                    return False
                if progress.get("error"):
                    reason = progress.get("errorDetail", {}).get("message") or progress["error"]
                    self._fail(run, service, "error", f"Could not pull image {image}: {reason}")
                    return False
                layer = str(progress.get("id") or "")
                status = str(progress.get("status", ""))
                # Docker Engine's first line names the repository, with the tag as its id: no layer.
                if not layer or status.startswith("Pulling from"):
                    continue
                layers.add(layer)
                if status in LAYER_DONE:
                    downloaded.add(layer)  # and stays so while Docker Engine extracts it
                detail = progress.get("progressDetail") or {}
                if detail.get("total") and layer not in downloaded:
                    received[layer] = (int(detail.get("current") or 0), int(detail["total"]))
                done = len(downloaded)
                # Each finished layer is told at once; the bytes of the others at most once a second.
                if (done, len(layers)) != reported or time.monotonic() - last_report >= PULL_REPORT_SECONDS:
                    reported, last_report = (done, len(layers)), time.monotonic()
                    message = f"Pulling image {image}: {done} of {len(layers)} layers downloaded"
                    if received and done < len(layers):
                        current = sum(item[0] for item in received.values()) / 1e6
                        total = sum(item[1] for item in received.values()) / 1e6
                        message += f", {current:.1f} of {total:.1f} MB"
                    self._report(run, service, "starting", message)
            client.images.get(image)
        except Exception as error:
            reason = _explanation(error) if isinstance(error, errors.APIError) else str(error)
            self._fail(run, service, "error", f"Could not pull image {image}: {reason}")
            return False
        self._report(run, service, "starting", f"Pulled image {image}")
        return True

    def _create(
        self, plan: StackPlan, service: ServicePlan, options: dict[str, Any], digest: str, network: str
    ) -> Container:
        from docker.types import EndpointConfig, Mount

        client = self._engine()
        arguments = dict(options)
        arguments["mounts"] = [Mount(target, source, type="bind") for target, source in options["mounts"]]
        arguments.pop("network")
        arguments["ports"] = {
            port: (LOOPBACK, host_port)
            for port, host_port in zip(
                options["ports"], self._assign_ports(plan.owner, service, options["ports"]), strict=True
            )
        }
        arguments["networking_config"] = {
            network: EndpointConfig(client.api.api_version, aliases=[service.key])
        }
        image = arguments.pop("image")
        container = client.containers.create(
            image,
            name=self._name(plan.owner, service.ssid),
            labels={
                **self._labels(plan),
                SERVICE_LABEL: service.ssid,
                KEY_LABEL: service.key,
                CONFIG_LABEL: digest,
            },
            network=network,
            hostname=service.key,
            detach=True,
            **arguments,
        )
        container.start()
        return container

    def _assign_ports(self, owner: str, service: ServicePlan, ports: list[str]) -> list[int]:
        """A host port for each of the container's ports: the one the service had last time where it
        is still free, so that its Connect link outlives a stop and start, else a new one; remembered
        for next time in ``run/<owner>/ports/<ssid>.json``, as the local runtime does."""
        path = self._data_dir / "run" / owner / "ports" / f"{service.ssid}.json"
        remembered: dict[str, int] = {}
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            remembered = {str(port): int(host) for port, host in json.loads(path.read_text()).items()}
        taken = self._published_ports() if remembered else set()
        assigned: list[int] = []
        for port in ports:
            name = port.partition("/")[0]
            host_port = remembered.get(name)
            # Podman publishes by a NAT rule without holding the port: a port another container
            # publishes looks free on the host, so the engine's own list is asked too.
            if (
                host_port is None
                or host_port in taken
                or host_port in assigned
                or not port_is_free(host_port)
            ):
                host_port = publishable_port()
                while host_port in assigned or host_port in taken:
                    host_port = publishable_port()
            assigned.append(host_port)
        if assigned:
            try:
                write_json_atomically(
                    path, {port.partition("/")[0]: host for port, host in zip(ports, assigned, strict=True)}
                )
            except OSError as error:
                log.warning("could not remember the ports of %s: %s", service.ssid, error)
        return assigned

    def _published_ports(self) -> set[int]:
        """The host ports the engine's containers publish now, whoever made them."""
        try:
            listed = self._engine().api.containers()
        except Exception as error:
            raise engine_error(error, "listing the published ports") from error
        return {
            int(binding["PublicPort"])
            for container in listed
            for binding in container.get("Ports") or ()
            if binding.get("PublicPort")
        }

    def _await_ready(self, run: ContainerRun, service: ServicePlan, container: Container) -> None:
        spec = service.spec
        probe = spec.readinessProbe
        timeout = probe.timeout if probe.timeout > 0 else self._settings.ready_timeout
        started = time.monotonic()
        while not run.halted.is_set():
            try:
                container.reload()
            except Exception as error:
                self._fail(run, service, "error", engine_error(error, "watching the container").message)
                return
            if container.status in ("exited", "dead"):
                self._fail(run, service, "error", self._exit_message(container, "before it was ready"))
                self._remove_container(container)
                return
            host_ports = _host_ports(container)
            if time.monotonic() - started >= probe.initialDelay and self._is_ready(
                service, host_ports, container
            ):
                self._mark_ready(run, service, container, host_ports)
                return
            if time.monotonic() - started >= timeout:
                self._remove_container(container)
                self._fail(
                    run,
                    service,
                    "timeout",
                    f"Service timed out after {timeout} seconds: {_not_ready(service)}",
                )
                return
            run.halted.wait(POLL_SECONDS)

    @staticmethod
    def _is_ready(service: ServicePlan, host_ports: dict[int, int], container: Container) -> bool:
        """As the spec's readiness probe says (http, tcp); else its first port accepts connections;
        else it runs."""
        spec = service.spec
        probe = spec.readinessProbe
        ports = spec.ports or []
        port = probe.port or (ports[0].port if ports else 0)
        if not port:
            return container.status == "running"
        host_port = host_ports.get(port)
        if host_port is None:
            return False
        if probe.type == "http":
            return _http_ok(host_port, _url_path(probe.path))
        return accepts_connections(host_port)

    def _mark_ready(
        self, run: ContainerRun, service: ServicePlan, container: Container, host_ports: dict[int, int]
    ) -> None:
        # An internal service (a database, a queue) is for the stack's other services: its address
        # is listed, but it gets no URL, so no Connect link (as on a cluster, where it has no Ingress).
        internal = service.spec.access == "internal"
        endpoints = [
            Endpoint(
                host=LOOPBACK,
                port=port.port,
                nodePort=host_ports[port.port],
                protocol=port.protocol,
                path=port.contextPath,
                url=""
                if internal
                else f"http://{LOOPBACK}:{host_ports[port.port]}{_url_path(port.contextPath)}",
            )
            for port in service.spec.ports or []
            if port.port in host_ports
        ]
        if not endpoints:
            message = "Running"
        elif internal:
            where = f"{LOOPBACK}:{endpoints[0].nodePort}"
            message = f"Listening on {where} for the stack's own services (internal: no Connect link)"
        else:
            message = f"Serving on {endpoints[0].url}"
        run.ready[service.key] = container.id or ""
        self._report(run, service, "ready", message, endpoints or None)

    def _watch(self, run: ContainerRun) -> None:
        """Until the stack stops: a ready service whose container ends has failed."""
        by_key = {service.key: service for service in run.plan.services}
        while not run.halted.wait(WATCH_SECONDS):
            for key, container_id in list(run.ready.items()):
                try:
                    container = self._engine().containers.get(container_id)
                    container.reload()
                except Exception as error:
                    mapped = engine_error(error, "watching the container")
                    if not isinstance(mapped, NotFound):
                        continue  # the engine is away for now: look again later
                    container = None
                if run.halted.is_set():
                    return
                if container is None or container.status in ("exited", "dead"):
                    del run.ready[key]
                    why = (
                        "Its container was removed"
                        if container is None
                        else self._exit_message(container, "")
                    )
                    self._fail(run, by_key[key], "error", why)

    def _exit_message(self, container: Container, when: str) -> str:
        state = container.attrs.get("State", {})
        code = state.get("ExitCode")
        last = ""
        try:
            lines = bytes(container.logs(stdout=True, stderr=True, tail=1)).decode("utf-8", "replace").strip()
            last = lines.splitlines()[-1][:LAST_LINE_LIMIT] if lines else ""
        except Exception as error:
            log.debug("no last log line of %s: %s", container.short_id, error)
        words = f"; last log line: {last}" if last else "; it wrote nothing to its log"
        reason = f": {state['Error']}" if state.get("Error") else ""
        return (
            " ".join(part for part in ("Container exited with code", str(code), when) if part)
            + reason
            + words
        )

    # --- Stopping --------------------------------------------------------------------------

    def _stop_stack(self, plan: StackPlan, *, report: bool) -> None:
        with self._stack_lock(plan):
            labels = {OWNER_LABEL: plan.owner, STACK_LABEL: plan.sid}
            order = {service.ssid: position for position, service in enumerate(plan.services)}
            # Dependants first, so nothing is left talking to a service that has gone.
            containers = sorted(
                self._containers(labels), key=lambda item: -order.get(item.labels.get(SERVICE_LABEL, ""), -1)
            )
            for container in containers:
                self._remove_container(container)
            self._remove_networks(labels)
            if report:
                for service in reversed(plan.services):
                    self._workers.deliver(
                        StatusReport(plan.owner, plan.sid, service.ssid, "stopped", "Stopped")
                    )

    def _remove_container(self, container: Container) -> None:
        try:
            if container.status == "running":
                container.stop(timeout=self._stop_grace)
            container.remove(force=True)
        except Exception as error:
            mapped = engine_error(error, f"removing container {container.short_id}")
            if not isinstance(mapped, NotFound):
                raise mapped from error

    def _remove_networks(self, labels: dict[str, str]) -> None:
        try:
            networks = self._engine().networks.list(filters={"label": self._filters(labels)})
        except Exception as error:
            raise engine_error(error, "listing networks") from error
        for network in networks:
            try:
                network.remove()
            except Exception as error:
                mapped = engine_error(error, f"removing network {network.name}")
                if not isinstance(mapped, NotFound):
                    log.warning("%s", mapped.message)

    # --- Helpers ---------------------------------------------------------------------------

    def _engine(self) -> DockerClient:
        with self._lock:
            if self._closed:
                raise Unavailable("the container runtime is closed")
            if self._client is not None:
                return self._client
        try:
            client = self._client_factory() if self._client_factory else self._default_client()
        except Exception as error:
            raise engine_error(error, "connecting to the container engine") from error
        with self._lock:
            if self._client is None:
                self._client = client
            return self._client

    def _default_client(self) -> DockerClient:
        import docker

        url = engine_url(self._settings.docker)
        if url is None:
            raise Unavailable(
                "no container engine: set DOCKER_HOST, or run Docker or Podman on "
                + " or ".join(DEFAULT_SOCKETS)
            )
        if _missing_socket(url):
            raise Unavailable(f"the container engine cannot be reached: no socket at {url}")
        return docker.DockerClient(base_url=url, timeout=ENGINE_SECONDS)

    def _network(self, plan: StackPlan) -> str:
        """The stack's own network, where its services reach each other by their keys."""
        name = self._name(plan.owner, plan.sid)
        client = self._engine()
        labels = {OWNER_LABEL: plan.owner, STACK_LABEL: plan.sid}
        if not client.networks.list(filters={"label": self._filters(labels)}):
            client.networks.create(name, driver="bridge", labels=self._labels(plan))
        return name

    def _containers(self, labels: dict[str, str]) -> list[Container]:
        try:
            return list(self._engine().containers.list(all=True, filters={"label": self._filters(labels)}))
        except Exception as error:
            raise engine_error(error, "listing containers") from error

    def _filters(self, labels: dict[str, str]) -> list[str]:
        return [f"{INSTANCE_LABEL}={self._instance}"] + [f"{name}={value}" for name, value in labels.items()]

    def _labels(self, plan: StackPlan) -> dict[str, str]:
        return {INSTANCE_LABEL: self._instance, OWNER_LABEL: plan.owner, STACK_LABEL: plan.sid}

    def _name(self, owner: str, name: str) -> str:
        return NAME_UNSAFE.sub("-", f"workbench-{self._instance[:8]}-{owner}-{name}")

    def _home(self, owner: str) -> Path:
        return self._data_dir / "home" / owner

    def _replace_run(self, plan: StackPlan, run: ContainerRun | None) -> ContainerRun | None:
        key = (plan.owner, plan.sid)
        with self._lock:
            if self._closed:
                raise Unavailable("the container runtime is closed")
            previous = self._runs.pop(key, None)
            if run is not None:
                self._runs[key] = run
            return previous

    def _stack_lock(self, plan: StackPlan) -> threading.Lock:
        with self._lock:
            return self._stack_locks.setdefault((plan.owner, plan.sid), threading.Lock())

    @staticmethod
    def _check(plan: StackPlan) -> None:
        checked_name(plan.owner, "owner")
        checked_name(plan.sid, "sid")
        for service in plan.services:
            checked_name(service.ssid, "ssid")

    def _fail(self, run: ContainerRun, service: ServicePlan, status: ServiceStatus, message: str) -> None:
        run.failed.add(service.key)
        self._report(run, service, status, message)

    def _report(
        self,
        run: ContainerRun,
        service: ServicePlan,
        status: ServiceStatus,
        message: str,
        endpoints: list[Endpoint] | None = None,
    ) -> None:
        if run.halted.is_set():
            return
        self._workers.deliver(
            StatusReport(run.plan.owner, run.plan.sid, service.ssid, status, message, endpoints)
        )


class EngineConsole:
    """A shell in a container through the engine's exec, on a terminal: the output and the input
    travel on the one connection the engine hands over (no multiplexing with a terminal)."""

    def __init__(self, client: DockerClient, container_id: str, columns: int, rows: int) -> None:
        self._client = client
        self._container_id = container_id
        self._session = secrets.token_hex(12)
        self._closed = threading.Event()
        try:
            created = client.api.exec_create(
                container_id, console_command(self._session), stdin=True, tty=True
            )
            self._exec_id = str(created["Id"])
            stream = client.api.exec_start(self._exec_id, tty=True, socket=True)
        except Exception as error:
            raise engine_error(error, "opening a console in the container") from error
        # The SDK hands over a SocketIO around the connection: reads go to the socket itself.
        handed: Any = stream
        self._socket: socket.socket = getattr(handed, "_sock", handed)
        self._socket.settimeout(None)
        self._response = stream  # keeps the SDK's response (and so the connection) alive
        self.resize(columns, rows)

    def read(self) -> bytes:
        if self._closed.is_set():
            return b""
        try:
            return self._socket.recv(CONSOLE_READ_BYTES)
        except OSError:
            return b""

    def write(self, data: bytes) -> None:
        if self._closed.is_set():
            return
        try:
            self._socket.sendall(data)
        except OSError as error:
            log.debug("console input to %s not sent: %s", self._container_id[:12], error)

    def resize(self, columns: int, rows: int) -> None:
        try:
            self._client.api.exec_resize(self._exec_id, height=rows, width=columns)
        except Exception as error:
            # The shell may have ended meanwhile; the terminal keeps its size.
            log.debug("console of %s not resized: %s", self._container_id[:12], error)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._socket.close()
        try:
            ending = self._client.api.exec_create(self._container_id, console_end_command(self._session))
            self._client.api.exec_start(ending["Id"])
        except Exception as error:
            mapped = engine_error(error, "ending the console's processes")
            if not isinstance(mapped, NotFound):  # the container itself has gone: so have they
                log.warning("%s in %s", mapped.message, self._container_id[:12])


CONSOLE_READ_BYTES = 65536


def _host_ports(container: Container) -> dict[int, int]:
    """Container port → the host port the engine published it on (127.0.0.1)."""
    found = {}
    for name, bindings in (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).items():
        port, _, protocol = name.partition("/")
        for binding in bindings or ():
            if protocol == "tcp" and binding.get("HostPort"):
                found[int(port)] = int(binding["HostPort"])
                break
    return found


def _http_ok(port: int, path: str) -> bool:
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=PROBE_SECONDS)
    try:
        connection.request("GET", path)
        return 200 <= connection.getresponse().status < 400
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _not_ready(service: ServicePlan) -> str:
    """Which readiness check never passed, as ``_is_ready`` makes it."""
    spec = service.spec
    probe = spec.readinessProbe
    ports = spec.ports or []
    port = probe.port or (ports[0].port if ports else 0)
    if not port:
        return "its container never ran"
    if probe.type == "http":
        return f"its readiness probe (HTTP GET {_url_path(probe.path)} on port {port}) never answered"
    return f"nothing accepted connections on its port {port}"


def _url_path(context_path: str) -> str:
    if not context_path:
        return "/"
    return context_path if context_path.startswith("/") else "/" + context_path


def _split_image(image: str) -> tuple[str, str]:
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return image, "latest"
    return name, tag


def container_resources(
    wanted: ResourceLimits, account: AccountResourceLimits, engine_cpus: int = 0
) -> dict[str, int]:
    """The container's CPU and memory, as Kubernetes gives a container of the spec in the account's
    namespace (its LimitRange's defaults, the account's maximum), in the engine's terms.

    Limits (NanoCpus, Memory): the spec's maximum, else the account's default, else the account's
    maximum; clamped to the account's maximum (where Kubernetes refuses the pod) and to the engine's
    CPUs (which Docker Engine refuses to exceed). Reservations (CpuShares, MemoryReservation), a
    Kubernetes request: the spec's default, else the limit where the spec sets one, else the
    account's default; never above the limit. CPU in millicores, memory in MB (MiB, as ``Mi``)."""
    cpu_limit = _limit(wanted.cpuMax or account.cpuDefault, account.cpuMax)
    if engine_cpus > 0 and cpu_limit > engine_cpus * 1000:
        cpu_limit = engine_cpus * 1000
    cpu_request = _request(wanted.cpuDefault, wanted.cpuMax, account.cpuDefault, cpu_limit)
    memory_limit = _limit(wanted.memMax or account.memDefault, account.memMax)
    memory_request = _request(wanted.memDefault, wanted.memMax, account.memDefault, memory_limit)
    resources = {}
    if cpu_limit:
        resources["nano_cpus"] = cpu_limit * 1_000_000
    if cpu_request:
        # The kubelet's weight for a request: 1024 a CPU, at least 2.
        resources["cpu_shares"] = max(2, cpu_request * 1024 // 1000)
    if memory_limit:
        resources["mem_limit"] = memory_limit * MEBIBYTE
    if memory_request:
        resources["mem_reservation"] = memory_request * MEBIBYTE
    return resources


def _limit(wanted: int, account_max: int) -> int:
    """The service's limit (its spec's, else the account's default), within the account's maximum."""
    if account_max > 0:
        return min(wanted, account_max) if wanted > 0 else account_max
    return max(wanted, 0)


def _request(own_default: int, own_max: int, account_default: int, limit: int) -> int:
    """The service's reservation: its spec's default; else its limit where the spec sets a maximum (as
    Kubernetes defaults a request to the limit); else the account's default; within the limit."""
    request = own_default or (limit if own_max or not account_default else account_default)
    request = max(request, 0)
    return min(request, limit) if limit > 0 else request
