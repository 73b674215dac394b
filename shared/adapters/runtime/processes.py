"""Processes and files of the local runtime: process groups seen through /proc, atomic records, log tails."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.adapters.runtime import LOG_DEFAULT_LINES, LOG_MAX_LINES
from shared.core.durable import write_atomically
from shared.core.errors import InvalidInput, Unavailable
from shared.core.paths import path_problem, safe_component, stays_inside

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
KILL_WAIT_SECONDS = 5.0
TAIL_BLOCK_BYTES = 64 * 1024
LOG_MAX_BYTES = 4 * 1024 * 1024
"""The most of a log one read brings into memory, however long its lines (as from a cluster)."""
LAST_LINE_LIMIT = 200
PUBLISHED_PORTS_FROM = 20000
"""The lowest port a container is published on; they stay below the kernel's ephemeral range."""
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
MIN_PUBLISHABLE_PORTS = 1000
"""A range outside the ephemeral one is used only with room for this many containers."""


# --- Processes, seen through /proc ---------------------------------------------------------


@dataclass(frozen=True)
class ProcessStat:
    """The fields of ``/proc/<pid>/stat`` the runtime relies on."""

    state: str
    group: int
    start_time: int


def read_process_stat(pid: int) -> ProcessStat | None:
    """The process's state, group and start time, or None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; everything after its
    # closing parenthesis is plain space-separated fields, starting with field 3.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return ProcessStat(fields[0].decode(), int(fields[2]), int(fields[19]))
    except (IndexError, ValueError):
        return None


def process_start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat``: with the pid, it names one process for good."""
    stat = read_process_stat(pid)
    return stat.start_time if stat is not None else None


def group_running(group: int) -> bool:
    """Whether any process of the group still runs; zombies do not count."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        # Without /proc only the signal probe is left, and it counts zombies as running.
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in entries:
        if entry.isdigit():
            stat = read_process_stat(int(entry))
            if stat is not None and stat.group == group and stat.state not in ("Z", "X"):
                return True
    return False


def signal_group(group: int, signal_number: signal.Signals) -> None:
    try:
        os.killpg(group, signal_number)
    except ProcessLookupError:
        pass
    except PermissionError:
        log.warning("not allowed to send %s to process group %d", signal_number.name, group)


def end_group(leader: int, process: subprocess.Popen[bytes] | None, grace: float) -> None:
    """SIGTERM the leader's process group, wait up to ``grace`` seconds, then SIGKILL what is left."""

    def wait_until_ended(seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while True:
            if process is not None:
                process.poll()  # reaps our own child, so it stops counting as running
            if not group_running(leader):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    signal_group(leader, signal.SIGTERM)
    if not wait_until_ended(grace):
        signal_group(leader, signal.SIGKILL)
        wait_until_ended(KILL_WAIT_SECONDS)
    if process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=KILL_WAIT_SECONDS)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def publishable_port() -> int:
    """A free loopback port outside the kernel's ephemeral range, for an engine to publish a container
    on. Podman publishes by a NAT rule without holding the port: a port of the ephemeral range could
    later be handed to another program's connection, which the rule would carry into the container
    (or, once the container is gone and a rule left behind, nowhere). Below the range where it leaves
    room, else above it; only a host whose range spans nearly every port gets any free port."""
    candidates = publishable_ranges()
    if candidates:
        sizes = [len(ports) for ports in candidates]
        for _ in range(100):
            pick = secrets.randbelow(sum(sizes))
            for ports, size in zip(candidates, sizes, strict=True):
                if pick < size:
                    if port_is_free(ports[pick]):
                        return ports[pick]
                    break
                pick -= size
    return free_port()


def publishable_ranges() -> list[range]:
    """The port ranges outside the ephemeral range with room for many containers."""
    try:
        first, last = (int(word) for word in EPHEMERAL_RANGE.read_text().split()[:2])
    except (OSError, ValueError):
        first, last = 32768, 60999
    ranges = [range(PUBLISHED_PORTS_FROM, first), range(max(last + 1, PUBLISHED_PORTS_FROM), 65536)]
    return [ports for ports in ranges if len(ports) >= MIN_PUBLISHABLE_PORTS]


def port_is_free(port: int) -> bool:
    """Whether a server could listen on the loopback port now (binding as servers do, with
    SO_REUSEADDR, so that connections of an ended process still closing do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


# --- Files -------------------------------------------------------------------------------


def checked_name(value: str, field: str) -> str:
    """A name that becomes one path component: no separators, no dot names, no control characters."""
    try:
        return safe_component(value, field=field)
    except InvalidInput:
        raise InvalidInput(f"{value!r} cannot be used as a file name", field=field) from None


def volume_problem(home: Path, relative: str) -> str | None:
    """Why a volume path may not be used, or None when it stays inside the home."""
    refusal = f"Volume path {relative!r} is refused: it must be relative to the home and stay inside it"
    if path_problem(relative) is not None:
        return refusal
    # A symlink the user made inside the home must not lead the folder somewhere else.
    return None if stays_inside(home, relative) else refusal


def remove_folder(directory: Path) -> None:
    """Remove ``directory`` and all it holds, where it is there; Unavailable where it cannot be."""
    if directory.exists():
        try:
            shutil.rmtree(directory)
        except OSError as error:
            raise Unavailable(f"could not remove {directory}: {error.strerror}") from error


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(data).encode(), suffix=".tmp")


def tail(path: Path, lines: int | None) -> str:
    """The last ``lines`` whole lines of a file (LOG_DEFAULT_LINES when None, at most LOG_MAX_LINES),
    and never more than its last LOG_MAX_BYTES, read in blocks from its end."""
    wanted = LOG_DEFAULT_LINES if lines is None else min(lines, LOG_MAX_LINES)
    if wanted <= 0:
        return ""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return ""
    with handle:
        end = position = handle.seek(0, os.SEEK_END)
        blocks: list[bytes] = []
        newlines = 0
        # One newline more than lines are asked for guarantees the first kept line is whole.
        while position > 0 and newlines <= wanted and end - position < LOG_MAX_BYTES:
            size = min(TAIL_BLOCK_BYTES, position, LOG_MAX_BYTES - (end - position))
            position -= size
            handle.seek(position)
            block = handle.read(size)
            blocks.append(block)
            newlines += block.count(b"\n")
    data = b"".join(reversed(blocks))
    ends_with_newline = data.endswith(b"\n")
    pieces = data.split(b"\n")
    if ends_with_newline:
        pieces.pop()
    if position > 0 and newlines <= wanted and len(pieces) > 1:
        pieces.pop(0)  # the byte limit cut this line: it is not shown in part
    text = b"\n".join(pieces[-wanted:]) + (b"\n" if ends_with_newline else b"")
    return text.decode("utf-8", "replace")


def last_line_since(path: Path, offset: int) -> str:
    """The last non-empty line written to the file after ``offset``, shortened for a status message."""
    try:
        with path.open("rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            handle.seek(max(offset, end - TAIL_BLOCK_BYTES))
            data = handle.read()
    except OSError:
        return ""
    for line in reversed(data.decode("utf-8", "replace").splitlines()):
        if line.strip():
            line = line.strip()
            return line if len(line) <= LAST_LINE_LIMIT else line[: LAST_LINE_LIMIT - 1] + "…"
    return ""


@dataclass(frozen=True)
class ProcessRecord:
    """What ``run/<owner>/<ssid>.json`` holds, so another process can stop the service later."""

    pid: int
    start_time: int | None
    ports: list[dict[str, int]]
    sid: str
    key: str
    stopping: bool = False

    @classmethod
    def read(cls, path: Path) -> ProcessRecord | None:
        try:
            data = json.loads(path.read_text())
            return cls(
                pid=int(data["pid"]),
                start_time=None if data.get("start_time") is None else int(data["start_time"]),
                ports=[
                    {"port": int(port["port"]), "nodePort": int(port["nodePort"])} for port in data["ports"]
                ],
                sid=str(data["sid"]),
                key=str(data["key"]),
                stopping=bool(data.get("stopping", False)),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("ignoring unreadable process record %s: %s", path, error)
            return None
