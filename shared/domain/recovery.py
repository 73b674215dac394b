"""Accepted work that stopped (the platform was killed, Clowder was away) is resumed, or failed saying why."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from shared.core import clock
from shared.core.errors import WorkbenchError

if TYPE_CHECKING:
    from shared.core.models import Export, Transfer
    from shared.domain.idle import IdlePorts
    from shared.domain.transfers import TransferPorts

    class RecoveryPorts(TransferPorts, IdlePorts, Protocol):
        """What resuming transfers and exports takes: what each of them takes; and the idle
        shutdown's. (Declared for the type checker only: the services themselves are imported when
        work is resumed.)"""


log = logging.getLogger(__name__)

TRANSFERS_AT_WORK = ("requested", "staging")
"""A transfer in these states is being staged; untouched for a lease's length, its staging stopped."""
TRANSFERS_QUEUED = ("syncing",)
"""Staged, its sync commands waiting on the user's queue: lost with in-process queues, kept by RabbitMQ."""
EXPORTS_AT_WORK = ("requested", "creating")
EXPORTS_QUEUED = ("uploading",)
"""Waiting for a shovel to take the upload command: lost with in-process queues, kept by RabbitMQ."""


@dataclass(frozen=True)
class Claimed:
    """A transfer or export this process took over, with what resuming it needs."""

    kind: Literal["transfer", "export"]
    item: Transfer | Export
    work: str | None


def claim_abandoned(ports: RecoveryPorts, *, restarted: bool = False) -> list[Claimed]:
    """Claim every accepted, unfinished transfer and export whose lease ran out.

    ``restarted``: this process has just started. On in-process queues (no RabbitMQ) every unfinished
    item, however recent, was then the work of the process that ended, and the commands it had queued
    ended with it: those waiting for a shovel are taken as well. Called before the platform serves,
    it claims nothing of this process's own."""
    return list(_claims(ports, restarted=restarted))


def _claims(ports: RecoveryPorts, *, restarted: bool) -> Iterator[Claimed]:
    """The abandoned items, each claimed only as it is asked for (so that a claim does not wait out
    its lease behind the work on the items before it)."""
    from shared.domain import exports, transfers

    store = ports.store
    recovery = ports.settings.recovery
    attempts = recovery.resume_attempts
    now = clock.now()
    # With RabbitMQ, other instances may be at work on anything recent: only expired leases count.
    lost_with_process = restarted and not ports.settings.amqp.url
    before = now + 1 if lost_with_process else now - recovery.resume_after

    def transfer_claim(current: Transfer, attempt: int) -> Transfer:
        return transfers.resumed(current, attempt, attempts)

    def export_claim(current: Export, attempt: int) -> Export:
        return exports.resumed(current, attempt, attempts)

    transfer_states = TRANSFERS_AT_WORK + (TRANSFERS_QUEUED if lost_with_process else ())
    for transfer_id in store.unfinished_transfers(transfer_states, before):
        taken = store.claim_transfer(transfer_id, before, transfer_claim)
        if taken is not None:  # else someone else took it meanwhile
            yield Claimed("transfer", *taken)
    export_states = EXPORTS_AT_WORK + (EXPORTS_QUEUED if lost_with_process else ())
    for export_id in store.unfinished_exports(export_states, before):
        taken_export = store.claim_export(export_id, before, export_claim)
        if taken_export is not None:
            yield Claimed("export", *taken_export)


def resume(ports: RecoveryPorts, claimed: Claimed) -> None:
    """Carry on with one claimed item; what becomes of it is recorded on it, so nothing is raised."""
    from shared.core.models import Export, Transfer
    from shared.domain import exports, transfers

    item = claimed.item
    log.info("resuming %s %s of %s (was %s)", claimed.kind, item.id, item.user, item.state)
    try:
        if isinstance(item, Transfer):
            outcome: Transfer | Export = transfers.resume(ports, item, claimed.work)
        else:
            assert isinstance(item, Export)
            outcome = exports.resume(ports, item, claimed.work)
    except WorkbenchError as error:
        log.warning("could not resume %s %s: %s", claimed.kind, item.id, error.message)
        return
    log.info("%s %s is %s %s", claimed.kind, item.id, outcome.state, outcome.message)


def sweep(ports: RecoveryPorts) -> int:
    """One pass: forget the events past their window, then resume (or fail) each abandoned item, then
    stop the stacks of accounts idle past their limit (``idle.sweep``). Returns how many items were
    taken. Safe to run on several instances at once: each item is claimed in the store before its
    work, and only by one; an idle account's warning is claimed likewise."""
    from shared.domain import idle

    window = ports.settings.clowder.event_max_age
    pruned = ports.store.prune_events(clock.now() - window)
    if pruned:
        log.info("forgot %d events older than %d s", pruned, window)
    taken = 0
    for claimed in _claims(ports, restarted=False):
        resume(ports, claimed)
        taken += 1
    _logged(lambda: idle.sweep(ports), what="the idle shutdown")
    return taken


class Sweeper:
    """``workbench run``'s background sweep: first what the start claimed, then a pass every
    ``WORKBENCH_SWEEP_SECONDS`` until stopped."""

    def __init__(self, ports: RecoveryPorts, claimed: list[Claimed], stop: threading.Event) -> None:
        self.ports = ports
        self.claimed = claimed
        self.stop = stop
        self.thread = threading.Thread(target=self.run, name="workbench sweep", daemon=True)

    def start(self) -> Sweeper:
        self.thread.start()
        return self

    def run(self) -> None:
        for claimed in self.claimed:
            if self.stop.is_set():
                return
            _logged(functools.partial(resume, self.ports, claimed))
        interval = self.ports.settings.recovery.sweep_seconds
        while not self.stop.wait(interval):
            _logged(lambda: sweep(self.ports))

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)


def _logged(work: Callable[[], object], what: str = "the sweep for abandoned work") -> None:
    """Run one piece of the sweep; whatever it raises is logged, and the sweep goes on with the next."""
    try:
        work()
    except WorkbenchError as error:  # e.g. the database away for a while: the next pass tries again
        log.warning("%s failed: %s", what, error.message)
    except Exception:
        log.exception("%s failed", what)
