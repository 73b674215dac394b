"""The stack runtime port: run a stack's services, report their status, read their logs."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from shared.core.models import AccountResourceLimits, Endpoint, ServiceSpec, ServiceStatus

LOG_DEFAULT_LINES = 1000
"""How many of a service's last log lines a read returns when it names no number."""
LOG_MAX_LINES = 10_000
"""The most log lines one read returns, whatever number it names (a runtime also caps the bytes)."""


@dataclass(frozen=True)
class ServicePlan:
    """One service of a stack as the runtime needs it."""

    ssid: str
    key: str
    spec: ServiceSpec
    env: dict[str, str]
    volumes: dict[str, str]
    """Paths relative to the user's home → mount paths inside the service."""
    requires: tuple[str, ...] = ()
    """Keys of this stack's services that must be ready before this one starts."""
    uses: tuple[str, ...] = ()
    """Keys of every dependency present in the stack (their addresses go into the environment)."""
    image_tag: str = ""
    """The tag of the spec's image the stack chose (empty: the spec's first, else ``latest``)."""
    data_mount: str = ""
    """Where the user's data folder (``shared.core.datafolder.DATA_FOLDER`` of the home) is mounted inside
    the service; every runtime mounts it there, nested in the service's own folder where it has one."""
    system_spec: bool = False
    """The spec is the admin's, from the system catalog (not the owner's own): only such a service
    may run a command the admin set for the local runtime."""


@dataclass(frozen=True)
class StackPlan:
    """A stack to run: its services in dependency order (dependencies first)."""

    owner: str
    sid: str
    services: tuple[ServicePlan, ...]
    secure: bool = False
    email: str = ""
    limits: AccountResourceLimits = field(default_factory=AccountResourceLimits)
    """The owner's account limits (a cluster turns them into a quota and default limits)."""


@dataclass(frozen=True)
class StatusReport:
    """A change in one service's state, as the runtime observed it."""

    owner: str
    sid: str
    ssid: str
    status: ServiceStatus
    message: str | None = None
    endpoints: list[Endpoint] | None = field(default=None)
    steps: tuple[str, ...] = ()
    """What the service went through so far in this start, oldest first, ``message`` among them: those
    its recorded messages lack are added (a runtime that tells each change once leaves it empty)."""


Reporter = Callable[[StatusReport], None]

log = logging.getLogger(__name__)


class Workers:
    """The threads a runtime starts, stops and supervises stacks in, and the reports they send."""

    def __init__(self, name: str, report: Reporter) -> None:
        self._name = name
        self._report_to = report
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()

    def spawn(self, name: str, target: Callable[[], None]) -> None:
        def body() -> None:
            try:
                target()
            except Exception:
                log.exception("%s thread %r failed", self._name, name)
            finally:
                with self._lock:
                    self._threads.discard(thread)

        # Daemon threads: a platform that exits without close() must not hang on supervision.
        thread = threading.Thread(target=body, name=f"{self._name}: {name}", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def deliver(self, report: StatusReport) -> None:
        """Report; a failing reporter must not end the supervision of a running service."""
        try:
            self._report_to(report)
        except Exception:
            log.exception("reporting %s of %s failed", report.status, report.ssid)

    def join(self, seconds: float) -> None:
        """Wait up to ``seconds`` in all for the threads running now to end."""
        with self._lock:
            threads = list(self._threads)
        deadline = time.monotonic() + seconds
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


CONSOLE_MARK = "WORKBENCH_CONSOLE"
"""Names a console session in its shell's command line (and environment), by the session's id."""
CONSOLE_SHELL = (
    "export {mark}={session} TERM=xterm-256color; cd 2>/dev/null; "
    "if command -v bash >/dev/null 2>&1; then bash; else sh; fi; status=$?; exit $status"
)
# The session's first shell stays (it has work after the shell, so it does not replace itself by it),
# its command line naming the session: the processes to end are it and its descendants (by their
# parents in /proc/*/stat, readable by all), and whatever is of its terminal session. A closed
# terminal alone ends nothing in a container: the engine keeps its end of the terminal open.
CONSOLE_END = (
    'mark="{mark}""={session}"; members=""; '
    "for process in /proc/[0-9]*; do "
    "if tr '\\0' ' ' < \"$process/cmdline\" 2>/dev/null | grep -qF -- \"$mark\"; then "
    'members="$members ${{process#/proc/}}"; fi; done; '
    '[ -n "$members" ] || exit 0; grew=1; while [ "$grew" = 1 ]; do grew=0; '
    "for process in /proc/[0-9]*; do id=${{process#/proc/}}; "
    'case " $members " in *" $id "*) continue;; esac; '
    'line=$(cat "$process/stat" 2>/dev/null) || continue; set -- ${{line##*) }}; '
    'case " $members " in *" $2 "*|*" $4 "*) members="$members $id"; grew=1;; esac; done; done; '
    "kill -HUP $members 2>/dev/null; sleep 1; kill -KILL $members 2>/dev/null; true"
)


def console_command(session: str) -> list[str]:
    """The command a console runs: the container's bash (else sh) on the terminal, in its home,
    named as ``session``'s. ``session`` is the platform's own random id, never user input."""
    return ["/bin/sh", "-c", CONSOLE_SHELL.format(mark=CONSOLE_MARK, session=session)]


def console_end_command(session: str) -> list[str]:
    """The command that ends every process of ``session``'s terminal in the container: a hang-up,
    then a kill a second later for whatever ignored it."""
    return ["/bin/sh", "-c", CONSOLE_END.format(mark=CONSOLE_MARK, session=session)]


class ConsoleSession(Protocol):
    """An interactive shell in a service's container, on a terminal of the given size."""

    def read(self) -> bytes:
        """The terminal's next output, waiting for it; ``b""`` once the shell has ended."""
        ...

    def write(self, data: bytes) -> None:
        """Keystrokes (or pasted text) to the terminal."""
        ...

    def resize(self, columns: int, rows: int) -> None: ...
    def close(self) -> None:
        """End the shell and every process started from it, and the connection to it."""
        ...


class Runtime(Protocol):
    """Runs stacks. ``start`` and ``stop`` return at once and report progress through the reporter."""

    def start(self, plan: StackPlan) -> None: ...
    def stop(self, plan: StackPlan) -> None: ...
    def remove(self, plan: StackPlan) -> None:
        """Stop whatever of ``plan`` still runs, waiting until it has ended."""
        ...

    def observe(self, plan: StackPlan) -> list[StatusReport]:
        """What the runtime sees of the plan's services now, for a reader to reconcile the stored status
        with; a runtime whose own supervision reports every change returns nothing."""
        ...

    def logs(self, owner: str, ssid: str, lines: int | None) -> str: ...
    @property
    def consoles(self) -> bool:
        """Whether ``console`` can open a shell in a service: a container runtime's services have
        one, a local process has none."""
        ...

    def console(self, owner: str, ssid: str, columns: int, rows: int) -> ConsoleSession:
        """A shell in the service's app container; ``NotSupported`` where ``consoles`` is false,
        ``NotFound`` when the service has no running container."""
        ...

    def remove_account(self, owner: str) -> None: ...
    def close(self) -> None: ...
