"""A stack service's log tail, with its status messages, in the Go apiserver's format."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.adapters.runtime import LOG_DEFAULT_LINES, LOG_MAX_LINES
from shared.core.errors import InvalidInput, NotFound
from shared.domain.stacks.ids import stack_id_of

if TYPE_CHECKING:
    from shared.domain.stacks.ports import StackPorts


def logs(ports: StackPorts, owner: str, ssid: str, lines: str | None) -> str:
    """The service's status messages and log tail, in the Go apiserver's format: the last ``lines``
    lines (LOG_DEFAULT_LINES when not given, at most LOG_MAX_LINES)."""
    tail = LOG_DEFAULT_LINES
    if lines:
        try:
            tail = int(lines)
        except ValueError:
            raise InvalidInput(f"must be a whole number, got {lines!r}", field="lines") from None
        if tail < 0:
            raise InvalidInput("must not be negative", field="lines")
    tail = min(tail, LOG_MAX_LINES)
    stack = ports.store.get_stack(owner, stack_id_of(ssid))
    service = next((s for s in stack.services if s.id == ssid), None) if stack else None
    if service is None:
        raise NotFound("stack service", ssid)
    # The Go apiserver's title of the status messages; a runtime other than Kubernetes names them as such.
    title = "KUBERNETES LOG" if ports.settings.runtime.kind == "kubernetes" else "STATUS MESSAGES"
    text = f"{title}\n=====================\n"
    text += "".join(message + "\n" for message in service.statusMessages)
    text += "\nSERVICE LOG\n=====================\n"
    return text + ports.runtime.logs(owner, ssid, tail)
