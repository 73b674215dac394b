"""The console on Kubernetes: pods/exec through the official client, against the API stand-in's exec
websocket (channel protocol v4.channel.k8s.io)."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.adapters.runtime import StackPlan
from shared.adapters.runtime.kubernetes import KubernetesRuntime
from shared.core.errors import NotFound
from tests.kube_server import KubeServer
from tests.support import wait_until
from tests.test_runtime_kubernetes import LIMITS, NAMESPACE, SID, one_pod, service_plan

# One socket of an exec's websocket client is left for the garbage collector to close (which one is
# not yet found); the sessions themselves end, as the tests show.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(autouse=True)
def collected() -> Iterator[None]:
    """Closes what the test left to the garbage collector within the test, where the warning above is
    ignored, rather than in whichever test comes next."""
    yield
    gc.collect()


def started(kube: KubeServer, runtime: KubernetesRuntime) -> str:
    plan = StackPlan(owner="alice", sid=SID, services=(service_plan("shell"),), limits=LIMITS)
    runtime.start(plan)
    kube.ready_all(NAMESPACE)
    return str(one_pod(kube, f"{SID}-shell")["metadata"]["name"])


def read_until(session: object, text: bytes, seconds: float = 10) -> bytes:
    screen = b""
    deadline = time.monotonic() + seconds
    while text not in screen:
        assert time.monotonic() < deadline, screen
        screen += session.read()  # type: ignore[attr-defined]
    return screen


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_a_console_is_a_shell_in_the_pods_app_container_on_a_terminal(
    kube: KubeServer,
    runtime: KubernetesRuntime,
    tmp_path: Path,
) -> None:
    kube.exec_home = tmp_path
    (tmp_path / "sent.txt").write_text("hello from Clowder\n")
    pod = started(kube, runtime)
    session = runtime.console("alice", f"{SID}-shell", 100, 30)
    try:
        session.write(b"echo hel''lo; cat sent.txt; stty size\r")
        screen = read_until(session, b"30 100")
        assert b"hello\r\n" in screen and b"hello from Clowder" in screen
        session.resize(132, 43)
        session.write(b"stty size; echo $$ > shell.pid; sleep 4242 & echo $! > job.pid\r")
        read_until(session, b"43 132")
        wait_until((tmp_path / "job.pid").exists, "the shell to write job.pid", 5, every=0.1)
        time.sleep(0.2)
    finally:
        session.close()
    (console,) = [item for item in kube.execs if item.tty]
    assert (console.namespace, console.pod, console.container) == (NAMESPACE, pod, "shell")
    assert console.command[:2] == ["/bin/sh", "-c"]
    # Closing ran the end of the session (not on a terminal), which ended the shell and its job.
    (ending,) = [item for item in kube.execs if not item.tty]
    assert ending.pod == pod and "WORKBENCH_CONSOLE" in ending.command[2]
    for name in ("shell.pid", "job.pid"):
        pid = int((tmp_path / name).read_text())
        assert not alive(pid), f"{name} {pid} outlived the console"


def test_no_running_pod_no_console(kube: KubeServer, runtime: KubernetesRuntime) -> None:
    plan = StackPlan(owner="alice", sid=SID, services=(service_plan("shell"),), limits=LIMITS)
    runtime.start(plan)  # its pod never becomes ready
    with pytest.raises(NotFound):
        runtime.console("alice", f"{SID}-shell", 80, 24)
    assert kube.execs == []
