"""Service catalogs: the system catalog (the admin's) and each user's own, as the services API shows them."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from shared.adapters.store import SYSTEM_CATALOG, Store
from shared.core import clock
from shared.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from shared.core.models import ServiceSpec
from shared.domain.auth import Principal

if TYPE_CHECKING:
    from shared.domain.catalog import CheckedSpec, SpecValidator

log = logging.getLogger("workbench.specs")

CATALOGS = ("system", "user", "all")


class SpecPorts(Protocol):
    """The adapters the catalog's routes use."""

    @property
    def store(self) -> Store: ...
    @property
    def validator(self) -> SpecValidator: ...


def lookup(store: Store, owner: str, key: str) -> ServiceSpec | None:
    """The spec ``key`` as ``owner`` sees it: their own catalog first, then the system's."""
    return store.get_spec(owner, key) or store.get_spec(SYSTEM_CATALOG, key)


def _catalog(value: str | None, *, default: str = "all") -> str:
    catalog = value or default
    if catalog not in CATALOGS:
        raise InvalidInput(f"must be one of {', '.join(CATALOGS)}, got {catalog!r}", field="catalog")
    return catalog


def _owner(principal: Principal, catalog: str) -> str:
    if catalog == "system":
        if not principal.admin:
            raise Forbidden("only the admin may change the system catalog")
        return SYSTEM_CATALOG
    return principal.user


def list_specs(ports: SpecPorts, principal: Principal, catalog: str | None) -> list[ServiceSpec]:
    chosen = _catalog(catalog)
    store = ports.store
    if chosen == "system":
        return store.list_specs(SYSTEM_CATALOG)
    if chosen == "user":
        return store.list_specs(principal.user)
    merged = {spec.key: spec for spec in store.list_specs(SYSTEM_CATALOG)}
    merged.update({spec.key: spec for spec in store.list_specs(principal.user)})
    return [merged[key] for key in sorted(merged)]


def read(ports: SpecPorts, principal: Principal, key: str, catalog: str | None) -> ServiceSpec:
    chosen = _catalog(catalog)
    store = ports.store
    if chosen == "system":
        spec = store.get_spec(SYSTEM_CATALOG, key)
    elif chosen == "user":
        spec = store.get_spec(principal.user, key)
    else:
        spec = lookup(store, principal.user, key)
    if spec is None:
        raise NotFound("service", key)
    return spec


def _checked(ports: SpecPorts, principal: Principal, document: Any, catalog: str) -> CheckedSpec:
    """The spec as the Go apiserver's checks take it (400 where they refused), with the stricter
    checks' findings as warnings, which the log keeps too."""
    checked = ports.validator.check_posted(document)
    update: dict[str, Any] = {"catalog": catalog, "updateTime": clock.now()}
    if catalog == "user":
        update["privileged"] = False  # privileged services only in the admin's catalog
        update["securityContext"] = None
        update["authRequired"] = True  # a user's service is behind the login, as server.go has it
    for warning in checked.warnings:
        log.warning("service spec '%s' of %s: %s", checked.spec.key, principal.user, warning)
    return checked._replace(spec=checked.spec.model_copy(update=update))


def _with_dependencies(ports: SpecPorts, principal: Principal, checked: CheckedSpec) -> CheckedSpec:
    """404 for a missing dependency, as the Go apiserver answered; more warnings otherwise."""
    from shared.domain.catalog import check_dependencies

    found = check_dependencies(checked.spec, lambda key: lookup(ports.store, principal.user, key))
    for warning in found:
        log.warning("service spec '%s' of %s: %s", checked.spec.key, principal.user, warning)
    return checked._replace(warnings=checked.warnings + tuple(found))


def create(ports: SpecPorts, principal: Principal, document: Any, catalog: str | None) -> CheckedSpec:
    """Add a spec: 400 for one the Go apiserver refused, 409 for a key in use, 404 for a missing
    dependency, in that order (server.go PostService)."""
    chosen = _catalog(catalog, default="user")
    if chosen == "all":
        raise InvalidInput("must be system or user when adding a service", field="catalog")
    owner = _owner(principal, chosen)
    checked = _checked(ports, principal, document, chosen)
    spec = checked.spec
    if lookup(ports.store, principal.user, spec.key) is not None:
        raise Conflict(f"Service exists with key '{spec.key}'")
    checked = _with_dependencies(ports, principal, checked)
    spec = spec.model_copy(update={"createdTime": spec.updateTime})
    ports.store.insert_spec(owner, spec)
    return checked._replace(spec=spec)


def update(
    ports: SpecPorts, principal: Principal, key: str, document: Any, catalog: str | None
) -> CheckedSpec:
    chosen = _catalog(catalog, default="user")
    if chosen == "all":
        raise InvalidInput("must be system or user when replacing a service", field="catalog")
    owner = _owner(principal, chosen)
    checked = _checked(ports, principal, document, chosen)
    spec = checked.spec
    if spec.key != key:
        raise InvalidInput(f"does not match the path ('{key}')", field="key")
    current = ports.store.get_spec(owner, key)
    if current is None:
        raise NotFound("service", key)
    checked = _with_dependencies(ports, principal, checked)
    if ports.store.count_stacks_using(key, None if owner == SYSTEM_CATALOG else owner):
        raise Conflict("Service is in use")
    spec = spec.model_copy(update={"createdTime": current.createdTime})
    ports.store.replace_spec(owner, spec)
    return checked._replace(spec=spec)


def delete(ports: SpecPorts, principal: Principal, key: str, catalog: str | None) -> None:
    chosen = _catalog(catalog, default="user")
    if chosen == "all":
        raise InvalidInput("must be system or user when deleting a service", field="catalog")
    owner = _owner(principal, chosen)
    store = ports.store
    if store.get_spec(owner, key) is None:
        raise NotFound("service", key)
    dependants = [
        spec.key
        for spec in store.list_specs(owner)
        if any(dependency.key == key for dependency in spec.depends or ())
    ]
    if dependants:
        raise Conflict(f"Required by another service ({', '.join(dependants)})")
    if store.count_stacks_using(key, None if owner == SYSTEM_CATALOG else owner):
        raise Conflict("Service is in use")
    store.delete_spec(owner, key)


def configs(ports: SpecPorts, principal: Principal, keys: str | None) -> dict[str, Any]:
    """The configuration options of each named spec, keyed by spec key."""
    if not keys:
        raise InvalidInput("is required: a comma-separated list of service keys", field="services")
    found: dict[str, Any] = {}
    for key in (part.strip() for part in keys.split(",")):
        if not key:
            continue
        spec = lookup(ports.store, principal.user, key)
        if spec is None:
            raise NotFound("service", key)
        found[key] = [config.model_dump() for config in spec.config or ()]
    return found
