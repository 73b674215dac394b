"""The store's table of transfer checks (mixed into the SQL store)."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from shared.core.errors import NotFound
from shared.core.models import TransferCheck


class _Statements(Protocol):
    def run(self, sql: str, params: Any = ()) -> int: ...
    def one(self, sql: str, params: Any = ()) -> tuple[Any, ...] | None: ...
    def all(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]: ...


class _Dialect(Protocol):
    def for_update(self) -> str: ...


class CheckTables:
    """Verifications of completed transfers' folders, the newest of each transfer read back (the
    columns ``created_at`` and ``updated_at`` count milliseconds)."""

    dialect: _Dialect
    _transaction: Callable[..., AbstractContextManager[_Statements]]

    def insert_transfer_check(self, check: TransferCheck) -> None:
        with self._transaction(write=True) as db:
            # Later than the transfer's checks before it, however close they came: the latest is the last.
            before = db.one(
                "SELECT MAX(created_at) FROM transfer_checks WHERE transfer_id = ?", (check.transferId,)
            )
            asked = max(time.time_ns() // 1_000_000, (before[0] or 0) + 1 if before else 0)
            db.run(
                "INSERT INTO transfer_checks (id, owner, transfer_id, state, data, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    check.id,
                    check.user,
                    check.transferId,
                    check.state,
                    check.model_dump_json(),
                    asked,
                    asked,
                ),
            )

    def get_transfer_check(self, check_id: str) -> TransferCheck | None:
        with self._transaction(write=False) as db:
            row = db.one("SELECT data FROM transfer_checks WHERE id = ?", (check_id,))
        return TransferCheck.model_validate_json(row[0]) if row else None

    def latest_transfer_check(self, transfer_id: str) -> TransferCheck | None:
        """The transfer's newest check (the last asked for), None where none was."""
        with self._transaction(write=False) as db:
            row = db.one(
                "SELECT data FROM transfer_checks WHERE transfer_id = ? ORDER BY created_at DESC, id DESC"
                " LIMIT 1",
                (transfer_id,),
            )
        return TransferCheck.model_validate_json(row[0]) if row else None

    def update_transfer_check(
        self, check_id: str, change: Callable[[TransferCheck], TransferCheck]
    ) -> TransferCheck:
        with self._transaction(write=True) as db:
            row = db.one(
                "SELECT data FROM transfer_checks WHERE id = ?" + self.dialect.for_update(), (check_id,)
            )
            if row is None:
                raise NotFound("transfer check", check_id)
            check = change(TransferCheck.model_validate_json(row[0]))
            db.run(
                "UPDATE transfer_checks SET state = ?, data = ?, updated_at = ? WHERE id = ?",
                (check.state, check.model_dump_json(), time.time_ns() // 1_000_000, check_id),
            )
        return check
