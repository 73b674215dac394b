"""Requests per second of ``GET /api/stacks`` for a user with 50 stacks, against hello-world.

The ``stacks`` function is served as its Knative Service serves it: functions-framework's gunicorn
with one worker and THREADS = the function's concurrency (see shared/tools/manifests.py), on PostgreSQL.
``wrk`` drives it with fixed connections and duration after a warm-up; the baseline is
``bench/hello.py`` under the same server and the same wrk settings. Rounds alternate between the two,
so that noise on a shared machine hits both alike.
"""

from __future__ import annotations

import re
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.cold_start import Probe, first_success, postgres_schema, server_environment
from bench.report import Figure, median
from bench.support import BIN, free_port, initialised_platform, running, workdir
from shared.serving import registry

STACKS = 50
SPECS = ("cloudcmd", "girder")
"""The stacks alternate between a spec of one service and one that requires another (two services)."""
USER = "bench"
CONNECTIONS = 16
DURATION_SECONDS = 10
WARMUP_SECONDS = 2
ROUNDS = 3
TARGET = 0.5
POSTGRES_SCHEMA = "workbench_bench_api"


@dataclass(frozen=True)
class Load:
    """What one wrk run measured."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    """Socket errors and answers other than 2xx/3xx: a run with any is not a measurement."""


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _milliseconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS_MS[unit]


def parse_wrk(output: str) -> Load:
    """The figures of ``wrk --latency`` output."""
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in", output, re.MULTILINE)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    if not (rate and total and p50 and p99):
        raise ValueError(f"not the output of wrk --latency:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket_errors:
        errors += sum(int(count) for count in socket_errors.groups())
    return Load(
        requests_per_second=float(rate.group(1)),
        p50_ms=_milliseconds(p50.group(1)),
        p99_ms=_milliseconds(p99.group(1)),
        requests=int(total.group(1)),
        errors=errors,
    )


def wrk(url: str, script: Path, seconds: int) -> Load:
    """One wrk run: one thread (the second core is the server's), fixed connections, latencies."""
    executable = shutil.which("wrk")
    if executable is None:
        raise RuntimeError("wrk is not installed: apt-get install wrk (`make bench` does)")
    command = [executable, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60)
    return parse_wrk(result.stdout)


@dataclass(frozen=True)
class Installation:
    settings: Mapping[str, str]
    token: str
    services: int
    """How many services the user's stacks have in all."""


@contextmanager
def installation(folder: Path, database_url: str) -> Iterator[Installation]:
    """A database with the benchmark's user and their stacks, made by the service the API uses."""
    from shared.core.models import Account, Stack
    from shared.domain import accounts, stacks

    jwt_secret = secrets.token_urlsafe(48)
    settings = {
        "WORKBENCH_DATA_DIR": str(folder / "data"),
        "WORKBENCH_DATABASE_URL": database_url,
        "WORKBENCH_JWT_SECRET": jwt_secret,
        "WORKBENCH_ADMIN_PASSWORD": secrets.token_urlsafe(12),
    }
    platform = initialised_platform(settings)
    try:
        accounts.create(
            platform,
            Account(
                namespace=USER,
                name="Bench Mark",
                email="bench@example.org",
                password=secrets.token_urlsafe(12),
            ),
        )
        created = [
            stacks.create(platform, USER, Stack(key=SPECS[number % len(SPECS)], name=f"stack {number}"))
            for number in range(STACKS)
        ]
        # The platform's tokens carry the account's generation, as a login's do.
        token = platform.tokens.issue(USER, lifetime_seconds=24 * 3600)
        yield Installation(settings, token, sum(len(stack.services) for stack in created))
    finally:
        platform.close()


@contextmanager
def serving(
    target: str, source: str, environment: Mapping[str, str], probe: Probe, log: Path
) -> Iterator[str]:
    """The function under functions-framework's own server until the block ends; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(BIN / "functions-framework"), "--target", target, "--source", source, "--port", str(port)]
    with (
        running(command, environment=environment, log=log, stop_signal=signal.SIGKILL) as process,
        httpx.Client(timeout=30, trust_env=False) as client,
    ):
        first_success(client, probe, url, process=process)
        yield url


def run() -> list[Figure]:
    import os

    folder = workdir("api_throughput")
    stacks_function = registry.function("stacks")
    postgres_url = os.environ.get("WORKBENCH_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
    with (
        postgres_schema(postgres_url, POSTGRES_SCHEMA) as database_url,
        installation(folder, database_url) as setup,
    ):
        script = folder / "authorization.lua"
        script.write_text(f'wrk.headers["Authorization"] = "Bearer {setup.token}"\n')
        environment = server_environment(setup.settings, stacks_function)
        stacks_probe = Probe(
            "GET /api/stacks", "GET", "/api/stacks", {"Authorization": f"Bearer {setup.token}"}
        )
        _check_listing(environment, stacks_probe, folder, setup)
        loads: dict[str, list[Load]] = {"hello": [], "stacks": []}
        for round_number in range(ROUNDS):
            order = [
                ("hello", "bench/hello.py", Probe("GET /", "GET", "/"), "/"),
                ("stacks", stacks_function.source, stacks_probe, "/api/stacks"),
            ]
            if round_number % 2:
                order.reverse()
            for target, source, probe, path in order:
                with serving(target, source, environment, probe, folder / f"{target}.log") as url:
                    wrk(url + path, script, WARMUP_SECONDS)
                    load = wrk(url + path, script, DURATION_SECONDS)
                if load.errors:
                    raise RuntimeError(f"{target}: {load.errors} of {load.requests} requests failed")
                loads[target].append(load)
    return [_figure(loads, setup)]


def _check_listing(environment: Mapping[str, str], probe: Probe, folder: Path, setup: Installation) -> None:
    """The function lists the user's stacks, all of them, before it is measured."""
    with (
        serving("stacks", "functions/stacks.py", environment, probe, folder / "check.log") as url,
        httpx.Client(timeout=30, trust_env=False) as client,
    ):
        listed = probe.send(client, url).json()
    if len(listed) != STACKS or sum(len(stack["services"]) for stack in listed) != setup.services:
        raise RuntimeError(f"GET /api/stacks listed {len(listed)} stacks, not the {STACKS} created")


def _figure(loads: dict[str, list[Load]], setup: Installation) -> Figure:
    def summary(target: str) -> dict[str, Any]:
        runs = loads[target]
        return {
            "requests_per_second": round(median([load.requests_per_second for load in runs]), 1),
            "p50_ms": round(median([load.p50_ms for load in runs]), 3),
            "p99_ms": round(median([load.p99_ms for load in runs]), 3),
            "rounds_requests_per_second": [round(load.requests_per_second, 1) for load in runs],
        }

    stacks, hello = summary("stacks"), summary("hello")
    return Figure(
        key="api_throughput_ratio",
        what=f"GET /api/stacks ({STACKS} stacks) req/s against hello-world, gunicorn as deployed, PostgreSQL",
        value=stacks["requests_per_second"],
        unit="req/s",
        baseline=hello["requests_per_second"],
        higher_is_better=True,
        target=TARGET,
        details={
            "stacks": stacks,
            "hello": hello,
            "stack_count": STACKS,
            "service_count": setup.services,
            "database": "PostgreSQL",
            "server": f"functions-framework (gunicorn gthread), WORKERS=1, THREADS={registry.function('stacks').concurrency}",
            "load": f"wrk -t1 -c{CONNECTIONS} -d{DURATION_SECONDS}s --latency after a {WARMUP_SECONDS} s warm-up, {ROUNDS} rounds alternating",
        },
    )


if __name__ == "__main__":
    from bench.report import table

    print(table(run()))
    sys.exit(0)
