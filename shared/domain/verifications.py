"""Checks of a completed transfer's folder against its receipts: done at once where the platform reaches
the homes, else asked of the user's shovel (which shares the home with the apps) and recorded."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from shared.core import clock
from shared.core.errors import Conflict, NotFound, Unavailable, WorkbenchError
from shared.core.models import ReceiptCheck, TransferCheck
from shared.domain import transfers
from shared.domain.messages import VerifyCommand, queue_for

if TYPE_CHECKING:
    from events.types import TransferVerified
    from shared.domain.transfers import TransferPorts


def start(
    ports: TransferPorts, user: str, transfer_id: str, *, admin: bool = False
) -> ReceiptCheck | TransferCheck:
    """Verify a completed transfer of ``user``'s (any user's for the admin). Where the platform reaches
    the homes: the result at once (kept as a completed check too). Elsewhere: a check asked of the
    owner's shovels, ``requested`` until one reports (``record``)."""
    transfer = transfers.read(ports, user, transfer_id, admin=admin)
    if transfer.state != "completed":
        raise Conflict(f"transfer '{transfer_id}' is {transfer.state}: only a completed one has a receipt")
    now = clock.now()
    check = TransferCheck(
        id=str(uuid.uuid4()),
        transferId=transfer.id,
        user=transfer.user,
        target=transfer.target,
        createdTime=now,
        updateTime=now,
    )
    if ports.home_space is not None:
        found = transfers.verify_copy(ports, user, transfer_id, admin=admin)
        ports.store.insert_transfer_check(check.model_copy(update={"state": "completed", "result": found}))
        return found
    ports.store.insert_transfer_check(check)
    command = VerifyCommand(
        check_id=check.id, transfer_id=transfer.id, user=transfer.user, target=transfer.target
    )
    try:
        ports.bus.publish(queue_for(transfer.user), command.model_dump_json().encode())
    except WorkbenchError as error:
        message = f"the check could not be sent to the shovels: {error.message}"
        ports.store.update_transfer_check(check.id, lambda current: _failed(current, message))
        raise Unavailable(message) from error
    return _as_owner_sees(ports, check)


def latest(ports: TransferPorts, user: str, transfer_id: str, *, admin: bool = False) -> TransferCheck:
    """The newest check of a transfer of ``user``'s (any user's for the admin)."""
    transfer = transfers.read(ports, user, transfer_id, admin=admin)
    check = ports.store.latest_transfer_check(transfer.id)
    if check is None:
        raise NotFound("transfer check", transfer.id)
    return _as_owner_sees(ports, check)


def record(ports: TransferPorts, report: TransferVerified) -> TransferCheck:
    """A shovel's report of a check: its result kept, or its error. Only the check's own user's shovel
    reports it (the event is signed with that user's key); a check already settled stays as it is."""
    check = ports.store.get_transfer_check(report.check_id)
    if check is None or check.user != report.user or check.transferId != report.transfer_id:
        raise NotFound("transfer check", report.check_id)
    return ports.store.update_transfer_check(check.id, lambda current: _settled(current, report))


def _settled(check: TransferCheck, report: TransferVerified) -> TransferCheck:
    if check.state != "requested":
        return check
    if report.error is not None:
        return _failed(check, report.error)
    counts = {
        "modified": report.modified_count,
        "missing": report.missing_count,
        "added": report.added_count,
        "problems": report.problems_count,
    }
    changed = any(counts.values())
    result = ReceiptCheck(
        transferId=check.transferId,
        target=check.target,
        receipts=report.receipts,
        checked=report.checked,
        modified=report.modified,
        missing=report.missing,
        added=report.added,
        problems=report.problems,
        unchanged=report.receipts > 0 and not changed,
    )
    return check.model_copy(
        update={"state": "completed", "result": result, "counts": counts, "updateTime": clock.now()}
    )


def _failed(check: TransferCheck, message: str) -> TransferCheck:
    return check.model_copy(update={"state": "failed", "message": message, "updateTime": clock.now()})


def _as_owner_sees(ports: TransferPorts, check: TransferCheck) -> TransferCheck:
    """The check, telling whether it waits for one of its user's stacks to start (no shovel runs)."""
    if check.state != "requested":
        return check
    stacks = ports.store.list_stacks(check.user)
    waiting = not any(stack.status in transfers.SHOVELLING for stack in stacks)
    return check.model_copy(update={"waitingForStack": waiting})
