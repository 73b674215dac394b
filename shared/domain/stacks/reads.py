"""Reading a user's stacks as their owner sees them: reconciled with the cluster, with Connect URLs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.core.models import Stack
from shared.domain.stacks.connect import connectable, grants_access
from shared.domain.stacks.crud import get
from shared.domain.stacks.reconciliation import reconcile, reconciled_states

if TYPE_CHECKING:
    from shared.domain.stacks.ports import StackPorts


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
    reconciled = reconciled_states(ports)
    granted = grants_access(ports)
    documents = [
        stored.document
        if stored.current and stored.status not in reconciled and not (granted and SECURE in stored.document)
        else connectable(ports, owner, reconcile(ports, owner, stored.stack())).model_dump_json()
        for stored in ports.store.list_stored_stacks(owner)
    ]
    return "[" + ",".join(documents) + "]"


SECURE = '"secure":true'
"""How a current stored document of a secure stack says so (inside a string the quotes are escaped)."""
