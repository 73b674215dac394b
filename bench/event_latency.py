"""Event latency: a signed transfer event posted to ``/events`` until its files are in a stack's volume."""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.report import Figure, percentile
from bench.support import (
    BIN,
    all_in_place,
    bearer,
    checked,
    clean_environment,
    free_port,
    rabbitmq_vhost,
    running,
    start_stack,
    wait_for_http,
    workdir,
)

EVENTS = 50
WARM_UP = 3
"""Events sent first and not counted: they load the functions the path goes through once."""
FILES = 10
DATASET_BYTES = 1 << 20
POLL_SECONDS = 0.002
TARGET_MS = 500.0
EVENT_SECONDS = 60.0
"""How long one event may take before the run is given up as broken."""

ADMIN_PASSWORD = "bench-admin-password"  # noqa: S105 (a throwaway platform of the benchmark)
SECRET = "bench-pairing-secret"  # noqa: S105
API_KEY = "bench-clowder-key"
SOURCE = "https://clowder.example.org/"
USER = "latency"
EMAIL = "latency@example.org"
USER_PASSWORD = "latency-password"  # noqa: S105 (a throwaway platform of the benchmark)


@dataclass(frozen=True)
class DatasetFile:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Dataset:
    id: str
    name: str
    files: tuple[DatasetFile, ...]


@dataclass(frozen=True)
class Sample:
    """One event: seconds from just before its POST to each step, from the step's own file timestamps."""

    total: float
    accepted: float
    """The POST's 202 (the Broker took it)."""
    first_staged: float
    """The first file in the object store (Clowder read: dataset, listing, first download)."""
    staged: float
    """The transfer's manifest written: every file staged and the sync command published."""
    first_placed: float
    last_placed: float


def run() -> list[Figure]:
    folder = workdir("event_latency")
    vhost = f"bench-event-latency-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    with ExitStack() as stack:
        amqp_url = stack.enter_context(rabbitmq_vhost(vhost))
        datasets, clowder_url = stack.enter_context(_clowder(folder))
        data_dir = folder / "data"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        environment = clean_environment(
            {
                "WORKBENCH_PORT": str(port),
                "WORKBENCH_DATA_DIR": str(data_dir),
                "WORKBENCH_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "WORKBENCH_READY_TIMEOUT": "30",
                "WORKBENCH_CLOWDER_URL": clowder_url,
                "WORKBENCH_CLOWDER_API_KEY": API_KEY,
                "WORKBENCH_EVENT_SECRET": SECRET,
                "WORKBENCH_AMQP_URL": amqp_url,
            }
        )
        platform = stack.enter_context(
            running([str(BIN / "workbench"), "run"], environment=environment, log=folder / "workbench.log")
        )
        wait_for_http(f"{url}/api/healthz", platform)
        http = stack.enter_context(httpx.Client(base_url=url, timeout=30))
        token = _started_stack(http)
        for dataset in datasets[:WARM_UP]:
            _send(http, token, clowder_url, dataset, data_dir)
        samples = [_send(http, token, clowder_url, dataset, data_dir) for dataset in datasets[WARM_UP:]]
    return [_figure(samples)]


def _figure(samples: Sequence[Sample]) -> Figure:
    totals = [sample.total * 1000 for sample in samples]

    def median_ms(values: Iterator[float]) -> float:
        return round(statistics.median(values) * 1000, 1)

    return Figure(
        key="event_latency_ms",
        what=(
            f"a signed transfer event ({FILES} files, {DATASET_BYTES >> 20} MiB) POSTed to /events until "
            "every file is at its final path in the stack's volume (workbench run on RabbitMQ, shovel process)"
        ),
        value=round(percentile(totals, 0.5), 1),
        unit="ms",
        target=TARGET_MS,
        details={
            "p95_ms": round(percentile(totals, 0.95), 1),
            "mean_ms": round(statistics.fmean(totals), 1),
            "min_ms": round(min(totals), 1),
            "max_ms": round(max(totals), 1),
            "events": len(samples),
            "warm_up_events": WARM_UP,
            "datasets": "a distinct Clowder dataset per event (random bytes, so no blob is reused) into "
            "its own target folder; one event at a time, the next once the transfer completed",
            "poll_ms": POLL_SECONDS * 1000,
            "clowder": "the Clowder test server (Clowder 2 API) in a process of its own",
            "load_average_at_end": round(os.getloadavg()[0], 2),
            # The median of each step on its own: they need not add up to the median of the whole.
            "median_breakdown_ms": {
                "post_answered": median_ms(sample.accepted for sample in samples),
                "event_to_first_file_staged": median_ms(sample.first_staged for sample in samples),
                "staging_until_published": median_ms(
                    sample.staged - sample.first_staged for sample in samples
                ),
                "published_to_first_file_placed": median_ms(
                    sample.first_placed - sample.staged for sample in samples
                ),
                "first_to_last_file_placed": median_ms(
                    sample.last_placed - sample.first_placed for sample in samples
                ),
                "last_file_placed_to_seen": median_ms(
                    sample.total - sample.last_placed for sample in samples
                ),
            },
            "breakdown_from": "the files' own timestamps: blob mtime in the object store (staged), the "
            "manifest's mtime (staging done, command published), the placed files' ctime (linked into place)",
        },
    )


def _started_stack(http: httpx.Client) -> str:
    """The benchmark user's token, once their stack (and so its shovel) runs."""
    token, sid = start_stack(
        http, admin_password=ADMIN_PASSWORD, user=USER, email=EMAIL, password=USER_PASSWORD
    )
    deadline = time.monotonic() + 60
    while (status := checked(http.get(f"/api/stacks/{sid}", headers=bearer(token)))["status"]) != "started":
        if status == "error" or time.monotonic() > deadline:
            raise RuntimeError(f"the benchmark's stack {sid} did not start: {status}")
        time.sleep(0.1)
    return token


def _send(http: httpx.Client, token: str, clowder_url: str, dataset: Dataset, data_dir: Path) -> Sample:
    """Post one event and wait until its files are in place; then until its transfer completed."""
    from events import types
    from events.codec import new_event, to_http
    from shared.adapters.objectstore import blob_key
    from shared.domain.transfers import transfer_id_for

    event = new_event(
        types.TRANSFER_REQUESTED,
        {"clowder_url": clowder_url, "dataset_id": dataset.id, "email": EMAIL},
        source=SOURCE,
        secret=SECRET.encode(),
    )
    headers, body = to_http(event, "binary")
    target = data_dir / "home" / USER / "Clowder" / dataset.name
    wanted = [(target / file.path, file.size) for file in dataset.files]
    began_wall = time.time()
    began = time.perf_counter()
    answer = http.post("/events", headers=headers, content=body)
    accepted = time.perf_counter() - began
    if answer.status_code != 202:
        raise RuntimeError(f"/events answered {answer.status_code}: {answer.text[:300]}")
    deadline = began + EVENT_SECONDS
    while not all_in_place(wanted):
        if time.perf_counter() > deadline:
            raise RuntimeError(
                f"the files of dataset {dataset.name!r} did not arrive within {EVENT_SECONDS} s"
            )
        time.sleep(POLL_SECONDS)
    total = time.perf_counter() - began

    transfer_id = transfer_id_for(SOURCE, event.id)
    _wait_completed(http, token, transfer_id)
    objects = data_dir / "objects"
    manifest = (objects / "manifests" / f"{transfer_id}.json").stat().st_mtime_ns
    placed = [path.stat().st_ctime_ns for path, _ in wanted]
    # Staged into the object store, a file's blob was last written when it was staged; staged into the
    # home (one machine's embedded object store), the file itself was, and placing only renamed it.
    staged = [
        blob.stat().st_mtime_ns if blob.exists() else path.stat().st_mtime_ns
        for file, (path, _) in zip(dataset.files, wanted, strict=True)
        for blob in [objects / blob_key(file.sha256)]
    ]

    def since(nanoseconds: int) -> float:
        return nanoseconds / 1e9 - began_wall

    return Sample(
        total=total,
        accepted=accepted,
        first_staged=since(min(staged)),
        staged=since(manifest),
        first_placed=since(min(placed)),
        last_placed=since(max(placed)),
    )


def _wait_completed(http: httpx.Client, token: str, transfer_id: str) -> None:
    deadline = time.monotonic() + EVENT_SECONDS
    while True:
        transfer = checked(http.get(f"/api/transfers/{transfer_id}", headers=bearer(token)))
        if transfer["state"] == "completed":
            return
        if transfer["state"] == "failed" or time.monotonic() > deadline:
            raise RuntimeError(f"transfer {transfer_id} did not complete: {transfer}")
        time.sleep(0.01)


@contextmanager
def _clowder(folder: Path) -> Iterator[tuple[list[Dataset], str]]:
    """The Clowder test server in a process of its own (so that it shares no interpreter lock with the
    measuring loop), holding a distinct dataset for every event; yields the datasets and its URL."""
    ready = folder / "clowder.json"
    command = [
        sys.executable,
        "-c",
        "import sys; from bench.event_latency import serve_clowder; serve_clowder(sys.argv[1:])",
        str(folder / "clowder"),
        str(ready),
        str(WARM_UP + EVENTS),
    ]
    with running(command, environment=clean_environment(), log=folder / "clowder.log") as process:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Clowder test server did not start; see {folder / 'clowder.log'}")
            time.sleep(0.05)
        document = json.loads(ready.read_text())
        datasets = [
            Dataset(
                id=entry["id"],
                name=entry["name"],
                files=tuple(DatasetFile(**file) for file in entry["files"]),
            )
            for entry in document["datasets"]
        ]
        yield datasets, str(document["url"])


def serve_clowder(arguments: Sequence[str]) -> None:
    """``ROOT READY COUNT``: serve COUNT datasets of random files until ended; READY gets their facts."""
    from tests.clowder_server import ClowderServer

    root, ready, count = Path(arguments[0]), Path(arguments[1]), int(arguments[2])
    server = ClowderServer(root, 2, API_KEY).start()
    datasets = []
    for number in range(count):
        name = f"Latency {number:03d}"
        dataset_id = server.add_dataset(name)
        tree = {}
        for index in range(FILES):
            size = DATASET_BYTES // FILES + (1 if index < DATASET_BYTES % FILES else 0)
            path = f"part-{index:02d}.bin" if index % 2 == 0 else f"raw/part-{index:02d}.bin"
            tree[path] = os.urandom(size)
        server.add_files(dataset_id, tree)
        datasets.append(
            {
                "id": dataset_id,
                "name": name,
                "files": [
                    {"path": path, "size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
                    for path, content in tree.items()
                ],
            }
        )
    partial = ready.with_suffix(".partial")
    partial.write_text(json.dumps({"url": server.url, "datasets": datasets}))
    partial.replace(ready)
    threading.Event().wait()
