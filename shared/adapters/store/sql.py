"""A thin store over the DB-API drivers: SQLite (embedded default) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from shared.adapters.store import AccountRecord, EmailChange, Store, StoredStack, Throttle
from shared.adapters.store.migrations import MIGRATIONS
from shared.adapters.store.sql_checks import CheckTables
from shared.adapters.store.sql_deadletters import DeadLetterTables
from shared.adapters.store.sql_events import EventTables
from shared.adapters.store.sql_metrics import MetricsTables
from shared.adapters.store.sql_transfers import TransferTables
from shared.core import clock
from shared.core.errors import Conflict, InvalidInput, NotFound, Unavailable
from shared.core.models import Account, ServiceSpec, Stack, Vocabulary

log = logging.getLogger(__name__)

Row = tuple[Any, ...]


class Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...
    def fetchone(self) -> Row | None: ...
    def fetchall(self) -> list[Row]: ...


class Dialect(Protocol):
    """What differs between the databases: connecting, locking and which errors mean what."""

    name: str
    description: str

    def connect(self) -> Any: ...
    def begin(self, cursor: Cursor, *, write: bool) -> bool:
        """Open the transaction of one store method; False when none is needed (nothing to commit)."""

    def sql(self, statement: str) -> str: ...
    def for_update(self) -> str: ...
    def lock_migrations(self, cursor: Cursor) -> None: ...
    def translate(self, error: Exception) -> Exception | None: ...


class SqliteDialect:
    """SQLite in WAL mode; ``BEGIN IMMEDIATE`` serialises writers across processes."""

    name = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self.description = f"SQLite database {path}"

    def connect(self) -> Any:
        import sqlite3

        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # e.g. a file where the folder should be, or no permission
            raise Unavailable(f"database unavailable: {self.description}: {error}") from error
        connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            self._enable_wal(connection)
            connection.execute("PRAGMA foreign_keys=ON")
            connection.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            connection.close()
            raise
        return connection

    @staticmethod
    def _enable_wal(connection: Any) -> None:
        """Switch to WAL; the switch can report "locked" at once (no busy wait) while another
        process is creating the same database, so it is retried for a few seconds."""
        import sqlite3

        deadline = time.monotonic() + 10
        while True:
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def begin(self, cursor: Cursor, *, write: bool) -> bool:
        cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        return True

    def sql(self, statement: str) -> str:
        return statement

    def for_update(self) -> str:
        return ""

    def lock_migrations(self, cursor: Cursor) -> None:
        """``BEGIN IMMEDIATE`` already holds the only write lock."""

    def translate(self, error: Exception) -> Exception | None:
        import sqlite3

        if isinstance(error, sqlite3.IntegrityError):
            return Conflict(f"already exists ({error})")
        if isinstance(error, sqlite3.OperationalError):
            return Unavailable(f"database unavailable: {self.description}: {error}")
        if isinstance(error, sqlite3.Error):
            return Unavailable(f"database error: {self.description}: {error}")
        return None


class PostgresDialect:
    """PostgreSQL through psycopg 3; rows are locked with ``FOR UPDATE`` for read-modify-write."""

    name = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        parts = urlsplit(url)
        self.description = f"PostgreSQL {parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"

    def connect(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=5)
        except psycopg.Error as error:
            raise Unavailable(f"database unavailable: {self.description}: {error}") from error

    def begin(self, cursor: Cursor, *, write: bool) -> bool:
        # At READ COMMITTED, PostgreSQL's default, each statement sees what was committed when it
        # began, in a transaction or not: a read gains nothing from BEGIN and COMMIT but two round trips.
        if not write:
            return False
        cursor.execute("BEGIN")
        return True

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def for_update(self) -> str:
        return " FOR UPDATE"

    def lock_migrations(self, cursor: Cursor) -> None:
        cursor.execute("SELECT pg_advisory_xact_lock(730128)")

    def translate(self, error: Exception) -> Exception | None:
        import psycopg

        if isinstance(error, psycopg.errors.IntegrityError):
            return Conflict(f"already exists ({error.diag.message_detail or error})")
        if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
            return Unavailable(f"database unavailable: {self.description}: {error}")
        if isinstance(error, psycopg.Error):
            return Unavailable(f"database error: {self.description}: {error}")
        return None


def dialect_for(database_url: str) -> Dialect:
    """The dialect for a database URL; the error names the schemes that are understood."""
    if database_url.startswith("sqlite:///"):
        return SqliteDialect(database_url.removeprefix("sqlite:///") or ":memory:")
    if database_url.startswith(("postgresql://", "postgres://")):
        return PostgresDialect(database_url)
    raise InvalidInput(
        "unsupported database URL; use sqlite:///PATH or postgresql://…",
        field="WORKBENCH_DATABASE_URL",
    )


ACTIVITY_NOTES = 10_000
"""How many users' last activity notes a store remembers; past that it starts afresh."""
IDLE_CONNECTIONS = 8
"""Connections kept open between transactions at the least; a store keeps as many as it has had in
use at once (under full load, one per server thread), so that a steady load opens none."""


class SqlStore(TransferTables, DeadLetterTables, EventTables, MetricsTables, CheckTables):
    """The store over one dialect; one transaction per method, on a connection from a small pool.

    Connections are pooled rather than kept per thread: a threaded server (the local gateway's
    werkzeug server) runs each request on a new thread, and a connection per thread would stay
    open after its thread ended, until the database ran out of connections.
    """

    dialect: Dialect

    def __init__(self, dialect: Dialect, *, idle_connections: int = IDLE_CONNECTIONS) -> None:
        self.dialect = dialect
        self.idle_connections = idle_connections
        self._idle: list[Any] = []
        self._in_use = 0
        self._most_in_use = 0
        self._generation = 0
        self._lock = threading.Lock()
        self._activity_noted: dict[str, int] = {}

    # --- plumbing ---------------------------------------------------------------------

    def _acquire(self) -> tuple[Any, int]:
        with self._lock:
            generation = self._generation
            self._in_use += 1
            self._most_in_use = max(self._most_in_use, self._in_use)
            if self._idle:
                return self._idle.pop(), generation
        try:
            connection = self.dialect.connect()
        except BaseException as error:
            with self._lock:
                self._in_use -= 1
            if isinstance(error, Exception):
                raise self.dialect.translate(error) or error from error
            raise
        return connection, generation

    def _release(self, connection: Any, generation: int, *, broken: bool) -> None:
        with self._lock:
            self._in_use -= 1
            keep = max(self.idle_connections, self._most_in_use)
            if not broken and generation == self._generation and len(self._idle) < keep:
                self._idle.append(connection)
                return
        with suppress(Exception):  # broken, surplus, or from before close()
            connection.close()

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[_Statements]:
        connection, generation = self._acquire()
        healthy = False  # only a connection whose transaction ended cleanly goes back to the pool
        try:
            cursor = connection.cursor()
            began = self.dialect.begin(cursor, write=write)
            try:
                yield _Statements(cursor, self.dialect)
            except BaseException:
                with suppress(Exception):  # the error being raised is the one to report
                    if began:
                        cursor.execute("ROLLBACK")
                    healthy = True
                raise
            if began:
                cursor.execute("COMMIT")
            healthy = True
        except Exception as error:
            translated = self.dialect.translate(error)
            if translated is None:
                raise
            if isinstance(translated, Unavailable):
                healthy = False
            raise translated from error
        finally:
            self._release(connection, generation, broken=not healthy)

    def ping(self) -> None:
        with self._transaction(write=False) as db:
            db.one("SELECT 1")

    def close(self) -> None:
        """Close the idle connections, and those in use as their transactions end."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._generation += 1
        for connection in idle:
            with suppress(Exception):  # closing on shutdown
                connection.close()

    def migrate(self) -> list[int]:
        """Apply the schema versions not yet recorded; returns those applied now.

        Versions are only ever added, so a database that records every one is up to date: that is
        read first, without the migration lock, so that a function starting (many at once, as a
        deployment scales out) costs the database one read rather than a locked transaction."""
        if self._up_to_date():
            return []
        applied_now: list[int] = []
        with self._transaction(write=True) as db:
            self.dialect.lock_migrations(db.cursor)
            db.run(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at BIGINT NOT NULL)"
            )
            done = {row[0] for row in db.all("SELECT version FROM schema_version")}
            for version, description, statements in MIGRATIONS:
                if version in done:
                    continue
                for statement in statements:
                    db.run(statement)
                db.run(
                    "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                    (version, description, clock.now()),
                )
                applied_now.append(version)
        if applied_now:
            log.info("applied schema versions %s to %s", applied_now, self.dialect.description)
        return applied_now

    def _up_to_date(self) -> bool:
        try:
            recorded = set(self.schema_versions())
        except Unavailable:
            return False  # no schema yet (or no database, which the migration then reports)
        return all(version in recorded for version, _, _ in MIGRATIONS)

    def schema_versions(self) -> list[int]:
        with self._transaction(write=False) as db:
            return [row[0] for row in db.all("SELECT version FROM schema_version ORDER BY version")]

    # --- accounts ---------------------------------------------------------------------

    @staticmethod
    def _account(row: Row) -> AccountRecord:
        data, password_hash, generation, pending_email, pending_token, pending_at, active, warned = row
        change = None
        if pending_email and pending_token:
            change = EmailChange(pending_email, pending_token, int(pending_at or 0))
        return AccountRecord(
            Account.model_validate_json(data),
            password_hash,
            generation or "",
            change,
            int(active or 0),
            int(warned or 0),
        )

    def get_account(self, account_id: str) -> AccountRecord | None:
        with self._transaction(write=False) as db:
            row = db.one(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id = ?", (account_id,))
        return self._account(row) if row else None

    def find_account(self, name_or_email: str) -> AccountRecord | None:
        with self._transaction(write=False) as db:
            row = db.one(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id = ? OR email = ?",
                (name_or_email, name_or_email.strip().lower()),
            )
        return self._account(row) if row else None

    def list_accounts(self) -> list[AccountRecord]:
        with self._transaction(write=False) as db:
            rows = db.all(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts ORDER BY id")
        return [self._account(row) for row in rows]

    def record_activity(self, account_id: str, at: int, resolution: int) -> None:
        # What this store wrote last for each user: within ``resolution`` of it, no statement at all.
        if at - self._activity_noted.get(account_id, 0) < resolution:
            return
        if len(self._activity_noted) >= ACTIVITY_NOTES:
            self._activity_noted.clear()
        self._activity_noted[account_id] = at
        with self._transaction(write=True) as db:
            # Other processes note activity too: the condition keeps it to one write a resolution.
            db.run(
                "UPDATE accounts SET last_active = ? WHERE id = ? AND last_active <= ?",
                (at, account_id, at - resolution),
            )

    def account_standing(self, account_id: str) -> tuple[str, str] | None:
        with self._transaction(write=False) as db:
            row = db.one("SELECT status, token_generation FROM accounts WHERE id = ?", (account_id,))
        return (row[0], row[1]) if row else None

    def insert_account(self, record: AccountRecord) -> None:
        account = record.account
        with self._transaction(write=True) as db:
            if db.one("SELECT 1 FROM accounts WHERE id = ?", (account.id,)):
                raise Conflict(f"account '{account.id}' already exists")
            email = _email_key(account)
            if email and db.one("SELECT 1 FROM accounts WHERE email = ?", (email,)):
                raise Conflict(f"e-mail address '{account.email}' is already in use")
            db.run(
                "INSERT INTO accounts (id, email, status, password_hash, token_generation, pending_email,"
                " pending_email_token, pending_email_at, data, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    account.id,
                    email,
                    account.status,
                    record.password_hash,
                    record.token_generation,
                    *_email_change_columns(record),
                    account.model_dump_json(),
                    clock.now(),
                    clock.now(),
                ),
            )

    def update_account(
        self, account_id: str, change: Callable[[AccountRecord], AccountRecord]
    ) -> AccountRecord:
        with self._transaction(write=True) as db:
            row = db.one(
                f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id = ?" + self.dialect.for_update(),
                (account_id,),
            )
            if row is None:
                raise NotFound("account", account_id)
            record = change(self._account(row))
            email = _email_key(record.account)
            if email and db.one("SELECT 1 FROM accounts WHERE email = ? AND id <> ?", (email, account_id)):
                raise Conflict(f"e-mail address '{record.account.email}' is already in use")
            db.run(
                "UPDATE accounts SET email = ?, status = ?, password_hash = ?, token_generation = ?,"
                " pending_email = ?, pending_email_token = ?, pending_email_at = ?, idle_warned_at = ?,"
                " data = ?, updated_at = ? WHERE id = ?",
                (
                    email,
                    record.account.status,
                    record.password_hash,
                    record.token_generation,
                    *_email_change_columns(record),
                    record.idle_warned_at,
                    record.account.model_dump_json(),
                    clock.now(),
                    account_id,
                ),
            )
        return record

    def delete_account(self, account_id: str) -> bool:
        with self._transaction(write=True) as db:
            db.run("DELETE FROM specs WHERE owner = ?", (account_id,))
            db.run("DELETE FROM stack_services WHERE owner = ?", (account_id,))
            db.run("DELETE FROM stacks WHERE owner = ?", (account_id,))
            db.run("DELETE FROM shovels WHERE owner = ?", (account_id,))
            db.run(
                "DELETE FROM transfer_files WHERE transfer_id IN (SELECT id FROM transfers WHERE owner = ?)",
                (account_id,),
            )
            db.run("DELETE FROM transfers WHERE owner = ?", (account_id,))
            db.run("DELETE FROM exports WHERE owner = ?", (account_id,))
            return db.run("DELETE FROM accounts WHERE id = ?", (account_id,)) > 0

    # --- throttles --------------------------------------------------------------------

    def hit_throttles(self, keys: Sequence[str], now: int, window_seconds: int) -> list[Throttle]:
        counted: list[Throttle] = []
        with self._transaction(write=True) as db:
            db.run("DELETE FROM throttles WHERE window_ends <= ?", (now,))
            for key in keys:
                # One statement, so that concurrent attempts (other instances) each count.
                db.run(
                    "INSERT INTO throttles (key, hits, window_ends) VALUES (?, 1, ?)"
                    " ON CONFLICT (key) DO UPDATE SET"
                    " hits = CASE WHEN throttles.window_ends > ? THEN throttles.hits + 1 ELSE 1 END,"
                    " window_ends = CASE WHEN throttles.window_ends > ?"
                    " THEN throttles.window_ends ELSE excluded.window_ends END",
                    (key, now + window_seconds, now, now),
                )
                row = db.one("SELECT hits, window_ends FROM throttles WHERE key = ?", (key,))
                assert row is not None  # written just now, in this transaction
                counted.append(Throttle(int(row[0]), int(row[1])))
        return counted

    def release_throttles(self, *, cleared: Sequence[str] = (), refunded: Sequence[str] = ()) -> None:
        if not cleared and not refunded:
            return
        with self._transaction(write=True) as db:
            for key in cleared:
                db.run("DELETE FROM throttles WHERE key = ?", (key,))
            for key in refunded:
                db.run("UPDATE throttles SET hits = hits - 1 WHERE key = ? AND hits > 0", (key,))

    # --- catalogs ---------------------------------------------------------------------

    def get_spec(self, owner: str, key: str) -> ServiceSpec | None:
        with self._transaction(write=False) as db:
            row = db.one("SELECT data FROM specs WHERE owner = ? AND key = ?", (owner, key))
        return ServiceSpec.model_validate_json(row[0]) if row else None

    def list_specs(self, owner: str) -> list[ServiceSpec]:
        with self._transaction(write=False) as db:
            rows = db.all("SELECT data FROM specs WHERE owner = ? ORDER BY key", (owner,))
        return [ServiceSpec.model_validate_json(row[0]) for row in rows]

    def insert_spec(self, owner: str, spec: ServiceSpec) -> None:
        with self._transaction(write=True) as db:
            if db.one("SELECT 1 FROM specs WHERE owner = ? AND key = ?", (owner, spec.key)):
                raise Conflict(f"service '{spec.key}' already exists")
            db.run(
                "INSERT INTO specs (owner, key, data) VALUES (?, ?, ?)",
                (owner, spec.key, spec.model_dump_json()),
            )

    def replace_spec(self, owner: str, spec: ServiceSpec) -> None:
        with self._transaction(write=True) as db:
            db.run("DELETE FROM specs WHERE owner = ? AND key = ?", (owner, spec.key))
            db.run(
                "INSERT INTO specs (owner, key, data) VALUES (?, ?, ?)",
                (owner, spec.key, spec.model_dump_json()),
            )

    def delete_spec(self, owner: str, key: str) -> bool:
        with self._transaction(write=True) as db:
            return db.run("DELETE FROM specs WHERE owner = ? AND key = ?", (owner, key)) > 0

    # --- stacks -----------------------------------------------------------------------

    def list_stacks(self, owner: str) -> list[Stack]:
        return [stored.stack() for stored in self.list_stored_stacks(owner)]

    def list_stored_stacks(self, owner: str) -> list[StoredStack]:
        with self._transaction(write=False) as db:
            rows = db.all(
                "SELECT status, data, COALESCE(model_version = ?, FALSE) FROM stacks"
                " WHERE owner = ? ORDER BY created_at, id",
                (stack_model_version(), owner),
            )
        return list(map(StoredStack._make, rows))

    def list_all_stacks(self) -> list[tuple[str, Stack]]:
        with self._transaction(write=False) as db:
            rows = db.all("SELECT owner, data FROM stacks ORDER BY owner, created_at, id")
        return [(row[0], Stack.model_validate_json(row[1])) for row in rows]

    def get_stack(self, owner: str, sid: str) -> Stack | None:
        with self._transaction(write=False) as db:
            row = db.one("SELECT data FROM stacks WHERE id = ? AND owner = ?", (sid, owner))
        return Stack.model_validate_json(row[0]) if row else None

    def insert_stack(self, owner: str, stack: Stack) -> None:
        with self._transaction(write=True) as db:
            if db.one("SELECT 1 FROM stacks WHERE id = ?", (stack.id,)):
                raise Conflict(f"stack '{stack.id}' already exists")
            document, version = _stack_document(stack)
            db.run(
                "INSERT INTO stacks (id, owner, status, model_version, data, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (stack.id, owner, stack.status, version, document, clock.now(), clock.now()),
            )
            self._index_services(db, owner, stack)

    def update_stack(self, owner: str, sid: str, change: Callable[[Stack], Stack]) -> Stack:
        with self._transaction(write=True) as db:
            row = db.one(
                "SELECT data FROM stacks WHERE id = ? AND owner = ?" + self.dialect.for_update(),
                (sid, owner),
            )
            if row is None:
                raise NotFound("stack", sid)
            stack = change(Stack.model_validate_json(row[0]))
            document, version = _stack_document(stack)
            db.run(
                "UPDATE stacks SET status = ?, model_version = ?, data = ?, updated_at = ? WHERE id = ?",
                (stack.status, version, document, clock.now(), sid),
            )
            self._index_services(db, owner, stack)
        return stack

    def delete_stack(self, owner: str, sid: str) -> bool:
        with self._transaction(write=True) as db:
            db.run("DELETE FROM stack_services WHERE stack_id = ? AND owner = ?", (sid, owner))
            return db.run("DELETE FROM stacks WHERE id = ? AND owner = ?", (sid, owner)) > 0

    def count_stacks_using(self, key: str, owner: str | None = None) -> int:
        with self._transaction(write=False) as db:
            if owner is None:
                row = db.one(
                    "SELECT COUNT(DISTINCT stack_id) FROM stack_services WHERE service_key = ?",
                    (key,),
                )
            else:
                row = db.one(
                    "SELECT COUNT(DISTINCT stack_id) FROM stack_services WHERE service_key = ? AND owner = ?",
                    (key, owner),
                )
        return int(row[0]) if row else 0

    @staticmethod
    def _index_services(db: _Statements, owner: str, stack: Stack) -> None:
        db.run("DELETE FROM stack_services WHERE stack_id = ?", (stack.id,))
        for key in sorted({service.service for service in stack.services}):
            db.run(
                "INSERT INTO stack_services (stack_id, owner, service_key) VALUES (?, ?, ?)",
                (stack.id, owner, key),
            )

    # --- vocabularies and meta --------------------------------------------------------

    def put_vocabulary(self, vocabulary: Vocabulary) -> None:
        with self._transaction(write=True) as db:
            db.run("DELETE FROM vocabularies WHERE name = ?", (vocabulary.name,))
            db.run(
                "INSERT INTO vocabularies (name, data) VALUES (?, ?)",
                (vocabulary.name, vocabulary.model_dump_json()),
            )

    def get_vocabulary(self, name: str) -> Vocabulary | None:
        with self._transaction(write=False) as db:
            row = db.one("SELECT data FROM vocabularies WHERE name = ?", (name,))
        return Vocabulary.model_validate_json(row[0]) if row else None

    def get_meta(self, key: str) -> str | None:
        with self._transaction(write=False) as db:
            row = db.one("SELECT value FROM meta WHERE key = ?", (key,))
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction(write=True) as db:
            db.run("DELETE FROM meta WHERE key = ?", (key,))
            db.run("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))


@cache
def stack_model_version() -> str:
    """A fingerprint of the ``Stack`` model's serialized form, recorded with each stored stack: a
    document written under another is read through the model, which fills in what it lacks.

    That form is fixed by the source of ``shared.core.models`` (where ``Stack`` and every model and
    type it holds are defined, on pydantic alone; tests/test_store.py checks it) and by pydantic's
    versions, so their hash stands for it. A cold start that lists stacks then reads one file
    rather than building ``Stack``'s validator and JSON schema (20 ms or more) only to fingerprint
    documents it serves as they are stored. An edit of that file that leaves ``Stack`` as it was
    changes the fingerprint too: each stored stack is then read through the model until it is
    written again, as after any change of the model."""
    import hashlib

    import pydantic
    import pydantic_core

    from shared.core import models

    source = Path(models.__file__ or "")
    if source.suffix != ".py":  # installed without its source: fingerprint the schema itself
        import json

        text = json.dumps(Stack.model_json_schema(mode="serialization"))
    else:
        text = source.read_text(encoding="utf-8")
    versions = f"{pydantic.VERSION}\n{pydantic_core.__version__}\n"
    return hashlib.sha256(f"{versions}{text}".encode()).hexdigest()[:16]


def _stack_document(stack: Stack) -> tuple[str, str | None]:
    """The stack's JSON document, and the model version to record with it: none when the document
    would not read back through the model unchanged (then it is never served as it is stored)."""
    from pydantic import ValidationError

    document = stack.model_dump_json()
    try:
        round_trip = Stack.model_validate_json(document).model_dump_json()
    except ValidationError:
        return document, None
    return document, (stack_model_version() if round_trip == document else None)


def _email_key(account: Account) -> str | None:
    email = account.email.strip().lower()
    return email or None


_ACCOUNT_COLUMNS = (
    "data, password_hash, token_generation, pending_email, pending_email_token, pending_email_at,"
    " last_active, idle_warned_at"
)
"""What ``SqlStore._account`` reads, in its order."""


def _email_change_columns(record: AccountRecord) -> tuple[str | None, str | None, int | None]:
    change = record.email_change
    if change is None:
        return None, None, None
    return change.address, change.token, change.requested_at


class _Statements:
    """Statements inside one transaction, written with ``?`` placeholders for every dialect."""

    def __init__(self, cursor: Cursor, dialect: Dialect) -> None:
        self.cursor = cursor
        self.dialect = dialect

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        result = self.cursor.execute(self.dialect.sql(sql), params)
        count = getattr(result, "rowcount", None)
        if count is None:
            count = getattr(self.cursor, "rowcount", 0)
        return int(count or 0)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        self.cursor.execute(self.dialect.sql(sql), params)
        row = self.cursor.fetchone()
        return tuple(row) if row is not None else None

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self.cursor.execute(self.dialect.sql(sql), params)
        rows: list[Row] = self.cursor.fetchall()  # both drivers' rows are tuples already
        return rows


def open_store(database_url: str) -> Store:
    """The adapter for ``database_url``: ``sqlite:///path`` or ``postgresql://…``; schema brought up to date."""
    store = SqlStore(dialect_for(database_url))
    store.migrate()
    return store
