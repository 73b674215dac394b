"""Planning: what the runtime needs to run a stack (its services in order, environment, folders)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.adapters.runtime import ServicePlan, StackPlan
from shared.adapters.store import SYSTEM_CATALOG
from shared.core import datafolder
from shared.core.errors import NotFound
from shared.core.models import AccountResourceLimits, ServiceSpec, Stack, StackService

if TYPE_CHECKING:
    from shared.domain.stacks.ports import StackPorts


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
