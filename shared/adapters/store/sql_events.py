"""The store's table of events already taken (mixed into the SQL store): each (source, id) acts once."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from shared.core import clock


class _Statements(Protocol):
    def run(self, sql: str, params: Any = ()) -> int: ...
    def one(self, sql: str, params: Any = ()) -> tuple[Any, ...] | None: ...
    def all(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]: ...


class _Dialect(Protocol):
    def for_update(self) -> str: ...


class EventTables:
    """Events by (source, id), as CloudEvents identify them: claimed before their handler acts, marked
    done once it has, released when it must be delivered again."""

    dialect: _Dialect
    _transaction: Callable[..., AbstractContextManager[_Statements]]

    def claim_event(self, source: str, event_id: str, event_type: str, event_time: int, lease: int) -> bool:
        """Whether this delivery may act on the event: True the first time, and when an earlier
        delivery claimed it more than ``lease`` seconds ago without finishing (it died); False while
        another delivery acts on it, and once one has."""
        now = clock.now()
        with self._transaction(write=True) as db:
            # Inserted first, so that two deliveries of a new event meet at the primary key.
            if db.run(
                "INSERT INTO seen_events (source, id, event_type, event_time, claimed_at, done)"
                " VALUES (?, ?, ?, ?, ?, 0) ON CONFLICT (source, id) DO NOTHING",
                (source, event_id, event_type, event_time, now),
            ):
                return True
            row = db.one(
                "SELECT done, claimed_at FROM seen_events WHERE source = ? AND id = ?"
                + self.dialect.for_update(),
                (source, event_id),
            )
            if row is None or int(row[0]) or int(row[1]) >= now - lease:
                return False
            db.run(
                "UPDATE seen_events SET claimed_at = ? WHERE source = ? AND id = ?", (now, source, event_id)
            )
            return True

    def finish_event(self, source: str, event_id: str) -> None:
        """The event was acted on (or refused for good): its every later delivery is a duplicate."""
        with self._transaction(write=True) as db:
            db.run("UPDATE seen_events SET done = 1 WHERE source = ? AND id = ?", (source, event_id))

    def release_event(self, source: str, event_id: str) -> None:
        """The event must be delivered again (its handler met an outage): forget the claim."""
        with self._transaction(write=True) as db:
            db.run("DELETE FROM seen_events WHERE source = ? AND id = ? AND done = 0", (source, event_id))

    def event_finished(self, source: str, event_id: str) -> bool:
        """Whether a delivery of the event finished acting on it (not merely claimed it)."""
        with self._transaction(write=False) as db:
            row = db.one("SELECT done FROM seen_events WHERE source = ? AND id = ?", (source, event_id))
        return row is not None and bool(int(row[0]))

    def prune_events(self, made_before: int) -> int:
        """Forget the events made before ``made_before`` (refused for their age by then anyway)."""
        with self._transaction(write=True) as db:
            return db.run("DELETE FROM seen_events WHERE event_time < ?", (made_before,))
