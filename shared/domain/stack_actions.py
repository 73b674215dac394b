"""The starts and stops Clowder asks for (signed events, extractor jobs), handed to a shovel of the user
where the platform is set so (``WORKBENCH_STACK_ACTIONS=shovels``).

The rule: with ``shovels``, while one of the user's stacks is started (so a shovel of the user consumes
the user's queue), the action goes there as a ``StackCommand``. A shovel takes it after the commands it
took before (the files sent before a stop are placed first) and carries it out through the API with the
token the command carries, which starts and stops that one stack for an hour. With ``platform``, while
none of the user's stacks is started (no shovel would take the command), and for a stop of all the
user's stacks (nothing to wait for), the platform acts itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from shared.adapters.bus import Bus
    from shared.adapters.store import Store
    from shared.core.settings import Settings
    from shared.domain.auth import Tokens

Action = Literal["start", "stop"]
RUNNING = "started"
"""The status of a stack whose shovel runs and consumes its user's queue."""


class StackActionPorts(Protocol):
    """What handing a stack action to a shovel uses of the platform."""

    @property
    def settings(self) -> Settings: ...

    @property
    def store(self) -> Store: ...

    @property
    def tokens(self) -> Tokens: ...

    @property
    def bus(self) -> Bus: ...


def by_shovel(ports: StackActionPorts, user: str) -> bool:
    """Whether the user's stack actions go to a shovel now: the platform is set so, and a shovel of
    the user runs to take them."""
    if ports.settings.clowder.stack_actions != "shovels":
        return False
    return any(stack.status == RUNNING for stack in ports.store.list_stacks(user))


def send(ports: StackActionPorts, user: str, sid: str, action: Action) -> None:
    """Put the action on the user's queue with a fresh control token of that stack."""
    from shared.domain.messages import StackCommand, queue_for

    command = StackCommand(
        kind=action, user=user, stack_id=sid, token=ports.tokens.issue_stack_control(user, sid)
    )
    ports.bus.publish(queue_for(user), command.model_dump_json().encode())
