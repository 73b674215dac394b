"""Reading, adding, changing and deleting a user's stacks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.core import clock
from shared.core.errors import Conflict, InvalidInput, NotFound
from shared.core.models import Stack
from shared.domain.stacks.composition import compose
from shared.domain.stacks.ids import new_stack_id
from shared.domain.stacks.planning import plan_for
from shared.domain.stacks.status import RUNNING

if TYPE_CHECKING:
    from shared.domain.stacks.ports import StackPorts


def get(ports: StackPorts, owner: str, sid: str) -> Stack:
    stack = ports.store.get_stack(owner, sid)
    if stack is None:
        raise NotFound("stack", sid)
    return stack


def create(ports: StackPorts, owner: str, body: Stack) -> Stack:
    """Add a stopped stack; ids are retried in the unlikely case of a clash."""
    for _ in range(5):
        stack = compose(ports, owner, new_stack_id(), body, None)
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
    composed = compose(ports, owner, sid, body, previous)

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
