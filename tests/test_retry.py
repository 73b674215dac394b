"""shared.core.retry: the attempts, the waits between them and the hook before each wait."""

from __future__ import annotations

import time

import pytest

from shared.core.retry import Again, Attempt, Policy, retry_after


def test_repeats_until_the_attempt_succeeds() -> None:
    seen: list[Attempt] = []
    retried: list[tuple[int, str]] = []

    def attempt(now: Attempt) -> str:
        seen.append(now)
        if now.number < 3:
            raise Again(f"failure {now.number}")
        return "done"

    result = Policy(retries=4, backoff=0.001).run(
        attempt, lambda number, again: retried.append((number, again.reason))
    )

    assert result == "done"
    assert [(now.number, now.last) for now in seen] == [(1, False), (2, False), (3, False)]
    assert retried == [(1, "failure 1"), (2, "failure 2")]


def test_the_last_attempt_raises_its_own_error() -> None:
    seen: list[Attempt] = []

    def attempt(now: Attempt) -> None:
        seen.append(now)
        if now.last:
            raise LookupError(f"gave up after {now.number}")
        raise Again("not yet")

    with pytest.raises(LookupError, match="gave up after 3"):
        Policy(retries=2, backoff=0).run(attempt)
    assert [now.last for now in seen] == [False, False, True]


def test_any_other_error_ends_the_run_at_once() -> None:
    calls = 0

    def attempt(now: Attempt) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        Policy(retries=5, backoff=0).run(attempt)
    assert calls == 1


def test_waits_grow_with_jitter_and_stop_at_the_cap() -> None:
    policy = Policy(retries=10, backoff=1.0, max_backoff=6.0)
    for _ in range(50):
        assert 0.5 <= policy.delay(1) <= 1.0
        assert 2.0 <= policy.delay(3) <= 4.0
        assert 3.0 <= policy.delay(8) <= 6.0
    # A server's Retry-After lengthens the wait up to the cap, never shortens it.
    assert policy.delay(1, retry_after=5.0) == 5.0
    assert policy.delay(1, retry_after=100.0) == 6.0
    assert 2.0 <= policy.delay(3, retry_after=0.0) <= 4.0


def test_a_run_waits_between_attempts() -> None:
    def attempt(now: Attempt) -> int:
        if now.number == 1:
            raise Again("busy", retry_after=0.2)
        return now.number

    started = time.monotonic()
    assert Policy(retries=1, backoff=0, max_backoff=1.0).run(attempt) == 2
    assert 0.2 <= time.monotonic() - started < 1.0


def test_retry_after_reads_seconds_only() -> None:
    assert retry_after(" 7 ") == 7.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert retry_after(None) is None


def test_the_wait_can_be_cut_short() -> None:
    class Stopped(Exception):
        pass

    waits: list[float] = []
    calls = 0

    def attempt(now: Attempt) -> None:
        nonlocal calls
        calls += 1
        raise Again("busy")

    def stop_on_second_wait(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            raise Stopped

    with pytest.raises(Stopped):
        Policy(retries=5, backoff=1.0).run(attempt, sleep=stop_on_second_wait)
    assert calls == 2
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0


def test_linear_waits_without_jitter_are_exact() -> None:
    policy = Policy(retries=10, backoff=1.5, max_backoff=5.0, linear=True, jitter=False)
    assert [policy.delay(n) for n in range(1, 6)] == [1.5, 3.0, 4.5, 5.0, 5.0]
    # Without jitter the exponential waits are exact too, and Retry-After still lengthens them.
    exact = Policy(retries=10, backoff=1.0, jitter=False)
    assert [exact.delay(n) for n in range(1, 5)] == [1.0, 2.0, 4.0, 8.0]
    assert exact.delay(1, retry_after=3.0) == 3.0


def test_a_linear_run_sleeps_the_linear_waits() -> None:
    waits: list[float] = []

    def attempt(now: Attempt) -> int:
        if not now.last:
            raise Again("busy")
        return now.number

    assert Policy(retries=3, backoff=1.0, linear=True, jitter=False).run(attempt, sleep=waits.append) == 4
    assert waits == [1.0, 2.0, 3.0]


def test_the_shovels_file_retries_wait_as_they_did_and_end_at_a_stop() -> None:
    """A shovel's download or upload: three attempts, one second before the second and two before the
    third; a stop during a wait ends the retries with Stopping."""
    from shovel import sync

    policy = sync.retry_policy()
    assert policy.retries == sync.ATTEMPTS - 1 == 2
    assert [policy.delay(n) for n in (1, 2)] == [1.0, 2.0]

    waits: list[float] = []

    def pause(seconds: float) -> None:
        waits.append(seconds)

    def cancelled() -> bool:
        return len(waits) == 2

    calls = 0

    def attempt(now: Attempt) -> None:
        nonlocal calls
        calls += 1
        raise Again("dropped")

    with pytest.raises(sync.Stopping):
        policy.run(attempt, sleep=sync.stoppable_pause(pause, cancelled))
    assert waits == [1.0, 2.0]
    assert calls == 2
