"""Starting and stopping stacks: one at a time, all of a user's, or a quickstart of one spec."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from shared.core import clock
from shared.core.errors import Conflict, InvalidInput, NotFound, Unprocessable, WorkbenchError
from shared.core.models import Stack
from shared.domain import specs
from shared.domain.stacks.crud import create, get
from shared.domain.stacks.planning import plan_for
from shared.domain.stacks.status import mark_failed, reset_services

if TYPE_CHECKING:
    from shared.domain.stacks.ports import StackPorts


def start(ports: StackPorts, owner: str, sid: str) -> Stack:
    """Mark the stack ``starting`` (only one caller can) and hand it to the runtime."""
    plan = plan_for(ports, owner, get(ports, owner, sid))

    def change(stack: Stack) -> Stack:
        if stack.status != "stopped":
            raise Conflict(f"stack '{sid}' is {stack.status}")
        return stack.model_copy(
            update={
                "status": "starting",
                "services": reset_services(stack, ""),
                "updateTime": clock.now(),
            }
        )

    stack = ports.store.update_stack(owner, sid, change)
    ports.store.begin_stack_start(sid, time.time())  # the start duration histogram's beginning
    try:
        ports.runtime.start(plan)
    except WorkbenchError as error:
        mark_failed(ports.store, owner, sid, error.message)
        raise
    return stack


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
