"""Stacks: create, change, start, stop and delete a user's stacks, and record what the runtime reports."""

from __future__ import annotations

import logging
import secrets
import string
from collections.abc import Iterable, Mapping
from contextlib import suppress
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from shared.adapters.runtime import LOG_DEFAULT_LINES, LOG_MAX_LINES, ServicePlan, StackPlan, StatusReport
from shared.adapters.store import SYSTEM_CATALOG, Store
from shared.core import clock, datafolder
from shared.core.errors import Conflict, InvalidInput, NotFound, Unprocessable, WorkbenchError
from shared.core.models import AccountResourceLimits, ServiceSpec, Stack, StackService
from shared.core.paths import safe_relative
from shared.domain import specs

if TYPE_CHECKING:
    from shared.adapters.runtime import Runtime
    from shared.adapters.sink import EventSink
    from shared.core.settings import Settings

log = logging.getLogger(__name__)
ID_ALPHABET = string.ascii_lowercase + string.digits
MAX_STATUS_MESSAGES = 50
RUNNING = ("starting", "started")
RECONCILED = ("starting", "started", "stopping")
"""Stack states a read checks against the cluster: those that wait for the runtime to report."""


class StackPorts(Protocol):
    """The adapters stacks use (the platform has them all)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def store(self) -> Store: ...
    @property
    def runtime(self) -> Runtime: ...
    @property
    def runtime_kind(self) -> str:
        """Where stacks run: ``local``, ``docker`` or ``kubernetes``."""
        ...

    @property
    def site_key(self) -> bytes:
        """The key of the access grants in a secure local stack's Connect URLs."""
        ...

    @property
    def sink(self) -> EventSink: ...


def random_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(length))


def new_stack_id() -> str:
    """``s`` and 5 random characters, as the Go apiserver made them."""
    return "s" + random_suffix()


def stack_id_of(ssid: str) -> str:
    return ssid.split("-", 1)[0]


# --- composing a stack ---------------------------------------------------------------------


def _dependency_closure(
    store: Store, owner: str, main: ServiceSpec
) -> tuple[dict[str, ServiceSpec], set[str]]:
    """Every spec reachable through ``depends`` (by key), and the keys required transitively."""
    found: dict[str, ServiceSpec] = {main.key: main}
    pending = [main]
    while pending:
        spec = pending.pop()
        for dependency in spec.depends or ():
            if dependency.key in found:
                continue
            child = specs.lookup(store, owner, dependency.key)
            if child is None:
                raise NotFound("service", message=f"Missing dependency {dependency.key}")
            found[dependency.key] = child
            pending.append(child)
    # Required-ness is followed only once every spec is known: a spec first reached through an
    # optional dependency may turn out to be required through another path, and so its own
    # required dependencies too.
    required: set[str] = {main.key}
    pending = [main]
    while pending:
        spec = pending.pop()
        for dependency in spec.depends or ():
            if dependency.required and dependency.key not in required:
                required.add(dependency.key)
                pending.append(found[dependency.key])
    return found, required


def _safe_relative(path: str, field: str) -> str:
    """A volume mount's folder in the home, cleaned (see ``paths.safe_relative``); the error says
    what a mount's folder must be, as the stack API always has."""
    try:
        return safe_relative(path, field=field)
    except InvalidInput:
        raise InvalidInput("must be a relative path inside the home folder", field=field) from None


def _compose_service(
    sid: str, index: int, given: StackService, spec: ServiceSpec, previous: StackService | None
) -> StackService:
    """A stack service with its id, image tag, config and volume mounts filled in and checked."""
    where = f"services.{index}"
    options = {config.name: config for config in spec.config or ()}
    config: dict[str, str] = {}
    for config_option in spec.config or ():
        if config_option.useFrom:
            continue  # resolved from the dependency at start
        value = config_option.value
        if config_option.isPassword and not value:
            value = secrets.token_urlsafe(12)
        config[config_option.name] = value
    if previous and previous.config:
        config.update({k: v for k, v in previous.config.items() if k in config})
    for name, value in (given.config or {}).items():
        option = options.get(name)
        if option is None:
            raise InvalidInput(f"'{spec.key}' has no config option '{name}'", field=f"{where}.config.{name}")
        if value != config.get(name) and not option.canOverride and not option.useFrom:
            raise InvalidInput(f"'{name}' cannot be overridden", field=f"{where}.config.{name}")
        if not option.useFrom:
            config[name] = value

    ssid = f"{sid}-{spec.key}"
    mounts: dict[str, str] = {}
    given_mounts = (
        given.volumeMounts
        if given.volumeMounts is not None
        else (previous.volumeMounts if previous else None)
    )
    for from_path, to_path in (given_mounts or {}).items():
        if not from_path:
            continue  # Go: an empty source means "make me a folder"
        mounts[_safe_relative(from_path, f"{where}.volumeMounts.{from_path}")] = to_path
    targets = list(mounts.values())
    for mount in spec.volumeMounts or ():
        if mount.type == "docker":
            continue
        if targets.count(mount.mountPath) > 1:
            raise InvalidInput(f"two folders are mounted at {mount.mountPath}", field=f"{where}.volumeMounts")
        if mount.mountPath not in targets:
            mounts[f"AppData/{ssid}-{random_suffix()}"] = mount.mountPath

    image_tags = spec.image.tags or []
    image_tag = (
        given.imageTag or (previous.imageTag if previous else "") or (image_tags[0] if image_tags else "")
    )
    if image_tags and image_tag not in image_tags:
        raise InvalidInput(f"must be one of {', '.join(image_tags)}", field=f"{where}.imageTag")
    now = clock.now()
    return StackService(
        id=ssid,
        stack=sid,
        service=spec.key,
        imageTag=image_tag,
        status=previous.status if previous else "",
        statusMessages=previous.statusMessages if previous else [],
        createdTime=previous.createdTime if previous else now,
        updateTime=now,
        config=config,
        volumeMounts=mounts,
    )


def _compose(ports: StackPorts, owner: str, sid: str, body: Stack, previous: Stack | None) -> Stack:
    if not body.key:
        raise InvalidInput("is required: the key of the stack's main service", field="key")
    main = specs.lookup(ports.store, owner, body.key)
    if main is None:
        raise NotFound("service", body.key)
    reachable, required = _dependency_closure(ports.store, owner, main)

    wanted: list[StackService] = []
    seen: set[str] = set()
    for index, given in enumerate(body.services):
        key = given.service
        if not key:
            raise InvalidInput("is required", field=f"services.{index}.service")
        if key not in reachable:
            raise InvalidInput(
                f"'{key}' is not '{main.key}' or one of its dependencies",
                field=f"services.{index}.service",
            )
        if key in seen:
            raise InvalidInput(f"'{key}' appears twice", field=f"services.{index}.service")
        seen.add(key)
        wanted.append(given)
    for key in [main.key, *sorted(required - {main.key})]:
        if key not in seen:
            wanted.append(StackService(service=key))
            seen.add(key)

    before = {service.service: service for service in previous.services} if previous else {}
    services = [
        _compose_service(sid, index, given, reachable[given.service], before.get(given.service))
        for index, given in enumerate(wanted)
    ]
    name = body.name.strip() or (previous.name if previous else "") or main.label or main.key
    now = clock.now()
    return Stack(
        id=sid,
        key=main.key,
        name=name,
        services=services,
        status="stopped",
        createdTime=previous.createdTime if previous else now,
        updateTime=now,
        secure=body.secure,
    )


# --- reading and changing stacks -----------------------------------------------------------


def get(ports: StackPorts, owner: str, sid: str) -> Stack:
    stack = ports.store.get_stack(owner, sid)
    if stack is None:
        raise NotFound("stack", sid)
    return stack


def create(ports: StackPorts, owner: str, body: Stack) -> Stack:
    """Add a stopped stack; ids are retried in the unlikely case of a clash."""
    for _ in range(5):
        stack = _compose(ports, owner, new_stack_id(), body, None)
        try:
            ports.store.insert_stack(owner, stack)
        except Conflict:
            continue
        return stack
    raise Conflict("could not allocate a stack id; try again")


def update(ports: StackPorts, owner: str, sid: str, body: Stack) -> Stack:
    """Replace a stopped stack's services (ids, folders and config of kept services are kept)."""
    if body.id and body.id != sid:
        raise InvalidInput(f"does not match the path ('{sid}')", field="id")
    previous = get(ports, owner, sid)
    composed = _compose(ports, owner, sid, body, previous)

    def change(stack: Stack) -> Stack:
        if stack.status != "stopped":
            raise Conflict(f"stack '{sid}' is {stack.status}; stop it before changing it")
        return composed

    return ports.store.update_stack(owner, sid, change)


def rename(ports: StackPorts, owner: str, sid: str, name: str) -> Stack:
    if not name.strip():
        raise InvalidInput("must not be empty", field="name")

    def change(stack: Stack) -> Stack:
        return stack.model_copy(update={"name": name.strip(), "updateTime": clock.now()})

    return ports.store.update_stack(owner, sid, change)


def delete(ports: StackPorts, owner: str, sid: str) -> None:
    stack = get(ports, owner, sid)
    if stack.status in (*RUNNING, "stopping"):
        raise Conflict(f"stack '{sid}' is {stack.status}; stop it before deleting it")
    ports.runtime.remove(plan_for(ports, owner, stack))
    ports.store.delete_stack(owner, sid)


# --- running -------------------------------------------------------------------------------


def _ordered(stack: Stack, spec_of: dict[str, ServiceSpec]) -> list[StackService]:
    """The stack's services with every dependency before its dependants."""
    present = {service.service: service for service in stack.services}
    ordered: list[StackService] = []
    visiting: set[str] = set()

    def visit(key: str) -> None:
        if key in visiting or any(service.service == key for service in ordered):
            return
        visiting.add(key)
        for dependency in spec_of[key].depends or ():
            if dependency.key in present:
                visit(dependency.key)
        ordered.append(present[key])

    for service in stack.services:
        visit(service.service)
    return ordered


def plan_for(ports: StackPorts, owner: str, stack: Stack) -> StackPlan:
    """What the runtime needs to run ``stack``: services in order, environment, folders."""
    spec_of: dict[str, ServiceSpec] = {}
    system_specs: set[str] = set()
    for service in stack.services:
        # As specs.lookup: the owner's own spec first. Where it was found, not what it says of
        # itself, tells whether it is the admin's.
        spec = ports.store.get_spec(owner, service.service)
        if spec is None:
            spec = ports.store.get_spec(SYSTEM_CATALOG, service.service)
            system_specs.add(service.service)
        if spec is None:
            raise NotFound("service", message=f"Missing dependency {service.service}")
        spec_of[service.service] = spec
    config_of = {service.service: service.config or {} for service in stack.services}
    record = ports.store.get_account(owner)
    email = record.account.email if record else ""
    limits = record.account.resourceLimits if record else AccountResourceLimits()
    domain = ports.settings.runtime.domain
    plans = []
    for service in _ordered(stack, spec_of):
        spec = spec_of[service.service]
        env = dict(config_of[service.service])
        for option in spec.config or ():
            if option.useFrom:
                dependency, _, name = option.useFrom.partition(".")
                env[option.name] = config_of.get(dependency, {}).get(name, "")
        env.update(
            {
                "NDSLABS_STACK": stack.id,
                "NDSLABS_SERVICE": service.id,
                "NDSLABS_NAMESPACE": owner,
                "NDSLABS_EMAIL": email,
                "NDSLABS_DOMAIN": domain or "",
                "NDSLABS_HOSTNAME": f"{service.id}.{domain}" if domain else "",
            }
        )
        present = [d for d in spec.depends or () if d.key in config_of]
        plans.append(
            ServicePlan(
                ssid=service.id,
                key=service.service,
                spec=spec,
                env=env,
                volumes=dict(service.volumeMounts or {}),
                requires=tuple(d.key for d in present if d.required),
                uses=tuple(d.key for d in present),
                image_tag=service.imageTag,
                data_mount=datafolder.mount_path(spec),
                system_spec=service.service in system_specs,
            )
        )
    return StackPlan(
        owner=owner, sid=stack.id, services=tuple(plans), secure=stack.secure, email=email, limits=limits
    )


def _reset_services(stack: Stack, status: str) -> list[StackService]:
    return [
        service.model_copy(update={"status": status, "statusMessages": [], "endpoints": None})
        for service in stack.services
    ]


def start(ports: StackPorts, owner: str, sid: str) -> Stack:
    """Mark the stack ``starting`` (only one caller can) and hand it to the runtime."""
    plan = plan_for(ports, owner, get(ports, owner, sid))

    def change(stack: Stack) -> Stack:
        if stack.status != "stopped":
            raise Conflict(f"stack '{sid}' is {stack.status}")
        return stack.model_copy(
            update={
                "status": "starting",
                "services": _reset_services(stack, ""),
                "updateTime": clock.now(),
            }
        )

    stack = ports.store.update_stack(owner, sid, change)
    try:
        ports.runtime.start(plan)
    except WorkbenchError as error:
        _mark_failed(ports.store, owner, sid, error.message)
        raise
    return stack


def _mark_failed(store: Store, owner: str, sid: str, message: str) -> None:
    def change(stack: Stack) -> Stack:
        return stack.model_copy(
            update={
                "status": "error",
                "updateTime": clock.now(),
                "services": [
                    service.model_copy(
                        update={"statusMessages": [*service.statusMessages, message][-MAX_STATUS_MESSAGES:]}
                    )
                    for service in stack.services
                ],
            }
        )

    with suppress(NotFound):
        store.update_stack(owner, sid, change)


def stop(ports: StackPorts, owner: str, sid: str) -> Stack:
    """Mark the stack ``stopping`` and ask the runtime to stop it."""
    plan = plan_for(ports, owner, get(ports, owner, sid))

    def change(stack: Stack) -> Stack:
        if stack.status in ("stopped", "stopping"):
            raise Conflict(f"stack '{sid}' is {stack.status}")
        return stack.model_copy(update={"status": "stopping", "updateTime": clock.now()})

    stack = ports.store.update_stack(owner, sid, change)
    ports.runtime.stop(plan)
    return stack


def stop_all(ports: StackPorts, owner: str) -> list[Stack]:
    stopped = []
    for stack in ports.store.list_stacks(owner):
        if stack.status in ("stopped", "stopping"):
            continue
        try:
            stopped.append(stop(ports, owner, stack.id))
        except Conflict:
            continue  # stopped meanwhile by another caller
    return stopped


def quickstart(ports: StackPorts, owner: str, key: str | None) -> Stack:
    """Add (if needed) and start a stack of the one spec ``key``; 422 when it needs other services.
    The stack, starting or already running, as the Go apiserver's (server.go QuickstartStack: the
    start goes on in the background, the stack is written at once)."""
    if not key:
        raise InvalidInput("is required: the key of the service to start", field="key")
    spec = specs.lookup(ports.store, owner, key)
    if spec is None:
        raise NotFound("service", key)
    required = [d.key for d in spec.depends or () if d.required]
    if required:
        raise Unprocessable(f"'{key}' requires {', '.join(required)}; create a stack with them instead")
    of_key = [s for s in ports.store.list_stacks(owner) if s.key == key]
    # A running stack of the spec is the one to navigate to; otherwise the oldest.
    stack = next((s for s in of_key if s.status != "stopped"), of_key[0] if of_key else None)
    if stack is None:
        # As the Go apiserver's quickstart made it: named by the spec's label, and secure.
        stack = create(ports, owner, Stack(key=key, secure=True))
    if stack.status != "stopped":
        return stack
    try:
        return start(ports, owner, stack.id)
    except Conflict:
        return get(ports, owner, stack.id)


def record_status(
    store: Store, report: StatusReport, *, if_changed: bool = False
) -> tuple[str, Stack] | None:
    """Apply a runtime report to the stored stack and derive the stack's status from its services;
    returns the status before and the stack after (None when the stack is gone). With ``if_changed``,
    a report of the state the service is already in changes nothing (a reconciling read repeats them)."""
    before: list[str] = []

    def change(stack: Stack) -> Stack:
        before[:] = [stack.status]
        if if_changed and any(
            service.id == report.ssid
            and service.status == report.status
            and (report.status != "ready" or service.endpoints == report.endpoints)
            for service in stack.services
        ):
            return stack
        if stack.status in ("stopped",) and report.status != "stopped":
            return stack  # a late report from a start that was since stopped
        if stack.status == "stopping" and report.status in ("starting", "ready"):
            return stack
        services = []
        for service in stack.services:
            if service.id == report.ssid:
                messages = list(service.statusMessages)
                if report.message:
                    messages = [*messages, report.message][-MAX_STATUS_MESSAGES:]
                endpoints = (
                    report.endpoints
                    if report.status == "ready"
                    else (None if report.status in ("stopped", "error", "timeout") else service.endpoints)
                )
                service = service.model_copy(
                    update={
                        "status": report.status,
                        "statusMessages": messages,
                        "endpoints": endpoints,
                        "updateTime": clock.now(),
                    }
                )
            services.append(service)
        statuses = [service.status for service in services]
        status = stack.status
        if status in RUNNING:
            if any(s in ("error", "timeout") for s in statuses):
                status = "error"
            elif all(s == "ready" for s in statuses):
                status = "started"
        elif status == "stopping" and all(s == "stopped" for s in statuses):
            # The runtime reports every service stopped (also those it never started), dependants
            # first; only the last report, after the last process ended, makes the stack stopped.
            status = "stopped"
        return stack.model_copy(update={"services": services, "status": status, "updateTime": clock.now()})

    try:
        after = store.update_stack(report.owner, report.sid, change)
    except NotFound:
        return None  # the stack was deleted meanwhile
    return before[0], after


def report(ports: StackPorts, status_report: StatusReport, *, if_changed: bool = False) -> None:
    """Record what the runtime saw and announce a stack that became started, stopped or failed."""
    from events import types

    outcome = record_status(ports.store, status_report, if_changed=if_changed)
    if outcome is None:
        return
    before, stack = outcome
    announced = {"started": types.STACK_STARTED, "stopped": types.STACK_STOPPED, "error": types.STACK_FAILED}
    if stack.status == before or stack.status not in announced:
        return
    messages = [message for service in stack.services for message in service.statusMessages[-1:]]
    ports.sink.emit(
        announced[stack.status],
        types.StackOutcome(
            user=status_report.owner,
            stack_id=stack.id,
            status=stack.status,
            endpoints=[e.url for service in stack.services for e in service.endpoints or () if e.url],
            message="; ".join(messages) if stack.status == "error" else None,
        ),
        subject=stack.id,
    )


def reconcile(ports: StackPorts, owner: str, stack: Stack, *, quiet: bool = True) -> Stack:
    """The stack once its stored status agrees with what the cluster shows, so that a lost status
    event leaves no wrong status behind; local stacks are reported on by their supervisors instead.
    ``quiet``: a cluster that cannot be asked leaves the stack as recorded rather than failing."""
    if stack.status not in _reconciled_states(ports):
        return stack
    try:
        observed = ports.runtime.observe(plan_for(ports, owner, stack))
    except WorkbenchError as error:
        if not quiet:
            raise
        # A read still answers when the cluster does not: with the status last recorded.
        log.warning("could not reconcile stack %s of %s: %s", stack.id, owner, error.message)
        return stack
    for status_report in observed:
        report(ports, status_report, if_changed=True)
    if not observed:
        return stack
    return ports.store.get_stack(owner, stack.id) or stack


def _reconciled_states(ports: StackPorts) -> tuple[str, ...]:
    """The stack states a read checks against the runtime: none for stacks on this machine (local
    processes or containers), whose supervising threads report on them."""
    return () if ports.runtime_kind in ("local", "docker") else RECONCILED


def read(ports: StackPorts, owner: str, sid: str) -> Stack:
    """One of the owner's stacks, reconciled with the cluster, with the Connect URLs of its owner."""
    return connectable(ports, owner, reconcile(ports, owner, get(ports, owner, sid)))


def list_stacks(ports: StackPorts, owner: str) -> list[Stack]:
    """The owner's stacks, each reconciled with the cluster."""
    return [reconcile(ports, owner, stack) for stack in ports.store.list_stacks(owner)]


def list_stacks_json(ports: StackPorts, owner: str) -> str:
    """``list_stacks`` as a JSON array. A stored document the current model wrote, of a stack
    that no reconciling can change, is already that stack's JSON: it is served as stored rather
    than validated and serialized again (most of the cost of a listing). The others go through
    the model, and reconciling."""
    reconciled = _reconciled_states(ports)
    granted = _grants_access(ports)
    documents = [
        stored.document
        if stored.current and stored.status not in reconciled and not (granted and SECURE in stored.document)
        else connectable(ports, owner, reconcile(ports, owner, stored.stack())).model_dump_json()
        for stored in ports.store.list_stored_stacks(owner)
    ]
    return "[" + ",".join(documents) + "]"


SECURE = '"secure":true'
"""How a current stored document of a secure stack says so (inside a string the quotes are escaped)."""


def _grants_access(ports: StackPorts) -> bool:
    """Whether secure stacks' Connect URLs carry access grants: on the local runtime, whose static
    sites check them (on a cluster the ingress checks the visitor's token instead)."""
    return ports.runtime_kind == "local"


def connectable(ports: StackPorts, owner: str, stack: Stack) -> Stack:
    """``stack`` as its owner sees it: a secure local stack's endpoint URLs carry a short-lived access
    grant for their service, which the owner's Connect link presents. Grants are never stored or
    announced; each read of the owner's makes fresh ones."""
    if not (stack.secure and _grants_access(ports)):
        return stack
    from shared.adapters.runtime.static_site import granted_url, service_key

    site_key = ports.site_key
    services = []
    for service in stack.services:
        if service.endpoints:
            key = service_key(site_key, owner, service.id)
            endpoints = [
                endpoint.model_copy(update={"url": granted_url(endpoint.url, key)})
                if endpoint.url
                else endpoint
                for endpoint in service.endpoints
            ]
            service = service.model_copy(update={"endpoints": endpoints})
        services.append(service)
    return stack.model_copy(update={"services": services})


def reconcile_pod(ports: StackPorts, pod: Mapping[str, Any]) -> Stack | None:
    """Reconcile the stack a changed pod belongs to. The pod only names the stack (by its labels):
    the status comes from the cluster itself, so a forged or stale event can change nothing but the
    moment of a reconciliation. None when the pod is not a stack's or the stack is gone."""
    from shared.adapters.runtime.kube_objects import stack_of_pod

    named = stack_of_pod(pod)
    if named is None:
        return None
    owner, sid = named
    stack = ports.store.get_stack(owner, sid)
    if stack is None:
        return None
    return reconcile(ports, owner, stack, quiet=False)


def logs(ports: StackPorts, owner: str, ssid: str, lines: str | None) -> str:
    """The service's status messages and log tail, in the Go apiserver's format: the last ``lines``
    lines (LOG_DEFAULT_LINES when not given, at most LOG_MAX_LINES)."""
    tail = LOG_DEFAULT_LINES
    if lines:
        try:
            tail = int(lines)
        except ValueError:
            raise InvalidInput(f"must be a whole number, got {lines!r}", field="lines") from None
        if tail < 0:
            raise InvalidInput("must not be negative", field="lines")
    tail = min(tail, LOG_MAX_LINES)
    stack = ports.store.get_stack(owner, stack_id_of(ssid))
    service = next((s for s in stack.services if s.id == ssid), None) if stack else None
    if service is None:
        raise NotFound("stack service", ssid)
    # The Go apiserver's title of the status messages; a runtime other than Kubernetes names them as such.
    title = "KUBERNETES LOG" if ports.settings.runtime.kind == "kubernetes" else "STATUS MESSAGES"
    text = f"{title}\n=====================\n"
    text += "".join(message + "\n" for message in service.statusMessages)
    text += "\nSERVICE LOG\n=====================\n"
    return text + ports.runtime.logs(owner, ssid, tail)


def endpoint_hosts(stacks: Iterable[Stack]) -> set[str]:
    """Every ``host[:port]`` at which the given stacks' services answer."""
    hosts: set[str] = set()
    for stack in stacks:
        for service in stack.services:
            for endpoint in service.endpoints or ():
                if endpoint.url:
                    hosts.add(urlsplit(endpoint.url).netloc.lower())
                if endpoint.host and endpoint.host not in ("127.0.0.1", "localhost"):
                    hosts.add(endpoint.host.lower())
    return hosts


def restore(ports: StackPorts) -> list[str]:
    """After a restart: start again the stacks that were running, finish stopping the others."""
    restored = []
    for owner, stack in ports.store.list_all_stacks():
        try:
            if stack.status in RUNNING:
                plan = plan_for(ports, owner, stack)
                ports.store.update_stack(owner, stack.id, _restarting)
                ports.runtime.start(plan)
                restored.append(stack.id)
            elif stack.status == "stopping":
                ports.runtime.stop(plan_for(ports, owner, stack))
        except WorkbenchError as error:
            # One stack that cannot be restored must not keep the others (or the platform) down.
            log.warning("could not restore stack %s of %s: %s", stack.id, owner, error.message)
            _mark_failed(ports.store, owner, stack.id, f"Could not be restarted: {error.message}")
    return restored


def _restarting(stack: Stack) -> Stack:
    return stack.model_copy(update={"status": "starting", "services": _reset_services(stack, "")})
