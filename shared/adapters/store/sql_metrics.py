"""The store's figures for metrics (mixed into the SQL store): stack start durations, and the counts a
scrape reads, each one aggregate query."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from shared.adapters.store import DurationTally, OperationsFigures


class _Statements(Protocol):
    def run(self, sql: str, params: Any = ()) -> int: ...
    def one(self, sql: str, params: Any = ()) -> tuple[Any, ...] | None: ...
    def all(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]: ...


def _milliseconds(seconds: float) -> int:
    return round(seconds * 1000)


class MetricsTables:
    """Each stack start (begun, then finished as a success or a failure), kept after its stack is gone
    so that the counts only grow; nothing in it names a user."""

    _transaction: Callable[..., AbstractContextManager[_Statements]]

    def begin_stack_start(self, stack_id: str, at: float) -> None:
        """A start of the stack was asked for at ``at`` (seconds since the epoch); one it began before
        and never finished (stopped while starting) is forgotten, neither a success nor a failure."""
        with self._transaction(write=True) as db:
            db.run("DELETE FROM stack_starts WHERE stack_id = ? AND finished_at IS NULL", (stack_id,))
            db.run(
                "INSERT INTO stack_starts (stack_id, started_at) VALUES (?, ?)"
                " ON CONFLICT (stack_id, started_at) DO NOTHING",
                (stack_id, _milliseconds(at)),
            )

    def finish_stack_start(self, stack_id: str, succeeded: bool, at: float) -> bool:
        """The stack's open start ended at ``at``; False when it had none open (finished before)."""
        with self._transaction(write=True) as db:
            return bool(
                db.run(
                    "UPDATE stack_starts SET finished_at = ?, succeeded = ?"
                    " WHERE stack_id = ? AND finished_at IS NULL",
                    (_milliseconds(at), int(succeeded), stack_id),
                )
            )

    def operations_figures(self, start_bounds: Sequence[float]) -> OperationsFigures:
        """Finished starts by outcome, counted at or under each of ``start_bounds`` (seconds); transfers
        and their bytes by state; shovels and their oldest and newest heartbeat; dead letters."""
        under = "".join(
            f", SUM(CASE WHEN finished_at - started_at <= {_milliseconds(bound)} THEN 1 ELSE 0 END)"
            for bound in start_bounds
        )
        with self._transaction(write=False) as db:
            starts = db.all(
                f"SELECT succeeded, COUNT(*), SUM(finished_at - started_at){under} FROM stack_starts"
                " WHERE finished_at IS NOT NULL GROUP BY succeeded"
            )
            transfers = db.all(
                "SELECT state, COUNT(*), SUM(bytes) FROM (SELECT transfers.id, transfers.state,"
                " COALESCE(SUM(transfer_files.size), 0) AS bytes FROM transfers LEFT JOIN transfer_files"
                " ON transfer_files.transfer_id = transfers.id GROUP BY transfers.id, transfers.state)"
                " AS per_transfer GROUP BY state"
            )
            shovels = db.one("SELECT COUNT(*), MIN(seen_at), MAX(seen_at) FROM shovels")
            dead_letters = db.one("SELECT COUNT(*) FROM dead_letters")
        tallies = [
            DurationTally(
                succeeded=bool(int(row[0])),
                finished=int(row[1]),
                seconds=int(row[2] or 0) / 1000,
                under=[int(value or 0) for value in row[3:]],
            )
            for row in starts
        ]
        assert shovels is not None and dead_letters is not None  # an aggregate always has a row
        return OperationsFigures(
            starts=sorted(tallies, key=lambda tally: not tally.succeeded),
            transfers={str(state): (int(count), int(size or 0)) for state, count, size in transfers},
            shovels=int(shovels[0]),
            oldest_heartbeat=None if shovels[1] is None else int(shovels[1]),
            newest_heartbeat=None if shovels[2] is None else int(shovels[2]),
            dead_letters=int(dead_letters[0]),
        )
