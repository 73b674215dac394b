"""Waiting for what a test started (one polling loop, with a deadline that fails the test instead of
hanging it, and the waits for a record's status built on it), and ending the stacks it started."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from contextlib import suppress
from typing import Any, TypeVar

from shared.bootstrap import Platform
from shared.core.errors import WorkbenchError
from shared.domain import stacks

T = TypeVar("T")

WAIT_SECONDS = 20.0
"""How long a wait lasts unless a test says otherwise."""
POLL_SECONDS = 0.05


def wait_until(
    condition: Callable[[], T | None],
    what: str | Callable[[], str],
    seconds: float = WAIT_SECONDS,
    *,
    every: float = POLL_SECONDS,
) -> T:
    """Call ``condition`` until it returns something truthy, and return that. After ``seconds`` the test
    fails, naming ``what`` it waited for (a callable gives a description of that moment) and the last
    value the condition returned; an assertion the condition makes fails the test at once."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            described = what() if callable(what) else what
            seen = "" if value is None else f" (last seen: {value!r})"
            raise AssertionError(f"timed out after {seconds:g} s waiting for {described}{seen}")
        time.sleep(every)


def wait_for_status(
    read: Callable[[], Mapping[str, Any]],
    wanted: str,
    what: str,
    *,
    field: str = "status",
    passing: Collection[str] | None = None,
    seconds: float = WAIT_SECONDS,
    every: float = POLL_SECONDS,
) -> dict[str, Any]:
    """Read a record (a stack, a transfer, an export) until its ``field`` is ``wanted``, and return it.

    A value outside ``passing`` fails at once; without ``passing`` only ``error`` does (unless wanted),
    since a stack that failed to start never starts by waiting longer."""
    last: dict[str, Any] = {}

    def reached() -> dict[str, Any] | None:
        last.clear()
        last.update(read())
        value = last.get(field)
        if value == wanted:
            return dict(last)
        if passing is None:
            assert value != "error", f"{what} went {value}, not {wanted}: {last}"
        else:
            assert value in passing, f"{what} went {value}, not {wanted}: {last}"
        return None

    return wait_until(
        reached, lambda: f"{what} to be {wanted}, still {last.get(field)}: {last}", seconds, every=every
    )


def remove_stacks(platform: Platform) -> None:
    """End every stack's processes (and shovels) the test started; the runtime's close leaves them."""
    if not platform.has("runtime"):
        return
    for owner, stack in platform.store.list_all_stacks():
        with suppress(WorkbenchError):
            platform.runtime.remove(stacks.plan_for(platform, owner, stack))
