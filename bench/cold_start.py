"""Cold start of every function: from process start to its first successful answer, against hello-world.

Each function starts as the image starts it (``functions-framework --target T --source functions/T.py``,
with the image's ENV, the manifests' THREADS and WORKERS, its bytecode compiled as the image compiles
it) on a data dir prepared once with ``workbench init``, and is sent a real request that it answers
2xx: an API call with a valid token, or a signed event it accepts. Until that answer comes, the
request is sent again: a refused connection, a 401 or a 503 all mean "not ready yet". The baseline
is ``bench/hello.py`` started and polled the same way: every start of a function sits next to a
start of hello-world, and a function is judged against the hello-world starts beside its own, so
that a burst of noise on a shared machine hits both sides of its ratio alike.
"""

from __future__ import annotations

import base64
import compileall
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.report import Figure, median
from bench.support import (
    BIN,
    ROOT,
    bearer,
    clean_environment,
    cpu_seconds,
    free_port,
    image_environment,
    initialised_platform,
    running,
    workdir,
)
from shared.serving import registry

RUNS = 7
TARGET = 1.5
CLOWDER_URL = "https://clowder.bench.invalid"
"""The paired Clowder: named in events, never contacted (no probe makes the platform call it)."""
EVENT_SOURCE = f"{CLOWDER_URL}/"
USER = "bench"
EMAIL = "bench@example.org"
SPEC = "cloudcmd"
"""A catalog spec without required dependencies: the stacks of the benchmark's user are of it."""
POSTGRES_URL = "postgresql://127.0.0.1:5432/test"
POSTGRES_SCHEMA = "workbench_bench_cold_start"
HELLO = "hello"
PYDANTIC_REFERENCE = "hello_pydantic"
"""hello-world validating its request with one pydantic model: where a function that validates with
pydantic starts at the least (reported beside the functions, not judged)."""


@dataclass(frozen=True)
class Probe:
    """The request that shows a function serves: sent until it is answered 2xx."""

    what: str
    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def send(self, client: httpx.Client, base_url: str) -> httpx.Response:
        return client.request(
            self.method, base_url + self.path, headers=dict(self.headers), content=self.body
        )


def first_success(
    client: httpx.Client,
    probe: Probe,
    base_url: str,
    *,
    process: subprocess.Popen[bytes] | None = None,
    seconds: float = 60,
    interval: float = 0.002,
) -> float:
    """Sends ``probe`` until it is answered 2xx; returns the monotonic time of that answer.

    A refused connection and any other answer (a 401 before the token can be checked, a 503 while
    the database is not there yet, a 404) count as "not yet": only a success shows the function
    serves. When the time is up, the error shows the last answer."""
    deadline = time.monotonic() + seconds
    last = "no answer"
    while True:
        try:
            response = probe.send(client, base_url)
        except httpx.TransportError as error:
            last = f"{type(error).__name__}: {error}"
        else:
            if 200 <= response.status_code < 300:
                return time.monotonic()
            last = f"{response.status_code} {response.text[:300]}"
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server ended with {process.returncode}; last: {last}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{probe.what} was not answered 2xx within {seconds:g} s; last: {last}")
        time.sleep(interval)


# --- The installation the functions run on -------------------------------------------------------


@dataclass(frozen=True)
class Installation:
    """A data dir (and database) prepared for the probes: the benchmark's user, two stacks of theirs
    (one running, one stopped), a transfer that has completed, and tokens of the user and the admin."""

    settings: Mapping[str, str]
    user_token: str
    admin_token: str
    running_stack: str
    stopped_stack: str
    service: str
    """A service of the running stack (``<stack id>-<key>``), whose log the logs probe reads."""
    transfer_event: str
    """The id of the (completed) transfer's event, which the transfer probe delivers again."""
    event_secret: bytes
    """The pairing secret the events are signed with."""


def _events_url() -> str:
    """An address where nothing listens: the stacks' outbound events go nowhere, rather than to
    a platform someone else runs on this machine."""
    return f"http://127.0.0.1:{free_port()}/events"


@contextmanager
def installation(folder: Path, database_url: str | None = None) -> Iterator[Installation]:
    """A prepared installation for the length of the block; its stack's processes end after it."""
    from shared.core.models import Account, Stack, Transfer
    from shared.domain import accounts, stacks, transfers

    jwt_secret, event_secret = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    settings = {
        "WORKBENCH_DATA_DIR": str(folder / "data"),
        "WORKBENCH_JWT_SECRET": jwt_secret,
        "WORKBENCH_EVENT_SECRET": event_secret,
        "WORKBENCH_ADMIN_PASSWORD": secrets.token_urlsafe(12),
        "WORKBENCH_CLOWDER_URL": CLOWDER_URL,
        "WORKBENCH_EVENTS_URL": _events_url(),
    }
    if database_url is not None:
        settings["WORKBENCH_DATABASE_URL"] = database_url
    platform = initialised_platform(settings)
    running_stack: Stack | None = None
    try:
        accounts.create(
            platform,
            Account(namespace=USER, name="Bench Mark", email=EMAIL, password=secrets.token_urlsafe(12)),
        )
        running_stack = stacks.create(platform, USER, Stack(key=SPEC, name="running"))
        stopped_stack = stacks.create(platform, USER, Stack(key=SPEC, name="stopped"))
        stacks.start(platform, USER, running_stack.id)
        _await_started(platform, running_stack.id)
        transfer_event = f"bench-transfer-{uuid.uuid4()}"
        platform.store.insert_transfer(
            Transfer(
                id=transfers.transfer_id_for(EVENT_SOURCE, transfer_event),
                user=USER,
                state="completed",
                source=CLOWDER_URL,
                datasetId="bench-dataset",
                stagingDone=True,
            )
        )
        # The platform's tokens carry the account's generation, as a login's do.
        yield Installation(
            settings=settings,
            user_token=platform.tokens.issue(USER, lifetime_seconds=24 * 3600),
            admin_token=platform.tokens.issue(accounts.ADMIN, admin=True, lifetime_seconds=24 * 3600),
            running_stack=running_stack.id,
            stopped_stack=stopped_stack.id,
            service=running_stack.services[0].id,
            transfer_event=transfer_event,
            event_secret=event_secret.encode(),
        )
    finally:
        if running_stack is not None:
            current = platform.store.get_stack(USER, running_stack.id)
            if current is not None:
                platform.runtime.remove(stacks.plan_for(platform, USER, current))
        platform.close()


def _await_started(platform: Any, sid: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        stack = platform.store.get_stack(USER, sid)
        if stack is not None and stack.status == "started":
            return
        if stack is not None and stack.status == "error":
            raise RuntimeError(f"the benchmark's stack {sid} failed to start: {stack.services}")
        time.sleep(0.1)
    raise TimeoutError(f"the benchmark's stack {sid} did not start within {seconds:g} s")


# --- What each function is asked ----------------------------------------------------------------


def _event_probe(what: str, event: Any) -> Probe:
    from events import codec

    headers, body = codec.to_http(event, "binary")
    return Probe(what, "POST", "/", headers, body)


def _signed(event_type: str, data: Mapping[str, Any], secret: bytes, event_id: str | None = None) -> Any:
    from events import codec

    return codec.new_event(
        event_type, data, source=EVENT_SOURCE, secret=secret, event_id=event_id or str(uuid.uuid4())
    )


def _transfer(setup: Installation) -> Probe:
    from events import types

    # The very event the completed transfer was recorded for (same source and id), delivered again.
    data = {"clowder_url": CLOWDER_URL, "dataset_id": "bench-dataset", "email": EMAIL}
    event = _signed(types.TRANSFER_REQUESTED, data, setup.event_secret, setup.transfer_event)
    return _event_probe("transfer.requested, delivered again for a completed transfer (202)", event)


def _export(setup: Installation) -> Probe:
    from events import types

    data = {"clowder_url": CLOWDER_URL, "email": EMAIL, "folder": "results", "dataset_name": "Bench results"}
    return _event_probe(
        "export.requested of a new export: recorded, upload grant to the user's queue (202)",
        _signed(types.EXPORT_REQUESTED, data, setup.event_secret),
    )


def _stack_action(setup: Installation) -> Probe:
    from events import types

    data = {"email": EMAIL, "stack_id": setup.stopped_stack}
    return _event_probe(
        "stack.stop.requested of a stopped stack: nothing left to do (202)",
        _signed(types.STACK_STOP_REQUESTED, data, setup.event_secret),
    )


def _withdrawal(setup: Installation) -> Probe:
    from events import types

    data = {
        "clowder_url": CLOWDER_URL,
        "dataset_id": "bench-dataset",
        "reason": "access-withdrawn",
        "emails": [EMAIL],
    }
    return _event_probe(
        "dataset.withdrawn of the user's access to a dataset the home holds: its copy flagged (202)",
        _signed(types.DATASET_WITHDRAWN, data, setup.event_secret),
    )


def _clowder_job(setup: Installation) -> Probe:
    from events import types

    data = {
        "transfer_id": "t-bench",
        "user": USER,
        "dataset_id": "bench-dataset",
        "files_done": 1,
        "files_total": 1,
        "bytes_done": 1,
        "bytes_total": 1,
    }
    return _event_probe(
        "transfer.completed of a transfer no Clowder job asked for: nothing to tell (202)",
        _signed(types.TRANSFER_COMPLETED, data, setup.event_secret),
    )


def _shovel_reports(setup: Installation) -> Probe:
    from events import signing, types

    key = signing.derive_key(setup.event_secret, f"shovel:{USER}")
    data = {
        "user": USER,
        "stack_id": setup.running_stack,
        "version": "bench",
        "status": "ready",
        "free_bytes": 1 << 30,
    }
    return _event_probe(
        "shovel.heartbeat signed with the user's shovel key: recorded (202)",
        _signed(types.SHOVEL_HEARTBEAT, data, key),
    )


def _stack_status(setup: Installation) -> Probe:
    from events import codec
    from shared.adapters.runtime.kube_objects import MANAGED_BY, MANAGER, STACK_LABEL, USER_LABEL

    pod = {
        "kind": "Pod",
        "metadata": {
            "name": f"{setup.stopped_stack}-{SPEC}-0",
            "labels": {MANAGED_BY: MANAGER, USER_LABEL: USER, STACK_LABEL: setup.stopped_stack},
        },
    }
    event = codec.Event(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "https://kubernetes.default.svc",
            "type": registry.APISERVER_EVENTS[1],
            "datacontenttype": "application/json",
        },
        json.dumps(pod).encode(),
    )
    return _event_probe("apiserver resource.update of a stack's pod: the stack reconciled (202)", event)


def _deadletter(setup: Installation) -> Probe:
    from events import codec, types

    event = codec.Event(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": EVENT_SOURCE,
            "type": types.TRANSFER_REQUESTED,
            "datacontenttype": "application/json",
            "knativeerrordest": "http://transfer.workbench.svc.cluster.local",
            "knativeerrorcode": "503",
            "knativeerrordata": base64.b64encode(b'{"Error": "database unavailable"}').decode(),
        },
        codec.canonical_json({"clowder_url": CLOWDER_URL, "dataset_id": "1", "email": EMAIL}),
    )
    return _event_probe("a dead-lettered event delivered to the sink: kept (202)", event)


def _get(
    what: str, path: str, token: Callable[[Installation], str | None]
) -> Callable[[Installation], Probe]:
    def probe(setup: Installation) -> Probe:
        granted = token(setup)
        return Probe(what, "GET", path.format(setup=setup), bearer(granted) if granted else {})

    return probe


def _user(setup: Installation) -> str:
    return setup.user_token


def _admin(setup: Installation) -> str:
    return setup.admin_token


PROBES: dict[str, Callable[[Installation], Probe]] = {
    "authenticate": lambda setup: Probe("DELETE /api/authenticate (log out)", "DELETE", "/api/authenticate"),
    "check_token": _get("GET /api/check_token", "/api/check_token", _user),
    "refresh_token": _get("GET /api/refresh_token", "/api/refresh_token", _user),
    "accounts": _get("GET /api/accounts/bench (one's own)", f"/api/accounts/{USER}", _user),
    "register": lambda setup: Probe(
        "POST /api/reset?userId=bench (a reset e-mail into the outbox)", "POST", f"/api/reset?userId={USER}"
    ),
    "services": _get(f"GET /api/services/{SPEC}", f"/api/services/{SPEC}", _user),
    "configs": _get(f"GET /api/configs?services={SPEC}", f"/api/configs?services={SPEC}", _user),
    "stacks": _get("GET /api/stacks (2 stacks)", "/api/stacks", _user),
    "start": _get(
        f"GET /api/start?key={SPEC} (quickstart of the running stack: 200)", f"/api/start?key={SPEC}", _user
    ),
    "stop": _get("GET /api/stop_all (the admin's: none running)", "/api/stop_all", _admin),
    "logs": _get("GET /api/logs/<running service>", "/api/logs/{setup.service}", _user),
    "system": _get("GET /api/healthz (with the database)", "/api/healthz", lambda setup: None),
    "transfers": _get("GET /api/transfers", "/api/transfers", _user),
    "containers": _get(f"GET /api/containers/{USER}", f"/api/containers/{USER}", _user),
    "console": _get(
        "GET /api/check_console?ssid=<running service> (whether a console opens)",
        "/api/check_console?ssid={setup.service}",
        _user,
    ),
    "ui": lambda setup: Probe("GET / (the management page)", "GET", "/"),
    "transfer": _transfer,
    "withdrawal": _withdrawal,
    "export": _export,
    "stack_action": _stack_action,
    "shovel_reports": _shovel_reports,
    "clowder_job": _clowder_job,
    "stack_status": _stack_status,
    "deadletter": _deadletter,
}
"""The request each function is asked: cheap, harmless, and answered 2xx once the function serves."""


def probe_for(function: registry.Function, setup: Installation) -> Probe:
    """The function's probe from ``PROBES``: every function has one (tests/test_bench.py checks it),
    since a guessed request may never be answered 2xx and would only time out mid-run."""
    if function.name in PROBES:
        return PROBES[function.name](setup)
    raise LookupError(
        f"no probe for function '{function.name}': add one to PROBES in {Path(__file__).relative_to(ROOT)}"
    )


# --- Measuring ----------------------------------------------------------------------------------


@dataclass
class Pairs:
    """One function's cold starts and, beside each, one of hello-world: seconds from process start
    to the first successful answer, and the CPU seconds the server's processes had used by then."""

    wall: list[float] = field(default_factory=list)
    hello_wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    hello_cpu: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return median(self.wall) / median(self.hello_wall)

    @property
    def cpu_ratio(self) -> float:
        return median(self.cpu) / median(self.hello_cpu)


@dataclass
class Samples:
    pairs: dict[str, Pairs] = field(default_factory=dict)
    probes: dict[str, str] = field(default_factory=dict)


def _cold_start(
    client: httpx.Client,
    command: Sequence[str],
    environment: Mapping[str, str],
    probe: Probe,
    log: Path,
) -> tuple[float, float]:
    """Wall seconds from process start to the probe's first 2xx, and the CPU seconds used by then."""
    port = free_port()
    began = time.monotonic()
    with running(
        [*command, "--port", str(port)], environment=environment, log=log, stop_signal=signal.SIGKILL
    ) as process:
        try:
            answered = first_success(client, probe, f"http://127.0.0.1:{port}", process=process)
        except (RuntimeError, TimeoutError) as error:
            raise RuntimeError(f"{error}\n--- {log} ---\n{log.read_text()[-3000:]}") from None
        used = cpu_seconds(process.pid)
    return answered - began, used


def server_environment(settings: Mapping[str, str], function: registry.Function) -> dict[str, str]:
    """The environment a function's server has in its Knative Service: the image's ``ENV``, the
    manifests' server settings (THREADS = the function's concurrency, one worker; see
    shared/tools/manifests.py), and the platform's settings."""
    serving = {"THREADS": str(function.concurrency), "WORKERS": "1"}
    return clean_environment({**image_environment(), **serving, **settings})


def measure(
    setup: Installation, functions: Sequence[registry.Function], folder: Path, runs: int = RUNS
) -> Samples:
    """``runs`` cold starts of each function, each beside a cold start of hello-world (which of the
    two goes first alternates), the functions in a different order every round."""
    samples = Samples()
    logs = folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with httpx.Client(timeout=30, trust_env=False) as client:
        for round_number in range(runs):
            shift = round_number * 7 % len(functions)
            for position, function in enumerate([*functions[shift:], *functions[:shift]]):
                probe = probe_for(function, setup)
                samples.probes[function.name] = probe.what
                pairs = samples.pairs.setdefault(function.name, Pairs())
                environment = server_environment(setup.settings, function)
                start = (function.target, function.source, probe)
                _pair(client, pairs, start, environment, logs, hello_first=(round_number + position) % 2 == 0)
    return samples


def measure_reference(setup: Installation, folder: Path, runs: int = RUNS) -> Pairs:
    """``runs`` cold starts of ``bench/hello_pydantic.py`` (hello-world validating its request with one
    pydantic model), each beside one of hello-world, in the environment of the ``stacks`` function."""
    pairs = Pairs()
    logs = folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    environment = server_environment(setup.settings, registry.function("stacks"))
    start = (
        PYDANTIC_REFERENCE,
        f"bench/{PYDANTIC_REFERENCE}.py",
        Probe("GET /?name=bench", "GET", "/?name=bench"),
    )
    with httpx.Client(timeout=30, trust_env=False) as client:
        for round_number in range(runs):
            _pair(client, pairs, start, environment, logs, hello_first=round_number % 2 == 0)
    return pairs


def _pair(
    client: httpx.Client,
    pairs: Pairs,
    start: tuple[str, str, Probe],
    environment: Mapping[str, str],
    logs: Path,
    *,
    hello_first: bool,
) -> None:
    """One cold start of ``start`` (target, source, probe) and one of hello-world, into ``pairs``."""
    starts = [(HELLO, "bench/hello.py", Probe("GET /", "GET", "/")), start]
    if not hello_first:
        starts.reverse()
    compile_bytecode()  # a source changed meanwhile would otherwise be compiled at each start
    for target, source, asked in starts:
        command = [str(BIN / "functions-framework"), "--target", target, "--source", source]
        took, used = _cold_start(client, command, environment, asked, logs / f"{target}.log")
        if target == HELLO:
            pairs.hello_wall.append(took)
            pairs.hello_cpu.append(used)
        else:
            pairs.wall.append(took)
            pairs.cpu.append(used)


def compile_bytecode() -> None:
    """Compile the sources as the image does (``python -m compileall``), so no start compiles them."""
    for folder in ("functions", "shared", "events", "bench"):
        if not compileall.compile_dir(ROOT / folder, quiet=1):
            raise RuntimeError(f"could not compile {folder}")


# --- Figures ------------------------------------------------------------------------------------


def _rounded(values: Sequence[float]) -> list[float]:
    return [round(value, 4) for value in values]


def figures(samples: Samples, *, key: str, database: str, runs: int) -> list[Figure]:
    """The headline figure ``key``: the function with the highest ratio, its median cold start against
    the median of the hello-world starts beside its own.

    Its details hold every function's ratio, medians and samples, and the same of the CPU time the
    servers had used by their first answer: a figure that noise on a shared machine moves less."""
    pairs = dict(sorted(samples.pairs.items()))
    worst = max(pairs, key=lambda name: pairs[name].ratio)
    every_hello = [value for pair in pairs.values() for value in pair.hello_wall]
    return [
        Figure(
            key=key,
            what=f"cold start of the slowest function ({worst}) against hello-world, {database}",
            value=median(pairs[worst].wall),
            unit="s",
            baseline=median(pairs[worst].hello_wall),
            target=TARGET,
            details={
                "database": database,
                "runs": runs,
                "server": "functions-framework CLI (gunicorn) with the image's ENV, THREADS = the "
                "function's concurrency, WORKERS = 1, bytecode compiled",
                "baseline": "the median of the hello-world starts interleaved with the function's own",
                "worst": worst,
                "ratios": {name: round(pair.ratio, 3) for name, pair in pairs.items()},
                "cpu_ratios": {name: round(pair.cpu_ratio, 3) for name, pair in pairs.items()},
                "medians_s": {name: round(median(pair.wall), 4) for name, pair in pairs.items()},
                "hello_median_s": round(median(every_hello), 4),
                "samples_s": {name: _rounded(pair.wall) for name, pair in pairs.items()},
                "hello_samples_s": {name: _rounded(pair.hello_wall) for name, pair in pairs.items()},
                "cpu_medians_s": {name: round(median(pair.cpu), 4) for name, pair in pairs.items()},
                "hello_cpu_median_s": round(
                    median([v for pair in pairs.values() for v in pair.hello_cpu]), 4
                ),
                "probes": dict(sorted(samples.probes.items())),
            },
        )
    ]


def per_function(samples: Samples, *, key: str, database: str) -> list[Figure]:
    """One figure per function, ``key.<function>``, against the hello-world starts beside its own."""
    return [
        Figure(
            key=f"{key}.{name}",
            what=f"cold start of {name} against hello-world, {database}: {samples.probes[name]}",
            value=median(pair.wall),
            unit="s",
            baseline=median(pair.hello_wall),
            target=TARGET,
            details={
                "samples_s": _rounded(pair.wall),
                "hello_samples_s": _rounded(pair.hello_wall),
                "cpu_ratio": round(pair.cpu_ratio, 3),
            },
        )
        for name, pair in sorted(samples.pairs.items())
    ]


def reference_figure(pairs: Pairs) -> Figure:
    """``cold_start_pydantic_reference``: hello-world with one pydantic model against hello-world."""
    return Figure(
        key="cold_start_pydantic_reference",
        what="cold start of hello-world validating its request with one pydantic model (bench/"
        f"{PYDANTIC_REFERENCE}.py) against hello-world: the least a function validating with pydantic takes",
        value=median(pairs.wall),
        unit="s",
        baseline=median(pairs.hello_wall),
        details={
            "status": "reported: a reference for the functions' figures, not one of the functions",
            "samples_s": _rounded(pairs.wall),
            "hello_samples_s": _rounded(pairs.hello_wall),
            "cpu_ratio": round(pairs.cpu_ratio, 3),
        },
    )


@contextmanager
def postgres_schema(base_url: str = POSTGRES_URL, schema: str = POSTGRES_SCHEMA) -> Iterator[str]:
    """A URL of the PostgreSQL database whose search path is ``schema``, made afresh and dropped after."""
    import psycopg

    with psycopg.connect(base_url, autocommit=True, connect_timeout=5) as connection:
        connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        connection.execute(f"CREATE SCHEMA {schema}")
        separator = "&" if "?" in base_url else "?"
        try:
            yield f"{base_url}{separator}options=-csearch_path%3D{schema}"
        finally:
            connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def run(names: Sequence[str] | None = None, runs: int = RUNS) -> list[Figure]:
    """Every function (or those named) on the embedded defaults, then on PostgreSQL."""
    functions = [registry.function(name) for name in names] if names else list(registry.FUNCTIONS)
    folder = workdir("cold_start")
    compile_bytecode()
    results: list[Figure] = []
    with installation(folder / "sqlite") as setup:
        samples = measure(setup, functions, folder / "sqlite", runs)
        reference = measure_reference(setup, folder / "sqlite", runs)
    embedded = "embedded defaults (SQLite)"
    results += figures(samples, key="cold_start_ratio", database=embedded, runs=runs)
    results[-1].details["pydantic_reference_ratio"] = round(reference.ratio, 3)
    results += per_function(samples, key="cold_start_ratio", database=embedded)
    results.append(reference_figure(reference))

    postgres_url = os.environ.get("WORKBENCH_TEST_POSTGRES_URL", POSTGRES_URL)
    with (
        postgres_schema(postgres_url) as database_url,
        installation(folder / "postgres", database_url) as setup,
    ):
        samples = measure(setup, functions, folder / "postgres", runs)
    # The production path: every cluster runs on PostgreSQL, so its cold start is held to the target.
    results += figures(samples, key="cold_start_ratio_postgres", database="PostgreSQL", runs=runs)
    results += per_function(samples, key="cold_start_ratio_postgres", database="PostgreSQL")
    return results


if __name__ == "__main__":
    # ``python -m bench.cold_start [FUNCTION ...]``: some functions only, without writing the results.
    from bench.report import table

    print(table(run(sys.argv[1:] or None)))
