"""Runs each stack service as a supervised local process, as JupyterHub's LocalProcessSpawner does."""

from __future__ import annotations

import contextlib
import logging
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Literal

from shared.errors import Unavailable
from shared.models import Endpoint, ServiceStatus
from shared.runtime import Reporter, ServicePlan, StackPlan, StatusReport, static_site
from shared.runtime.processes import (
    LOOPBACK,
    ProcessRecord,
    accepts_connections,
    checked_name,
    describe_exit,
    end_group,
    free_port,
    last_line_since,
    process_start_time,
    tail,
    volume_problem,
    write_json_atomically,
)
from shared.settings import RuntimeSettings

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 10.0
PORTLESS_READY_SECONDS = 0.5
CRASH_LIMIT = 3
CRASH_WINDOW_SECONDS = 60.0
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 10.0
POLL_SECONDS = 0.1
CLOSE_WAIT_SECONDS = 2.0
# The static site is run by its file under isolated Python (-I: no PYTHON* variables, no user site,
# neither the working directory nor the script's folder on the path), from a folder no user writes to.
STATIC_SITE = Path(static_site.__file__).resolve()
STATIC_SITE_DIRECTORY = Path("/")
PLATFORM_VARIABLES = frozenset(
    {
        "NDSLABS_STACK",
        "NDSLABS_SERVICE",
        "NDSLABS_NAMESPACE",
        "NDSLABS_EMAIL",
        "NDSLABS_DOMAIN",
        "NDSLABS_HOSTNAME",
    }
)
"""The names of a plan's environment the platform sets itself (``stacks.plan_for``); the rest is config."""
CONFIG_PREFIX = "WORKBENCH_CONFIG_"
CONFIG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
"""A config option's name as it may follow CONFIG_PREFIX; options named otherwise are left out."""
ADDRESS_PREFIX = re.compile(r"[A-Z0-9_]{1,64}")
ISOLATED_PYTHON = {"PYTHONSAFEPATH": "1", "PYTHONNOUSERSITE": "1"}
"""For an admin's command: any Python it starts puts neither its working directory (the home) nor
the user site (under HOME, the home) on its path."""

Phase = Literal["waiting", "launched", "ready", "failed"]
ReadyOutcome = Literal["ready", "exited", "timeout", "halted"]


# --- Ordering and per-run state ------------------------------------------------------------


class Turns:
    """Serves one stack's operations one at a time, in the order they were asked for."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._next = 0
        self._serving = 0

    def take(self) -> int:
        with self._condition:
            ticket = self._next
            self._next += 1
            return ticket

    def wait(self, ticket: int) -> None:
        with self._condition:
            self._condition.wait_for(lambda: self._serving == ticket)

    def done(self, ticket: int) -> None:
        with self._condition:
            self._serving = ticket + 1
            self._condition.notify_all()


@dataclass(eq=False)
class ServiceRun:
    """One service within a run: its command, assigned ports and current process."""

    plan: ServicePlan
    ports: list[int]
    argv: list[str]
    env: dict[str, str]
    cwd: Path | None = None
    secret: bytes = b""
    """Written to the process's standard input and closed: a key that must not be in its environment."""
    phase: Phase = "waiting"
    process: subprocess.Popen[bytes] | None = None
    launched_at: float = 0.0
    log_offset: int = 0


class StackRun:
    """One start of a stack. Once halted it launches and reports nothing more."""

    def __init__(self, plan: StackPlan, home: Path) -> None:
        self.plan = plan
        self.home = home
        self.services: dict[str, ServiceRun] = {}
        # Launches, phase changes and reports happen under this lock, and halting takes it too,
        # so nothing of a halted run can slip out after a later stop has reported "stopped".
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.halted = False

    def halt(self) -> None:
        with self.lock:
            self.halted = True
            self.changed.notify_all()

    def pause(self, seconds: float) -> bool:
        """Wait up to ``seconds``; True when the run was halted meanwhile."""
        with self.changed:
            return self.changed.wait_for(lambda: self.halted, timeout=seconds)


# --- The runtime ---------------------------------------------------------------------------


class LocalRuntime:
    """Runs stacks as local processes under ``data_dir``: homes, logs and process records."""

    def __init__(
        self,
        settings: RuntimeSettings,
        *,
        data_dir: Path,
        report: Reporter,
        site_key: bytes,
        stop_grace: float = STOP_GRACE_SECONDS,
    ) -> None:
        """``site_key``: the root of the keys with which a secure stack's static sites check the
        grants of their Connect URLs (``stacks`` signs them with the same key)."""
        self._settings = settings
        self._site_key = site_key
        self._data_dir = data_dir
        self._report_to = report
        self._stop_grace = stop_grace
        self._lock = threading.Lock()
        self._runs: dict[tuple[str, str], StackRun] = {}
        self._turns: dict[tuple[str, str], Turns] = {}
        self._children: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self._threads: set[threading.Thread] = set()
        self._closed = False

    # --- The port --------------------------------------------------------------------------

    def start(self, plan: StackPlan) -> None:
        self._check_names(plan)
        run = StackRun(plan, self._home(plan.owner))
        key = (plan.owner, plan.sid)
        with self._lock:
            if self._closed:
                raise Unavailable("the local runtime is closed")
            previous = self._runs.get(key)
            self._runs[key] = run
            ticket = self._turns_of(key).take()
        if previous is not None:
            previous.halt()
        self._spawn(f"start {plan.sid}", lambda: self._start_stack(run, previous, ticket))

    def stop(self, plan: StackPlan) -> None:
        self._check_names(plan)
        key = (plan.owner, plan.sid)
        with self._lock:
            if self._closed:
                raise Unavailable("the local runtime is closed")
            run = self._runs.pop(key, None)
            ticket = self._turns_of(key).take()
        if run is not None:
            run.halt()
        self._spawn(f"stop {plan.sid}", lambda: self._stop_stack(plan, run, ticket, report=True))

    def remove(self, plan: StackPlan) -> None:
        """Stop whatever of ``plan`` still runs and return when it has ended; reports nothing."""
        self._check_names(plan)
        key = (plan.owner, plan.sid)
        with self._lock:
            run = self._runs.pop(key, None)
            ticket = self._turns_of(key).take()
        if run is not None:
            run.halt()
        self._stop_stack(plan, run, ticket, report=False)

    def observe(self, plan: StackPlan) -> list[StatusReport]:
        # The supervisors report every change as it happens; there is nothing to catch up with.
        return []

    def logs(self, owner: str, ssid: str, lines: int | None) -> str:
        return tail(self._log_path(checked_name(owner, "owner"), checked_name(ssid, "ssid")), lines)

    def remove_account(self, owner: str) -> None:
        checked_name(owner, "owner")
        with self._lock:
            keys = sorted(key for key in self._turns if key[0] == owner)
            runs = [run for key in keys if (run := self._runs.pop(key, None)) is not None]
            # Tickets for all of the owner's stacks are taken at once, so no start or stop of
            # theirs runs while the folders go.
            tickets = [(self._turns[key], self._turns[key].take()) for key in keys]
            ssids = {ssid for (child_owner, ssid) in self._children if child_owner == owner}
        for run in runs:
            run.halt()
        for turns, ticket in tickets:
            turns.wait(ticket)
        try:
            run_dir = self._data_dir / "run" / owner
            if run_dir.is_dir():
                ssids.update(path.stem for path in run_dir.glob("*.json"))
            for ssid in sorted(ssids):
                self._end_service(owner, ssid)
            for directory in (self._home(owner), self._data_dir / "logs" / owner, run_dir):
                if directory.exists():
                    try:
                        shutil.rmtree(directory)
                    except OSError as error:
                        raise Unavailable(f"could not remove {directory}: {error.strerror}") from error
        finally:
            for turns, ticket in tickets:
                turns.done(ticket)

    def close(self) -> None:
        """Stop supervising and reporting; the services keep running for the next platform to find."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            runs = list(self._runs.values())
            threads = list(self._threads)
        for run in runs:
            run.halt()
        deadline = time.monotonic() + CLOSE_WAIT_SECONDS
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # --- Starting --------------------------------------------------------------------------

    def _start_stack(self, run: StackRun, previous: StackRun | None, ticket: int) -> None:
        plan = run.plan
        turns = self._turns[(plan.owner, plan.sid)]
        turns.wait(ticket)
        try:
            if run.halted:
                return
            # Processes of an earlier run, in this platform or a previous one, go first.
            ssids = [service.ssid for service in plan.services]
            if previous is not None:
                ssids += [service.ssid for service in previous.plan.services if service.ssid not in ssids]
            for ssid in reversed(ssids):
                self._end_service(plan.owner, ssid)
            if run.halted:
                return
            try:
                self._prepare(run)
            except OSError as error:
                self._fail_all(run, f"Could not prepare the home: {error.strerror or error}")
                return
            self._launch_in_order(run)
        except Exception as error:
            # A stack must never stay "starting" because the runtime itself failed.
            log.exception("starting stack %s failed", plan.sid)
            self._fail_all(run, f"The local runtime failed to start the stack: {error}")
        finally:
            turns.done(ticket)

    def _prepare(self, run: StackRun) -> None:
        """Create the home and volume folders, assign ports, and work out every command."""
        for service_plan in run.plan.services:
            ports = [free_port() for _ in service_plan.spec.ports or []]
            run.services[service_plan.key] = ServiceRun(service_plan, ports, [], {})
        run.home.mkdir(parents=True, exist_ok=True)
        for service in run.services.values():
            problem = self._make_volumes(run.home, service.plan)
            if problem is None:
                try:
                    self._command(run, service)
                except ValueError as error:
                    problem = str(error)
            if problem is not None:
                self._fail(run, service, "error", problem)

    @staticmethod
    def _make_volumes(home: Path, plan: ServicePlan) -> str | None:
        """Create the service's folders in the home; why not, when one of them is refused."""
        for relative in plan.volumes:
            problem = volume_problem(home, relative)
            if problem is not None:
                return problem
        for relative in plan.volumes:
            try:
                (home / relative).mkdir(parents=True, exist_ok=True)
            except OSError as error:
                return f"Could not create the volume folder {relative!r}: {error.strerror or error}"
        return None

    def _fail_all(self, run: StackRun, message: str) -> None:
        for service_plan in run.plan.services:
            service = run.services.get(service_plan.key)
            if service is None:
                service = run.services[service_plan.key] = ServiceRun(service_plan, [], [], {})
            self._fail(run, service, "error", message)

    def _command(self, run: StackRun, service: ServiceRun) -> None:
        """Work out the service's command line, environment and working directory.

        Only the admin's own specs (the system catalog's) run the admin's local commands; a spec of
        the user's own catalog, even one with the same key, gets the static site. Nothing the user
        controls becomes a variable name: config reaches an admin's command only as the values of
        ``WORKBENCH_CONFIG_<NAME>``, and the static site gets no config at all.
        """
        plan = service.plan
        line = self._settings.local_commands.get(plan.spec.key or plan.key) if plan.system_spec else None
        if line is None:
            self._static_site(run, service)
            return
        try:
            argv = shlex.split(line)
        except ValueError as error:
            raise ValueError(f"The local command for {plan.key!r} cannot be parsed: {error}") from None
        if not argv:
            raise ValueError(f"The local command for {plan.key!r} is empty")
        env = dict(self._settings.inherited_environment)
        env.update(ISOLATED_PYTHON)
        env["HOME"] = str(run.home)
        env["WORKBENCH_HOME"] = str(run.home)
        for name, value in plan.env.items():
            if "\0" in value:
                raise ValueError(f"The value of {name!r} holds a NUL character")
            if name in PLATFORM_VARIABLES:
                env[name] = value
            elif CONFIG_NAME.fullmatch(name):
                env[CONFIG_PREFIX + name] = value
            else:
                log.warning("config %r of %s is left out: not a plain variable name", name, plan.ssid)
        if service.ports:
            env["PORT"] = str(service.ports[0])
        for dependency_key in plan.uses:
            dependency = run.services.get(dependency_key)
            # The names Docker links and Kubernetes give a linked service's address.
            prefix = dependency_key.upper().replace("-", "_")
            if dependency is None or not ADDRESS_PREFIX.fullmatch(prefix):
                continue
            for spec_port, assigned in zip(dependency.plan.spec.ports or [], dependency.ports, strict=True):
                env[f"{prefix}_PORT_{spec_port.port}_TCP_ADDR"] = LOOPBACK
                env[f"{prefix}_PORT_{spec_port.port}_TCP_PORT"] = str(assigned)
        service.argv, service.env, service.cwd = argv, env, run.home

    def _static_site(self, run: StackRun, service: ServiceRun) -> None:
        """The static site serving the service's first folder (else the home), read-only."""
        plan = service.plan
        directory = run.home / next(iter(plan.volumes)) if plan.volumes else run.home
        port = service.ports[0] if service.ports else free_port()
        argv = [sys.executable, "-I", str(STATIC_SITE), "--port", str(port), "--directory", str(directory)]
        if run.plan.secure:
            argv += ["--access-cookie", static_site.cookie_name(plan.ssid)]
            key = static_site.service_key(self._site_key, run.plan.owner, plan.ssid)
            service.secret = key.hex().encode()
        # The platform's own locale and paths only: the site needs nothing else.
        env = dict(self._settings.inherited_environment)
        service.argv, service.env, service.cwd = argv, env, STATIC_SITE_DIRECTORY

    def _launch_in_order(self, run: StackRun) -> None:
        order = list(run.services)
        for position, key in enumerate(order):
            service = run.services[key]
            if service.phase == "failed":
                continue
            problem = self._await_requirements(run, service, order[:position])
            if run.halted:
                return
            if problem is not None:
                self._fail(run, service, "error", problem)
                continue
            if self._launch(run, service, "Starting"):
                self._spawn(f"supervise {service.plan.ssid}", partial(self._supervise, run, service))

    def _await_requirements(self, run: StackRun, service: ServiceRun, earlier: list[str]) -> str | None:
        """None once every required service is ready, else why this one cannot start."""
        required = service.plan.requires
        for key in required:
            if key not in earlier:
                return f"Not started: required service {key!r} is not started before it"
        with run.changed:
            while not run.halted:
                failed = [key for key in required if run.services[key].phase == "failed"]
                if failed:
                    return f"Not started: required service {failed[0]!r} failed"
                if all(run.services[key].phase == "ready" for key in required):
                    return None
                run.changed.wait(1.0)
        return None

    def _launch(self, run: StackRun, service: ServiceRun, message: str) -> bool:
        owner, ssid = run.plan.owner, service.plan.ssid
        log_path = self._log_path(owner, ssid)
        with run.lock:
            if run.halted:
                return False
            try:
                log_path.parent.mkdir(parents=True, exist_ok=True)
                with log_path.open("ab") as log_file:
                    stamp = datetime.now(UTC).isoformat(timespec="seconds")
                    log_file.write(f"--- {stamp} {message}\n".encode())
                    log_file.flush()
                    offset = log_file.tell()
                    process = subprocess.Popen(
                        service.argv,
                        cwd=service.cwd,
                        env=service.env,
                        stdin=subprocess.PIPE if service.secret else subprocess.DEVNULL,
                        stdout=log_file,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                if process.stdin is not None:
                    # A process that has already exited finds out nothing; its supervisor sees it.
                    with contextlib.suppress(BrokenPipeError), process.stdin:
                        process.stdin.write(service.secret)
            except OSError as error:
                reason = error.strerror or str(error)
                self._fail(run, service, "error", f"Could not start {service.argv[0]}: {reason}")
                return False
            service.process = process
            service.launched_at = time.monotonic()
            service.log_offset = offset
            service.phase = "launched"
            run.changed.notify_all()
            with self._lock:
                self._children[(owner, ssid)] = process
            spec_ports = service.plan.spec.ports or []
            record = ProcessRecord(
                pid=process.pid,
                start_time=process_start_time(process.pid),
                ports=[
                    {"port": spec.port, "nodePort": assigned}
                    for spec, assigned in zip(spec_ports, service.ports, strict=True)
                ],
                sid=run.plan.sid,
                key=service.plan.key,
            )
            try:
                write_json_atomically(self._record_path(owner, ssid), asdict(record))
            except OSError as error:
                # This runtime can still stop the process through its handle; only a stop from
                # another process or after a restart depends on the record.
                log.warning("could not record process %d of %s: %s", process.pid, ssid, error)
            self._report(run, service, "starting", f"{message} (process {process.pid})")
        return True

    # --- Supervising -----------------------------------------------------------------------

    def _supervise(self, run: StackRun, service: ServiceRun) -> None:
        """Wait for readiness, then restart the process when it exits, within the crash limit."""
        crashes: list[float] = []
        has_been_ready = False
        while True:
            outcome = self._await_ready(run, service)
            if outcome == "halted":
                return
            process = service.process
            assert process is not None
            if outcome == "timeout":
                end_group(process.pid, process, self._stop_grace)
                self._forget(run, service, process)
                seconds = self._ready_timeout(service)
                self._fail(run, service, "timeout", f"Service timed out after {seconds} seconds")
                return
            if outcome == "ready":
                has_been_ready = True
                self._mark_ready(run, service)
                if not self._watch(run, service, process):
                    return
            exit_code = process.returncode
            last_line = last_line_since(self._log_path(run.plan.owner, service.plan.ssid), service.log_offset)
            last_words = f"; last log line: {last_line}" if last_line else "; it wrote nothing to its log"
            if not has_been_ready:
                self._forget(run, service, process)
                message = f"Process {describe_exit(exit_code)} before it was ready{last_words}"
                self._fail(run, service, "error", message)
                return
            now = time.monotonic()
            crashes = [moment for moment in crashes if now - moment < CRASH_WINDOW_SECONDS] + [now]
            if len(crashes) >= CRASH_LIMIT:
                self._forget(run, service, process)
                message = (
                    f"Process crashed {len(crashes)} times within a minute and is not restarted; "
                    f"it last {describe_exit(exit_code)}{last_words}"
                )
                self._fail(run, service, "error", message)
                return
            backoff = min(FIRST_BACKOFF_SECONDS * 2 ** (len(crashes) - 1), MAX_BACKOFF_SECONDS)
            if run.pause(backoff):
                return
            if not self._launch(run, service, f"Restarting after the process {describe_exit(exit_code)}"):
                return

    def _ready_timeout(self, service: ServiceRun) -> int:
        probe_timeout = service.plan.spec.readinessProbe.timeout
        return probe_timeout if probe_timeout > 0 else self._settings.ready_timeout

    def _await_ready(self, run: StackRun, service: ServiceRun) -> ReadyOutcome:
        process = service.process
        assert process is not None
        deadline = service.launched_at + self._ready_timeout(service)
        while True:
            if run.halted:
                return "halted"
            if process.poll() is not None:
                return "exited"
            if service.ports:
                if accepts_connections(service.ports[0]):
                    return "ready"
            elif time.monotonic() - service.launched_at >= PORTLESS_READY_SECONDS:
                return "ready"
            if time.monotonic() >= deadline:
                return "timeout"
            if run.pause(POLL_SECONDS):
                return "halted"

    def _mark_ready(self, run: StackRun, service: ServiceRun) -> None:
        endpoints = [
            Endpoint(
                host=LOOPBACK,
                port=spec.port,
                nodePort=assigned,
                protocol=spec.protocol,
                path=spec.contextPath,
                url=f"http://{LOOPBACK}:{assigned}{self._url_path(spec.contextPath)}",
            )
            for spec, assigned in zip(service.plan.spec.ports or [], service.ports, strict=True)
        ]
        message = f"Serving on {endpoints[0].url}" if endpoints else "Running"
        with run.lock:
            service.phase = "ready"
            run.changed.notify_all()
            self._report(run, service, "ready", message, endpoints or None)

    @staticmethod
    def _url_path(context_path: str) -> str:
        if not context_path:
            return "/"
        return context_path if context_path.startswith("/") else "/" + context_path

    def _watch(self, run: StackRun, service: ServiceRun, process: subprocess.Popen[bytes]) -> bool:
        """Wait for the process to exit; True when that was a crash rather than a stop."""
        while process.poll() is None:
            if run.pause(POLL_SECONDS * 2):
                return False
        with run.lock:
            if run.halted:
                return False
            service.phase = "launched"
            run.changed.notify_all()
        # A stop from another process marks or removes the record before it signals.
        record = ProcessRecord.read(self._record_path(run.plan.owner, service.plan.ssid))
        return record is not None and record.pid == process.pid and not record.stopping

    def _forget(self, run: StackRun, service: ServiceRun, process: subprocess.Popen[bytes]) -> None:
        """Drop the record of a process that has ended, unless a newer run owns the slot now."""
        owner, ssid = run.plan.owner, service.plan.ssid
        with run.lock:
            if run.halted:
                return
            with self._lock:
                if self._children.get((owner, ssid)) is process:
                    del self._children[(owner, ssid)]
            path = self._record_path(owner, ssid)
            record = ProcessRecord.read(path)
            if record is not None and record.pid == process.pid:
                path.unlink(missing_ok=True)

    def _fail(self, run: StackRun, service: ServiceRun, status: ServiceStatus, message: str) -> None:
        with run.lock:
            service.phase = "failed"
            run.changed.notify_all()
            self._report(run, service, status, message)

    # --- Stopping --------------------------------------------------------------------------

    def _stop_stack(self, plan: StackPlan, run: StackRun | None, ticket: int, *, report: bool) -> None:
        turns = self._turns[(plan.owner, plan.sid)]
        turns.wait(ticket)
        try:
            # Dependants first, so nothing is left talking to a service that has gone.
            for service in reversed(plan.services):
                self._end_service(plan.owner, service.ssid)
                if report:
                    self._deliver(StatusReport(plan.owner, plan.sid, service.ssid, "stopped", "Stopped"))
            if run is not None:
                planned = {service.ssid for service in plan.services}
                for service in reversed(run.plan.services):
                    if service.ssid not in planned:
                        self._end_service(plan.owner, service.ssid)
        finally:
            turns.done(ticket)

    def _end_service(self, owner: str, ssid: str) -> None:
        """End the service's process, whether this runtime started it or only its record remains."""
        with self._lock:
            process = self._children.pop((owner, ssid), None)
        path = self._record_path(owner, ssid)
        record = ProcessRecord.read(path)
        if record is not None and not record.stopping:
            # Tells a supervisor in another platform process that this exit is a stop, not a crash.
            write_json_atomically(path, asdict(replace(record, stopping=True)))
        if process is not None:
            end_group(process.pid, process, self._stop_grace)
        # Signal a recorded pid only while it still names the process that was started: after a
        # reboot or a long time the pid may belong to someone else. Without /proc there is no
        # start time to compare, so such a record is never signalled.
        if (
            record is not None
            and (process is None or record.pid != process.pid)
            and record.start_time is not None
            and process_start_time(record.pid) == record.start_time
        ):
            end_group(record.pid, None, self._stop_grace)
        path.unlink(missing_ok=True)

    # --- Helpers ---------------------------------------------------------------------------

    def _report(
        self,
        run: StackRun,
        service: ServiceRun,
        status: ServiceStatus,
        message: str,
        endpoints: list[Endpoint] | None = None,
    ) -> None:
        with run.lock:
            if run.halted:
                return
            self._deliver(
                StatusReport(run.plan.owner, run.plan.sid, service.plan.ssid, status, message, endpoints)
            )

    def _deliver(self, report: StatusReport) -> None:
        try:
            self._report_to(report)
        except Exception:
            # A failing reporter must not end the supervision of a running service.
            log.exception("reporting %s of %s failed", report.status, report.ssid)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        def body() -> None:
            try:
                target()
            except Exception:
                log.exception("runtime thread %r failed", name)
            finally:
                with self._lock:
                    self._threads.discard(thread)

        # Daemon threads: a platform that exits without close() must not hang on supervision.
        thread = threading.Thread(target=body, name=f"local runtime: {name}", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _turns_of(self, key: tuple[str, str]) -> Turns:
        turns = self._turns.get(key)
        if turns is None:
            turns = self._turns[key] = Turns()
        return turns

    @staticmethod
    def _check_names(plan: StackPlan) -> None:
        checked_name(plan.owner, "owner")
        checked_name(plan.sid, "sid")
        for service in plan.services:
            checked_name(service.ssid, "ssid")

    def _home(self, owner: str) -> Path:
        return self._data_dir / "home" / owner

    def _log_path(self, owner: str, ssid: str) -> Path:
        return self._data_dir / "logs" / owner / f"{ssid}.log"

    def _record_path(self, owner: str, ssid: str) -> Path:
        return self._data_dir / "run" / owner / f"{ssid}.json"
