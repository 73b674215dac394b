"""``python -m bench --profile [FILE]``: where the small-file pipeline spends its time.

One round of ``transfer_small`` (5,000 files of 8 KiB, a fresh platform, user and stack, as the
benchmark runs it) with py-spy sampling the platform's process (``workbench run``) and the shovel's
while the clock runs; the top entries of each, by cumulative and by own ("total") time, go to FILE.
py-spy samples from outside the process whichever thread holds the interpreter (``--gil``), so the
worker threads count, waiting does not, nothing in the product changes, and the rounds are slowed far
less than under a tracing profiler (cProfile)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.support import BIN, ROOT, workdir

RATE = 250
"""Samples a second of each process."""
TOP = 25
ATTACH_SECONDS = 15.0
DEFAULT_OUTPUT = ROOT / "var" / "bench" / "profile.txt"


@dataclass(frozen=True)
class Entry:
    """One function's samples: its own (the function was running) and cumulative (it was on the stack)."""

    function: str
    own: int
    cumulative: int


def entries(raw: str) -> tuple[list[Entry], int]:
    """Every function of py-spy's raw output (``frame;frame;… count`` a line, root first), and the
    number of samples. A function that recurses counts once a sample in its cumulative time."""
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [short(frame) for frame in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            cumulative[frame] += count
    found = [Entry(name, own[name], cumulative[name]) for name in cumulative]
    return found, total


def short(frame: str) -> str:
    """A frame without the folders before the project or the installed package it is in."""
    name, separator, where = frame.partition(" (")
    if not separator:
        return frame
    for marker in ("site-packages/", f"{ROOT}/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where}"


def top_table(found: Sequence[Entry], total: int, *, by: str, rate: int, count: int = TOP) -> str:
    """The ``count`` entries with the most ``by`` (``cumulative`` or ``own``) samples, as a table."""
    ordered = sorted(found, key=lambda entry: (-getattr(entry, by), entry.function))[:count]
    lines = [f"{'own s':>8} {'own %':>6} {'cum s':>8} {'cum %':>6}  function (file:first line)"]
    for entry in ordered:
        lines.append(
            f"{entry.own / rate:8.2f} {100 * entry.own / max(total, 1):6.1f} "
            f"{entry.cumulative / rate:8.2f} {100 * entry.cumulative / max(total, 1):6.1f}  {entry.function}"
        )
    return "\n".join(lines)


def report(name: str, raw: str, rate: int) -> str:
    """One process's section: its samples, then its top entries by cumulative and by own time."""
    found, total = entries(raw)
    return "\n".join(
        (
            f"== {name}: {total} samples at {rate}/s ({total / rate:.2f} s of busy threads)",
            "",
            f"-- top {TOP} by cumulative time (on the stack)",
            top_table(found, total, by="cumulative", rate=rate),
            "",
            f"-- top {TOP} by total time (own, the function itself running)",
            top_table(found, total, by="own", rate=rate),
            "",
        )
    )


@contextmanager
def sampled(pids: Mapping[str, int], folder: Path, rate: int = RATE) -> Iterator[dict[str, Path]]:
    """py-spy recording each named process for the length of the block (attached before it begins);
    yields the raw output file of each, written when the block ends."""
    py_spy = str(BIN / "py-spy")
    if not Path(py_spy).exists():
        raise RuntimeError(f"{py_spy} is missing: install the dev dependencies (pip install -e '.[dev]')")
    recorders: dict[str, tuple[subprocess.Popen[bytes], Path, Path]] = {}
    try:
        for name, pid in pids.items():
            output, log = folder / f"{name}.raw.txt", folder / f"{name}.py-spy.log"
            command = [py_spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw"]
            command += ["--function", "--nonblocking", "--gil", "--output", str(output)]
            with log.open("wb") as written:
                process = subprocess.Popen(command, stdout=written, stderr=subprocess.STDOUT)
            recorders[name] = (process, output, log)
        for name, (process, _, log) in recorders.items():
            _await_sampling(name, process, log)
        yield {name: output for name, (_, output, _) in recorders.items()}
    finally:
        for process, _, _ in recorders.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)  # py-spy writes its output on an interrupt
        for name, (process, _, log) in recorders.items():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise RuntimeError(f"py-spy of the {name} did not end: {log.read_text()[-1000:]}") from None


def _await_sampling(name: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until py-spy says it samples (it prints that once attached)."""
    deadline = time.monotonic() + ATTACH_SECONDS
    while "Sampling process" not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"py-spy could not sample the {name}: {log.read_text()[-1000:]}")
        time.sleep(0.05)


def run(output: Path = DEFAULT_OUTPUT, rate: int = RATE) -> str:
    """Profiles one small-file round and writes the report to ``output``; returns a one-line summary."""
    from bench.transfer import Workbench, clowder_server, make_dataset, pipeline

    work = workdir("profile")
    samples = work / "samples"
    samples.mkdir()
    raw: dict[str, str] = {}

    @contextmanager
    def observe(platform: Workbench) -> Iterator[None]:
        pids = {"platform": platform.process.pid, "shovel": platform.shovel_pid}
        with sampled(pids, samples, rate) as outputs:
            yield
        raw.update({name: path.read_text() for name, path in outputs.items()})

    try:
        small = make_dataset(work / "data" / "small", "small", 5000, 8 * 1024, per_folder=100)
        os.sync()
        with clowder_server(work, [small]) as clowder:
            measured = pipeline(work, clowder, small, observe)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    header = (
        f"# The small-file pipeline profiled: {' '.join(['.venv/bin/python', '-m', 'bench', *sys.argv[1:]])}\n"
        f"# {datetime.now(UTC).isoformat(timespec='seconds')}, commit {_commit()}, {os.cpu_count()} cores\n"
        f"# one transfer_small round: 5,000 files of 8 KiB in {measured.seconds:.2f} s "
        f"({5000 / measured.seconds:.0f} files/s, under the profiler); CPU seconds "
        + ", ".join(f"{name} {value:.2f}" for name, value in measured.cpu.items())
        + "\n# py-spy record --function --nonblocking --gil: only the thread holding the interpreter"
        " (its GIL) is sampled, so these are the seconds of Python work, not of waiting; 'own' is the"
        " time a function itself ran, 'cum' the time it was on the stack. What the kernel does for a"
        " process (creating files, fsync, sockets) is not here but is in its CPU seconds above\n\n"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(header + "\n".join(report(name, raw[name], rate) for name in ("platform", "shovel")))
    return f"{output}: one round of 5,000 files in {measured.seconds:.2f} s, profiled"


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"
