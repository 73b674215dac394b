"""Composing a stack from a request: its services (the main one, its required dependencies and the
optional ones asked for), each with its id, image tag, config and volume mounts checked."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from shared.adapters.store import Store
from shared.core import clock
from shared.core.errors import InvalidInput, NotFound
from shared.core.models import ServiceSpec, Stack, StackService
from shared.core.paths import safe_relative
from shared.domain import specs
from shared.domain.stacks.ids import random_suffix

if TYPE_CHECKING:
    from shared.domain.stacks.ports import StackPorts


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


def compose(ports: StackPorts, owner: str, sid: str, body: Stack, previous: Stack | None) -> Stack:
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
