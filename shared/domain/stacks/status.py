"""A stack's status: the runtime's reports applied to its services, the stack's own status derived
from theirs (and announced when it changes), and the marks a start or a stop leaves on it."""

from __future__ import annotations

import time
from contextlib import suppress
from typing import TYPE_CHECKING

from shared.adapters.runtime import StatusReport
from shared.adapters.store import Store
from shared.core import clock
from shared.core.errors import NotFound
from shared.core.models import Stack, StackService

if TYPE_CHECKING:
    from shared.domain.stacks.ports import StackPorts

MAX_STATUS_MESSAGES = 50
RUNNING = ("starting", "started")


def reset_services(stack: Stack, status: str) -> list[StackService]:
    return [
        service.model_copy(update={"status": status, "statusMessages": [], "endpoints": None})
        for service in stack.services
    ]


def mark_failed(store: Store, owner: str, sid: str, message: str) -> None:
    def change(stack: Stack) -> Stack:
        return stack.model_copy(
            update={
                "status": "error",
                "updateTime": clock.now(),
                "services": [
                    service.model_copy(
                        update={"statusMessages": [*service.statusMessages, message][-MAX_STATUS_MESSAGES:]}
                    )
                    for service in stack.services
                ],
            }
        )

    with suppress(NotFound):
        store.update_stack(owner, sid, change)
    store.finish_stack_start(sid, False, time.time())


def fresh_steps(service: StackService, report: StatusReport) -> list[str]:
    """The steps of a report the service's recorded messages (of this start) lack, in their order."""
    fresh: list[str] = []
    for step in report.steps:
        if step not in service.statusMessages and step not in fresh:
            fresh.append(step)
    return fresh


def record_status(
    store: Store, report: StatusReport, *, if_changed: bool = False
) -> tuple[str, Stack] | None:
    """Apply a runtime report to the stored stack and derive the stack's status from its services;
    returns the status before and the stack after (None when the stack is gone). With ``if_changed``,
    a report of the state the service is already in changes nothing (a reconciling read repeats them)
    unless it tells steps the service's messages lack."""
    before: list[str] = []

    def change(stack: Stack) -> Stack:
        before[:] = [stack.status]
        if if_changed and any(
            service.id == report.ssid
            and service.status == report.status
            and (report.status != "ready" or service.endpoints == report.endpoints)
            and not fresh_steps(service, report)
            for service in stack.services
        ):
            return stack
        if stack.status in ("stopped",) and report.status != "stopped":
            return stack  # a late report from a start that was since stopped
        if stack.status == "stopping" and report.status in ("starting", "ready"):
            return stack
        services = []
        for service in stack.services:
            if service.id == report.ssid:
                messages = list(service.statusMessages)
                if report.steps:
                    messages = [*messages, *fresh_steps(service, report)][-MAX_STATUS_MESSAGES:]
                elif report.message:
                    messages = [*messages, report.message][-MAX_STATUS_MESSAGES:]
                endpoints = (
                    report.endpoints
                    if report.status == "ready"
                    else (None if report.status in ("stopped", "error", "timeout") else service.endpoints)
                )
                service = service.model_copy(
                    update={
                        "status": report.status,
                        "statusMessages": messages,
                        "endpoints": endpoints,
                        "updateTime": clock.now(),
                    }
                )
            services.append(service)
        statuses = [service.status for service in services]
        status = stack.status
        if status in RUNNING:
            if any(s in ("error", "timeout") for s in statuses):
                status = "error"
            elif all(s == "ready" for s in statuses):
                status = "started"
        elif status == "stopping" and all(s == "stopped" for s in statuses):
            # The runtime reports every service stopped (also those it never started), dependants
            # first; only the last report, after the last process ended, makes the stack stopped.
            status = "stopped"
        return stack.model_copy(update={"services": services, "status": status, "updateTime": clock.now()})

    try:
        after = store.update_stack(report.owner, report.sid, change)
    except NotFound:
        return None  # the stack was deleted meanwhile
    return before[0], after


def report(ports: StackPorts, status_report: StatusReport, *, if_changed: bool = False) -> None:
    """Record what the runtime saw and announce a stack that became started, stopped or failed."""
    from events import types

    outcome = record_status(ports.store, status_report, if_changed=if_changed)
    if outcome is None:
        return
    before, stack = outcome
    announced = {"started": types.STACK_STARTED, "stopped": types.STACK_STOPPED, "error": types.STACK_FAILED}
    if stack.status == before or stack.status not in announced:
        return
    if before == "starting" and stack.status in ("started", "error"):
        ports.store.finish_stack_start(stack.id, stack.status == "started", time.time())
    messages = [message for service in stack.services for message in service.statusMessages[-1:]]
    ports.sink.emit(
        announced[stack.status],
        types.StackOutcome(
            user=status_report.owner,
            stack_id=stack.id,
            status=stack.status,
            endpoints=[e.url for service in stack.services for e in service.endpoints or () if e.url],
            message="; ".join(messages) if stack.status == "error" else None,
        ),
        subject=stack.id,
    )
