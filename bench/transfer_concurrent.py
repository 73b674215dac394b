"""Many users at once: ten users each sent a 100 MiB dataset of mixed sizes at the same moment, through
``workbench run`` into each one's started stack, against ten ``curl --parallel`` runs of the same files
started together; every user's completion time is kept, so that a starved user shows."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.report import Figure, median
from bench.rounds import alternate, ratio_spread, spread
from bench.support import CpuUse, bearer, workdir
from bench.transfer import (
    API_KEY,
    EVENT_SOURCE,
    MIB,
    SECRET,
    Clowder,
    Dataset,
    Member,
    Platform,
    check_contents,
    clowder_server,
    fresh_folder,
    make_mixed_dataset,
    platform_with_users,
    shovel_parallelism,
)

USERS = 10
ROUNDS = 3
GROUPS = ((2, 24 * MIB), (8, 4 * MIB), (12, MIB), (64, 64 * 1024), (256, 16 * 1024))
"""Each user's dataset: 100 MiB in 342 files, from 16 KiB to 24 MiB."""
CLOWDER_THREADS = 96
"""Enough for every connection of either side at once (ten transfers staging up to 8 files each,
ten curls of 4), so that neither side queues for a thread of the server."""
TIMEOUT = 900.0
POLL_SECONDS = 0.02
FREE_BYTES_NEEDED = 16 << 30
"""Sources (1 GiB) and per round curl's copies (1 GiB) and the platform's staged and placed files
(2 GiB), all kept until the end, with room to spare."""


def dataset_size() -> int:
    return sum(count * size for count, size in GROUPS)


@dataclass(frozen=True)
class ConcurrentRun:
    """One round of one side: seconds until every file of every user was in place, each user's own
    seconds (from the common start), and the CPU seconds each process used meanwhile."""

    seconds: float
    per_user: list[float]
    cpu: dict[str, float]


class Arrivals:
    """Which files of each user are in place yet. Each look stats only the files not yet seen, in
    order, and stops at the first one missing, so that watching costs little while the files come."""

    def __init__(self, wanted: Sequence[Sequence[tuple[Path, int]]]) -> None:
        self.remaining = [list(files) for files in wanted]
        self.done_at: list[float | None] = [None] * len(wanted)

    def look(self, now: float) -> bool:
        """Records the users whose files are all in place by ``now``; whether every user's are."""
        for user, files in enumerate(self.remaining):
            if self.done_at[user] is not None:
                continue
            while files and _in_place(*files[0]):
                files.pop(0)
            if not files:
                self.done_at[user] = now
        return all(done is not None for done in self.done_at)


def _in_place(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except FileNotFoundError:
        return False


# -- the baseline: ten curls at once ---------------------------------------------------------------


def curl_config(work: Path, clowder: Clowder, dataset: Dataset, target: Path) -> Path:
    """A curl configuration downloading every file of the dataset into ``target``."""
    lines = [f'header = "X-API-KEY: {API_KEY}"', "create-dirs", "fail", "silent", "show-error"]
    for relative, file_id in clowder.files[dataset.name].items():
        lines += [f'url = "{clowder.file_url(file_id)}"', f'output = "{target / relative}"']
    config = work / f"curl-{dataset.name}.config"
    config.write_text("\n".join(lines) + "\n")
    return config


def concurrent_curl(
    work: Path, clowder: Clowder, datasets: Sequence[Dataset], parallel: int
) -> ConcurrentRun:
    """One ``curl --parallel`` process a user, all started at once; each one's end is its user's time."""
    runs = fresh_folder(work, "curl")
    configs = [curl_config(work, clowder, dataset, runs / dataset.name) for dataset in datasets]
    ended: list[float] = [0.0] * len(datasets)
    failures: list[str] = []

    def download(index: int) -> None:
        command = ["curl", "--parallel", "--parallel-max", str(parallel), "--config", str(configs[index])]
        done = subprocess.run(command, capture_output=True, check=False)
        ended[index] = time.monotonic()
        if done.returncode != 0:
            failures.append(f"curl of {datasets[index].name}: {done.stderr.decode(errors='replace')[:300]}")

    with CpuUse({"clowder": clowder.pid}) as used:
        began = time.monotonic()
        threads = [threading.Thread(target=download, args=(index,)) for index in range(len(datasets))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if failures:
        raise RuntimeError("; ".join(failures))
    for dataset in datasets:
        for relative, (size, _) in dataset.files.items():
            got = (runs / dataset.name / relative).stat().st_size
            if got != size:
                raise RuntimeError(f"curl wrote {got} bytes of {dataset.name}/{relative}, not {size}")
    per_user = [end - began for end in ended]
    cpu = {"curl": used.seconds["children"], "clowder": used.seconds["clowder"]}
    return ConcurrentRun(max(per_user), per_user, cpu)


# -- the pipeline: one platform, ten users, ten events at once --------------------------------------


def concurrent_pipeline(work: Path, clowder: Clowder, datasets: Sequence[Dataset]) -> ConcurrentRun:
    """A fresh platform with one user a dataset; every transfer event is sent at once and the clock
    runs until every file of every user is in place with its size. Then (the clock stopped) every
    transfer must read completed and every placed file's sha256 must be Clowder's."""
    from events import types
    from events.codec import new_event
    from events.producer import send
    from shared.domain.transfers import transfer_id_for

    with platform_with_users(work, clowder.url, len(datasets)) as platform:
        events = [
            new_event(
                types.TRANSFER_REQUESTED,
                {
                    "clowder_url": clowder.url,
                    "dataset_id": clowder.ids[dataset.name]["id"],
                    "email": f"{member.user}@example.org",
                },
                source=EVENT_SOURCE,
                secret=SECRET.encode(),
            )
            for member, dataset in zip(platform.members, datasets, strict=True)
        ]
        folders = [
            platform.home(member.user) / "Clowder" / dataset.name
            for member, dataset in zip(platform.members, datasets, strict=True)
        ]
        arrivals = Arrivals(
            [
                [(folder / relative, size) for relative, (size, _) in dataset.files.items()]
                for folder, dataset in zip(folders, datasets, strict=True)
            ]
        )
        processes = {"platform": platform.process.pid, "clowder": clowder.pid}
        processes.update({f"shovel {member.user}": member.shovel_pid for member in platform.members})
        os.sync()
        with CpuUse(processes) as used, ThreadPoolExecutor(len(events)) as senders:
            began = time.monotonic()
            statuses = list(senders.map(lambda event: send(event, f"{platform.url}/events"), events))
            if any(status != 202 for status in statuses):
                raise RuntimeError(f"the platform answered the transfer events with {statuses}")
            _watch(arrivals, began)
        per_user = [done - began for done in arrivals.done_at if done is not None]
        for member, event in zip(platform.members, events, strict=True):
            _await_completed(platform, member, transfer_id_for(EVENT_SOURCE, event.id))
        for folder, dataset in zip(folders, datasets, strict=True):
            check_contents(folder, dataset)
    shovels = sum(seconds for name, seconds in used.seconds.items() if name.startswith("shovel "))
    cpu = {"platform": used.seconds["platform"], "shovels": shovels, "clowder": used.seconds["clowder"]}
    return ConcurrentRun(max(per_user), per_user, cpu)


def _watch(arrivals: Arrivals, began: float) -> None:
    while not arrivals.look(time.monotonic()):
        if time.monotonic() - began > TIMEOUT:
            missing = sum(len(files) for files in arrivals.remaining)
            raise TimeoutError(f"{missing} files were not in place within {TIMEOUT:g} s")
        time.sleep(POLL_SECONDS)


def _await_completed(platform: Platform, member: Member, transfer_id: str, seconds: float = 60) -> None:
    """Until the member's transfer of ``transfer_id`` reads completed."""
    deadline = time.monotonic() + seconds
    state = "unknown"
    while time.monotonic() < deadline:
        response = platform.http.get(f"/api/transfers/{transfer_id}", headers=bearer(member.token))
        if response.status_code == 200:
            state = response.json()["state"]
            if state == "completed":
                return
            if state == "failed":
                raise RuntimeError(f"the transfer {transfer_id} failed: {response.text[:2000]}")
        time.sleep(0.1)
    raise TimeoutError(
        f"the transfer {transfer_id} was {state}, not completed, {seconds:g} s after its files"
    )


# -- the figure ------------------------------------------------------------------------------------


def run(rounds: int = ROUNDS, users: int = USERS) -> list[Figure]:
    work = workdir("transfer_concurrent")
    free = shutil.disk_usage(work).free
    if free < FREE_BYTES_NEEDED:
        raise RuntimeError(
            f"the concurrent transfer benchmark needs {FREE_BYTES_NEEDED >> 30} GiB free, {work} has {free >> 30}"
        )
    parallel = shovel_parallelism()
    try:
        datasets = [
            make_mixed_dataset(work / "data" / f"user{number:02d}", f"dataset{number:02d}", GROUPS)
            for number in range(users)
        ]
        os.sync()
        with clowder_server(work, datasets, threads=CLOWDER_THREADS) as clowder:
            done = alternate(
                rounds,
                lambda: concurrent_pipeline(work, clowder, datasets),
                lambda: concurrent_curl(work, clowder, datasets, parallel),
                after_round=_progress(datasets),
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [figure(datasets, parallel, done.measured, done.baseline)]


def _rate(datasets: Sequence[Dataset], seconds: float) -> float:
    return sum(dataset.size for dataset in datasets) / 1e6 / seconds


def _progress(datasets: Sequence[Dataset]) -> Callable[[int, ConcurrentRun, ConcurrentRun], None]:
    def report(number: int, pipelined: ConcurrentRun, curled: ConcurrentRun) -> None:
        print(
            f"bench: transfer_concurrent round {number}: pipeline {_rate(datasets, pipelined.seconds):.0f} MB/s "
            f"(users {min(pipelined.per_user):.1f} to {max(pipelined.per_user):.1f} s), curl "
            f"{_rate(datasets, curled.seconds):.0f} MB/s ({min(curled.per_user):.1f} to {max(curled.per_user):.1f} s)",
            file=sys.stderr,
            flush=True,
        )

    return report


def user_spread(runs: Sequence[ConcurrentRun]) -> dict[str, object]:
    """The users' completion times: min/median/max of the median round's, and of every round."""
    middle = sorted(runs, key=lambda run: run.seconds)[len(runs) // 2]
    return {
        "median_round": spread(middle.per_user, 2),
        "each_round": [
            {
                "min": round(min(run.per_user), 2),
                "median": round(median(run.per_user), 2),
                "max": round(max(run.per_user), 2),
            }
            for run in runs
        ],
        "slowest_over_fastest": round(max(middle.per_user) / min(middle.per_user), 2),
    }


def figure(
    datasets: Sequence[Dataset],
    parallel: int,
    pipeline_runs: Sequence[ConcurrentRun],
    curl_runs: Sequence[ConcurrentRun],
) -> Figure:
    pipeline_rates = [_rate(datasets, run.seconds) for run in pipeline_runs]
    curl_rates = [_rate(datasets, run.seconds) for run in curl_runs]
    files = len(datasets[0].files)
    return Figure(
        key="transfer_concurrent_ratio",
        what=f"{len(datasets)} users each sent {dataset_size() / MIB:.0f} MiB in {files} files of mixed sizes at once, "
        "until every file of every user is in place, vs as many parallel curls at once",
        value=median(pipeline_rates),
        unit="MB/s",
        baseline=median(curl_rates),
        higher_is_better=True,
        target=0.8,
        details={
            "pipeline": f"{len(datasets)} signed transfer events sent at once to one `workbench run` (SQLite "
            "store, RabbitMQ bus, local object store), each for its own user with a started stack "
            "and its shovel (a process each); the clock stops when every file of every user is in "
            "its stack's volume with its size; then every transfer must read completed and every "
            "file's sha256 match (not timed); a fresh platform and users every round",
            "baseline": f"{len(datasets)} curl processes started at once, one a user: curl --parallel "
            f"--parallel-max {parallel} --config FILE of that user's files, to disk, no fsync",
            "server": f"the Clowder test server (API v2) on cheroot ({CLOWDER_THREADS} threads), its own process",
            "dataset": {f"{size} bytes": count for count, size in GROUPS},
            "rounds": len(pipeline_runs),
            "order": "the pipeline then curl, round after round; value and baseline are each side's median",
            "ratio_per_round": ratio_spread(pipeline_rates, curl_rates),
            "pipeline_mb_s": spread(pipeline_rates, 1),
            "curl_mb_s": spread(curl_rates, 1),
            "pipeline_user_seconds": user_spread(pipeline_runs),
            "curl_user_seconds": user_spread(curl_runs),
            "cpu_seconds": {
                "pipeline": {
                    name: round(median([run.cpu[name] for run in pipeline_runs]), 2)
                    for name in pipeline_runs[0].cpu
                },
                "curl": {
                    name: round(median([run.cpu[name] for run in curl_runs]), 2) for name in curl_runs[0].cpu
                },
            },
        },
    )
