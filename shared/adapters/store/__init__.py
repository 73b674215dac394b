"""The state store port: accounts, catalogs, stacks and vocabularies behind one interface."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from shared.core.models import (
    Account,
    DeadLetter,
    Export,
    ServiceSpec,
    Stack,
    Transfer,
    TransferCheck,
    TransferFile,
    Vocabulary,
)

SYSTEM_CATALOG = ""
"""The owner under which the system catalog's specs are stored; user catalogs use the user's id."""


def new_token_generation() -> str:
    """A fresh value for ``AccountRecord.token_generation``."""
    return secrets.token_urlsafe(12)


@dataclass
class EmailChange:
    """A new e-mail address of an account, waiting for the link sent to it to be opened."""

    address: str
    token: str
    requested_at: int


@dataclass
class AccountRecord:
    """An account as stored: the API model and what never leaves the store (the password hash, the
    generation of its tokens, an e-mail change waiting for verification)."""

    account: Account
    password_hash: str
    token_generation: str = field(default_factory=new_token_generation)
    """Carried by every token issued for this account (claim ``gen``); a token carrying another is
    refused. A new record (a new account, or one re-created under a name used before) gets a new
    value, and so does every event that ends the account's sessions (logout, password change, status
    change): one value per account keeps the check to one primary-key read per call."""
    email_change: EmailChange | None = None
    last_active: int = 0
    """When the account was last active as the API saw it (kept by ``record_activity`` alone)."""
    idle_warned_at: int = 0
    """When its idle stacks' warning was last mailed (one per idle period)."""


class Throttle(NamedTuple):
    """A counter of attempts in a fixed window: how many so far, and when the window ends."""

    hits: int
    window_ends: int


class StoredStack(NamedTuple):
    """A stack as stored: its status, its JSON document, and whether that document is current:
    written by this ``Stack`` model and read back through it unchanged, so that it is byte for byte
    what the model would serialize. (A tuple: a listing makes one per row.)"""

    status: str
    document: str
    current: bool

    def stack(self) -> Stack:
        return Stack.model_validate_json(self.document)


class DurationTally(NamedTuple):
    """Finished stack starts of one outcome as a histogram: how many, their summed seconds, and how
    many took at most each bound asked for (cumulative, as Prometheus buckets are)."""

    succeeded: bool
    finished: int
    seconds: float
    under: list[int]


class OperationsFigures(NamedTuple):
    """What a metrics scrape reads of the store, in one transaction; counts only, nobody named."""

    starts: list[DurationTally]
    transfers: dict[str, tuple[int, int]]
    """State → (transfers, bytes of their files)."""
    shovels: int
    oldest_heartbeat: int | None
    newest_heartbeat: int | None
    """When the shovel heard from longest ago, and most recently, last reported (seconds)."""
    dead_letters: int


class Store(Protocol):
    """What the domain needs from a database; every method is one transaction."""

    def ping(self) -> None: ...
    def close(self) -> None: ...

    def get_account(self, account_id: str) -> AccountRecord | None: ...
    def find_account(self, name_or_email: str) -> AccountRecord | None: ...
    def list_accounts(self) -> list[AccountRecord]: ...
    def insert_account(self, record: AccountRecord) -> None: ...
    def update_account(
        self, account_id: str, change: Callable[[AccountRecord], AccountRecord]
    ) -> AccountRecord: ...
    def delete_account(self, account_id: str) -> bool: ...
    def record_activity(self, account_id: str, at: int, resolution: int) -> None:
        """Note that the account was active at ``at``; written only when the last note is older than
        ``resolution`` seconds (so that a busy user costs a write a minute, not one a call)."""
        ...

    def account_standing(self, account_id: str) -> tuple[str, str] | None:
        """(status, token generation) of an account, by its primary key alone (read on every call)."""
        ...

    def hit_throttles(self, keys: Sequence[str], now: int, window_seconds: int) -> list[Throttle]:
        """Count one attempt against each key (a window of ``window_seconds`` starts with a key's
        first attempt, or its first after the last window ended); the counters after it, in order."""
        ...

    def release_throttles(self, *, cleared: Sequence[str] = (), refunded: Sequence[str] = ()) -> None:
        """Forget the counters ``cleared``; take one attempt back from each of ``refunded``."""
        ...

    def get_spec(self, owner: str, key: str) -> ServiceSpec | None: ...
    def list_specs(self, owner: str) -> list[ServiceSpec]: ...
    def insert_spec(self, owner: str, spec: ServiceSpec) -> None: ...
    def replace_spec(self, owner: str, spec: ServiceSpec) -> None: ...
    def delete_spec(self, owner: str, key: str) -> bool: ...

    def list_stacks(self, owner: str) -> list[Stack]: ...
    def list_stored_stacks(self, owner: str) -> list[StoredStack]:
        """The owner's stacks as ``list_stacks`` orders them, not validated."""
        ...

    def list_all_stacks(self) -> list[tuple[str, Stack]]: ...
    def get_stack(self, owner: str, sid: str) -> Stack | None: ...
    def insert_stack(self, owner: str, stack: Stack) -> None: ...
    def update_stack(self, owner: str, sid: str, change: Callable[[Stack], Stack]) -> Stack: ...
    def delete_stack(self, owner: str, sid: str) -> bool: ...
    def count_stacks_using(self, key: str, owner: str | None = None) -> int: ...

    def put_vocabulary(self, vocabulary: Vocabulary) -> None: ...
    def get_vocabulary(self, name: str) -> Vocabulary | None: ...

    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...

    def insert_transfer(self, transfer: Transfer, work: str | None = None) -> bool: ...
    def transfer_work(self, transfer_id: str) -> str | None: ...
    def unfinished_transfers(self, states: Sequence[str], before: int, limit: int = 100) -> list[str]: ...
    def claim_transfer(
        self, transfer_id: str, before: int, change: Callable[[Transfer, int], Transfer]
    ) -> tuple[Transfer, str | None] | None: ...
    def get_transfer(self, transfer_id: str, owner: str | None = None) -> Transfer | None: ...
    def list_transfers(self, owner: str | None = None) -> list[Transfer]: ...
    def dataset_transfers(self, dataset_id: str) -> list[Transfer]: ...
    def update_transfer(self, transfer_id: str, change: Callable[[Transfer], Transfer]) -> Transfer: ...
    def put_transfer_files(self, transfer_id: str, files: list[TransferFile]) -> None: ...
    def list_transfer_files(self, transfer_id: str) -> list[TransferFile]: ...
    def tally_transfer_files(self, transfer_id: str) -> tuple[int, int, int, list[tuple[str, str]]]:
        """(files, files placed, bytes placed, (path, error) of each failed file), read at once."""
        ...

    def settle_transfer_files(
        self, transfer_id: str, placed: list[str], failed: list[tuple[str, str]]
    ) -> None: ...
    def find_blobs(self, source: str, files: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
        """The sha256 of each of ``files`` (clowder id, size) of ``source`` staged before."""
        ...

    def remember_blobs(self, source: str, blobs: list[tuple[str, int, str]]) -> None:
        """Remember the sha256 of staged files (clowder id, size, sha256), in one transaction."""
        ...

    def insert_export(self, export: Export) -> bool: ...
    def get_export(self, export_id: str, owner: str | None = None) -> Export | None: ...
    def list_exports(self, owner: str) -> list[Export]: ...
    def update_export(
        self, export_id: str, change: Callable[[Export], Export], *, work: str | None = None
    ) -> Export: ...
    def export_work(self, export_id: str) -> str | None: ...
    def unfinished_exports(self, states: Sequence[str], before: int, limit: int = 100) -> list[str]: ...
    def claim_export(
        self, export_id: str, before: int, change: Callable[[Export, int], Export]
    ) -> tuple[Export, str | None] | None: ...

    def record_heartbeat(self, owner: str, stack_id: str, heartbeat: dict[str, Any]) -> None: ...
    def list_heartbeats(self) -> Iterator[tuple[str, str, dict[str, Any], int]]: ...

    def insert_dead_letter(self, dead_letter: DeadLetter) -> bool: ...
    def list_dead_letters(self, limit: int) -> list[DeadLetter]: ...

    def claim_event(
        self, source: str, event_id: str, event_type: str, event_time: int, lease: int
    ) -> bool: ...
    def finish_event(self, source: str, event_id: str) -> None: ...
    def release_event(self, source: str, event_id: str) -> None: ...
    def event_finished(self, source: str, event_id: str) -> bool: ...
    def prune_events(self, made_before: int) -> int: ...

    def insert_transfer_check(self, check: TransferCheck) -> None: ...
    def get_transfer_check(self, check_id: str) -> TransferCheck | None: ...
    def latest_transfer_check(self, transfer_id: str) -> TransferCheck | None: ...
    def update_transfer_check(
        self, check_id: str, change: Callable[[TransferCheck], TransferCheck]
    ) -> TransferCheck: ...

    def begin_stack_start(self, stack_id: str, at: float) -> None: ...
    def finish_stack_start(self, stack_id: str, succeeded: bool, at: float) -> bool: ...
    def operations_figures(self, start_bounds: Sequence[float]) -> OperationsFigures: ...
