"""A shell in a running stack service: who may open one, where, and of what size."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from shared.core.errors import Conflict, InvalidInput, NotFound, NotSupported, WorkbenchError
from shared.core.models import ConsoleCheck
from shared.domain.stacks import stack_id_of

if TYPE_CHECKING:
    from shared.adapters.runtime import ConsoleSession, Runtime
    from shared.adapters.store import Store
    from shared.core.models import StackService

log = logging.getLogger(__name__)

DEFAULT_SIZE = (80, 24)
LARGEST_SIZE = 1000


class ConsolePorts(Protocol):
    """What a console needs of the platform."""

    @property
    def store(self) -> Store: ...
    @property
    def runtime(self) -> Runtime: ...


def owned_service(
    ports: ConsolePorts, owner: str, ssid: str | None, namespace: str | None = None
) -> StackService:
    """The caller's stack service ``ssid``; as the Go apiserver, 404 for one that is not the
    caller's (whoever names another user's ``namespace``, the admin too)."""
    if not ssid:
        raise InvalidInput("names no stack service", field="ssid")
    if namespace and namespace != owner:
        raise NotFound("stack service", ssid)
    stack = ports.store.get_stack(owner, stack_id_of(ssid))
    service = next((item for item in stack.services if item.id == ssid), None) if stack else None
    if service is None:
        raise NotFound("stack service", ssid)
    return service


def refusal(ports: ConsolePorts, service: StackService) -> WorkbenchError | None:
    """Why no console opens in ``service`` now: 501 where the runtime has no containers, 409 while
    the service is not running; None when one opens."""
    if not ports.runtime.consoles:
        return NotSupported(
            "no console here: stacks run as local processes, which have no container to open a shell "
            "in; a console needs Docker, Podman or Kubernetes"
        )
    if service.status != "ready":
        return Conflict(
            f"stack service '{service.id}' is not running (its status: {service.status or 'stopped'}); "
            "start its stack first"
        )
    return None


def check(ports: ConsolePorts, owner: str, ssid: str | None, namespace: str | None = None) -> ConsoleCheck:
    """``check_console`` as Go answered it: 200 for any stack service of the caller's (404 else),
    saying here too whether a shell opens in it now and, if not, why."""
    service = owned_service(ports, owner, ssid, namespace)
    refused = refusal(ports, service)
    return ConsoleCheck(ssid=service.id, available=refused is None, reason=str(refused or ""))


def openable(ports: ConsolePorts, owner: str, ssid: str | None, namespace: str | None = None) -> StackService:
    """The caller's running stack service ``ssid``, where a console opens; else its refusal."""
    service = owned_service(ports, owner, ssid, namespace)
    refused = refusal(ports, service)
    if refused is not None:
        raise refused
    return service


def terminal_size(columns: str | None, rows: str | None) -> tuple[int, int]:
    """The terminal's size from the query (``cols``, ``rows``), else 80 by 24."""
    size = list(DEFAULT_SIZE)
    for index, (name, value) in enumerate((("cols", columns), ("rows", rows))):
        if value:
            if not value.isdigit() or not 0 < int(value) <= LARGEST_SIZE:
                raise InvalidInput(f"must be a whole number from 1 to {LARGEST_SIZE}", field=name)
            size[index] = int(value)
    return size[0], size[1]


def open_session(ports: ConsolePorts, owner: str, ssid: str, size: tuple[int, int]) -> ConsoleSession:
    session = ports.runtime.console(owner, ssid, *size)
    log.info("console opened in %s for %s", ssid, owner)
    return session
