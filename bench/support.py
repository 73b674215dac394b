"""What several benchmarks need: free ports, processes started and awaited, peak memory, timing."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench"
BIN = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def workdir(name: str) -> Path:
    """A fresh folder under ``var/bench/work`` for one benchmark (emptied first)."""
    folder = VAR / "work" / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def clean_environment(extra: Mapping[str, str] = {}) -> dict[str, str]:
    """This process's environment without any WORKBENCH_ setting, plus ``extra``."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("WORKBENCH_")}
    environment.update(extra)
    return environment


@contextmanager
def running(
    command: Sequence[str], *, environment: Mapping[str, str], log: Path, cwd: Path = ROOT
) -> Iterator[subprocess.Popen[bytes]]:
    """A process (in its own process group) for the length of the block; its whole group is ended after."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            list(command),
            env=dict(environment),
            cwd=cwd,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], grace: float = 10) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(grace)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for_http(
    url: str, process: subprocess.Popen[bytes] | None = None, *, seconds: float = 60, interval: float = 0.002
) -> float:
    """Polls ``url`` until it answers below 500; returns the monotonic time of that answer."""
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=5) as client:
        while True:
            try:
                if client.get(url).status_code < 500:
                    return time.monotonic()
            except httpx.TransportError:
                pass
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{' '.join(map(str, process.args))} ended with {process.returncode}")  # type: ignore[arg-type]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {seconds:g} s")
            time.sleep(interval)


def rss_mb(pid: int) -> float:
    """The resident set of one process now, in MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0.0


class PeakRss:
    """Samples the RSS of a process (and, with ``tree``, its children summed) every ``interval`` seconds
    while the block runs; ``peak`` is the highest sum seen, in MB. The kernel's own high-water mark
    (VmHWM) of the process itself is also read at the end, so a short spike between samples counts."""

    def __init__(self, pid: int, *, tree: bool = False, interval: float = 0.02) -> None:
        self.pid, self.tree, self.interval = pid, tree, interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _pids(self) -> list[int]:
        if not self.tree:
            return [self.pid]
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            try:
                for task in Path(f"/proc/{pid}/task").iterdir():
                    todo += [int(child) for child in (task / "children").read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                continue
        return found

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, sum(rss_mb(pid) for pid in self._pids()))

    def _high_water(self) -> float:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except FileNotFoundError:
            pass
        return 0.0

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if not self.tree:
            self.peak = max(self.peak, self._high_water())


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as took: ...`` then ``took[0]`` is the block's wall time in seconds."""
    took: list[float] = []
    began = time.perf_counter()
    try:
        yield took
    finally:
        took.append(time.perf_counter() - began)
