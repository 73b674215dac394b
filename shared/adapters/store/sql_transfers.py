"""The store's transfer, export, blob and heartbeat tables (mixed into the SQL store)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from shared.core import clock
from shared.core.errors import NotFound
from shared.core.models import Export, Transfer, TransferFile


class _Statements(Protocol):
    def run(self, sql: str, params: Any = ()) -> int: ...
    def one(self, sql: str, params: Any = ()) -> tuple[Any, ...] | None: ...
    def all(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]: ...


class _Dialect(Protocol):
    def for_update(self) -> str: ...


class TransferTables:
    """Transfers with their files, the index of staged blobs, exports and shovel heartbeats."""

    dialect: _Dialect
    _transaction: Callable[..., AbstractContextManager[_Statements]]

    # --- transfers --------------------------------------------------------------------

    def insert_transfer(self, transfer: Transfer, work: str | None = None) -> bool:
        """Record a new transfer (``work``: what resuming it needs, its request); False (and nothing
        changed) when one with its id exists."""
        with self._transaction(write=True) as db:
            if db.one("SELECT 1 FROM transfers WHERE id = ?", (transfer.id,)):
                return False
            db.run(
                "INSERT INTO transfers (id, owner, dataset_id, state, data, work, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    transfer.id,
                    transfer.user,
                    transfer.datasetId,
                    transfer.state,
                    transfer.model_dump_json(),
                    work,
                    clock.now(),
                    clock.now(),
                ),
            )
            return True

    def transfer_work(self, transfer_id: str) -> str | None:
        with self._transaction(write=False) as db:
            row = db.one("SELECT work FROM transfers WHERE id = ?", (transfer_id,))
        return str(row[0]) if row and row[0] is not None else None

    def unfinished_transfers(self, states: Sequence[str], before: int, limit: int = 100) -> list[str]:
        """Ids of transfers in one of ``states`` last written before ``before``, the longest untouched first."""
        with self._transaction(write=False) as db:
            rows = db.all(
                f"SELECT id FROM transfers WHERE state IN ({', '.join('?' * len(states))})"
                " AND updated_at < ? ORDER BY updated_at, id LIMIT ?",
                (*states, before, limit),
            )
        return [str(row[0]) for row in rows]

    def claim_transfer(
        self, transfer_id: str, before: int, change: Callable[[Transfer, int], Transfer]
    ) -> tuple[Transfer, str | None] | None:
        """Take over a transfer nobody has written since ``before``: one conditional update counts the
        attempt, applies ``change`` (given the transfer and the attempt's number) and renews the lease
        (``updated_at``); None when it was written meanwhile, so someone else holds it."""
        with self._transaction(write=True) as db:
            row = db.one(
                "SELECT data, work, attempts FROM transfers WHERE id = ? AND updated_at < ?"
                + self.dialect.for_update(),
                (transfer_id, before),
            )
            if row is None:
                return None
            transfer = change(Transfer.model_validate_json(row[0]), int(row[2]) + 1)
            claimed = db.run(
                "UPDATE transfers SET state = ?, data = ?, attempts = attempts + 1, updated_at = ?"
                " WHERE id = ? AND updated_at < ?",
                (transfer.state, transfer.model_dump_json(), clock.now(), transfer_id, before),
            )
            if claimed != 1:
                return None
            return transfer, (str(row[1]) if row[1] is not None else None)

    def get_transfer(self, transfer_id: str, owner: str | None = None) -> Transfer | None:
        with self._transaction(write=False) as db:
            if owner is None:
                row = db.one("SELECT data FROM transfers WHERE id = ?", (transfer_id,))
            else:
                row = db.one("SELECT data FROM transfers WHERE id = ? AND owner = ?", (transfer_id, owner))
        return Transfer.model_validate_json(row[0]) if row else None

    def list_transfers(self, owner: str | None = None) -> list[Transfer]:
        with self._transaction(write=False) as db:
            if owner is None:
                rows = db.all("SELECT data FROM transfers ORDER BY created_at DESC, id")
            else:
                rows = db.all(
                    "SELECT data FROM transfers WHERE owner = ? ORDER BY created_at DESC, id", (owner,)
                )
        return [Transfer.model_validate_json(row[0]) for row in rows]

    def dataset_transfers(self, dataset_id: str) -> list[Transfer]:
        """The transfers of one Clowder dataset id (of any Clowder), oldest first."""
        with self._transaction(write=False) as db:
            # A row written before the dataset_id column has none: its document says.
            rows = db.all(
                "SELECT data FROM transfers WHERE dataset_id = ? OR dataset_id IS NULL"
                " ORDER BY created_at, id",
                (dataset_id,),
            )
        found = (Transfer.model_validate_json(row[0]) for row in rows)
        return [transfer for transfer in found if transfer.datasetId == dataset_id]

    def update_transfer(self, transfer_id: str, change: Callable[[Transfer], Transfer]) -> Transfer:
        with self._transaction(write=True) as db:
            row = db.one(
                "SELECT data FROM transfers WHERE id = ?" + self.dialect.for_update(), (transfer_id,)
            )
            if row is None:
                raise NotFound("transfer", transfer_id)
            transfer = change(Transfer.model_validate_json(row[0]))
            db.run(
                "UPDATE transfers SET state = ?, data = ?, updated_at = ? WHERE id = ?",
                (transfer.state, transfer.model_dump_json(), clock.now(), transfer_id),
            )
        return transfer

    def put_transfer_files(self, transfer_id: str, files: list[TransferFile]) -> None:
        """Add or replace file rows (a redelivered request re-stages the same paths)."""
        with self._transaction(write=True) as db:
            for file in files:
                db.run(
                    "DELETE FROM transfer_files WHERE transfer_id = ? AND path = ?", (transfer_id, file.path)
                )
                db.run(
                    "INSERT INTO transfer_files (transfer_id, path, size, sha256, clowder_id, state, error)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (transfer_id, file.path, file.size, file.sha256, file.clowderId, file.state, file.error),
                )

    def list_transfer_files(self, transfer_id: str) -> list[TransferFile]:
        with self._transaction(write=False) as db:
            rows = db.all(
                "SELECT path, size, sha256, clowder_id, state, error FROM transfer_files"
                " WHERE transfer_id = ? ORDER BY path",
                (transfer_id,),
            )
        return [
            TransferFile(path=r[0], size=int(r[1]), sha256=r[2], clowderId=r[3], state=r[4], error=r[5] or "")
            for r in rows
        ]

    def tally_transfer_files(self, transfer_id: str) -> tuple[int, int, int, list[tuple[str, str]]]:
        """Counted by the database: a large transfer's rows are not read to count them."""
        with self._transaction(write=False) as db:
            counts = db.one(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN state = 'placed' THEN 1 ELSE 0 END), 0),"
                " COALESCE(SUM(CASE WHEN state = 'placed' THEN size ELSE 0 END), 0)"
                " FROM transfer_files WHERE transfer_id = ?",
                (transfer_id,),
            )
            failed = db.all(
                "SELECT path, error FROM transfer_files WHERE transfer_id = ? AND state = 'failed' ORDER BY path",
                (transfer_id,),
            )
        assert counts is not None
        return int(counts[0]), int(counts[1]), int(counts[2]), [(row[0], row[1] or "") for row in failed]

    def settle_transfer_files(
        self, transfer_id: str, placed: list[str], failed: list[tuple[str, str]]
    ) -> None:
        """Mark files placed or failed; a placed file stays placed whatever a later report says."""
        with self._transaction(write=True) as db:
            for path in placed:
                db.run(
                    "UPDATE transfer_files SET state = 'placed', error = NULL WHERE transfer_id = ? AND path = ?",
                    (transfer_id, path),
                )
            for path, error in failed:
                db.run(
                    "UPDATE transfer_files SET state = 'failed', error = ?"
                    " WHERE transfer_id = ? AND path = ? AND state <> 'placed'",
                    (error, transfer_id, path),
                )

    # --- staged blobs -----------------------------------------------------------------

    def find_blobs(self, source: str, files: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
        found: dict[tuple[str, int], str] = {}
        wanted = set(files)
        ids = sorted({clowder_id for clowder_id, _ in wanted})
        with self._transaction(write=False) as db:
            for start in range(0, len(ids), 500):  # within every database's limit of parameters
                part = ids[start : start + 500]
                rows = db.all(
                    "SELECT clowder_id, size, sha256 FROM blobs WHERE source = ? AND clowder_id IN ("
                    + ", ".join("?" * len(part))
                    + ")",
                    (source, *part),
                )
                for clowder_id, size, sha256 in rows:
                    if (clowder_id, int(size)) in wanted:
                        found[(clowder_id, int(size))] = str(sha256)
        return found

    def remember_blobs(self, source: str, blobs: list[tuple[str, int, str]]) -> None:
        if not blobs:
            return
        with self._transaction(write=True) as db:
            for clowder_id, size, sha256 in blobs:
                db.run(
                    "DELETE FROM blobs WHERE source = ? AND clowder_id = ? AND size = ?",
                    (source, clowder_id, size),
                )
                db.run(
                    "INSERT INTO blobs (source, clowder_id, size, sha256) VALUES (?, ?, ?, ?)",
                    (source, clowder_id, size, sha256),
                )

    # --- exports ----------------------------------------------------------------------

    def insert_export(self, export: Export) -> bool:
        with self._transaction(write=True) as db:
            if db.one("SELECT 1 FROM exports WHERE id = ?", (export.id,)):
                return False
            db.run(
                "INSERT INTO exports (id, owner, state, data, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (export.id, export.user, export.state, export.model_dump_json(), clock.now(), clock.now()),
            )
            return True

    def get_export(self, export_id: str, owner: str | None = None) -> Export | None:
        with self._transaction(write=False) as db:
            if owner is None:
                row = db.one("SELECT data FROM exports WHERE id = ?", (export_id,))
            else:
                row = db.one("SELECT data FROM exports WHERE id = ? AND owner = ?", (export_id, owner))
        return Export.model_validate_json(row[0]) if row else None

    def list_exports(self, owner: str) -> list[Export]:
        with self._transaction(write=False) as db:
            rows = db.all("SELECT data FROM exports WHERE owner = ? ORDER BY created_at DESC, id", (owner,))
        return [Export.model_validate_json(row[0]) for row in rows]

    def update_export(
        self, export_id: str, change: Callable[[Export], Export], *, work: str | None = None
    ) -> Export:
        """Change an export; ``work`` (what resuming it needs: the shovel's upload report) is kept with it."""
        with self._transaction(write=True) as db:
            row = db.one("SELECT data FROM exports WHERE id = ?" + self.dialect.for_update(), (export_id,))
            if row is None:
                raise NotFound("export", export_id)
            export = change(Export.model_validate_json(row[0]))
            db.run(
                "UPDATE exports SET state = ?, data = ?, work = COALESCE(?, work), updated_at = ? WHERE id = ?",
                (export.state, export.model_dump_json(), work, clock.now(), export_id),
            )
        return export

    def export_work(self, export_id: str) -> str | None:
        with self._transaction(write=False) as db:
            row = db.one("SELECT work FROM exports WHERE id = ?", (export_id,))
        return str(row[0]) if row and row[0] is not None else None

    def unfinished_exports(self, states: Sequence[str], before: int, limit: int = 100) -> list[str]:
        """Ids of exports in one of ``states`` last written before ``before``, the longest untouched first."""
        with self._transaction(write=False) as db:
            rows = db.all(
                f"SELECT id FROM exports WHERE state IN ({', '.join('?' * len(states))})"
                " AND updated_at < ? ORDER BY updated_at, id LIMIT ?",
                (*states, before, limit),
            )
        return [str(row[0]) for row in rows]

    def claim_export(
        self, export_id: str, before: int, change: Callable[[Export, int], Export]
    ) -> tuple[Export, str | None] | None:
        """``claim_transfer`` for an export."""
        with self._transaction(write=True) as db:
            row = db.one(
                "SELECT data, work, attempts FROM exports WHERE id = ? AND updated_at < ?"
                + self.dialect.for_update(),
                (export_id, before),
            )
            if row is None:
                return None
            export = change(Export.model_validate_json(row[0]), int(row[2]) + 1)
            claimed = db.run(
                "UPDATE exports SET state = ?, data = ?, attempts = attempts + 1, updated_at = ?"
                " WHERE id = ? AND updated_at < ?",
                (export.state, export.model_dump_json(), clock.now(), export_id, before),
            )
            if claimed != 1:
                return None
            return export, (str(row[1]) if row[1] is not None else None)

    # --- shovel heartbeats ------------------------------------------------------------

    def record_heartbeat(self, owner: str, stack_id: str, heartbeat: dict[str, Any]) -> None:
        with self._transaction(write=True) as db:
            db.run("DELETE FROM shovels WHERE owner = ? AND stack_id = ?", (owner, stack_id))
            db.run(
                "INSERT INTO shovels (owner, stack_id, data, seen_at) VALUES (?, ?, ?, ?)",
                (owner, stack_id, json.dumps(heartbeat), clock.now()),
            )

    def list_heartbeats(self) -> Iterator[tuple[str, str, dict[str, Any], int]]:
        with self._transaction(write=False) as db:
            rows = db.all("SELECT owner, stack_id, data, seen_at FROM shovels ORDER BY owner, stack_id")
        for owner, stack_id, data, seen_at in rows:
            yield owner, stack_id, json.loads(data), int(seen_at)
