"""Withdrawals: Clowder deleted a dataset or withdrew access to it, and the copies in the users' homes are flagged to their owners."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from shared.core import clock
from shared.core.errors import WorkbenchError
from shared.core.models import Transfer, Withdrawal
from shared.domain.accounts import Mailer
from shared.domain.transfers import TransferPorts, paired_clowder, printable

if TYPE_CHECKING:
    from events.types import DatasetWithdrawn
    from shared.adapters.store import Store

log = logging.getLogger(__name__)

REASONS = {"deleted": "deleted", "access-withdrawn": "access withdrawn"}
"""Each reason as its owner reads it (the page says the same)."""
SEVERITY = {"access-withdrawn": 1, "deleted": 2}
"""A copy flagged once is flagged again only by a graver reason: a deletion after a withdrawn access."""


class WithdrawalPorts(TransferPorts, Protocol):
    """The store of the transfers, the paired Clowder's settings, and the mailer that tells the owners."""

    @property
    def mailer(self) -> Mailer: ...


def withdraw(ports: WithdrawalPorts, request: DatasetWithdrawn) -> list[Transfer]:
    """Flag the copies of the paired Clowder's dataset the withdrawal concerns and mail their owners;
    returns the transfers flagged now. Nothing is deleted from the homes: each copy is its owner's.

    A transfer not yet completed is flagged too (its files become a copy once placed); a failed one is
    not. A copy already flagged for the same reason is left as it is, so a redelivered or repeated
    withdrawal changes nothing and mails nobody again."""
    source = paired_clowder(ports, request.clowder_url)
    owners = None if request.emails is None else _accounts_of(ports.store, request.emails)
    flag = Withdrawal(reason=request.reason, time=clock.now(), message=request.message)
    flagged = []
    for transfer in ports.store.dataset_transfers(request.dataset_id):
        concerned = (
            transfer.source == source
            and transfer.state != "failed"
            and (owners is None or transfer.user in owners)
            and (request.version is None or transfer.datasetVersion == request.version)
        )
        if concerned and _graver(flag, transfer.withdrawn):
            changed = _flag(ports.store, transfer.id, flag)
            if changed is not None:
                flagged.append(changed)
    log.info(
        "Clowder withdrew dataset %s (%s): %d copies flagged",
        request.dataset_id,
        request.reason,
        len(flagged),
    )
    _tell_owners(ports, flagged)
    return flagged


def _accounts_of(store: Store, emails: list[str]) -> set[str]:
    """The Workbench accounts of these Clowder users; an address no account has holds no copy."""
    found = set()
    for email in emails:
        record = store.find_account(email.strip())
        if record is not None and record.account.email.strip().lower() == email.strip().lower():
            found.add(record.account.id)
    return found


def _graver(flag: Withdrawal, before: Withdrawal | None) -> bool:
    return before is None or SEVERITY[flag.reason] > SEVERITY[before.reason]


def _flag(store: Store, transfer_id: str, flag: Withdrawal) -> Transfer | None:
    """Set the flag, checked again under the row's lock: of two deliveries at once, one flags (and
    mails); None for the other."""
    changed = False

    def change(current: Transfer) -> Transfer:
        nonlocal changed
        changed = _graver(flag, current.withdrawn)
        return current.model_copy(update={"withdrawn": flag}) if changed else current

    updated = store.update_transfer(transfer_id, change)
    return updated if changed else None


def describe(transfer: Transfer) -> str:
    """The flag as its owner reads it, e.g. ``Clowder withdrew this dataset (deleted) on 2026-12-03
    20:41 UTC: Retracted by its authors``."""
    assert transfer.withdrawn is not None
    flag = transfer.withdrawn
    moment = datetime.fromtimestamp(flag.time, UTC).strftime("%Y-%m-%d %H:%M UTC")
    said = f": {flag.message}" if flag.message else ""
    return f"Clowder withdrew this dataset ({REASONS[flag.reason]}) on {moment}{said}"


def _tell_owners(ports: WithdrawalPorts, flagged: list[Transfer]) -> None:
    """One mail to each owner of a copy flagged now, naming the folders; a mail that cannot go is
    logged (the flag, which the page and the API show, is what counts)."""
    by_owner: dict[str, list[Transfer]] = defaultdict(list)
    for transfer in flagged:
        by_owner[transfer.user].append(transfer)
    for user, transfers in by_owner.items():
        record = ports.store.get_account(user)
        if record is None or not record.account.email.strip():
            continue  # an account the admin made without an address
        folders = "\n".join(f"  {transfer.target or 'your home'}" for transfer in transfers)
        first = transfers[0]
        name = first.datasetName or first.datasetId
        body = (
            f"Hello {record.account.name or user},\n\n"
            f"{describe(first)}.\n\n"
            f"The dataset {name!r} ({first.datasetId}) was copied into your Workbench home here:\n"
            f"{folders}\n\n"
            "Nothing has been deleted: the copy stays yours. The transfers page of the Workbench "
            f"({ports.settings.server.origin}) marks it.\n"
        )
        try:
            # A name from Clowder, so no line break or control character of it reaches a header.
            subject = f"Clowder withdrew the dataset {printable(' '.join(name.split()))}"
            ports.mailer.send(record.account.email, subject, body)
        except WorkbenchError as error:
            log.warning("could not mail %s about the withdrawn dataset %s: %s", user, name, error.message)
