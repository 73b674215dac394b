"""Rounds that alternate the measured path with its baseline, and the spread of what they gave.

On a shared machine one round can land in a burst of someone else's work: alternating the two sides
round by round lets such a burst hit both alike, and the median of several rounds lets no single
round decide a figure. The spread (every round's figure, its least and its most) goes in the details,
so that a reader sees how much one round could move it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from bench.report import median

MEASURED = TypeVar("MEASURED")
BASELINE = TypeVar("BASELINE")


@dataclass
class Alternated(Generic[MEASURED, BASELINE]):
    """What alternating rounds gave: the measured side's runs and the baseline's, in round order."""

    measured: list[MEASURED] = field(default_factory=list)
    baseline: list[BASELINE] = field(default_factory=list)


def alternate(
    rounds: int,
    measured: Callable[[], MEASURED],
    baseline: Callable[[], BASELINE],
    *,
    after_round: Callable[[int, MEASURED, BASELINE], None] | None = None,
) -> Alternated[MEASURED, BASELINE]:
    """``rounds`` rounds of the measured side then its baseline (measured, baseline, measured, …);
    ``after_round`` is told each round's number (from 1) and its two runs, e.g. to print them."""
    if rounds < 1:
        raise ValueError(f"at least one round is needed, not {rounds}")
    done: Alternated[MEASURED, BASELINE] = Alternated()
    for number in range(1, rounds + 1):
        done.measured.append(measured())
        done.baseline.append(baseline())
        if after_round is not None:
            after_round(number, done.measured[-1], done.baseline[-1])
    return done


def spread(values: Sequence[float], digits: int = 3) -> dict[str, object]:
    """The median, least and most of a figure's samples, and every sample in order (rounded)."""
    if not values:
        raise ValueError("no samples to spread")
    return {
        "median": round(median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "each": [round(value, digits) for value in values],
    }


def round_ratios(measured: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """Each round's own ratio: its measured figure over the baseline measured beside it."""
    if len(measured) != len(baseline):
        raise ValueError(f"{len(measured)} measured rounds against {len(baseline)} baseline rounds")
    return [value / base for value, base in zip(measured, baseline, strict=True)]


def ratio_spread(measured: Sequence[float], baseline: Sequence[float], digits: int = 3) -> dict[str, object]:
    """The spread of the rounds' own ratios (the headline is the median over the median of each side)."""
    return spread(round_ratios(measured, baseline), digits)
