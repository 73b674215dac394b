"""The SQL store on both backends: SQLite (a file) and the real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import typing
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from shared.adapters.store import SYSTEM_CATALOG, AccountRecord, Store
from shared.adapters.store.migrations import MIGRATIONS
from shared.adapters.store.sql import SqlStore, dialect_for, open_store, stack_model_version
from shared.core.errors import Conflict, NotFound, Unavailable
from shared.core.models import Account, ServiceSpec, Stack, StackService, Term, Vocabulary
from tests.support import wait_until

THREADS = 8
INCREMENTS = 25


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'workbench.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def opened() -> Iterator[Callable[[str], SqlStore]]:
    """``opened(url)``: ``open_store(url)``, closed after the test."""
    stores: list[SqlStore] = []

    def open_one(url: str) -> SqlStore:
        store = open_store(url)
        assert isinstance(store, SqlStore)
        stores.append(store)
        return store

    yield open_one
    for store in stores:
        store.close()


@pytest.fixture
def store(database_url: str, opened: Callable[[str], SqlStore]) -> SqlStore:
    return opened(database_url)


def account(user: str, email: str | None = None) -> AccountRecord:
    return AccountRecord(
        Account(
            id=user,
            namespace=user,
            name=user.title(),
            email=f"{user}@example.org" if email is None else email,
            status="approved",
        ),
        password_hash=f"hash-of-{user}",
    )


def spec(key: str, label: str = "") -> ServiceSpec:
    return ServiceSpec(key=key, label=label or key.title())


def stack(sid: str, *keys: str, name: str = "") -> Stack:
    return Stack(
        id=sid,
        key=keys[0],
        name=name or sid,
        services=[StackService(id=f"{sid}-{key}", stack=sid, service=key) for key in keys],
    )


# --- schema versions ---------------------------------------------------------------------------


def test_open_store_applies_and_records_the_schema(
    database_url: str, opened: Callable[[str], SqlStore]
) -> None:
    fresh = SqlStore(dialect_for(database_url))
    try:
        assert fresh.migrate() == [version for version, _, _ in MIGRATIONS]
    finally:
        fresh.close()
    store = opened(database_url)
    assert store.schema_versions() == [version for version, _, _ in MIGRATIONS]
    connection = dialect_for(database_url).connect()
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT version, description, applied_at FROM schema_version ORDER BY version")
        rows = cursor.fetchall()
    finally:
        connection.close()
    assert [(row[0], row[1]) for row in rows] == [(version, text) for version, text, _ in MIGRATIONS]
    assert all(row[2] > 0 for row in rows)


def test_opening_again_applies_nothing(database_url: str, opened: Callable[[str], SqlStore]) -> None:
    first = opened(database_url)
    first.insert_account(account("alice"))
    again = opened(database_url)
    assert again.migrate() == []
    assert again.schema_versions() == [version for version, _, _ in MIGRATIONS]
    found = again.get_account("alice")
    assert found is not None and found.account.email == "alice@example.org"


def test_an_up_to_date_database_is_opened_without_the_migration_lock(
    database_url: str, opened: Callable[[str], SqlStore]
) -> None:
    opened(database_url)  # the schema is in place
    holder = dialect_for(database_url).connect()
    try:
        # Another process holds what a migration waits for: PostgreSQL's migration lock, SQLite's
        # write lock.
        if database_url.startswith("sqlite"):
            holder.execute("BEGIN IMMEDIATE")
        else:
            holder.execute("SELECT pg_advisory_lock(730128)")
        result: list[list[int]] = []
        store = SqlStore(dialect_for(database_url))
        opening = threading.Thread(target=lambda: result.append(store.migrate()), daemon=True)
        opening.start()
        opening.join(timeout=3)
        assert result == [[]], "opening an up-to-date database waited for the migration lock"
        store.close()
    finally:
        holder.close()


def test_concurrent_first_opens_apply_the_schema_once(database_url: str) -> None:
    applied: list[list[int]] = []
    errors: list[BaseException] = []
    stores: list[SqlStore] = []
    lock = threading.Lock()

    def open_and_migrate() -> None:
        store = SqlStore(dialect_for(database_url))
        try:
            result = store.migrate()
        except BaseException as error:
            with lock:
                errors.append(error)
            return
        finally:
            with lock:
                stores.append(store)
        with lock:
            applied.append(result)

    threads = [threading.Thread(target=open_and_migrate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for store in stores:
        store.close()
    assert errors == []
    assert sorted(applied) == [[], [], [], [version for version, _, _ in MIGRATIONS]]


# --- accounts ----------------------------------------------------------------------------------


def test_account_insert_and_find(store: Store) -> None:
    store.insert_account(account("alice", "Alice.Liddell@Example.ORG"))
    by_id = store.get_account("alice")
    assert by_id is not None
    assert by_id.account.name == "Alice"
    assert by_id.account.email == "Alice.Liddell@Example.ORG"  # kept as given
    assert by_id.password_hash == "hash-of-alice"

    for name_or_email in (
        "alice",
        "alice.liddell@example.org",
        "ALICE.LIDDELL@EXAMPLE.ORG",
        " Alice.Liddell@example.org ",
    ):
        found = store.find_account(name_or_email)
        assert found is not None, name_or_email
        assert found.account.id == "alice"
    assert store.find_account("nobody@example.org") is None
    assert store.get_account("nobody") is None
    assert [record.account.id for record in store.list_accounts()] == ["alice"]


def test_duplicate_accounts_are_conflicts(store: Store) -> None:
    store.insert_account(account("alice"))
    with pytest.raises(Conflict, match="alice"):
        store.insert_account(account("alice", "other@example.org"))
    with pytest.raises(Conflict, match="e-mail"):
        store.insert_account(account("bob", "ALICE@example.org"))
    assert [record.account.id for record in store.list_accounts()] == ["alice"]
    # Accounts without an e-mail address do not clash with each other.
    store.insert_account(account("carol", ""))
    store.insert_account(account("dave", ""))
    assert len(store.list_accounts()) == 3


def test_update_account(store: Store) -> None:
    store.insert_account(account("alice"))
    store.insert_account(account("bob"))

    def change(record: AccountRecord) -> AccountRecord:
        record.account = record.account.model_copy(update={"email": "Alice@New.example.org", "name": "A. L."})
        record.password_hash = "new-hash"
        return record

    updated = store.update_account("alice", change)
    assert updated.account.name == "A. L."
    stored = store.get_account("alice")
    assert stored is not None
    assert stored.account.name == "A. L."
    assert stored.password_hash == "new-hash"
    assert store.find_account("alice@new.example.org") is not None
    assert store.find_account("alice@example.org") is None

    def take_bobs_address(record: AccountRecord) -> AccountRecord:
        record.account = record.account.model_copy(update={"email": "bob@example.org"})
        return record

    with pytest.raises(Conflict):
        store.update_account("alice", take_bobs_address)
    still = store.get_account("alice")
    assert still is not None and still.account.email == "Alice@New.example.org"
    with pytest.raises(NotFound):
        store.update_account("nobody", change)


def test_delete_account_removes_what_the_user_owns(store: Store) -> None:
    store.insert_account(account("alice"))
    store.insert_account(account("bob"))
    store.insert_spec("alice", spec("mine"))
    store.insert_spec("bob", spec("mine"))
    store.insert_stack("alice", stack("s1", "mine"))
    store.insert_stack("bob", stack("s2", "mine"))

    assert store.delete_account("alice") is True
    assert store.get_account("alice") is None
    assert store.list_specs("alice") == []
    assert store.list_stacks("alice") == []
    assert store.get_stack("alice", "s1") is None
    assert store.count_stacks_using("mine") == 1
    # Bob keeps his.
    assert [item.key for item in store.list_specs("bob")] == ["mine"]
    assert [item.id for item in store.list_stacks("bob")] == ["s2"]
    assert store.delete_account("alice") is False


# --- catalogs ----------------------------------------------------------------------------------


def test_specs_per_owner(store: Store) -> None:
    store.insert_spec(SYSTEM_CATALOG, spec("mongo"))
    store.insert_spec(SYSTEM_CATALOG, spec("jupyterlab"))
    store.insert_spec("alice", spec("mongo", "Alice's mongo"))
    with pytest.raises(Conflict, match="mongo"):
        store.insert_spec("alice", spec("mongo"))

    assert [item.key for item in store.list_specs(SYSTEM_CATALOG)] == ["jupyterlab", "mongo"]
    assert [item.label for item in store.list_specs("alice")] == ["Alice's mongo"]
    assert store.list_specs("bob") == []
    found = store.get_spec(SYSTEM_CATALOG, "mongo")
    assert found is not None and found.label == "Mongo"
    assert store.get_spec("bob", "mongo") is None

    store.replace_spec("alice", spec("mongo", "Replaced"))
    store.replace_spec("alice", spec("redis"))  # replace also adds
    assert [(item.key, item.label) for item in store.list_specs("alice")] == [
        ("mongo", "Replaced"),
        ("redis", "Redis"),
    ]
    system_mongo = store.get_spec(SYSTEM_CATALOG, "mongo")
    assert system_mongo is not None and system_mongo.label == "Mongo"

    assert store.delete_spec("alice", "mongo") is True
    assert store.delete_spec("alice", "mongo") is False
    assert store.get_spec("alice", "mongo") is None
    assert store.get_spec(SYSTEM_CATALOG, "mongo") is not None


def test_specs_round_trip_whole(store: Store) -> None:
    document = {
        "key": "full",
        "label": "Full",
        "image": {"registry": "ghcr.io", "name": "example/full", "tags": ["1", "2"]},
        "depends": [{"key": "mongo", "required": True, "shareConfig": False}],
        "config": [{"name": "PASSWORD", "value": "", "isPassword": True}],
        "ports": [{"port": 8888, "protocol": "http", "contextPath": "/lab"}],
        "volumeMounts": [{"type": "", "mountPath": "/home/jovyan"}],
        "tags": ["2", "20"],
        "privileged": True,
        "createdTime": 1_700_000_000,
    }
    full = ServiceSpec.model_validate(document)
    store.insert_spec("alice", full)
    assert store.get_spec("alice", "full") == full


# --- stacks ------------------------------------------------------------------------------------


def test_stacks_insert_get_list_update_delete(store: Store) -> None:
    store.insert_account(account("alice"))
    store.insert_account(account("bob"))
    store.insert_stack("alice", stack("s1", "jupyterlab"))
    store.insert_stack("alice", stack("s2", "clowder", "mongo"))
    store.insert_stack("bob", stack("s3", "mongo"))
    with pytest.raises(Conflict, match="s1"):
        store.insert_stack("bob", stack("s1", "mongo"))

    assert [item.id for item in store.list_stacks("alice")] == ["s1", "s2"]
    assert [item.id for item in store.list_stacks("bob")] == ["s3"]
    assert [(owner, item.id) for owner, item in store.list_all_stacks()] == [
        ("alice", "s1"),
        ("alice", "s2"),
        ("bob", "s3"),
    ]
    found = store.get_stack("alice", "s2")
    assert found == stack("s2", "clowder", "mongo")

    updated = store.update_stack(
        "alice", "s1", lambda current: current.model_copy(update={"status": "starting", "name": "Lab"})
    )
    assert updated.status == "starting"
    assert store.get_stack("alice", "s1") == updated
    with pytest.raises(NotFound, match="s9"):
        store.update_stack("alice", "s9", lambda current: current)

    assert store.delete_stack("alice", "s1") is True
    assert store.delete_stack("alice", "s1") is False
    assert store.get_stack("alice", "s1") is None
    assert [item.id for item in store.list_stacks("alice")] == ["s2"]


def test_stored_stacks_tell_documents_of_the_current_model_from_older_ones(store: SqlStore) -> None:
    store.insert_account(account("alice"))
    store.insert_stack("alice", stack("s1", "jupyterlab"))
    store.insert_stack("alice", stack("s2", "mongo"))
    store.update_stack("alice", "s2", lambda current: current.model_copy(update={"status": "starting"}))
    # A document an older model wrote: no version recorded, a field since dropped, none since added.
    connection = store.dialect.connect()
    try:
        connection.execute(
            store.dialect.sql("UPDATE stacks SET model_version = NULL, data = ? WHERE id = ?"),
            ('{"id": "s1", "key": "jupyterlab", "retired": 1}', "s1"),
        )
    finally:
        connection.close()

    older, current = store.list_stored_stacks("alice")
    assert (older.status, older.current) == ("stopped", False)
    assert older.stack() == Stack(id="s1", key="jupyterlab")
    assert (current.status, current.current) == ("starting", True)
    assert current.document == store.get_stack("alice", "s2").model_dump_json()  # type: ignore[union-attr]
    assert store.list_stacks("alice") == [item.stack() for item in (older, current)]

    # Written again, the older document is the current model's.
    store.update_stack("alice", "s1", lambda current: current.model_copy(update={"name": "again"}))
    assert [item.current for item in store.list_stored_stacks("alice")] == [True, True]


def _types_within(annotation: object) -> Iterator[object]:
    """``annotation`` and every type it is made of (the arguments of ``list[…]``, ``X | None``, …)."""
    yield annotation
    for argument in typing.get_args(annotation):
        yield from _types_within(argument)


def test_the_stack_model_is_defined_whole_in_the_models_module() -> None:
    """``stack_model_version`` fingerprints the source of shared.core.models: that holds only while
    every model the stored ``Stack`` document is made of is defined there."""
    seen: set[type[BaseModel]] = set()
    pending: list[type[BaseModel]] = [Stack]
    while pending:
        model = pending.pop()
        seen.add(model)
        for base in model.__mro__:
            if issubclass(base, BaseModel) and base is not BaseModel:
                assert base.__module__ == "shared.core.models", base
        for info in model.model_fields.values():
            for part in _types_within(info.annotation):
                if isinstance(part, type) and issubclass(part, BaseModel) and part not in seen:
                    pending.append(part)
    assert StackService in seen and len(seen) >= 3


def test_the_stack_model_version_is_known_without_building_the_stack_validator() -> None:
    """A cold start that lists stacks serves their stored documents: telling which are current
    must not build ``Stack``'s validator (tens of milliseconds) that the listing never uses."""
    probe = (
        "from shared.adapters.store.sql import stack_model_version\n"
        "from shared.core.models import Stack\n"
        "version = stack_model_version()\n"
        "print(version, Stack.__pydantic_complete__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    version, built = result.stdout.split()
    assert (version, built) == (stack_model_version(), "False")
    assert len(version) == 16


def test_stacks_are_isolated_by_owner(store: Store) -> None:
    store.insert_account(account("alice"))
    store.insert_account(account("bob"))
    store.insert_stack("alice", stack("s1", "jupyterlab"))

    assert store.get_stack("bob", "s1") is None
    with pytest.raises(NotFound):
        store.update_stack("bob", "s1", lambda current: current.model_copy(update={"name": "Bob's"}))
    assert store.delete_stack("bob", "s1") is False
    kept = store.get_stack("alice", "s1")
    assert kept is not None and kept.name == "s1"
    assert store.count_stacks_using("jupyterlab", "alice") == 1


def test_count_stacks_using(store: Store) -> None:
    store.insert_account(account("alice"))
    store.insert_account(account("bob"))
    store.insert_stack("alice", stack("s1", "clowder", "mongo", "rabbitmq"))
    store.insert_stack("alice", stack("s2", "girder", "mongo"))
    store.insert_stack("bob", stack("s3", "mongo"))

    assert store.count_stacks_using("mongo") == 3
    assert store.count_stacks_using("mongo", "alice") == 2
    assert store.count_stacks_using("mongo", "bob") == 1
    assert store.count_stacks_using("mongo", "carol") == 0
    assert store.count_stacks_using("rabbitmq") == 1
    assert store.count_stacks_using("rabbitmq", "bob") == 0
    assert store.count_stacks_using("redis") == 0

    # The index follows a stack's services as they change, and goes with the stack.
    store.update_stack("alice", "s1", lambda current: stack("s1", "clowder", "rabbitmq"))
    assert store.count_stacks_using("mongo", "alice") == 1
    store.delete_stack("bob", "s3")
    assert store.count_stacks_using("mongo") == 1


def test_update_stack_loses_no_update_under_contention(store: Store) -> None:
    store.insert_account(account("alice"))
    store.insert_stack("alice", stack("s1", "jupyterlab", name="0"))
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def increment(current: Stack) -> Stack:
        return current.model_copy(update={"name": str(int(current.name) + 1)})

    def work() -> None:
        try:
            start.wait(timeout=30)
            for _ in range(INCREMENTS):
                store.update_stack("alice", "s1", increment)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    final = store.get_stack("alice", "s1")
    assert final is not None
    assert final.name == str(THREADS * INCREMENTS)


def test_error_in_the_change_rolls_back(store: Store) -> None:
    store.insert_account(account("alice"))
    original = stack("s1", "jupyterlab")
    store.insert_stack("alice", original)

    def broken(current: Stack) -> Stack:
        raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError, match="the change failed"):
        store.update_stack("alice", "s1", broken)
    assert store.get_stack("alice", "s1") == original

    # The row lock (PostgreSQL) or write lock (SQLite) went with the rollback: another
    # connection can change the stack at once.
    done = threading.Event()

    def rename() -> None:
        store.update_stack("alice", "s1", lambda current: current.model_copy(update={"name": "renamed"}))
        done.set()

    other = threading.Thread(target=rename)
    other.start()
    other.join(timeout=10)
    assert done.is_set()
    renamed = store.get_stack("alice", "s1")
    assert renamed is not None and renamed.name == "renamed"


# --- vocabularies and meta ---------------------------------------------------------------------


def test_vocabularies_round_trip(store: Store) -> None:
    tags = Vocabulary(name="tags", terms=[Term(id="1", name="Data", definition="About data")])
    store.put_vocabulary(tags)
    assert store.get_vocabulary("tags") == tags
    replaced = Vocabulary(name="tags", terms=[Term(id="2", name="Compute")])
    store.put_vocabulary(replaced)
    assert store.get_vocabulary("tags") == replaced
    assert store.get_vocabulary("colours") is None


def test_meta_round_trip(store: Store) -> None:
    assert store.get_meta("catalog") is None
    store.set_meta("catalog", "loaded")
    assert store.get_meta("catalog") == "loaded"
    store.set_meta("catalog", "loaded again")
    assert store.get_meta("catalog") == "loaded again"


# --- connections -------------------------------------------------------------------------------


def connection_counter(database_url: str) -> tuple[str, Callable[[], int]]:
    """A URL for the same database whose connections can be counted, and the counter."""
    if database_url.startswith("sqlite:///"):
        path = os.path.realpath(database_url.removeprefix("sqlite:///"))

        def open_files() -> int:
            found = 0
            for descriptor in os.listdir("/proc/self/fd"):
                try:
                    if os.readlink(f"/proc/self/fd/{descriptor}") == path:
                        found += 1
                except OSError:
                    continue  # closed meanwhile
            return found

        return database_url, open_files

    import psycopg

    from tests.conftest import POSTGRES_URL

    name = f"wb_store_{uuid.uuid4().hex[:12]}"

    def sessions() -> int:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
            row = connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
            ).fetchone()
        return int(row[0]) if row else 0

    return f"{database_url}&application_name={name}", sessions


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files through /proc")
def test_connections_of_finished_threads_are_released(
    database_url: str, opened: Callable[[str], SqlStore]
) -> None:
    url, open_connections = connection_counter(database_url)
    store = opened(url)
    store.insert_account(account("alice"))
    store.insert_stack("alice", stack("s1", "jupyterlab"))
    # A threaded server (werkzeug's, in the local gateway) runs each request on a new thread.
    for _ in range(20):
        thread = threading.Thread(target=store.get_stack, args=("alice", "s1"))
        thread.start()
        thread.join()
    # Waits: PostgreSQL shows a closed session in pg_stat_activity until its backend has exited.
    wait_until(lambda: open_connections() <= 2, lambda: f"at most 2 connections, not {open_connections()}", 5)
    store.close()
    wait_until(lambda: open_connections() == 0, lambda: f"no connection, not {open_connections()}", 5)

    # A closed store opens connections again when used; one in use while it closes is closed after.
    assert store.get_stack("alice", "s1") is not None
    assert open_connections() >= 1

    def close_meanwhile(current: Stack) -> Stack:
        store.close()
        return current.model_copy(update={"name": "renamed"})

    assert store.update_stack("alice", "s1", close_meanwhile).name == "renamed"
    wait_until(lambda: open_connections() == 0, lambda: f"no connection, not {open_connections()}", 5)
    renamed = store.get_stack("alice", "s1")
    assert renamed is not None and renamed.name == "renamed"


# --- failures ----------------------------------------------------------------------------------


def test_unreachable_postgresql_is_unavailable() -> None:
    import psycopg

    with pytest.raises(Unavailable) as caught:
        open_store("postgresql://127.0.0.1:1/none")
    assert not isinstance(caught.value, psycopg.Error)
    assert "PostgreSQL 127.0.0.1:1/none" in caught.value.message
    assert caught.value.status == 503


def test_unreadable_sqlite_is_unavailable(tmp_path: Path) -> None:
    import sqlite3

    (tmp_path / "not-a-database.db").write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(Unavailable) as caught:
        open_store(f"sqlite:///{tmp_path / 'not-a-database.db'}")
    assert not isinstance(caught.value, sqlite3.Error)
    assert "not-a-database.db" in caught.value.message


def test_sqlite_in_an_impossible_place_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("a file where the database folder should be")
    with pytest.raises(Unavailable) as caught:
        open_store(f"sqlite:///{tmp_path / 'plain-file' / 'data' / 'workbench.db'}")
    assert "plain-file" in caught.value.message
    assert caught.value.message.startswith("database unavailable")
