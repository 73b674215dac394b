"""A stack's start on the container runtime, against ``podman run`` of the same container.

The engine is the one the container runtime's tests use (tests/engines.py): Podman's service with runc
and the cgroupfs manager, its own storage and socket, and an image built here from Debian's static
busybox (nothing pulled). ``workbench run`` reaches it as ``WORKBENCH_RUNTIME=docker`` with
``DOCKER_HOST`` at its socket. One round: ``GET /api/start/{sid}`` until the service answers on its
Connect URL (the stack is stopped again after); then ``podman run`` of the same image, command and
port (and a folder mounted where the stack mounts its home) until it answers on its published port
(the container removed after)."""

from __future__ import annotations

import importlib
import itertools
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.report import Figure, median
from bench.rounds import alternate, ratio_spread, spread
from bench.support import (
    BIN,
    bearer,
    checked,
    clean_environment,
    free_port,
    running,
    start_stack,
    wait_for_http,
    workdir,
)

ROUNDS = 5
TARGET = 1.3
ADMIN_PASSWORD = "bench-admin-password"  # noqa: S105
USER = "benchstart"
PASSWORD = "bench-user-password"  # noqa: S105
POLL_SECONDS = 0.02
"""How often the stack is read (a request to the platform) and its Connect URL tried, both sides alike."""
START_SECONDS = 120.0


def app_spec() -> dict[str, Any]:
    """The catalog entry of the test image the container runtime's tests start: busybox httpd on port
    8888 serving the user's home, mounted at the image's app folder."""
    engines = engines_module()
    spec: dict[str, Any] = engines.catalog_app(
        "notebook", "Notebook", "busybox httpd serving its folder", serves=engines.APP_FOLDER
    )
    return spec


def engines_module() -> Any:
    """tests/engines.py, whose engines and image the container runtime's tests use: imported by name,
    since the tests' modules (its fixtures beside it) are not type-checked."""
    return importlib.import_module("tests.engines")


@dataclass(frozen=True)
class Engine:
    """The running engine: its Docker API address, and the podman command line on its storage."""

    url: str
    podman: list[str]
    environment: dict[str, str]


@contextmanager
def podman_engine(folder: Path) -> Iterator[Engine]:
    """Podman's service on a socket and storage of its own, with the test image, for the block."""
    engines = engines_module()
    missing = engines.missing_programs("podman")
    if missing:
        raise RuntimeError(
            f"the stack start benchmark needs {', '.join(missing)} (apt-get install podman runc busybox-static)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    engine = engines.Podman(folder)
    try:
        engine.start()
        engine.build_image()
        yield Engine(engine.url, engine.podman(), engine.environment())
    finally:
        engine.stop()


# -- the platform's side: GET /api/start/{sid} until the Connect URL answers -----------------------


@dataclass
class Stack:
    http: httpx.Client
    token: str
    sid: str


@contextmanager
def platform_on(engine: Engine, folder: Path) -> Iterator[Stack]:
    """``workbench run`` with its stacks on the engine, and a user's stack of the app, not started."""
    port = free_port()
    environment = clean_environment(
        {
            "WORKBENCH_RUNTIME": "docker",
            "DOCKER_HOST": engine.url,
            "WORKBENCH_HOST": "127.0.0.1",
            "WORKBENCH_PORT": str(port),
            "WORKBENCH_DATA_DIR": str(folder / "data"),
            "WORKBENCH_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "WORKBENCH_READY_TIMEOUT": "60",
        }
    )
    url = f"http://127.0.0.1:{port}"
    with running(
        [str(BIN / "workbench"), "run"], environment=environment, log=folder / "workbench.log"
    ) as process:
        wait_for_http(f"{url}/api/healthz", process, seconds=60, interval=0.1)
        with httpx.Client(base_url=url, timeout=30) as http:
            token, sid = start_stack(
                http,
                admin_password=ADMIN_PASSWORD,
                user=USER,
                email=f"{USER}@example.org",
                password=PASSWORD,
                spec=app_spec(),
                start=False,
            )
            stack = Stack(http, token, sid)
            try:
                yield stack
            finally:
                stop_stack(stack)


def connect_url(stack: Stack, deadline: float) -> str:
    """The Connect URL of the stack's service, once the stack shows one."""
    while True:
        found = checked(stack.http.get(f"/api/stacks/{stack.sid}", headers=bearer(stack.token)))
        for service in found.get("services") or []:
            for endpoint in service.get("endpoints") or []:
                if endpoint.get("url"):
                    return str(endpoint["url"])
        if found.get("status") == "error":
            raise RuntimeError(f"the stack failed to start: {found}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the stack showed no Connect URL within {START_SECONDS:g} s: {found}")
        time.sleep(POLL_SECONDS)


def platform_start(stack: Stack) -> float:
    """Seconds from ``GET /api/start/{sid}`` to the first answer on the service's Connect URL; the
    stack is stopped again after (not timed)."""
    began = time.monotonic()
    checked(stack.http.get(f"/api/start/{stack.sid}", headers=bearer(stack.token)))
    url = connect_url(stack, began + START_SECONDS)
    answered = wait_for_http(url, seconds=START_SECONDS, interval=POLL_SECONDS)
    stop_stack(stack)
    return answered - began


def stop_stack(stack: Stack) -> None:
    """Stops the stack and waits until it reads stopped."""
    headers = bearer(stack.token)
    status = checked(stack.http.get(f"/api/stacks/{stack.sid}", headers=headers))["status"]
    if status == "stopped":
        return
    stack.http.get(f"/api/stop/{stack.sid}", headers=headers)
    deadline = time.monotonic() + 60
    while status != "stopped":
        if time.monotonic() > deadline:
            raise TimeoutError(f"the stack {stack.sid} was {status}, not stopped, 60 s after its stop")
        time.sleep(0.1)
        status = checked(stack.http.get(f"/api/stacks/{stack.sid}", headers=headers))["status"]


# -- the baseline: podman run of the same container ------------------------------------------------


def podman_run_command(engine: Engine, spec: dict[str, Any], name: str, port: int, home: Path) -> list[str]:
    """``podman run`` of the spec's image, command and arguments, its first port published on the
    loopback ``port``, ``home`` mounted where the stack mounts the user's home."""
    image = f"{spec['image']['name']}:{spec['image']['tags'][0]}"
    published = f"127.0.0.1:{port}:{spec['ports'][0]['port']}"
    mount = f"{home}:{spec['volumeMounts'][0]['mountPath']}"
    return [
        *engine.podman,
        "run",
        "--detach",
        "--name",
        name,
        "--publish",
        published,
        "--volume",
        mount,
        image,
        *spec["command"],
        *spec["args"],
    ]


def podman_start(engine: Engine, folder: Path, number: int) -> float:
    """Seconds from ``podman run`` to the container's first answer on its port; removed after."""
    from shared.adapters.runtime.processes import publishable_port

    name = f"bench-start-{number}"
    home = folder / "homes" / name
    home.mkdir(parents=True)
    port = publishable_port()  # as the runtime publishes: outside the kernel's ephemeral range
    command = podman_run_command(engine, app_spec(), name, port, home)
    began = time.monotonic()
    started = subprocess.Popen(
        command, env=engine.environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        answered = wait_for_http(f"http://127.0.0.1:{port}/", seconds=START_SECONDS, interval=POLL_SECONDS)
    except TimeoutError:
        _, error = started.communicate(timeout=60)
        raise RuntimeError(f"podman run did not answer: {error.decode(errors='replace')[-1000:]}") from None
    finally:
        started.communicate(timeout=60)
        subprocess.run(
            [*engine.podman, "rm", "--force", "--time", "0", name],
            env=engine.environment,
            capture_output=True,
            check=False,
        )
    if started.returncode != 0:
        raise RuntimeError(f"podman run ended with {started.returncode}")
    return answered - began


# -- the figure ------------------------------------------------------------------------------------


def run(rounds: int = ROUNDS) -> list[Figure]:
    folder = workdir("stack_start")
    try:
        with podman_engine(folder / "engine") as engine, platform_on(engine, folder) as stack:
            numbers = itertools.count(1)
            # A round not counted: the first start of each side fills caches (the image's layers,
            # the network's set-up) that every later start finds.
            platform_start(stack)
            podman_start(engine, folder, next(numbers))
            done = alternate(
                rounds,
                lambda: platform_start(stack),
                lambda: podman_start(engine, folder, next(numbers)),
                after_round=_progress,
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return [figure(done.measured, done.baseline)]


def _progress(number: int, platform: float, podman: float) -> None:
    print(
        f"bench: stack_start round {number}: platform {platform:.2f} s, podman run {podman:.2f} s",
        file=sys.stderr,
        flush=True,
    )


def figure(platform: list[float], podman: list[float]) -> Figure:
    return Figure(
        key="stack_start_ratio",
        what="a stack on the container runtime (Podman): GET /api/start/{sid} → its service answers on its "
        "Connect URL, vs podman run of the same container → its first answer",
        value=median(platform),
        unit="s",
        baseline=median(podman),
        target=TARGET,
        details={
            "engine": "Podman's service (runc, cgroupfs, vfs storage) on a socket of its own; the image "
            "built here from busybox-static (tests/engines.py); `workbench run` with WORKBENCH_RUNTIME="
            "docker and DOCKER_HOST at the socket",
            "platform": "GET /api/start/{sid} of a stopped stack of the app (busybox httpd on 8888, the "
            "user's home mounted) → the stack shows the service's Connect URL (read every "
            f"{POLL_SECONDS * 1000:g} ms) → that URL answers; the stack is stopped between rounds",
            "baseline": "podman run --detach of the same image, command and port (published on a "
            "loopback port outside the ephemeral range, as the runtime does), a folder mounted at "
            "the same path → the port answers; the container removed between rounds",
            "rounds": len(platform),
            "order": "the platform then podman run, round after round (one warm-up round of each not "
            "counted); value and baseline are each side's median",
            "ratio_per_round": ratio_spread(platform, podman),
            "platform_s": spread(platform),
            "podman_run_s": spread(podman),
        },
    )
