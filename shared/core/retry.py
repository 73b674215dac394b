"""One retry policy for calls to other services: how many attempts, how long to wait between them, and
a log line before each wait; run by tenacity.

API:

``Policy(retries, backoff, max_backoff=30.0, linear=False, jitter=True)``
    At most ``retries`` repeats after the first attempt. Before repeat ``n`` (1 for the first repeat)
    it waits half of ``min(max_backoff, backoff * 2 ** (n - 1))`` plus a random part of up to the
    other half, so that many workers retrying at once spread out; a server's ``Retry-After`` (in
    seconds, capped at ``max_backoff``) lengthens the wait, never shortens it. ``linear`` grows the
    wait by ``backoff`` each time (``backoff * n``) instead of doubling it; without ``jitter`` the
    wait is the whole of it, the same every time.

``policy.run(attempt, on_retry=None, sleep=time.sleep)``
    Calls ``attempt(Attempt(number, last))`` until it returns, and returns its value. An attempt that
    may be repeated raises ``Again(reason, retry_after=None)``; any other exception ends the run at
    once and reaches the caller. On its ``last`` attempt a caller raises its own final error instead
    of ``Again`` (an ``Again`` raised then reaches the caller as it is). ``on_retry(number, again)``
    runs before each wait: the place for the log line. ``sleep(seconds)`` waits: one that a stop
    request cuts short, and raises to end the run, makes the retries cancellable.

``policy.delay(n, retry_after)`` and ``policy.pause(n, retry_after)``
    The wait before repeat ``n``, and that wait slept: for loops that cannot be a function call, such
    as a generator resuming a download where it broke off.

``retry_after(header)``
    A ``Retry-After`` header's seconds, or ``None`` (an HTTP date or nothing at all).

tenacity is imported on the first ``run``, not with this module: it costs about 25 ms of imports that
a function's cold start need not pay before it makes a call.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import tenacity

T = TypeVar("T")

MAX_BACKOFF_SECONDS = 30.0

# The jitter only spreads retries out; it protects nothing, so it need not be unpredictable to an attacker.
_jitter = random.Random()  # noqa: S311


class Again(Exception):
    """Raised by an attempt that failed in a way worth repeating: ``reason`` for the log line, and the
    server's ``retry_after`` (seconds) if it named one."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class Attempt:
    number: int
    """1 for the first attempt."""
    last: bool
    """No repeat follows this attempt, whatever it raises."""


@dataclass(frozen=True)
class Policy:
    retries: int
    backoff: float
    max_backoff: float = MAX_BACKOFF_SECONDS
    linear: bool = False
    """``backoff * n`` before repeat ``n``, for waits that grow slowly; else ``backoff * 2 ** (n - 1)``."""
    jitter: bool = True
    """Half the wait fixed, half random; without it, the whole wait every time."""

    def delay(self, repeat: int, retry_after: float | None = None) -> float:
        """Seconds to wait before repeat ``repeat`` (1 for the first)."""
        growth = float(repeat) if self.linear else 2.0 ** (repeat - 1)
        delay = min(self.max_backoff, self.backoff * growth)
        if self.jitter:
            # Half fixed, half random: retries from many workers spread out instead of arriving together.
            delay = delay / 2 + _jitter.uniform(0, delay / 2)
        if retry_after is not None:
            delay = max(delay, min(self.max_backoff, retry_after))
        return delay

    def pause(self, repeat: int, retry_after: float | None = None) -> None:
        delay = self.delay(repeat, retry_after)
        if delay > 0:
            time.sleep(delay)

    def run(
        self,
        attempt: Callable[[Attempt], T],
        on_retry: Callable[[int, Again], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> T:
        """``attempt`` called until it returns or raises anything but ``Again`` (see the module's doc).

        The first attempt runs on its own: most succeed, and they need none of tenacity's bookkeeping
        (which costs more than the attempt where that is the download of a small file)."""
        first = Attempt(1, last=self.retries == 0)
        try:
            return attempt(first)
        except Again as again:
            if first.last:
                raise
            if on_retry is not None:
                on_retry(1, again)
            sleep(self.delay(1, again.retry_after))
        import tenacity

        number = 1

        def once() -> T:
            nonlocal number
            number += 1
            return attempt(Attempt(number, last=number > self.retries))

        def wait(state: tenacity.RetryCallState) -> float:
            again = _again(state)
            return self.delay(state.attempt_number + 1, again.retry_after)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            if on_retry is not None:
                on_retry(state.attempt_number + 1, _again(state))

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retries),
            wait=wait,
            retry=tenacity.retry_if_exception_type(Again),
            before_sleep=before_sleep,
            sleep=sleep,
            reraise=True,
        )
        return retrying(once)


def retry_after(header: str | None) -> float | None:
    """The seconds of a ``Retry-After`` header; ``None`` for an HTTP date (not worth parsing for a
    capped wait) or no header."""
    if header is not None and header.strip().isdigit():
        return float(header.strip())
    return None


def _again(state: tenacity.RetryCallState) -> Again:
    assert state.outcome is not None
    error = state.outcome.exception()
    assert isinstance(error, Again)  # tenacity repeats nothing else
    return error
