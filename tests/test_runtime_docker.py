"""The container runtime on real engines: Podman's Docker-compatible service and Docker Engine, each
with an image built here."""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.runtime.docker_engine import (
    INSTANCE_LABEL,
    OWNER_LABEL,
    SERVICE_LABEL,
    STACK_LABEL,
    DockerRuntime,
)
from shared.adapters.runtime.processes import accepts_connections
from shared.bootstrap import Platform
from shared.core.errors import Unavailable
from shared.core.models import AccountResourceLimits, ServiceSpec
from shared.core.settings import DockerSettings, RuntimeSettings, Settings
from tests import engines
from tests.conftest import Api
from tests.engines import (
    APP_FOLDER,
    IMAGE,
    TAG,
    Engine,
    Reports,
    catalog_app,
    fetch,
    ours,
    plan_of,
    runtime_on,
    spec,
)

# The fixture: each test that takes it runs on each engine.
engine = engines.engine


def test_a_stack_runs_in_containers_sees_the_data_folder_and_is_found_again(
    engine: Engine, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    home = data_dir / "home" / "alice"
    (home / "AppData" / "s1-site").mkdir(parents=True)
    (home / "AppData" / "s1-site" / "index.html").write_text("the app's own page\n")
    (home / "AppData" / "s1-store").mkdir(parents=True)
    (home / "AppData" / "s1-store" / "index.html").write_text("from the store\n")
    sample = os.urandom(300_000)
    (home / "Clowder" / "Soil samples").mkdir(parents=True)
    (home / "Clowder" / "Soil samples" / "sample.bin").write_bytes(sample)
    serve = "echo started $NDSLABS_SERVICE; exec httpd -f -v -p {port} -h /srv"
    store = spec("store", serve.format(port=8080), port=8080, probe="tcp")
    site = spec("site", serve.format(port=80), port=80)
    plan = plan_of("s1", (store, {}, ()), (site, {"GREETING": "hello there; $HOME"}, ("store",)))
    reports = Reports()
    runtime = runtime_on(engine, data_dir, reports)
    client = engine.client()
    # Someone else's container, with the same owner label but of no platform: never touched.
    stranger = client.containers.create(
        f"{IMAGE}:{TAG}",
        ["sleep", "600"],
        labels={OWNER_LABEL: "alice", STACK_LABEL: "s1"},
        network_mode="none",
    )
    try:
        runtime.start(plan)
        ready = reports.wait("s1-site", "ready", "error", "timeout")
        assert ready.status == "ready", reports.of("s1-site")
        assert reports.wait("s1-store", "ready").status == "ready"
        assert ready.endpoints is not None
        url = ready.endpoints[0].url
        assert url.startswith("http://127.0.0.1:") and ready.endpoints[0].port == 80
        assert ready.message == f"Serving on {url}"

        # Connect: the app's own folder and the data folder nested in it.
        assert fetch(url) == b"the app's own page\n"
        assert fetch(url + "clowder/Soil%20samples/sample.bin") == sample

        (container,) = ours(engine, **{INSTANCE_LABEL: runtime.instance, SERVICE_LABEL: "s1-site"})
        # Inside the container: the placed file, byte for byte, where the plan mounts the data folder.
        done = container.exec_run(["sha256sum", "/srv/clowder/Soil samples/sample.bin"])
        assert done.exit_code == 0
        assert done.output.decode().split()[0] == hashlib.sha256(sample).hexdigest()
        # The stack's services reach each other by their keys on the stack's network.
        done = container.exec_run(["wget", "-q", "-O", "-", "http://store:8080/"])
        assert done.output == b"from the store\n", done.output
        # Config goes in as it is; the dependency's address as Docker links named it.
        done = container.exec_run(["sh", "-c", 'echo "$GREETING|$STORE_PORT_8080_TCP_ADDR"'])
        assert done.output == b"hello there; $HOME|store\n"
        host = container.attrs["HostConfig"]
        assert host["NanoCpus"] == 500_000_000 and host["Memory"] == 64 * 1024 * 1024
        assert container.labels[OWNER_LABEL] == "alice" and container.labels[STACK_LABEL] == "s1"

        assert "started s1-site" in runtime.logs("alice", "s1-site", 20)
        assert runtime.logs("alice", "s1-nothing", 20) == ""

        # A new runtime (the platform restarted) finds the running containers by their labels.
        runtime.close()
        again = Reports()
        runtime = runtime_on(engine, data_dir, again)
        runtime.start(plan)
        found = again.wait("s1-site", "ready", "error", "timeout")
        assert found.status == "ready" and found.endpoints == ready.endpoints
        assert any("Found its running container" in (message or "") for _, message in again.of("s1-site"))
        (same,) = ours(engine, **{INSTANCE_LABEL: runtime.instance, SERVICE_LABEL: "s1-site"})
        assert same.id == container.id

        runtime.stop(plan)
        assert again.wait("s1-site", "stopped").message == "Stopped"
        again.wait("s1-store", "stopped")
        assert ours(engine, **{INSTANCE_LABEL: runtime.instance}) == []
        assert client.networks.list(filters={"label": [f"{INSTANCE_LABEL}={runtime.instance}"]}) == []
        runtime.remove_account("alice")
        assert not home.exists()
        stranger.reload()
        assert stranger.status == "created"
    finally:
        runtime.remove(plan)
        runtime.close()
        stranger.remove(force=True)
        client.close()


def test_cpu_and_memory_are_the_specs_within_the_accounts_limits(engine: Engine, tmp_path: Path) -> None:
    """What the engine was told, read back from each container's HostConfig: the spec's maximum as the
    limit and its default as the reservation, the account's defaults for a spec without limits, the
    account's maximum (and the machine's CPUs) over everything."""
    mebibyte = 1024 * 1024
    serve = "httpd -f -p 80 -h /srv"

    def limited(key: str, **limits: int) -> ServiceSpec:
        return spec(key, serve, port=80, probe="tcp", limits=limits)

    account = AccountResourceLimits(cpuMax=1500, cpuDefault=250, memMax=200, memDefault=48)
    plan = plan_of(
        "s6",
        (limited("own", cpuMax=500, cpuDefault=100, memMax=64, memDefault=32), {}, ()),
        (limited("bare"), {}, ()),  # the account's defaults, as a LimitRange gives them
        (limited("maxonly", cpuMax=300, memMax=40), {}, ()),  # reserved as much as limited
        # A default above the account's default limit: the reservation is held to the limit.
        (limited("defaultonly", cpuDefault=400, memDefault=80), {}, ()),
        (limited("greedy", cpuMax=4000, cpuDefault=3000, memMax=16000, memDefault=12000), {}, ()),
        limits=account,
    )
    unlimited = plan_of("s7", (limited("huge", cpuMax=64000), {}, ()), limits=AccountResourceLimits())
    reports = Reports()
    runtime = runtime_on(engine, tmp_path / "data", reports)
    client = engine.client()
    try:
        runtime.start(plan)
        runtime.start(unlimited)
        for ssid in ("s6-own", "s6-bare", "s6-maxonly", "s6-defaultonly", "s6-greedy", "s7-huge"):
            assert reports.wait(ssid, "ready", "error", "timeout").status == "ready", reports.of(ssid)

        def host(ssid: str) -> tuple[int, int, int, int]:
            (container,) = ours(engine, **{INSTANCE_LABEL: runtime.instance, SERVICE_LABEL: ssid})
            config = container.attrs["HostConfig"]
            return (
                config["NanoCpus"],
                config["CpuShares"],
                config["Memory"],
                config["MemoryReservation"],
            )

        assert host("s6-own") == (500_000_000, 102, 64 * mebibyte, 32 * mebibyte)
        assert host("s6-bare") == (250_000_000, 256, 48 * mebibyte, 48 * mebibyte)
        assert host("s6-maxonly") == (300_000_000, 307, 40 * mebibyte, 40 * mebibyte)
        assert host("s6-defaultonly") == (250_000_000, 256, 48 * mebibyte, 48 * mebibyte)
        assert host("s6-greedy") == (1_500_000_000, 1536, 200 * mebibyte, 200 * mebibyte)
        # No account limits at all: a CPU limit above the machine's is the machine's; memory is free.
        cpus = int(client.info()["NCPU"])
        assert host("s7-huge") == (cpus * 1_000_000_000, cpus * 1024, 0, 0)
    finally:
        runtime.remove(plan)
        runtime.remove(unlimited)
        runtime.close()
        client.close()


def test_ports_are_published_outside_the_ephemeral_range(engine: Engine, tmp_path: Path) -> None:
    """Podman publishes by a NAT rule without holding the host port: one the kernel could also hand
    to another program's connection would carry that connection into the container."""
    from shared.adapters.runtime.processes import PUBLISHED_PORTS_FROM, accepts_connections

    first, last = (int(word) for word in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    plan = plan_of(
        "s8",
        (spec("one", "httpd -f -p 80 -h /srv", port=80, probe="tcp"), {}, ()),
        (spec("two", "httpd -f -p 81 -h /srv", port=81, probe="tcp"), {}, ()),
    )
    reports = Reports()
    runtime = runtime_on(engine, tmp_path / "data", reports)
    try:
        runtime.start(plan)
        for ssid in ("s8-one", "s8-two"):
            ready = reports.wait(ssid, "ready", "error", "timeout")
            assert ready.status == "ready", reports.of(ssid)
            (endpoint,) = ready.endpoints
            assert endpoint.nodePort >= PUBLISHED_PORTS_FROM, endpoint
            assert not first <= endpoint.nodePort <= last, endpoint
            assert accepts_connections(endpoint.nodePort)
    finally:
        runtime.remove(plan)
        runtime.close()


def test_another_stacks_services_have_no_names_and_their_addresses_are_the_engines_to_isolate(
    engine: Engine, tmp_path: Path
) -> None:
    """As the threat model says: a stack's network names only its own services; whether another
    stack's container answers at its address is the engine's isolation, which neither test engine
    (Podman without ``isolate``, Docker Engine with ``--iptables=false``) gives."""
    home = tmp_path / "data" / "home" / "alice" / "AppData"
    for sid, key in (("s8", "alpha"), ("s9", "beta")):
        (home / f"{sid}-{key}").mkdir(parents=True)
        (home / f"{sid}-{key}" / "index.html").write_text(f"{key}\n")
    serve = "httpd -f -p 80 -h /srv"
    first = plan_of("s8", (spec("alpha", serve, port=80), {}, ()))
    second = plan_of("s9", (spec("beta", serve, port=80), {}, ()))
    reports = Reports()
    runtime = runtime_on(engine, tmp_path / "data", reports)
    try:
        runtime.start(first)
        runtime.start(second)
        assert reports.wait("s8-alpha", "ready", "error").status == "ready", reports.of("s8-alpha")
        assert reports.wait("s9-beta", "ready", "error").status == "ready", reports.of("s9-beta")
        (alpha,) = ours(engine, **{INSTANCE_LABEL: runtime.instance, SERVICE_LABEL: "s8-alpha"})
        (beta,) = ours(engine, **{INSTANCE_LABEL: runtime.instance, SERVICE_LABEL: "s9-beta"})

        def from_alpha(url: str) -> tuple[int, bytes]:
            # busybox-static's wget crashes with its own -T: the timeout applet bounds it.
            done = alpha.exec_run(["timeout", "10", "wget", "-q", "-O", "-", url])
            return done.exit_code, done.output

        assert from_alpha("http://alpha:80/") == (0, b"alpha\n")  # its own stack's service, by its key
        code, _ = from_alpha("http://beta:80/")
        assert code != 0  # another stack's service has no name on this network
        (address,) = [network["IPAddress"] for network in beta.attrs["NetworkSettings"]["Networks"].values()]
        assert from_alpha(f"http://{address}:80/") == (0, b"beta\n")
    finally:
        runtime.remove(first)
        runtime.remove(second)
        runtime.close()


def test_a_missing_image_is_pulled_with_its_progress_in_the_status_messages(
    engine: Engine, tmp_path: Path
) -> None:
    pulled = spec(
        "fresh", "trap 'exit 0' TERM; httpd -f -p 80 -h /srv & wait", image=engine.pullable, port=80
    )
    plan = plan_of("s4", (pulled, {}, ()))
    (tmp_path / "data" / "home" / "alice" / "AppData" / "s4-fresh").mkdir(parents=True)
    (tmp_path / "data" / "home" / "alice" / "AppData" / "s4-fresh" / "index.html").write_text("pulled\n")
    reports = Reports()
    runtime = runtime_on(engine, tmp_path / "data", reports)
    try:
        runtime.start(plan)
        ready = reports.wait("s4-fresh", "ready", "error", "timeout", seconds=90)
        assert ready.status == "ready", reports.of("s4-fresh")
        messages = [message for _, message in reports.of("s4-fresh")]
        assert messages[0] == f"Pulling image {engine.pullable}:{TAG}"
        # Its layers as they arrive: the root filesystem, and on Podman the image's configuration too.
        layers = {"podman": 2, "docker": 1}[engine.kind]
        progress = [message for message in messages if "layers downloaded" in (message or "")]
        assert (
            progress[-1] == f"Pulling image {engine.pullable}:{TAG}: {layers} of {layers} layers downloaded"
        )
        # The layers the engine names (never Docker Engine's "Pulling from" line), none untold as done.
        counts = [
            tuple(map(int, re.findall(r": (\d+) of (\d+) layers", message or "")[0])) for message in progress
        ]
        assert all(done <= total <= layers for done, total in counts), progress
        assert [done for done, _ in counts] == sorted(done for done, _ in counts), progress
        assert f"Pulled image {engine.pullable}:{TAG}" in messages
        assert ready.endpoints is not None and fetch(ready.endpoints[0].url) == b"pulled\n"
    finally:
        runtime.remove(plan)
        runtime.close()
        engine.remove_image(f"{engine.pullable}:{TAG}")


def test_a_ready_container_that_ends_fails_its_service_with_the_exit_code_and_last_line(
    engine: Engine, tmp_path: Path
) -> None:
    brief = spec("brief", "httpd -p 80 -h /srv; sleep 2; echo giving up; exit 3", port=80, probe="tcp")
    plan = plan_of("s5", (brief, {}, ()))
    reports = Reports()
    runtime = runtime_on(engine, tmp_path / "data", reports)
    try:
        runtime.start(plan)
        assert reports.wait("s5-brief", "ready", "error").status == "ready"
        failed = reports.wait("s5-brief", "error", seconds=30)
        assert failed.message == "Container exited with code 3; last log line: giving up"
    finally:
        runtime.remove(plan)
        runtime.close()


def test_an_image_that_cannot_be_pulled_fails_the_start_with_the_engines_reason(
    engine: Engine, tmp_path: Path
) -> None:
    missing = spec("ghost", "sleep 600", port=80, image="registry.invalid/workbench/none")
    plan = plan_of("s2", (missing, {}, ()))
    reports = Reports()
    runtime = runtime_on(engine, tmp_path / "data", reports)
    try:
        runtime.start(plan)
        failed = reports.wait("s2-ghost", "error", "ready", seconds=90)
        assert failed.status == "error"
        assert failed.message is not None
        assert failed.message.startswith(f"Could not pull image registry.invalid/workbench/none:{TAG}: ")
        assert len(failed.message) > len(f"Could not pull image registry.invalid/workbench/none:{TAG}: ")
        assert ("starting", f"Pulling image registry.invalid/workbench/none:{TAG}") in reports.of("s2-ghost")
    finally:
        runtime.remove(plan)
        runtime.close()


def test_an_engine_that_does_not_answer_is_unavailable(tmp_path: Path) -> None:
    settings = RuntimeSettings(kind="docker", docker=DockerSettings(host=f"unix://{tmp_path}/none.sock"))
    runtime = DockerRuntime(settings, data_dir=tmp_path, report=lambda report: None)
    plan = plan_of("s3", (spec("site", "true", port=80), {}, ()))
    with pytest.raises(Unavailable, match="container engine"):
        runtime.start(plan)
    with pytest.raises(Unavailable, match="container engine"):
        runtime.logs("alice", "s3-site", 10)
    runtime.close()


def test_the_runtime_is_a_container_engine_when_one_answers_else_local_processes(
    tmp_path: Path, engine: Engine
) -> None:
    def kind(environ: dict[str, str]) -> str:
        return Platform(Settings.from_env({"WORKBENCH_DATA_DIR": str(tmp_path), **environ})).runtime_kind

    assert kind({"DOCKER_HOST": f"unix://{tmp_path}/none.sock"}) == "local"
    assert kind({"DOCKER_HOST": engine.url}) == "docker"
    assert kind({"DOCKER_HOST": engine.url, "WORKBENCH_RUNTIME": "local"}) == "local"
    assert kind({"WORKBENCH_RUNTIME": "docker"}) == "docker"


@pytest.mark.e2e
def test_workbench_run_finds_the_engine_and_a_sent_dataset_is_inside_the_app(
    engine: Engine, tmp_path: Path
) -> None:
    """`workbench run` with nothing set but DOCKER_HOST: a user's stack runs in a container, and a
    dataset Clowder sends is read inside it and through its Connect URL."""
    import httpx

    from events.producer import send
    from tests.clowder_pairing import API_KEY, SECRET
    from tests.clowder_server import ClowderServer
    from tests.conftest import ADMIN_PASSWORD
    from tests.test_e2e import Platform as Workbench
    from tests.test_e2e import bearer, wait_for_status
    from tests.test_transfer_flow import signed_request, wait_for_transfer

    content = {"readme.txt": b"hello from Clowder\n", "raw/data.bin": os.urandom(200_000)}
    app = catalog_app("notebook", "Notebook", "busybox httpd serving its folder", serves=APP_FOLDER)
    with ClowderServer(tmp_path / "clowder", 2, API_KEY) as clowder:
        dataset_id = clowder.add_dataset("Field Study")
        clowder.add_files(dataset_id, content)
        settings = {
            "WORKBENCH_RUNTIME": "auto",  # the default, as on a machine where nothing is set
            "DOCKER_HOST": engine.url,
            "WORKBENCH_CLOWDER_URL": clowder.url,
            "WORKBENCH_CLOWDER_API_KEY": API_KEY,
            "WORKBENCH_EVENT_SECRET": SECRET,
        }
        workbench = Workbench(tmp_path / "data", settings=settings)
        workbench.start()
        http = httpx.Client(base_url=workbench.url, timeout=10)
        try:
            assert f"Stacks run as containers on the engine at {engine.url}" in workbench.log.read_text()
            admin = http.post("/api/authenticate", json={"username": "admin", "password": ADMIN_PASSWORD})
            account = {"namespace": "carol", "name": "Carol", "email": "carol@example.org"}
            created = http.post(
                "/api/accounts",
                headers=bearer(admin.json()["token"]),
                json={**account, "password": "carol-pw1"},
            )
            assert created.status_code == 200, created.text
            carol = http.post(
                "/api/authenticate", json={"username": "carol", "password": "carol-pw1"}
            ).json()["token"]
            assert http.post("/api/services", json=app, headers=bearer(carol)).status_code == 200
            sid = http.post("/api/stacks", json={"key": "notebook"}, headers=bearer(carol)).json()["id"]
            assert http.get(f"/api/start/{sid}", headers=bearer(carol)).status_code == 202
            stack = wait_for_status(http, sid, "started", carol, seconds=60)
            url = stack["services"][0]["endpoints"][0]["url"]

            assert send(signed_request(clowder, dataset_id), f"{workbench.url}/events") == 202
            transfer = wait_for_transfer(http, carol, "completed")
            assert transfer["target"] == "Clowder/Field Study"

            # Through the Connect URL, and from inside the container, at the data mount.
            assert fetch(url + "clowder/Field%20Study/readme.txt") == content["readme.txt"]
            (container,) = ours(engine, **{OWNER_LABEL: "carol", STACK_LABEL: sid})
            done = container.exec_run(["sha256sum", "/home/user/work/clowder/Field Study/raw/data.bin"])
            assert done.output.decode().split()[0] == hashlib.sha256(content["raw/data.bin"]).hexdigest()

            # The platform restarts; the app's container runs on and is found again, not replaced.
            workbench.stop()
            workbench.start()
            carol = http.post(
                "/api/authenticate", json={"username": "carol", "password": "carol-pw1"}
            ).json()["token"]
            again = wait_for_status(http, sid, "started", carol, seconds=60)
            assert again["services"][0]["endpoints"][0]["url"] == url
            (same,) = ours(engine, **{OWNER_LABEL: "carol", STACK_LABEL: sid})
            assert same.id == container.id

            assert http.get(f"/api/stop/{sid}", headers=bearer(carol)).status_code == 202
            wait_for_status(http, sid, "stopped", carol)
            assert ours(engine, **{OWNER_LABEL: "carol", STACK_LABEL: sid}) == []
        finally:
            http.close()
            workbench.stop()


@pytest.fixture
def environment(engine: Engine) -> dict[str, str]:
    """The platform of a test that takes it runs its stacks on the engine."""
    return {"WORKBENCH_RUNTIME": "docker", "DOCKER_HOST": engine.url}


def test_an_internal_service_has_its_address_but_no_connect_url_in_the_api_or_the_cli(
    engine: Engine,
    api: Api,
    platform: Platform,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from shared.tools import client_cli

    alice = api.make_user("alice")
    cache = {
        **catalog_app("cache", "Cache", "busybox httpd for the stack's own services", serves=APP_FOLDER),
        "access": "internal",
    }
    assert api.call("POST", "/api/services", alice, json=cache).status_code == 200
    sid = api.call("POST", "/api/stacks", alice, json={"key": "cache"}).get_json()["id"]
    assert api.call("GET", f"/api/start/{sid}", alice).status_code == 202
    try:
        stack = until_status(api, alice, sid, "started")
        (service,) = stack["services"]
        (endpoint,) = service["endpoints"]
        assert endpoint["url"] == ""
        # Its address is still there for the stack's own services (and reachable on the host).
        assert accepts_connections(endpoint["nodePort"])
        assert service["statusMessages"][-1] == (
            f"Listening on 127.0.0.1:{endpoint['nodePort']} for the stack's own services "
            "(internal: no Connect link)"
        )

        listed = api.call("GET", "/api/stacks", alice).get_json()
        monkeypatch.setattr(client_cli, "session", lambda: Replies(listed))
        assert client_cli.stacks_list(argparse.Namespace(json=False)) == 0
        output = capsys.readouterr().out
        assert f"{sid}  cache" in output
        assert "CONNECT" not in output and str(endpoint["nodePort"]) not in output
    finally:
        api.call("GET", f"/api/stop/{sid}", alice)
        until_status(api, alice, sid, "stopped")


def test_a_service_keeps_its_connect_port_across_a_stop_and_start_while_the_port_is_free(
    engine: Engine, tmp_path: Path
) -> None:
    plan = plan_of("s10", (spec("site", "httpd -f -p 80 -h /srv", port=80, probe="tcp"), {}, ()))
    (tmp_path / "data" / "home" / "alice" / "AppData" / "s10-site").mkdir(parents=True)
    (tmp_path / "data" / "home" / "alice" / "AppData" / "s10-site" / "index.html").write_text("kept\n")
    reports = Reports()
    runtime = runtime_on(engine, tmp_path / "data", reports)

    def started() -> str:
        reports.items.clear()
        runtime.start(plan)
        ready = reports.wait("s10-site", "ready", "error", "timeout")
        assert ready.status == "ready" and ready.endpoints is not None, reports.of("s10-site")
        return ready.endpoints[0].url

    def stopped() -> None:
        runtime.stop(plan)
        reports.wait("s10-site", "stopped")

    try:
        url = started()
        stopped()
        assert started() == url  # and a new container: the stop removed the old one
        assert fetch(url) == b"kept\n"

        stopped()
        # Once another program holds the port, the service gets another one.
        port = int(url.rsplit(":", 1)[1].rstrip("/"))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past the fetch's TIME_WAIT
            holder.bind(("127.0.0.1", port))
            holder.listen()
            moved = started()
        assert moved != url
        stopped()
        assert started() == moved  # the new port is the one remembered now
    finally:
        runtime.remove(plan)
        runtime.close()


def test_a_service_whose_readiness_probe_never_answers_fails_after_the_specs_timeout(
    engine: Engine, tmp_path: Path
) -> None:
    silent = spec("silent", "sleep 600", port=80)  # the port is published; nothing serves it
    silent = silent.model_copy(
        update={"readinessProbe": silent.readinessProbe.model_copy(update={"timeout": 2})}
    )
    plan = plan_of("s11", (silent, {}, ()))
    reports = Reports()
    runtime = runtime_on(engine, tmp_path / "data", reports)  # its own timeout (30 s) is not used
    try:
        began = time.monotonic()
        runtime.start(plan)
        failed = reports.wait("s11-silent", "timeout", "ready", "error", seconds=25)
        elapsed = time.monotonic() - began
        assert (failed.status, failed.message) == (
            "timeout",
            "Service timed out after 2 seconds: its readiness probe (HTTP GET / on port 80) never answered",
        )
        assert 2 <= elapsed < 20
        assert ours(engine, **{INSTANCE_LABEL: runtime.instance, SERVICE_LABEL: "s11-silent"}) == []
    finally:
        runtime.remove(plan)
        runtime.close()


class Replies:
    """The command line's session, answering each call with the API's own answer."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def call(self, method: str, path: str, **_: Any) -> Any:
        return self.answer


def until_status(api: Api, token: str, sid: str, status: str, seconds: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        stack: dict[str, Any] = api.call("GET", f"/api/stacks/{sid}", token).get_json()
        if stack["status"] == status:
            return stack
        assert time.monotonic() < deadline, f"stack {sid} is {stack['status']}, not {status}: {stack}"
        time.sleep(0.2)
