"""What several benchmarks need: free ports, processes started and awaited, peak memory, timing."""

from __future__ import annotations

import os
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from shared.bootstrap import Platform

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench"

STATIC_SPEC = {
    "key": "notebook",
    "label": "Notebook",
    "description": "Serves its data folder over HTTP",
    "image": {"name": "example/notebook", "tags": ["latest"]},
    "access": "external",
    "display": "stack",
    "ports": [{"port": 8888, "protocol": "http"}],
    "volumeMounts": [{"mountPath": "/home/user/work"}],
    "resourceLimits": {"cpuMax": 500, "cpuDefault": 100, "memMax": 1000, "memDefault": 50},
}
"""A user spec whose stack serves its data folder under the local runtime: the stack whose volume
receives the benchmarks' (and the end-to-end tests') files."""

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
    """This process's environment without any WORKBENCH_ setting, plus ``extra``; stacks run as local
    processes unless ``extra`` says otherwise, whether or not a container engine answers here."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("WORKBENCH_")}
    environment["WORKBENCH_RUNTIME"] = "local"
    environment.update(extra)
    return environment


def image_environment(dockerfile: Path = ROOT / "Dockerfile") -> dict[str, str]:
    """The variables the image's ``ENV`` instructions set (``KEY=VALUE`` form), so that a process run
    here has the environment it has in the image; the caller overrides paths and ports."""
    environment: dict[str, str] = {}
    instruction = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction += line.removesuffix("\\") + " "
        if line.endswith("\\"):
            continue
        keyword, _, arguments = instruction.strip().partition(" ")
        instruction = ""
        if keyword.upper() == "ENV":
            for assignment in shlex.split(arguments):
                name, equals, value = assignment.partition("=")
                if not equals:
                    raise ValueError(f"{dockerfile.name}: ENV {arguments!r} is not in the KEY=VALUE form")
                environment[name] = value
    return environment


@contextmanager
def running(
    command: Sequence[str],
    *,
    environment: Mapping[str, str],
    log: Path,
    cwd: Path = ROOT,
    stop_signal: signal.Signals = signal.SIGTERM,
) -> Iterator[subprocess.Popen[bytes]]:
    """A process (in its own process group) for the length of the block; its whole group is ended after
    with ``stop_signal`` (SIGKILL where nothing is to be saved and a graceful stop would only take time,
    e.g. gunicorn's, which waits a couple of seconds for its idle workers)."""
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
        # Processes it started in sessions of their own (a platform's stacks and shovels) are outside
        # its group: those it has not ended by the time it is gone are ended here.
        below = [(pid, started_at(pid)) for pid in process_tree(process.pid)[1:]]
        stop(process, stop_signal=stop_signal)
        for pid, started in below:
            if started is not None and started_at(pid) == started:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def stop(
    process: subprocess.Popen[bytes], grace: float = 10, *, stop_signal: signal.Signals = signal.SIGTERM
) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, stop_signal)
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


def initialised_platform(settings: Mapping[str, str]) -> Platform:
    """A data dir (and database) prepared by ``workbench init`` with ``settings``, as a deployment does,
    and the platform on it, for a benchmark to fill in; the caller closes it."""
    from shared.bootstrap import Platform
    from shared.core.settings import Settings

    subprocess.run(
        [str(BIN / "workbench"), "init"],
        env=clean_environment(settings),
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return Platform(Settings.from_env(clean_environment(settings)))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def checked(response: httpx.Response) -> Any:
    """The JSON of a successful answer (None when empty); an error naming the call and its answer."""
    if response.status_code >= 300:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code}: {response.text[:300]}"
        )
    return response.json() if response.content else None


def start_stack(
    http: httpx.Client,
    *,
    admin_password: str,
    user: str,
    email: str,
    password: str,
    spec: Mapping[str, Any] = STATIC_SPEC,
    start: bool = True,
) -> tuple[str, str]:
    """Over a platform's API: the admin adds ``user``, who adds ``spec`` to their catalog, makes a
    stack of it and (with ``start``) starts it. Returns the user's token and the stack's id; waiting
    for it to run is the caller's."""

    def token(username: str, secret: str) -> str:
        return str(
            checked(http.post("/api/authenticate", json={"username": username, "password": secret}))["token"]
        )

    account = {"namespace": user, "name": user, "email": email, "password": password}
    checked(http.post("/api/accounts", json=account, headers=bearer(token("admin", admin_password))))
    user_token = token(user, password)
    checked(http.post("/api/services", json=dict(spec), headers=bearer(user_token)))
    sid = str(checked(http.post("/api/stacks", json={"key": spec["key"]}, headers=bearer(user_token)))["id"])
    if start:
        checked(http.get(f"/api/start/{sid}", headers=bearer(user_token)))
    return user_token, sid


def all_in_place(files: Iterable[tuple[Path, int]]) -> bool:
    """Whether every file (path, size) is there with its size."""
    for path, size in files:
        try:
            if os.stat(path).st_size != size:
                return False
        except FileNotFoundError:
            return False
    return True


def rss_mb(pid: int) -> float:
    """The resident set of one process now, in MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0.0


def started_at(pid: int) -> int | None:
    """When the process started (clock ticks since boot), which tells it from a later one of the same
    id; None when it is gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it, as they are now."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def cpu_seconds(pid: int, *, tree: bool = True) -> float:
    """The CPU time a process (with ``tree``, and every process below it) has used so far, in seconds,
    from the scheduler's nanosecond count: unlike wall time, it does not grow while the process waits
    for a CPU that other work on the machine holds."""
    total = 0
    for member in process_tree(pid) if tree else [pid]:
        try:
            # Each thread's own count: the process's schedstat is its main thread's alone.
            for task in Path(f"/proc/{member}/task").iterdir():
                total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    return total / 1e9


def own_cpu_seconds(pid: int) -> float:
    """The CPU time one process has used so far, in seconds: all its threads, those that ended too (which
    ``cpu_seconds`` misses), but not its children; 0 when it is gone. Counted in clock ticks."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuUse:
    """The CPU seconds each named process (``own_cpu_seconds``) and the children this process waited
    for while the block ran (as ``children``, e.g. a curl run with ``subprocess.run``) used in the block."""

    def __init__(self, processes: Mapping[str, int]) -> None:
        self.processes = dict(processes)
        self.seconds: dict[str, float] = {}
        self._before: dict[str, float] = {}
        self._children = 0.0

    @staticmethod
    def _waited_for() -> float:
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        return used.ru_utime + used.ru_stime

    def __enter__(self) -> CpuUse:
        self._before = {name: own_cpu_seconds(pid) for name, pid in self.processes.items()}
        self._children = self._waited_for()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.seconds = {
            name: own_cpu_seconds(pid) - self._before[name] for name, pid in self.processes.items()
        }
        self.seconds["children"] = self._waited_for() - self._children


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
        return process_tree(self.pid) if self.tree else [self.pid]

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


@contextmanager
def rabbitmq_vhost(name: str, *, base_url: str = "amqp://guest:guest@127.0.0.1:5672/") -> Iterator[str]:
    """A RabbitMQ virtual host of its own for the length of the block (made and deleted with
    ``rabbitmqctl``, which needs to run where the broker does); yields its AMQP URL. Deleting the vhost
    deletes every queue and exchange a run left in it, so benchmarks never disturb each other."""
    from urllib.parse import quote, urlsplit

    user = urlsplit(base_url).username or "guest"

    def ctl(*arguments: str) -> None:
        try:
            subprocess.run(["rabbitmqctl", "-q", *arguments], check=True, capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as error:
            problem = (
                error.stderr.decode(errors="replace").strip()
                if isinstance(error, subprocess.CalledProcessError)
                else error
            )
            raise RuntimeError(f"rabbitmqctl {' '.join(arguments)} failed: {problem}") from error

    ctl("add_vhost", name)
    try:
        ctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
        yield base_url.rstrip("/") + "/" + quote(name, safe="")
    finally:
        with suppress(RuntimeError):
            ctl("delete_vhost", name)
