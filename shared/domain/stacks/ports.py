"""The ports bundle of the stack services: the adapters they use, all of which the platform has."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from shared.adapters.runtime import Runtime
    from shared.adapters.sink import EventSink
    from shared.adapters.store import Store
    from shared.core.settings import Settings


class StackPorts(Protocol):
    """The adapters stacks use (the platform has them all)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def store(self) -> Store: ...
    @property
    def runtime(self) -> Runtime: ...
    @property
    def runtime_kind(self) -> str:
        """Where stacks run: ``local``, ``docker`` or ``kubernetes``."""
        ...

    @property
    def site_key(self) -> bytes:
        """The key of the access grants in a secure local stack's Connect URLs."""
        ...

    @property
    def sink(self) -> EventSink: ...
