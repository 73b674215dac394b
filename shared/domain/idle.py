"""Idle shutdown: the running stacks of an account without activity past its limit are stopped, with a warning mail first."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from shared.core import clock
from shared.core.errors import WorkbenchError

if TYPE_CHECKING:
    from shared.adapters.store import AccountRecord, Store
    from shared.core.models import Account, Stack
    from shared.core.settings import Settings
    from shared.domain.stacks import StackPorts

    class Mailer(Protocol):
        """Where the warning goes (``accounts.Mailer``, named here so that accounts, which shows each
        account's limit through this module, is not imported back)."""

        def send(self, to: str, subject: str, body: str) -> None: ...

    class IdlePorts(StackPorts, Protocol):
        """What the idle sweep uses: the stacks' adapters (to stop them) and the mailer."""

        @property
        def mailer(self) -> Mailer: ...


log = logging.getLogger(__name__)

ACTIVITY_RESOLUTION = 60
"""Seconds within which a user's activity is recorded once: a busy user costs a write a minute."""
WARNING_SECONDS = 3600
"""How long before the stop the warning mail goes out (half the limit, for limits under two hours)."""
AT_REST = ("stopped", "stopping")
"""Stack states an idle sweep leaves alone (as ``stacks.stop_all`` does)."""


class ActivityPorts(Protocol):
    @property
    def store(self) -> Store: ...


def note_activity(ports: ActivityPorts, user: str) -> None:
    """Record that ``user`` used the platform now (an API call, a token refresh)."""
    ports.store.record_activity(user, clock.now(), ACTIVITY_RESOLUTION)


def limit_minutes(settings: Settings, account: Account) -> int:
    """The account's idle limit in minutes (0: never): its own, else the platform's default."""
    own = account.inactiveTimeout
    return settings.limits.inactive_timeout if own is None else own


def last_activity(record: AccountRecord) -> int:
    """When the account was last active: the later of its last login and its last recorded call."""
    return max(record.account.lastLogin, record.last_active)


def shown(settings: Settings, record: AccountRecord) -> Account:
    """The account with its limit in force and its last activity, as the page shows them."""
    return record.account.model_copy(
        update={
            "inactiveTimeout": limit_minutes(settings, record.account),
            "lastActive": last_activity(record),
        }
    )


@dataclass(frozen=True)
class Deadline:
    """When an idle account's stacks are warned about and stopped (seconds since the epoch)."""

    warn_at: int
    stop_at: int


def deadline(settings: Settings, record: AccountRecord) -> Deadline | None:
    """The account's idle deadline, or None when it has none (a limit of 0, or never active: the
    Go apiserver also skipped accounts that never logged in)."""
    minutes = limit_minutes(settings, record.account)
    last = last_activity(record)
    if minutes <= 0 or last <= 0:
        return None
    limit = minutes * 60
    return Deadline(warn_at=last + limit - min(WARNING_SECONDS, limit // 2), stop_at=last + limit)


def sweep(ports: IdlePorts) -> int:
    """One pass: stop the running stacks of every account idle past its limit, and warn (once per
    idle period) those within the warning time of it. Returns how many stacks were stopped. One
    account's failure is logged and the pass goes on with the next."""
    stopped = 0
    now = clock.now()
    for record in ports.store.list_accounts():
        due = deadline(ports.settings, record)
        if due is None or now < due.warn_at:
            continue
        try:
            stopped += _act(ports, record, due, now)
        except WorkbenchError as error:
            log.warning("idle shutdown of %s's stacks failed: %s", record.account.id, error.message)
    return stopped


def _running(ports: IdlePorts, user: str) -> list[Stack]:
    return [stack for stack in ports.store.list_stacks(user) if stack.status not in AT_REST]


def _act(ports: IdlePorts, record: AccountRecord, due: Deadline, now: int) -> int:
    from shared.domain import stacks

    user = record.account.id
    running = _running(ports, user)
    if not running:
        return 0
    hours = _hours(limit_minutes(ports.settings, record.account))
    if now >= due.stop_at:
        stopped = stacks.stop_all(ports, user)
        if stopped:
            log.info("stopped %s's stacks %s after %s without activity", user, _names(stopped), hours)
            _mail(
                ports,
                record.account,
                "Workbench: your stacks were stopped for lack of activity",
                f"your running stacks ({_names(stopped)}) were stopped after {hours} without "
                "activity on the Workbench. Your files are kept in your home; start the stacks again "
                f"from {ports.settings.server.origin} when you need them.",
            )
        return len(stopped)
    if _claim_warning(ports, user):
        minutes = max(1, (due.stop_at - now + 59) // 60)
        log.info("warned %s: stacks stop in %d min without activity", user, minutes)
        _mail(
            ports,
            record.account,
            "Workbench: your stacks will be stopped for lack of activity",
            f"your running stacks ({_names(running)}) will be stopped in about {minutes} minutes, "
            f"after {hours} without activity on the Workbench. To keep them running, log in at "
            f"{ports.settings.server.origin} (or use the page there) before then. "
            "Your files are kept in your home either way.",
        )
    return 0


def _claim_warning(ports: IdlePorts, user: str) -> bool:
    """Mark the warning of the user's current idle period as sent; False when it was already (by
    this sweep before, or by another instance's meanwhile)."""
    claimed = False

    def claim(stored: AccountRecord) -> AccountRecord:
        nonlocal claimed
        claimed = stored.idle_warned_at < last_activity(stored)
        if claimed:
            stored.idle_warned_at = clock.now()
        return stored

    ports.store.update_account(user, claim)
    return claimed


def _mail(ports: IdlePorts, account: Account, subject: str, text: str) -> None:
    if not account.email.strip():
        return  # an account the admin made without an address
    try:
        ports.mailer.send(account.email, subject, f"Hello {account.name or account.id},\n\n{text}\n")
    except WorkbenchError as error:
        log.warning("could not mail %s about idle stacks: %s", account.id, error.message)


def _names(found: list[Stack]) -> str:
    return ", ".join(stack.name or stack.id for stack in found)


def _hours(minutes: int) -> str:
    if minutes % 60 == 0:
        return f"{minutes // 60} h"
    return f"{minutes} min" if minutes < 60 else f"{minutes / 60:.1f} h"
