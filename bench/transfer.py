"""The data path (issue 5): a Clowder dataset through ``workbench run`` into a started stack's volume,
against parallel curl from the same Clowder server, and the peak memory of the pipeline's processes."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import string
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.report import Figure, median
from bench.rounds import alternate, ratio_spread, spread
from bench.support import (
    BIN,
    CpuUse,
    PeakRss,
    all_in_place,
    bearer,
    checked,
    clean_environment,
    free_port,
    process_tree,
    running,
    start_stack,
    stopwatch,
    wait_for_http,
    workdir,
)

ROUNDS = 5
"""Rounds of each ratio: the pipeline then its baseline (curl), alternately; the figures are the medians."""
MEDIUM_ROUNDS = 3
"""Rounds of the 256 MiB dataset, whose only figure is the memory growth (peaks vary little)."""
API_KEY = "bench-clowder-api-key"
SECRET = "bench-pairing-secret-shared-with-clowder"  # noqa: S105
ADMIN_PASSWORD = "bench-admin-password"  # noqa: S105
USER_PASSWORD = "bench-user-password"  # noqa: S105
EVENT_SOURCE = "https://clowder.bench.example.org/"
AMQP_URL = os.environ.get("WORKBENCH_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
CLOWDER_THREADS = 16
POLL_SECONDS = 0.1
"""How often the transfer record is read while a transfer runs (each read is a request to the platform)."""
TRANSFER_TIMEOUT = 600.0
MIB = 1 << 20
FREE_BYTES_NEEDED = 28 << 30
"""Sources (1.3 GiB), and per round of 1 GiB curl's copy and the platform's staged and placed files
(3 GiB; 6 rounds with the warm-up), the 256 MiB rounds' (0.5 GiB each), all kept until the end (see
``run``), with room to spare."""


def shovel_parallelism() -> int:
    """How many files a shovel downloads at once (its default setting): the curl baseline's parallelism."""
    from shovel.settings import ShovelSettings

    return ShovelSettings(user="bench", stack_id="bench", home=Path("/")).parallel


@dataclass(frozen=True)
class Dataset:
    """Files on disk to be served by the Clowder test server: relative path -> (size, sha256)."""

    name: str
    folder: Path
    files: dict[str, tuple[int, str]]

    @property
    def size(self) -> int:
        return sum(size for size, _ in self.files.values())


def make_dataset(folder: Path, name: str, count: int, size: int, *, per_folder: int = 0) -> Dataset:
    """``count`` files of ``size`` random bytes (``per_folder`` to a sub-folder when set)."""
    files: dict[str, tuple[int, str]] = {}
    for number in range(count):
        relative = f"part-{number:05d}.bin"
        if per_folder:
            relative = f"raw/{number // per_folder:03d}/{relative}"
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with path.open("wb") as output:
            remaining = size
            while remaining:
                piece = os.urandom(min(remaining, 8 * MIB))
                digest.update(piece)
                output.write(piece)
                remaining -= len(piece)
        files[relative] = (size, digest.hexdigest())
    return Dataset(name, folder, files)


def make_mixed_dataset(folder: Path, name: str, groups: Sequence[tuple[int, int]]) -> Dataset:
    """A dataset of several sizes: each group (count, size) of random files in a folder of its own."""
    files: dict[str, tuple[int, str]] = {}
    for count, size in groups:
        group = f"{size}-bytes"
        part = make_dataset(folder / group, name, count, size)
        files.update({f"{group}/{relative}": entry for relative, entry in part.files.items()})
    return Dataset(name, folder, files)


@dataclass
class Clowder:
    url: str
    pid: int
    ids: dict[str, dict[str, str]]
    """Dataset name -> {"id": dataset id} and its files, relative path -> file id."""
    files: dict[str, dict[str, str]] = field(default_factory=dict)

    def file_url(self, file_id: str) -> str:
        return f"{self.url}/api/v2/files/{file_id}"


@contextmanager
def clowder_server(work: Path, datasets: list[Dataset], threads: int = CLOWDER_THREADS) -> Iterator[Clowder]:
    """The Clowder test server (version 2) in a process of its own, on cheroot (``threads`` serving
    threads), serving the datasets."""
    log = work / "clowder.log"
    command = [
        str(BIN / "python"),
        "-m",
        "tests.clowder_server",
        str(work / "clowder"),
        "--api-key",
        API_KEY,
        "--server",
        "cheroot",
        "--threads",
        str(threads),
        *[option for dataset in datasets for option in ("--dataset", f"{dataset.name}={dataset.folder}")],
    ]
    with running(command, environment=clean_environment(), log=log) as process:
        deadline = time.monotonic() + 120
        while True:
            first = log.read_text().splitlines()[:1] if log.exists() else []
            if first and first[0].startswith("{"):
                break
            if process.poll() is not None:
                raise RuntimeError(f"the Clowder test server ended: {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError("the Clowder test server did not start")
            time.sleep(0.1)
        announced = json.loads(first[0])
        found = announced["datasets"]
        yield Clowder(
            url=announced["url"],
            pid=process.pid,
            ids={name: {"id": entry["id"]} for name, entry in found.items()},
            files={name: entry["files"] for name, entry in found.items()},
        )


# -- the baseline: parallel curl ------------------------------------------------------------------


@dataclass(frozen=True)
class CurlRun:
    seconds: float
    then_fsync_seconds: float
    """The same download followed by an fsync of every file: what durable placement would add."""
    cpu: dict[str, float]
    """CPU seconds of the download: ``curl``, and ``clowder`` (the server's)."""


def curl_run(work: Path, clowder: Clowder, dataset: Dataset, parallel: int) -> CurlRun:
    """One curl process downloading every file of the dataset to disk, ``parallel`` transfers at once
    (``--parallel --parallel-max``, connections reused), timed; then every file fsynced (timed
    apart) and checked."""
    target = fresh_folder(work, "curl")
    lines = [f'header = "X-API-KEY: {API_KEY}"', "create-dirs", "fail", "silent", "show-error"]
    for relative, file_id in clowder.files[dataset.name].items():
        lines += [f'url = "{clowder.file_url(file_id)}"', f'output = "{target / relative}"']
    config = work / "curl.config"
    config.write_text("\n".join(lines) + "\n")
    command = ["curl", "--parallel", "--parallel-max", str(parallel), "--config", str(config)]
    with stopwatch() as took, CpuUse({"clowder": clowder.pid}) as used:
        subprocess.run(command, check=True, capture_output=True)
    with stopwatch() as synced:
        for relative in dataset.files:
            descriptor = os.open(target / relative, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
    for relative, (size, _) in dataset.files.items():
        got = (target / relative).stat().st_size
        if got != size:
            raise RuntimeError(f"curl wrote {got} bytes of {relative}, not {size}")
    cpu = {"curl": used.seconds["children"], "clowder": used.seconds["clowder"]}
    return CurlRun(took[0], took[0] + synced[0], cpu)


def fresh_folder(work: Path, kind: str) -> Path:
    """A new folder for one run's files. Nothing is deleted between runs: on ext4 a burst of new files
    right after a burst of deleted ones is slow (the inode allocator steps over every recently
    deleted inode), which would make whichever run comes next pay for the one before."""
    runs = work / "runs"
    runs.mkdir(exist_ok=True)
    number = sum(1 for _ in runs.iterdir())
    folder = runs / f"{number:02d}-{kind}"
    folder.mkdir()
    return folder


# -- the pipeline: workbench run with a started stack and its shovel --------------------------------


@dataclass
class Workbench:
    """A ``workbench run`` on RabbitMQ with one user whose stack is started (its shovel consuming)."""

    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    http: httpx.Client
    user: str
    token: str
    shovel_pid: int

    @property
    def home(self) -> Path:
        return self.data_dir / "home" / self.user


def _descendants(pid: int) -> list[int]:
    return process_tree(pid)[1:]


def _command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except (FileNotFoundError, ProcessLookupError):
        return []


def _consumers(queue: str) -> int:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        try:
            return int(channel.queue_declare(queue, passive=True).method.consumer_count)
        except pika.exceptions.ChannelClosedByBroker:
            return 0
    finally:
        connection.close()


def _delete_queue(queue: str) -> None:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        connection.channel().queue_delete(queue)
    finally:
        connection.close()


@dataclass(frozen=True)
class Member:
    """A user of a running platform whose stack is started with its shovel consuming."""

    user: str
    token: str
    shovel_pid: int


@dataclass
class Platform:
    """A ``workbench run`` on RabbitMQ with ``members``, each with a started stack."""

    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    http: httpx.Client
    members: list[Member]

    def home(self, user: str) -> Path:
        return self.data_dir / "home" / user


@contextmanager
def workbench(work: Path, clowder_url: str) -> Iterator[Workbench]:
    """A fresh platform (its own data dir, a new user and queue) with the user's stack started."""
    with platform_with_users(work, clowder_url, 1) as platform:
        (member,) = platform.members
        yield Workbench(
            platform.url,
            platform.data_dir,
            platform.process,
            platform.http,
            member.user,
            member.token,
            member.shovel_pid,
        )


@contextmanager
def platform_with_users(work: Path, clowder_url: str, count: int) -> Iterator[Platform]:
    """A fresh platform (its own data dir) with ``count`` new users (and queues), each with a stack
    started and its shovel consuming; the stacks start together."""
    from shared.domain.messages import queue_for

    data_dir = fresh_folder(work, "platform")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    users = [
        "bench" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(6)) for _ in range(count)
    ]
    environment = clean_environment(
        {
            "WORKBENCH_HOST": "127.0.0.1",
            "WORKBENCH_PORT": str(port),
            "WORKBENCH_DATA_DIR": str(data_dir),
            "WORKBENCH_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "WORKBENCH_READY_TIMEOUT": "60",
            "WORKBENCH_CLOWDER_URL": clowder_url,
            "WORKBENCH_CLOWDER_API_KEY": API_KEY,
            "WORKBENCH_EVENT_SECRET": SECRET,
            "WORKBENCH_AMQP_URL": AMQP_URL,
        }
    )
    try:
        with running(
            [str(BIN / "workbench"), "run"], environment=environment, log=work / "workbench.log"
        ) as process:
            wait_for_http(f"{url}/api/healthz", process, seconds=60, interval=0.1)
            http = httpx.Client(base_url=url, timeout=30)
            try:
                started = {
                    user: start_stack(
                        http,
                        admin_password=ADMIN_PASSWORD,
                        user=user,
                        email=f"{user}@example.org",
                        password=USER_PASSWORD,
                    )
                    for user in users
                }
                shovels = _await_consuming(http, process, started)
                members = [Member(user, started[user][0], shovels[user]) for user in users]
                yield Platform(url, data_dir, process, http, members)
            finally:
                http.close()
    finally:
        for user in users:
            try:
                _delete_queue(queue_for(user))
            except Exception as error:  # the queue only clutters the broker
                print(f"bench: could not delete {queue_for(user)}: {error}", file=sys.stderr)


def _await_consuming(
    http: httpx.Client, process: subprocess.Popen[bytes], started: dict[str, tuple[str, str]]
) -> dict[str, int]:
    """Until every user's stack (user -> (token, stack id)) is started and its shovel consumes the
    user's queue; the shovel's process id of each user."""
    from shared.domain.messages import queue_for

    deadline = time.monotonic() + 90 + 10 * len(started)
    shovels: dict[str, int] = {}
    waiting = dict(started)
    while waiting:
        shovels.update(_shovels(process.pid))
        for user, (token, sid) in list(waiting.items()):
            status = checked(http.get(f"/api/stacks/{sid}", headers=bearer(token)))["status"]
            if status == "error":
                raise RuntimeError(f"the stack {sid} of {user} failed to start")
            if status == "started" and user in shovels and _consumers(queue_for(user)) > 0:
                del waiting[user]
        if waiting and time.monotonic() > deadline:
            raise RuntimeError(f"the stacks of {sorted(waiting)} did not start with a consuming shovel")
        if waiting:
            time.sleep(0.2)
    return shovels


def _shovels(pid: int) -> dict[str, int]:
    """The shovel processes below ``pid``, by the user each serves (from its environment)."""
    from shovel.settings import PREFIX

    found: dict[str, int] = {}
    for child in _descendants(pid):
        if "shovel" not in _command_line(child):
            continue
        try:
            variables = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        for variable in variables:
            name, _, value = variable.decode(errors="replace").partition("=")
            if name == f"{PREFIX}USER":
                found[value] = child
    return found


@dataclass(frozen=True)
class PipelineRun:
    seconds: float
    platform_peak_mb: float
    shovel_peak_mb: float
    cpu: dict[str, float]
    """CPU seconds of the transfer: ``platform`` (``workbench run``), ``shovel`` and ``clowder``."""


def pipeline(
    work: Path,
    clowder: Clowder,
    dataset: Dataset,
    observe: Callable[[Workbench], AbstractContextManager[object]] = lambda _: nullcontext(),
) -> PipelineRun:
    """Send the signed transfer event and time it until the transfer is completed and every file is in
    place with its size; the checksums are compared after the clock stops. ``observe`` wraps the
    timed part once the platform is up (e.g. a profiler attached to its processes)."""
    from events import types
    from events.codec import new_event
    from events.producer import send
    from shared.domain.transfers import transfer_id_for

    with workbench(work, clowder.url) as platform:
        event = new_event(
            types.TRANSFER_REQUESTED,
            {
                "clowder_url": clowder.url,
                "dataset_id": clowder.ids[dataset.name]["id"],
                "email": f"{platform.user}@example.org",
            },
            source=EVENT_SOURCE,
            secret=SECRET.encode(),
        )
        transfer_id = transfer_id_for(EVENT_SOURCE, event.id)
        folder = platform.home / "Clowder" / dataset.name
        os.sync()
        with (
            observe(platform),
            PeakRss(platform.process.pid) as platform_peak,
            PeakRss(platform.shovel_pid) as shovel_peak,
            stopwatch() as took,
            CpuUse(
                {"platform": platform.process.pid, "shovel": platform.shovel_pid, "clowder": clowder.pid}
            ) as used,
        ):
            status = send(event, f"{platform.url}/events")
            if status != 202:
                raise RuntimeError(f"the platform answered the transfer event with {status}")
            _wait_until_placed(platform, transfer_id, folder, dataset)
        check_contents(folder, dataset)
        cpu = {name: used.seconds[name] for name in ("platform", "shovel", "clowder")}
        return PipelineRun(took[0], platform_peak.peak, shovel_peak.peak, cpu)


def _wait_until_placed(platform: Workbench, transfer_id: str, folder: Path, dataset: Dataset) -> None:
    deadline = time.monotonic() + TRANSFER_TIMEOUT
    wanted = [(folder / relative, size) for relative, (size, _) in dataset.files.items()]
    while True:
        response = platform.http.get(f"/api/transfers/{transfer_id}", headers=bearer(platform.token))
        if response.status_code == 200:
            transfer = response.json()
            if transfer["state"] == "failed":
                raise RuntimeError(f"the transfer failed: {json.dumps(transfer)[:2000]}")
            if transfer["state"] == "completed" and all_in_place(wanted):
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the transfer did not complete within {TRANSFER_TIMEOUT:g} s")
        time.sleep(POLL_SECONDS)


def check_contents(folder: Path, dataset: Dataset) -> None:
    for relative, (_, sha256) in dataset.files.items():
        digest = hashlib.sha256()
        with (folder / relative).open("rb") as placed:
            while chunk := placed.read(8 * MIB):
                digest.update(chunk)
        if digest.hexdigest() != sha256:
            raise RuntimeError(f"{relative} arrived with other content than Clowder served")


# -- the figures ---------------------------------------------------------------------------------


def _rate(dataset: Dataset, seconds: float) -> float:
    return dataset.size / 1e6 / seconds


def run(rounds: int = ROUNDS, medium_rounds: int = MEDIUM_ROUNDS) -> list[Figure]:
    work = workdir("transfer")
    free = shutil.disk_usage(work).free
    if free < FREE_BYTES_NEEDED:
        raise RuntimeError(
            f"the transfer benchmark needs {FREE_BYTES_NEEDED >> 30} GiB free, {work} has {free >> 30}"
        )
    parallel = shovel_parallelism()
    try:
        large, medium, small = datasets(work)
        measured = Measured()
        with clowder_server(work, [large, medium, small]) as clowder:
            # A round not counted: the first writes to a fresh stretch of the disk are slower than
            # any after, whichever comes first (here both the pipeline and the baseline).
            pipeline(work, clowder, large)
            curl_run(work, clowder, large, parallel)
            large_rounds = alternate(
                rounds,
                lambda: pipeline(work, clowder, large),
                lambda: curl_run(work, clowder, large, parallel),
                after_round=_progress("1 GiB", large, by_files=False),
            )
            measured.large, measured.curl_large = large_rounds.measured, large_rounds.baseline
            measured.medium = [pipeline(work, clowder, medium) for _ in range(medium_rounds)]
            small_rounds = alternate(
                rounds,
                lambda: pipeline(work, clowder, small),
                lambda: curl_run(work, clowder, small, parallel),
                after_round=_progress("5,000 files", small, by_files=True),
            )
            measured.small, measured.curl_small = small_rounds.measured, small_rounds.baseline
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return figures(parallel, large, medium, small, measured)


def datasets(work: Path) -> tuple[Dataset, Dataset, Dataset]:
    """The three datasets on disk, synced: 1 GiB in 16 files, 256 MiB in 16, 5,000 files of 8 KiB."""
    large = make_dataset(work / "data" / "large", "large", 16, 64 * MIB)
    medium = make_dataset(work / "data" / "medium", "medium", 16, 16 * MIB)
    small = make_dataset(work / "data" / "small", "small", 5000, 8 * 1024, per_folder=100)
    os.sync()
    return large, medium, small


def _progress(label: str, dataset: Dataset, *, by_files: bool) -> Callable[[int, PipelineRun, CurlRun], None]:
    """Prints each round's two figures as it ends, so a long run shows it is getting on."""

    def report(number: int, pipelined: PipelineRun, curled: CurlRun) -> None:
        if by_files:
            files = len(dataset.files)
            sides = f"{files / pipelined.seconds:.0f}/s, curl {files / curled.seconds:.0f}/s"
        else:
            sides = f"{_rate(dataset, pipelined.seconds):.0f} MB/s, curl {_rate(dataset, curled.seconds):.0f} MB/s"
        print(f"bench: transfer {label} round {number}: pipeline {sides}", file=sys.stderr, flush=True)

    return report


@dataclass
class Measured:
    curl_large: list[CurlRun] = field(default_factory=list)
    curl_small: list[CurlRun] = field(default_factory=list)
    large: list[PipelineRun] = field(default_factory=list)
    medium: list[PipelineRun] = field(default_factory=list)
    small: list[PipelineRun] = field(default_factory=list)


def cpu_details(pipeline_runs: list[PipelineRun], curl_runs: list[CurlRun]) -> dict[str, Any]:
    """The CPU seconds each side used (medians of the rounds, every process by name), and their ratio:
    on a machine whose processors are the limit, the throughput ratio cannot beat its inverse."""
    pipeline = {name: median([run.cpu[name] for run in pipeline_runs]) for name in pipeline_runs[0].cpu}
    curl = {name: median([run.cpu[name] for run in curl_runs]) for name in curl_runs[0].cpu}
    return {
        "pipeline": {name: round(value, 2) for name, value in pipeline.items()},
        "curl": {name: round(value, 2) for name, value in curl.items()},
        "pipeline_over_curl": round(sum(pipeline.values()) / max(sum(curl.values()), 1e-9), 2),
    }


ROUND_ORDER = (
    "the pipeline then curl, round after round (one warm-up round of each of 1 GiB not counted); the "
    "value and the baseline are each side's median, ratio_per_round each round's own ratio"
)


def figures(
    parallel: int, large: Dataset, medium: Dataset, small: Dataset, measured: Measured
) -> list[Figure]:
    server = f"the Clowder test server (API v2) on cheroot ({CLOWDER_THREADS} threads), its own process"
    pipeline_path = (
        "a signed transfer event to `workbench run` (SQLite store, RabbitMQ bus, local object store "
        "whose directory the shovel copies from) until the transfer record is completed and every "
        "file is in the stack's volume with its size; sha256 of every placed file checked after the "
        "clock stops; a fresh "
        "platform, user and stack (its shovel a process of its own, consuming) for every run"
    )
    baseline = (
        f"one curl process: curl --parallel --parallel-max {parallel} --config FILE (one url/output pair "
        "a file, connections reused) to disk, no fsync"
    )
    large_runs, medium_runs, small_runs = measured.large, measured.medium, measured.small
    large_rates = [_rate(large, run.seconds) for run in large_runs]
    small_rates = [_rate(small, run.seconds) for run in small_runs]
    curl_large = [_rate(large, run.seconds) for run in measured.curl_large]
    curl_small = [_rate(small, run.seconds) for run in measured.curl_small]
    platform_large = [run.platform_peak_mb for run in large_runs]
    shovel_large = [run.shovel_peak_mb for run in large_runs]
    platform_medium = [run.platform_peak_mb for run in medium_runs]
    shovel_medium = [run.shovel_peak_mb for run in medium_runs]
    topology = (
        "the transfer function runs inside `workbench run` (with the gateway, the /objects server and "
        "every other function): that whole process is measured, an upper bound of the transfer "
        "function's own memory; the shovel is its own process (`python -m shovel`, as the sidecar is "
        "in a pod) because the platform runs on RabbitMQ; each peak is the larger of 20 ms RSS "
        "samples and the kernel's high-water mark (VmHWM) of the process"
    )
    growth_platform = median(platform_large) / median(platform_medium)
    growth_shovel = median(shovel_large) / median(shovel_medium)
    return [
        Figure(
            key="transfer_large_ratio",
            what="1 GiB in 16 files: Clowder → transfer → object store → shovel → volume, vs parallel curl",
            value=median(large_rates),
            unit="MB/s",
            baseline=median(curl_large),
            higher_is_better=True,
            target=0.8,
            details={
                "pipeline": pipeline_path,
                "baseline": baseline,
                "server": server,
                "parallelism": parallel,
                "rounds": len(large_runs),
                "order": ROUND_ORDER,
                "ratio_per_round": ratio_spread(large_rates, curl_large),
                "pipeline_mb_s": spread(large_rates, 1),
                "curl_mb_s": spread(curl_large, 1),
                "pipeline_seconds": [round(run.seconds, 2) for run in large_runs],
                "cpu_seconds": cpu_details(large_runs, measured.curl_large),
                "curl_then_fsync_mb_s": [
                    round(_rate(large, run.then_fsync_seconds), 1) for run in measured.curl_large
                ],
                "note": "the pipeline makes every file durable twice (staged blob, placed file) before "
                "it counts; curl's files are still in the page cache when its clock stops "
                "(curl_then_fsync_mb_s: the same download with an fsync of every file, for comparison); "
                "cpu_seconds: the CPU each process used while the "
                "clock ran (medians): where the processors are the limit, the ratio cannot beat the "
                "inverse of pipeline_over_curl",
            },
        ),
        Figure(
            key="transfer_small_ratio",
            what="5,000 files of 8 KiB: the same pipeline vs parallel curl",
            value=median(small_rates),
            unit="MB/s",
            baseline=median(curl_small),
            higher_is_better=True,
            target=0.8,
            details={
                "pipeline": pipeline_path,
                "baseline": baseline,
                "server": server,
                "parallelism": parallel,
                "rounds": len(small_runs),
                "order": ROUND_ORDER,
                "ratio_per_round": ratio_spread(small_rates, curl_small),
                "pipeline_mb_s": spread(small_rates, 2),
                "curl_mb_s": spread(curl_small, 2),
                "pipeline_files_s": spread([len(small.files) / run.seconds for run in small_runs], 0),
                "cpu_seconds": cpu_details(small_runs, measured.curl_small),
                "curl_files_s": spread([len(small.files) / run.seconds for run in measured.curl_small], 0),
                "curl_then_fsync_files_s": [
                    round(len(small.files) / run.then_fsync_seconds) for run in measured.curl_small
                ],
            },
        ),
        Figure(
            key="transfer_peak_rss_mb",
            what="peak RSS of the transfer function's process and of the shovel during the 1 GiB transfer",
            value=max(max(platform_large), max(shovel_large)),
            unit="MB",
            target=150,
            details={
                "platform_process_mb": [round(peak, 1) for peak in platform_large],
                "shovel_mb": [round(peak, 1) for peak in shovel_large],
                "topology": topology,
            },
        ),
        Figure(
            key="transfer_rss_growth",
            what="peak RSS at 1 GiB (16 x 64 MiB) / at 256 MiB (16 x 16 MiB), the larger of the two processes",
            value=max(growth_platform, growth_shovel),
            unit="x",
            target=1.2,
            details={
                "platform_growth": round(growth_platform, 3),
                "shovel_growth": round(growth_shovel, 3),
                "platform_256mib_mb": [round(peak, 1) for peak in platform_medium],
                "shovel_256mib_mb": [round(peak, 1) for peak in shovel_medium],
                "platform_1gib_mb": [round(peak, 1) for peak in platform_large],
                "shovel_1gib_mb": [round(peak, 1) for peak in shovel_large],
                "topology": topology + "; medians of the rounds",
            },
        ),
    ]
