"""After a restart of the platform: the stacks that were running started again, the others stopped."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from shared.core.errors import WorkbenchError
from shared.core.models import Stack
from shared.domain.stacks.planning import plan_for
from shared.domain.stacks.status import RUNNING, mark_failed, reset_services

if TYPE_CHECKING:
    from shared.domain.stacks.ports import StackPorts

log = logging.getLogger(__name__)


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
            mark_failed(ports.store, owner, stack.id, f"Could not be restarted: {error.message}")
    return restored


def _restarting(stack: Stack) -> Stack:
    return stack.model_copy(update={"status": "starting", "services": reset_services(stack, "")})
