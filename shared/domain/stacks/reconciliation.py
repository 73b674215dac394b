"""Reconciliation: a stack's stored status checked against what the cluster shows, on a read and
when one of its pods changes, so that a lost status event leaves no wrong status behind."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shared.adapters.runtime.naming import stack_of_pod
from shared.core.errors import WorkbenchError
from shared.core.models import Stack
from shared.domain.stacks.planning import plan_for
from shared.domain.stacks.status import report

if TYPE_CHECKING:
    from shared.domain.stacks.ports import StackPorts

log = logging.getLogger(__name__)
RECONCILED = ("starting", "started", "stopping")
"""Stack states a read checks against the cluster: those that wait for the runtime to report."""


def reconcile(ports: StackPorts, owner: str, stack: Stack, *, quiet: bool = True) -> Stack:
    """The stack once its stored status agrees with what the cluster shows, so that a lost status
    event leaves no wrong status behind; local stacks are reported on by their supervisors instead.
    ``quiet``: a cluster that cannot be asked leaves the stack as recorded rather than failing."""
    if stack.status not in reconciled_states(ports):
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


def reconciled_states(ports: StackPorts) -> tuple[str, ...]:
    """The stack states a read checks against the runtime: none for stacks on this machine (local
    processes or containers), whose supervising threads report on them."""
    return () if ports.runtime_kind in ("local", "docker") else RECONCILED


def reconcile_pod(ports: StackPorts, pod: Mapping[str, Any]) -> Stack | None:
    """Reconcile the stack a changed pod belongs to. The pod only names the stack (by its labels):
    the status comes from the cluster itself, so a forged or stale event can change nothing but the
    moment of a reconciliation. None when the pod is not a stack's or the stack is gone."""
    named = stack_of_pod(pod)
    if named is None:
        return None
    owner, sid = named
    stack = ports.store.get_stack(owner, sid)
    if stack is None:
        return None
    return reconcile(ports, owner, stack, quiet=False)
