"""Tests of the local stack runtime with real processes: order, readiness, supervision, stopping."""

from __future__ import annotations

import http.client
import json
import os
import shlex
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from shared.adapters.runtime import (
    LOG_DEFAULT_LINES,
    LOG_MAX_LINES,
    ServicePlan,
    StackPlan,
    StatusReport,
    static_site,
)
from shared.adapters.runtime.local import LocalRuntime
from shared.adapters.runtime.processes import LOG_MAX_BYTES, process_start_time
from shared.core.errors import InvalidInput, Unavailable
from shared.core.models import Endpoint, Port, ReadyProbe, ServiceSpec
from shared.core.settings import INHERITED_VARIABLES, RuntimeSettings

INHERITED = {name: os.environ[name] for name in INHERITED_VARIABLES if name in os.environ}
SITE_KEY = b"the site key of the runtime tests"

PROJECT_ROOT = Path(__file__).resolve().parents[1]
WAIT_SECONDS = 10.0

# Every test command first records its pid and environment in the home (its working directory).
PRELUDE = """\
import json, os, signal, socket, subprocess, sys, time
os.makedirs("pids", exist_ok=True)
with open(os.path.join("pids", f"{os.environ['WORKBENCH_CONFIG_SERVICE_NAME']}.{os.getpid()}"), "w") as record:
    json.dump(dict(os.environ), record)
"""


def command(body: str) -> str:
    return shlex.join([sys.executable, "-c", PRELUDE + textwrap.dedent(body)])


LISTEN = command("""
    time.sleep(float(os.environ.get("WORKBENCH_CONFIG_LISTEN_DELAY", "0")))
    server = socket.socket()
    server.bind(("127.0.0.1", int(os.environ["PORT"])))
    server.listen()
    print("listening on", os.environ["PORT"], flush=True)
    time.sleep(60)
""")
IDLE = command("time.sleep(60)")
CRASH_AT_ONCE = command("""
    print("database refused to start", flush=True)
    sys.exit(3)
""")
CRASH_AFTER_READY = command("""
    time.sleep(0.9)
    print("giving up", flush=True)
    sys.exit(5)
""")
CRASH_ONCE = command("""
    if os.path.exists("crashed-once"):
        time.sleep(60)
    open("crashed-once", "w").close()
    time.sleep(0.9)
    sys.exit(4)
""")
WITH_CHILD = command("""
    child = subprocess.Popen(["sleep", "60"])
    with open("child.pid", "w") as handle:
        handle.write(str(child.pid))
    time.sleep(60)
""")
SLOW_TO_STOP = command("""
    signal.signal(signal.SIGTERM, lambda *_: (time.sleep(0.5), sys.exit(0)))
    server = socket.socket()
    server.bind(("127.0.0.1", int(os.environ["PORT"])))
    server.listen()
    time.sleep(60)
""")
IGNORE_SIGTERM = command("""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)
""")


class Reports:
    """Collects status reports and lets a test wait for one."""

    def __init__(self) -> None:
        self.items: list[StatusReport] = []
        self._condition = threading.Condition()

    def __call__(self, report: StatusReport) -> None:
        with self._condition:
            self.items.append(report)
            self._condition.notify_all()

    def of(self, ssid: str) -> list[StatusReport]:
        with self._condition:
            return [report for report in self.items if report.ssid == ssid]

    def statuses(self, ssid: str) -> list[str]:
        return [report.status for report in self.of(ssid)]

    def wait(self, ssid: str, status: str, *, count: int = 1, timeout: float = WAIT_SECONDS) -> StatusReport:
        def matching() -> list[StatusReport]:
            return [report for report in self.items if report.ssid == ssid and report.status == status]

        with self._condition:
            if not self._condition.wait_for(lambda: len(matching()) >= count, timeout=timeout):
                seen = [(report.ssid, report.status, report.message) for report in self.items]
                raise AssertionError(f"no {count}x {status!r} for {ssid} within {timeout}s; saw {seen}")
            return matching()[count - 1]


class Harness:
    """Builds runtimes on one data dir and removes every plan they started when the test ends."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.reports = Reports()
        self.runtimes: list[LocalRuntime] = []
        self.plans: list[StackPlan] = []

    def runtime(
        self, commands: dict[str, str] | None = None, *, ready_timeout: int = 10, stop_grace: float = 10.0
    ) -> LocalRuntime:
        settings = RuntimeSettings(
            local_commands=commands or {}, ready_timeout=ready_timeout, inherited_environment=INHERITED
        )
        runtime = LocalRuntime(
            settings, data_dir=self.data_dir, report=self.reports, site_key=SITE_KEY, stop_grace=stop_grace
        )
        self.runtimes.append(runtime)
        return runtime

    def start(self, runtime: LocalRuntime, plan: StackPlan) -> None:
        self.plans.append(plan)
        runtime.start(plan)

    def home(self, owner: str) -> Path:
        return self.data_dir / "home" / owner

    def record(self, owner: str, ssid: str) -> Path:
        return self.data_dir / "run" / owner / f"{ssid}.json"

    def cleanup(self) -> None:
        for runtime in self.runtimes:
            for plan in self.plans:
                runtime.remove(plan)
            runtime.close()


def service(
    sid: str,
    key: str,
    *,
    ports: tuple[int, ...] = (),
    context_path: str = "",
    requires: tuple[str, ...] = (),
    uses: tuple[str, ...] = (),
    volumes: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    timeout: int = 0,
    system_spec: bool = True,
) -> ServicePlan:
    """A service of the admin's catalog (which may run the admin's local commands) unless said otherwise."""
    spec = ServiceSpec(
        key=key,
        ports=[Port(port=port, protocol="http", contextPath=context_path) for port in ports] or None,
        readinessProbe=ReadyProbe(timeout=timeout),
    )
    ssid = f"{sid}-{key}"
    return ServicePlan(
        ssid=ssid,
        key=key,
        spec=spec,
        env={"SERVICE_NAME": ssid, **(env or {})},
        volumes=volumes or {},
        requires=requires,
        uses=uses,
        system_spec=system_spec,
    )


def stack(owner: str, sid: str, *services: ServicePlan, secure: bool = False) -> StackPlan:
    return StackPlan(owner=owner, sid=sid, services=services, secure=secure)


def running(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def launched(home: Path, ssid: str) -> list[tuple[int, dict[str, str]]]:
    """Pid and environment of every process the service ran, oldest first."""
    files = sorted((home / "pids").glob(f"{ssid}.*"), key=lambda path: path.stat().st_mtime_ns)
    return [(int(path.suffix[1:]), json.loads(path.read_text())) for path in files]


def fetch(port: int, method: str, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path, body=b"data" if method == "PUT" else None)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# --- Starting ------------------------------------------------------------------------------


def test_start_returns_at_once_and_serves_the_first_volume_folder_read_only(
    harness: Harness, tmp_path: Path
) -> None:
    runtime = harness.runtime()
    (tmp_path / "secret.txt").write_text("secret")
    volume = "AppData/s1abcd-web-x2k9p"
    plan = stack(
        "alice",
        "s1abcd",
        service("s1abcd", "web", ports=(80,), volumes={volume: "/usr/share/nginx/html"}),
        service("s1abcd", "files", ports=(8080,)),
    )

    harness.start(runtime, plan)
    assert "ready" not in harness.reports.statuses("s1abcd-web")

    web = harness.reports.wait("s1abcd-web", "ready")
    assert web.endpoints is not None
    node_port = web.endpoints[0].nodePort
    assert node_port not in (0, 80)
    assert web.endpoints == [
        Endpoint(
            host="127.0.0.1",
            port=80,
            nodePort=node_port,
            protocol="http",
            path="",
            url=f"http://127.0.0.1:{node_port}/",
        )
    ]
    folder = harness.home("alice") / volume
    assert folder.is_dir()
    (folder / "hello.txt").write_text("hello")
    (folder / "escape").symlink_to(tmp_path / "secret.txt")

    assert fetch(node_port, "GET", "/hello.txt") == (200, b"hello")
    assert fetch(node_port, "HEAD", "/hello.txt")[0] == 200
    status, listing = fetch(node_port, "GET", "/")
    assert status == 200
    assert b"hello.txt" in listing
    assert fetch(node_port, "GET", "/escape")[0] == 404
    assert fetch(node_port, "GET", "/../../../secret.txt")[0] == 404
    assert fetch(node_port, "GET", "/%2e%2e/%2e%2e/%2e%2e/secret.txt")[0] == 404
    assert fetch(node_port, "PUT", "/new.txt")[0] == 501
    assert not (folder / "new.txt").exists()

    # Without volumes, the static site serves the home itself.
    files = harness.reports.wait("s1abcd-files", "ready")
    assert files.endpoints is not None
    status, listing = fetch(files.endpoints[0].nodePort, "GET", "/")
    assert status == 200
    assert b"AppData/" in listing


def test_volume_paths_that_leave_the_home_are_refused(harness: Harness) -> None:
    runtime = harness.runtime({"web": IDLE, "app": IDLE})
    plan = stack(
        "bob",
        "s2",
        service("s2", "web", volumes={"../outside": "/data"}),
        service("s2", "app", volumes={"/etc/workbench": "/data"}),
    )

    harness.start(runtime, plan)

    web = harness.reports.wait("s2-web", "error")
    app = harness.reports.wait("s2-app", "error")
    assert web.message is not None and "'../outside'" in web.message
    assert app.message is not None and "'/etc/workbench'" in app.message
    assert not (harness.data_dir / "home" / "outside").exists()
    assert runtime.logs("bob", "s2-web", None) == ""
    assert runtime.logs("bob", "s2-app", None) == ""


def test_services_start_in_order_with_their_ports_home_and_dependency_addresses(
    harness: Harness,
) -> None:
    runtime = harness.runtime({"my-db": LISTEN, "cache": IDLE, "app": LISTEN})
    plan = stack(
        "carol",
        "s3",
        service("s3", "my-db", ports=(5432,), env={"LISTEN_DELAY": "0.5"}),
        service("s3", "cache", ports=(6379,), timeout=60),
        service(
            "s3",
            "app",
            ports=(8888,),
            context_path="/lab",
            requires=("my-db",),
            uses=("my-db", "cache"),
            env={"GREETING": "hello"},
        ),
    )

    harness.start(runtime, plan)

    app = harness.reports.wait("s3-app", "ready")
    database = harness.reports.wait("s3-my-db", "ready")
    # The required database was ready before the app was launched; the optional cache, which
    # never opens its port, only had to be launched.
    order = [(report.ssid, report.status) for report in harness.reports.items]
    assert order.index(("s3-my-db", "ready")) < order.index(("s3-app", "starting"))
    assert harness.reports.statuses("s3-cache") == ["starting"]

    assert app.endpoints is not None and database.endpoints is not None
    app_port = app.endpoints[0].nodePort
    assert app.endpoints[0].path == "/lab"
    assert app.endpoints[0].url == f"http://127.0.0.1:{app_port}/lab"
    cache_record = json.loads(harness.record("carol", "s3-cache").read_text())
    home = harness.home("carol")
    [(pid, environment)] = launched(home, "s3-app")  # found in the home: it ran there
    assert environment["PORT"] == str(app_port)
    assert environment["WORKBENCH_HOME"] == str(home)
    assert environment["WORKBENCH_CONFIG_GREETING"] == "hello"  # config: a value under an inert name
    assert "GREETING" not in environment
    assert environment["MY_DB_PORT_5432_TCP_ADDR"] == "127.0.0.1"
    assert environment["MY_DB_PORT_5432_TCP_PORT"] == str(database.endpoints[0].nodePort)
    assert environment["CACHE_PORT_6379_TCP_ADDR"] == "127.0.0.1"
    assert environment["CACHE_PORT_6379_TCP_PORT"] == str(cache_record["ports"][0]["nodePort"])
    assert os.getpgid(pid) == pid  # its own process group, so a stop reaches its children too
    assert runtime.logs("carol", "s3-app", 1) == f"listening on {app_port}\n"


def test_a_failed_required_service_keeps_its_dependants_from_starting(harness: Harness) -> None:
    runtime = harness.runtime({"db": CRASH_AT_ONCE, "app": LISTEN})
    plan = stack(
        "dave",
        "s4",
        service("s4", "db", ports=(5432,)),
        service("s4", "app", ports=(80,), requires=("db",), uses=("db",)),
    )

    harness.start(runtime, plan)

    database = harness.reports.wait("s4-db", "error")
    assert database.message is not None
    assert "exited with code 3" in database.message
    assert "database refused to start" in database.message
    app = harness.reports.wait("s4-app", "error")
    assert app.message is not None and "'db'" in app.message
    assert harness.reports.statuses("s4-app") == ["error"]
    assert launched(harness.home("dave"), "s4-app") == []
    assert not harness.record("dave", "s4-db").exists()


def test_a_service_that_is_not_ready_in_time_times_out_and_is_stopped(harness: Harness) -> None:
    runtime = harness.runtime({"slow": IDLE, "slower": IDLE}, ready_timeout=2)
    plan = stack(
        "erin",
        "s5",
        service("s5", "slow", ports=(8000,), timeout=1),
        service("s5", "slower", ports=(8001,)),
    )

    harness.start(runtime, plan)

    slow = harness.reports.wait("s5-slow", "timeout")
    assert slow.message == "Service timed out after 1 seconds"
    slower = harness.reports.wait("s5-slower", "timeout")
    assert slower.message == "Service timed out after 2 seconds"
    for ssid in ("s5-slow", "s5-slower"):
        [(pid, _)] = launched(harness.home("erin"), ssid)
        assert not running(pid)
        assert not harness.record("erin", ssid).exists()


# --- Supervision ---------------------------------------------------------------------------


def test_a_ready_service_that_crashes_is_restarted(harness: Harness) -> None:
    runtime = harness.runtime({"worker": CRASH_ONCE})
    plan = stack("fay", "s6", service("s6", "worker"))

    harness.start(runtime, plan)

    harness.reports.wait("s6-worker", "ready", count=2)
    assert harness.reports.statuses("s6-worker") == ["starting", "ready", "starting", "ready"]
    restart = harness.reports.of("s6-worker")[2]
    assert restart.message is not None and "exited with code 4" in restart.message
    [(first, _), (second, _)] = launched(harness.home("fay"), "s6-worker")
    assert not running(first)
    assert running(second)


def test_three_crashes_within_a_minute_give_an_error_and_no_more_restarts(harness: Harness) -> None:
    runtime = harness.runtime({"worker": CRASH_AFTER_READY})
    plan = stack("gus", "s7", service("s7", "worker"))

    harness.start(runtime, plan)

    error = harness.reports.wait("s7-worker", "error", timeout=15)
    assert harness.reports.statuses("s7-worker") == ["starting", "ready"] * 3 + ["error"]
    assert error.message is not None
    assert "3 times within a minute" in error.message
    assert "exited with code 5" in error.message
    assert "giving up" in error.message
    assert not harness.record("gus", "s7-worker").exists()
    assert not any(running(pid) for pid, _ in launched(harness.home("gus"), "s7-worker"))


# --- Stopping ------------------------------------------------------------------------------


def test_stop_returns_at_once_and_stops_dependants_first_with_their_process_groups(
    harness: Harness,
) -> None:
    runtime = harness.runtime({"db": WITH_CHILD, "app": SLOW_TO_STOP})
    plan = stack(
        "hal",
        "s8",
        service("s8", "db"),
        service("s8", "app", ports=(80,), requires=("db",)),
        service("s8", "broken", volumes={"/absolute": "/data"}),
    )
    harness.start(runtime, plan)
    harness.reports.wait("s8-app", "ready")
    harness.reports.wait("s8-broken", "error")
    home = harness.home("hal")
    [(database_pid, _)] = launched(home, "s8-db")
    [(app_pid, _)] = launched(home, "s8-app")
    child_pid = int((home / "child.pid").read_text())
    assert running(child_pid)

    began = time.monotonic()
    runtime.stop(plan)
    assert time.monotonic() - began < 0.3
    assert "stopped" not in harness.reports.statuses("s8-app")  # it takes 0.5 s to stop

    harness.reports.wait("s8-db", "stopped")
    stopped = [report.ssid for report in harness.reports.items if report.status == "stopped"]
    assert stopped == ["s8-broken", "s8-app", "s8-db"]
    assert not running(app_pid)
    assert not running(database_pid)
    assert not running(child_pid)
    assert not harness.record("hal", "s8-app").exists()
    assert not harness.record("hal", "s8-db").exists()


def test_remove_kills_a_process_that_ignores_sigterm_and_returns_once_it_is_gone(
    harness: Harness,
) -> None:
    runtime = harness.runtime({"stubborn": IGNORE_SIGTERM}, stop_grace=0.5)
    plan = stack("ida", "s9", service("s9", "stubborn"))
    harness.start(runtime, plan)
    harness.reports.wait("s9-stubborn", "ready")
    [(pid, _)] = launched(harness.home("ida"), "s9-stubborn")

    began = time.monotonic()
    runtime.remove(plan)

    assert time.monotonic() - began >= 0.5
    assert not running(pid)
    assert not harness.record("ida", "s9-stubborn").exists()
    assert "stopped" not in harness.reports.statuses("s9-stubborn")


PLATFORM_SCRIPT = """\
import os, sys, threading
from pathlib import Path
from shared.core.models import Port, ServiceSpec
from shared.adapters.runtime import ServicePlan, StackPlan
from shared.adapters.runtime.local import LocalRuntime
from shared.core.settings import INHERITED_VARIABLES, RuntimeSettings

data_dir, web_command = sys.argv[1], sys.argv[2]
ready = threading.Event()
runtime = LocalRuntime(
    RuntimeSettings(
        local_commands={"web": web_command},
        inherited_environment={name: os.environ[name] for name in INHERITED_VARIABLES if name in os.environ},
    ),
    data_dir=Path(data_dir),
    report=lambda report: report.status == "ready" and ready.set(),
    site_key=b"the site key of the runtime tests",
)
spec = ServiceSpec(key="web", ports=[Port(port=80, protocol="http")])
web = ServicePlan(
    ssid="s10-web", key="web", spec=spec, env={"SERVICE_NAME": "s10-web"}, volumes={}, system_spec=True
)
runtime.start(StackPlan(owner="jan", sid="s10", services=(web,)))
if not ready.wait(10):
    sys.exit("web did not become ready")
runtime.close()
"""


def run_a_platform_that_closes(harness: Harness) -> int:
    """Start jan's stack in another platform process that closes and exits; the service's pid."""
    finished = subprocess.run(
        [sys.executable, "-c", PLATFORM_SCRIPT, str(harness.data_dir), LISTEN],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert finished.returncode == 0, finished.stderr
    pid = int(json.loads(harness.record("jan", "s10-web").read_text())["pid"])
    assert running(pid)  # close() left the service running
    return pid


JAN_PLAN = stack("jan", "s10", service("s10", "web", ports=(80,)))


def test_a_service_left_by_another_platform_process_is_stopped_through_its_record(
    harness: Harness,
) -> None:
    orphan = run_a_platform_that_closes(harness)
    runtime = harness.runtime({"web": LISTEN})
    harness.plans.append(JAN_PLAN)

    runtime.stop(JAN_PLAN)

    harness.reports.wait("s10-web", "stopped")
    assert not running(orphan)
    assert not harness.record("jan", "s10-web").exists()


def test_start_first_stops_what_a_previous_platform_left_running(harness: Harness) -> None:
    orphan = run_a_platform_that_closes(harness)
    runtime = harness.runtime({"web": LISTEN})

    harness.start(runtime, JAN_PLAN)

    harness.reports.wait("s10-web", "ready")
    assert not running(orphan)
    record = json.loads(harness.record("jan", "s10-web").read_text())
    assert record["pid"] != orphan
    assert running(record["pid"])


def test_a_recorded_pid_is_signalled_only_while_its_start_time_matches(harness: Harness) -> None:
    runtime = harness.runtime()
    plan = stack("kim", "s11", service("s11", "reused"), service("s11", "genuine"))
    reused = subprocess.Popen(["sleep", "30"], start_new_session=True)
    genuine = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        for process, ssid, shift in ((reused, "s11-reused", 1), (genuine, "s11-genuine", 0)):
            start_time = process_start_time(process.pid)
            assert start_time is not None
            record = {"pid": process.pid, "start_time": start_time + shift, "ports": [], "sid": "s11"}
            harness.record("kim", ssid).parent.mkdir(parents=True, exist_ok=True)
            harness.record("kim", ssid).write_text(json.dumps({**record, "key": ssid[4:]}))

        runtime.remove(plan)

        assert reused.poll() is None
        assert genuine.wait(timeout=5) is not None
        assert not harness.record("kim", "s11-reused").exists()
    finally:
        for process in (reused, genuine):
            process.kill()
            process.wait()


# --- What reaches a process on the host -------------------------------------------------------


def test_an_admin_command_gets_the_allowed_names_and_config_only_as_prefixed_values(
    harness: Harness,
) -> None:
    runtime = harness.runtime({"db": LISTEN, "app": IDLE})
    config = {
        "LD_PRELOAD": "/tmp/evil.so",
        "PYTHONSTARTUP": "evil.py",
        "lower_case": "kept",
        "NOT-A-NAME": "left out",
        "A=B": "left out",
        "NDSLABS_STACK": "s30",
    }
    plan = stack(
        "quinn",
        "s30",
        service("s30", "db", ports=(5432,)),
        service("s30", "app", uses=("db",), env=config),
    )

    harness.start(runtime, plan)

    harness.reports.wait("s30-app", "ready")
    [(_, environment)] = launched(harness.home("quinn"), "s30-app")
    config_names = {name for name in environment if name.startswith("WORKBENCH_CONFIG_")}
    assert config_names == {
        "WORKBENCH_CONFIG_SERVICE_NAME",
        "WORKBENCH_CONFIG_LD_PRELOAD",
        "WORKBENCH_CONFIG_PYTHONSTARTUP",
        "WORKBENCH_CONFIG_lower_case",
    }
    assert environment["WORKBENCH_CONFIG_LD_PRELOAD"] == "/tmp/evil.so"
    assert environment["NDSLABS_STACK"] == "s30"
    platform_names = {
        "HOME",
        "WORKBENCH_HOME",
        "WORKBENCH_DATA",
        "PYTHONSAFEPATH",
        "PYTHONNOUSERSITE",
        "NDSLABS_STACK",
    }
    addresses = {"DB_PORT_5432_TCP_ADDR", "DB_PORT_5432_TCP_PORT"}
    # Python's own additions to os.environ aside (none are set here), nothing else.
    assert set(environment) - config_names <= set(INHERITED) | platform_names | addresses
    assert addresses <= set(environment)
    assert environment["PYTHONSAFEPATH"] == environment["PYTHONNOUSERSITE"] == "1"


def test_a_config_value_with_a_nul_character_fails_the_service(harness: Harness) -> None:
    runtime = harness.runtime({"app": IDLE})
    plan = stack("quinn", "s31", service("s31", "app", env={"GREETING": "a\0b"}))

    harness.start(runtime, plan)

    failed = harness.reports.wait("s31-app", "error")
    assert failed.message is not None and "NUL" in failed.message
    assert launched(harness.home("quinn"), "s31-app") == []


def test_a_user_catalog_service_never_runs_the_admins_command(harness: Harness) -> None:
    runtime = harness.runtime({"web": IDLE})
    plan = stack("quinn", "s32", service("s32", "web", ports=(80,), system_spec=False))

    harness.start(runtime, plan)

    web = harness.reports.wait("s32-web", "ready")
    assert web.endpoints is not None
    assert launched(harness.home("quinn"), "s32-web") == []
    status, listing = fetch(web.endpoints[0].nodePort, "GET", "/")
    assert status == 200 and b"Directory listing" in listing
    record = json.loads(harness.record("quinn", "s32-web").read_text())
    pid = record["pid"]
    command_line = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert command_line[1] == b"-I"  # isolated Python, run by file path
    assert Path(command_line[2].decode()).is_file()
    assert Path(f"/proc/{pid}/cwd").readlink() == Path("/")
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert {item.split(b"=", 1)[0].decode() for item in environ if item} <= set(INHERITED)


def test_a_secure_static_site_admits_only_holders_of_a_grant_for_its_service(harness: Harness) -> None:
    runtime = harness.runtime()
    plan = stack("rae", "s33", service("s33", "web", ports=(80,)), secure=True)
    (harness.home("rae")).mkdir(parents=True)
    (harness.home("rae") / "hello.txt").write_text("hello")

    harness.start(runtime, plan)

    web = harness.reports.wait("s33-web", "ready")
    assert web.endpoints is not None
    url = web.endpoints[0].url
    assert fetch(web.endpoints[0].nodePort, "GET", "/hello.txt")[0] == 403
    own_key = static_site.service_key(SITE_KEY, "rae", "s33-web")
    refused = [
        static_site.granted_url(url, static_site.service_key(SITE_KEY, "rae", "s34-web")),
        static_site.granted_url(url, static_site.service_key(SITE_KEY, "sam", "s33-web")),
        static_site.granted_url(url, static_site.service_key(b"another platform", "rae", "s33-web")),
        static_site.granted_url(url, own_key, now=time.time() - static_site.GRANT_SECONDS - 1),
    ]
    with httpx.Client() as visitor:
        for granted in refused:
            assert visitor.get(granted).status_code == 403, granted
        admitted = visitor.get(static_site.granted_url(url + "hello.txt", own_key), follow_redirects=True)
        assert (admitted.status_code, admitted.text) == (200, "hello")
        assert static_site.ACCESS_PARAMETER not in str(admitted.url)
        assert visitor.get(url + "hello.txt").text == "hello"  # the cookie remembers the visitor
    with httpx.Client() as stranger:
        name = static_site.cookie_name("s33-web")
        grant = static_site.issue(own_key, "grant", 60)
        other = static_site.issue(static_site.service_key(SITE_KEY, "rae", "s34-web"), "cookie", 60)
        for value in (grant, other, "1.2", static_site.issue(own_key, "cookie", -1)):
            assert stranger.get(url, headers={"Cookie": f"{name}={value}"}).status_code == 403, value


# --- Logs, accounts, names, threads --------------------------------------------------------


def test_logs_returns_the_last_lines_of_a_big_log_within_a_bounded_read(harness: Harness) -> None:
    runtime = harness.runtime()
    log = harness.data_dir / "logs" / "lea" / "s12-web.log"
    log.parent.mkdir(parents=True)
    text = "".join(f"line {number}\n" for number in range(200_000))
    log.write_text(text)

    def last(count: int) -> str:
        return "".join(f"line {number}\n" for number in range(200_000 - count, 200_000))

    assert runtime.logs("lea", "s12-web", 3) == last(3)
    # Without a number: the documented default, not the whole log; with a larger one: the maximum.
    assert runtime.logs("lea", "s12-web", None) == last(LOG_DEFAULT_LINES)
    assert runtime.logs("lea", "s12-web", 10**6) == last(LOG_MAX_LINES)
    assert runtime.logs("lea", "s12-web", 0) == ""
    assert runtime.logs("lea", "s12-other", 5) == ""
    with log.open("a") as handle:
        handle.write("unfinished")
    assert runtime.logs("lea", "s12-web", 2) == "line 199999\nunfinished"


def test_logs_of_long_lines_stop_at_the_byte_limit_on_a_whole_line(harness: Harness) -> None:
    runtime = harness.runtime()
    log = harness.data_dir / "logs" / "lea" / "s12-web.log"
    log.parent.mkdir(parents=True)
    line_bytes = 1024 * 1024 - 1  # with its newline, a mebibyte
    with log.open("w") as handle:
        for number in range(12):
            handle.write(str(number % 10) * line_bytes + "\n")

    text = runtime.logs("lea", "s12-web", 100)

    assert len(text.encode()) <= LOG_MAX_BYTES
    lines = text.splitlines()
    assert lines == [str(number % 10) * line_bytes for number in range(8, 12)][-len(lines) :]
    assert len(lines) == LOG_MAX_BYTES // (line_bytes + 1) - 1  # the cut line is left out whole
    # A single line longer than the limit: its end.
    log.write_text("x" * (LOG_MAX_BYTES + 10))
    assert runtime.logs("lea", "s12-web", 1) == "x" * LOG_MAX_BYTES


def test_remove_account_stops_the_owners_services_and_removes_their_folders(harness: Harness) -> None:
    runtime = harness.runtime()
    plan = stack("max", "s13", service("s13", "web", ports=(80,), volumes={"AppData/s13-web": "/data"}))
    other_home = harness.home("ned")
    other_home.mkdir(parents=True)
    (other_home / "keep.txt").write_text("keep")
    harness.start(runtime, plan)
    harness.reports.wait("s13-web", "ready")
    pid = int(json.loads(harness.record("max", "s13-web").read_text())["pid"])

    runtime.remove_account("max")

    assert not running(pid)
    assert not harness.home("max").exists()
    assert not (harness.data_dir / "logs" / "max").exists()
    assert not (harness.data_dir / "run" / "max").exists()
    assert (other_home / "keep.txt").read_text() == "keep"


def test_names_that_are_not_plain_file_names_are_refused(harness: Harness) -> None:
    runtime = harness.runtime()

    with pytest.raises(InvalidInput):
        runtime.start(stack("../mallory", "s14", service("s14", "web")))
    with pytest.raises(InvalidInput):
        runtime.stop(stack("oz", "s14", ServicePlan("../s14-web", "web", ServiceSpec(), {}, {})))
    with pytest.raises(InvalidInput):
        runtime.logs("oz", "../../etc/passwd", 1)
    with pytest.raises(InvalidInput):
        runtime.remove_account("..")
    assert not harness.data_dir.exists()

    runtime.close()
    with pytest.raises(Unavailable):
        runtime.start(stack("oz", "s14", service("s14", "web")))


def test_concurrent_starts_and_stops_settle_on_the_last_call(harness: Harness) -> None:
    runtime = harness.runtime({"worker": IDLE})
    plans = [stack("pat", f"s2{number}", service(f"s2{number}", "worker")) for number in range(4)]
    barrier = threading.Barrier(len(plans))

    def start(plan: StackPlan) -> None:
        barrier.wait()
        harness.start(runtime, plan)

    threads = [threading.Thread(target=start, args=(plan,)) for plan in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for plan in plans:
        harness.reports.wait(plan.services[0].ssid, "ready")

    churned = plans[0]
    calls = [runtime.start, runtime.stop] * 3
    barrier = threading.Barrier(len(calls))

    def call(action: Callable[[StackPlan], None]) -> None:
        barrier.wait()
        action(churned)

    threads = [threading.Thread(target=call, args=(action,)) for action in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    runtime.stop(churned)

    # Operations on a stack run in call order, so the fourth "stopped" comes from the last call.
    harness.reports.wait("s20-worker", "stopped", count=4)
    assert harness.reports.statuses("s20-worker")[-1] == "stopped"
    assert not harness.record("pat", "s20-worker").exists()
    home = harness.home("pat")
    assert not any(running(pid) for pid, _ in launched(home, "s20-worker"))
    for plan in plans[1:]:
        ssid = plan.services[0].ssid
        assert running(int(json.loads(harness.record("pat", ssid).read_text())["pid"]))


# --- The data folder -----------------------------------------------------------------------


def test_a_static_site_serves_the_data_folder_where_the_app_sees_it(harness: Harness, tmp_path: Path) -> None:
    runtime = harness.runtime()
    volume = "AppData/s40-web-x2k9p"
    web = replace(
        service("s40", "web", ports=(80,), volumes={volume: "/home/jovyan/work"}),
        data_mount="/home/jovyan/work/clowder",
    )
    bare = replace(service("s40", "files", ports=(8080,)), data_mount="/data/clowder")
    harness.start(runtime, stack("uma", "s40", web, bare))
    web_port = harness.reports.wait("s40-web", "ready").endpoints[0].nodePort  # type: ignore[index]
    bare_port = harness.reports.wait("s40-files", "ready").endpoints[0].nodePort  # type: ignore[index]

    data = harness.home("uma") / "Clowder"
    (data / "Soil samples").mkdir(parents=True)
    (data / "Soil samples" / "ph.csv").write_bytes(b"site,ph\na,6.5\n")
    assert fetch(web_port, "GET", "/clowder/Soil%20samples/ph.csv") == (200, b"site,ph\na,6.5\n")
    assert fetch(bare_port, "GET", "/clowder/Soil%20samples/ph.csv") == (200, b"site,ph\na,6.5\n")
    status, listing = fetch(web_port, "GET", "/")
    assert (status, b"clowder/" in listing) == (200, True)
    status, listing = fetch(web_port, "GET", "/clowder/")
    assert (status, b"Soil samples/" in listing) == (200, True)
    assert fetch(web_port, "GET", "/clowder")[0] == 301

    # Neither a link inside the data folder nor the data folder swapped for a link leads out of it.
    (tmp_path / "secret.txt").write_text("secret")
    (data / "escape").symlink_to(tmp_path / "secret.txt")
    assert fetch(web_port, "GET", "/clowder/escape")[0] == 404
    assert fetch(web_port, "GET", "/clowder/../../../secret.txt")[0] == 404
    data.rename(harness.home("uma") / "Moved")
    data.symlink_to(tmp_path)
    assert fetch(web_port, "GET", "/clowder/secret.txt")[0] == 404
    assert fetch(bare_port, "GET", "/clowder/secret.txt")[0] == 404


def test_an_admin_command_finds_the_data_folder_linked_into_its_folder(harness: Harness) -> None:
    runtime = harness.runtime({"app": IDLE})
    volume = "AppData/s41-app-x2k9p"
    app = replace(
        service("s41", "app", volumes={volume: "/home/jovyan/work"}), data_mount="/home/jovyan/work/clowder"
    )
    harness.start(runtime, stack("vic", "s41", app))
    harness.reports.wait("s41-app", "ready")

    home = harness.home("vic")
    [(_, environment)] = launched(home, "s41-app")
    assert environment["WORKBENCH_DATA"] == str(home / "Clowder")
    link = home / volume / "clowder"
    assert link.is_symlink() and link.resolve() == (home / "Clowder").resolve()
    (home / "Clowder" / "a.txt").write_text("placed")
    assert (link / "a.txt").read_text() == "placed"

    # Made again on the next start where it went missing.
    link.unlink()
    runtime.stop(stack("vic", "s41", app))
    harness.reports.wait("s41-app", "stopped")
    harness.start(runtime, stack("vic", "s41", app))
    harness.reports.wait("s41-app", "ready", count=2)
    assert (link / "a.txt").read_text() == "placed"


def test_a_data_folder_that_is_not_a_folder_fails_the_start(harness: Harness, tmp_path: Path) -> None:
    runtime = harness.runtime()
    home = harness.home("wes")
    home.mkdir(parents=True)
    (home / "Clowder").symlink_to(tmp_path)
    harness.start(runtime, stack("wes", "s42", service("s42", "web", ports=(80,))))
    failed = harness.reports.wait("s42-web", "error")
    assert failed.message is not None and "'Clowder'" in failed.message
