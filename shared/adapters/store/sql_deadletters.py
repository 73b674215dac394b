"""The store's dead-letter table (mixed into the SQL store)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from shared.core.models import DeadLetter


class _Statements(Protocol):
    def run(self, sql: str, params: Any = ()) -> int: ...
    def one(self, sql: str, params: Any = ()) -> tuple[Any, ...] | None: ...
    def all(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]: ...


class DeadLetterTables:
    """Events that could not be delivered, each kept once."""

    _transaction: Callable[..., AbstractContextManager[_Statements]]

    def insert_dead_letter(self, dead_letter: DeadLetter) -> bool:
        """Keep a dead letter; False (and nothing changed) when the same one was kept before."""
        with self._transaction(write=True) as db:
            if db.one("SELECT 1 FROM dead_letters WHERE id = ?", (dead_letter.id,)):
                return False
            db.run(
                "INSERT INTO dead_letters (id, event_type, data, received_at) VALUES (?, ?, ?, ?)",
                (dead_letter.id, dead_letter.type, dead_letter.model_dump_json(), dead_letter.receivedTime),
            )
            return True

    def list_dead_letters(self, limit: int) -> list[DeadLetter]:
        """The newest ``limit`` dead letters, newest first."""
        with self._transaction(write=False) as db:
            rows = db.all("SELECT data FROM dead_letters ORDER BY received_at DESC, id LIMIT ?", (limit,))
        return [DeadLetter.model_validate_json(row[0]) for row in rows]
