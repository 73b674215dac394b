"""The container runtime on a real engine: Podman's Docker-compatible service, with an image built here."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.bootstrap import Platform
from shared.errors import Unavailable
from shared.models import ServiceSpec
from shared.runtime import ServicePlan, StackPlan, StatusReport
from shared.runtime.docker_engine import (
    INSTANCE_LABEL,
    OWNER_LABEL,
    SERVICE_LABEL,
    STACK_LABEL,
    DockerRuntime,
)
from shared.settings import DockerSettings, RuntimeSettings, Settings
from tests.conftest import need

IMAGE = "localhost/workbench-test/busybox"
TAG = "1"
BUSYBOX = Path("/bin/busybox")
CONTAINERS_CONF = """\
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"

[containers]
default_ulimits = []
"""


class Registry:
    """A read-only image registry on 127.0.0.1 (the distribution API's pull half): one image per name."""

    def __init__(self) -> None:
        import http.server

        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, bytes] = {}
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                self.answer(body=False)

            def do_GET(self) -> None:
                self.answer(body=True)

            def answer(self, *, body: bool) -> None:
                path = self.path.split("?")[0]
                kind = "application/json"
                if path == "/v2/":
                    data: bytes | None = b"{}"
                elif "/manifests/" in path:
                    data = registry.manifests.get(path.split("/v2/", 1)[1])
                    kind = "application/vnd.oci.image.manifest.v1+json"
                elif "/blobs/" in path:
                    data = registry.blobs.get(path.rsplit("/", 1)[1])
                    kind = "application/octet-stream"
                else:
                    data = None
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Docker-Content-Digest", digest(data))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, name: str, tag: str, layer_tar: bytes) -> str:
        """Serve a one-layer image of ``layer_tar``; its reference."""
        import gzip

        layer = gzip.compress(layer_tar, mtime=0)
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Cmd": ["/bin/sh"]},
                "rootfs": {"type": "layers", "diff_ids": [digest(layer_tar)]},
            }
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": digest(config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": digest(layer),
                        "size": len(layer),
                    }
                ],
            }
        ).encode()
        for blob in (layer, config):
            self.blobs[digest(blob)] = blob
        self.manifests[f"{name}/manifests/{tag}"] = manifest
        self.manifests[f"{name}/manifests/{digest(manifest)}"] = manifest
        return f"{self.address}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Engine:
    """A Podman service on a socket of its own, with its own storage, for this test session."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.url = f"unix://{folder / 'podman.sock'}"
        conf = folder / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        self.registry = Registry()
        registries = folder / "registries.conf"
        registries.write_text(f'[[registry]]\nlocation = "{self.registry.address}"\ninsecure = true\n')
        self.environment = {
            **os.environ,
            "CONTAINERS_CONF": str(conf),
            "CONTAINERS_REGISTRIES_CONF": str(registries),
        }
        self.podman = [
            "podman",
            "--root",
            str(folder / "storage"),
            "--runroot",
            str(folder / "run"),
            "--storage-driver",
            "vfs",
        ]
        self.service: subprocess.Popen[bytes] | None = None

    def run(self, *arguments: str) -> str:
        done = subprocess.run(
            [*self.podman, *arguments], env=self.environment, capture_output=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"podman {' '.join(arguments)}: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode()

    def start(self) -> None:
        with (self.folder / "service.log").open("wb") as log:
            self.service = subprocess.Popen(
                [*self.podman, "system", "service", "--time=0", self.url],
                env=self.environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        import docker

        while time.monotonic() < deadline:
            if self.service.poll() is not None:
                raise RuntimeError(
                    f"podman system service ended: {(self.folder / 'service.log').read_text()}"
                )
            if not (self.folder / "podman.sock").exists():
                time.sleep(0.1)
                continue
            client = docker.DockerClient(base_url=self.url, timeout=5, version="1.41")
            try:
                client.ping()
                return
            except Exception:
                time.sleep(0.2)
            finally:
                client.close()
        raise RuntimeError("podman system service did not answer within 30 s")

    def build_image(self) -> None:
        """A root filesystem of Debian's static busybox (its applets linked in /bin), imported."""
        rootfs = self.folder / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
        applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, check=True).stdout.split()
        for applet in applets:
            name = applet.decode()
            if name != "busybox":
                (rootfs / "bin" / name).symlink_to("busybox")
        for folder in ("tmp", "srv", "etc", "proc", "sys", "dev"):
            (rootfs / folder).mkdir(exist_ok=True)
        archive = self.folder / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(rootfs, arcname=".")
        self.run("import", "--change", 'CMD ["/bin/sh"]', str(archive), f"{IMAGE}:{TAG}")
        self.pullable = self.registry.add("workbench/pulled", TAG, archive.read_bytes())

    def stop(self) -> None:
        self.registry.close()
        if self.service is None:
            return
        try:
            self.run("rm", "--all", "--force", "--time", "0")
            self.run("network", "prune", "--force")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        self.service.terminate()
        try:
            self.service.wait(10)
        except subprocess.TimeoutExpired:
            self.service.kill()
            self.service.wait()


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    missing = [name for name in ("podman", "runc") if shutil.which(name) is None]
    if not BUSYBOX.is_file():
        missing.append("busybox-static")
    if missing:
        need("Podman", f"{', '.join(missing)} not installed (apt-get install podman runc busybox-static)")
    # A short folder: a unix socket's path is limited to 107 bytes.
    folder = Path(tmp_path_factory.mktemp("podman"))
    engine = Engine(folder)
    try:
        engine.start()
        engine.build_image()
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        engine.stop()
        need("Podman", str(error))
    yield engine
    engine.stop()
    shutil.rmtree(folder, ignore_errors=True)


class Reports:
    """The runtime's reports, with a wait for a service to reach a status."""

    def __init__(self) -> None:
        self.items: list[StatusReport] = []
        self.changed = threading.Condition()

    def __call__(self, report: StatusReport) -> None:
        with self.changed:
            self.items.append(report)
            self.changed.notify_all()

    def wait(self, ssid: str, *statuses: str, seconds: float = 60) -> StatusReport:
        def found() -> StatusReport | None:
            return next((r for r in reversed(self.items) if r.ssid == ssid and r.status in statuses), None)

        with self.changed:
            self.changed.wait_for(lambda: found() is not None, timeout=seconds)
            report = found()
        assert report is not None, f"{ssid} reached none of {statuses}: {self.of(ssid)}"
        return report

    def of(self, ssid: str) -> list[tuple[str, str | None]]:
        return [(r.status, r.message) for r in self.items if r.ssid == ssid]


def runtime_on(engine: Engine, data_dir: Path, reports: Callable[[StatusReport], None]) -> DockerRuntime:
    settings = RuntimeSettings(kind="docker", ready_timeout=30, docker=DockerSettings(host=engine.url))
    # busybox as process 1 ignores SIGTERM: it would wait out the whole grace period.
    return DockerRuntime(settings, data_dir=data_dir, report=reports, stop_grace=1)


def spec(key: str, shell: str, *, port: int, image: str = IMAGE, probe: str = "http") -> ServiceSpec:
    return ServiceSpec.model_validate(
        {
            "key": key,
            "image": {"name": image, "tags": [TAG]},
            "command": ["/bin/sh", "-c"],
            "args": [shell],
            "ports": [{"port": port, "protocol": "http"}],
            "readinessProbe": {"type": probe, "path": "/", "port": port, "timeout": 30},
            "volumeMounts": [{"type": "docker", "mountPath": "/srv"}],
            "resourceLimits": {"cpuMax": 500, "memMax": 64},
        }
    )


def plan_of(sid: str, *services: tuple[ServiceSpec, dict[str, str], tuple[str, ...]]) -> StackPlan:
    return StackPlan(
        owner="alice",
        sid=sid,
        services=tuple(
            ServicePlan(
                ssid=f"{sid}-{service.key}",
                key=service.key,
                spec=service,
                env={"NDSLABS_SERVICE": f"{sid}-{service.key}", **env},
                volumes={f"AppData/{sid}-{service.key}": "/srv"},
                requires=requires,
                uses=requires,
                data_mount="/srv/clowder",
            )
            for service, env, requires in services
        ),
    )


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as answer:
        body: bytes = answer.read()
        return body


def ours(engine: Engine, **labels: str) -> list[Any]:
    import docker

    client = docker.DockerClient(base_url=engine.url)
    try:
        filters = [f"{name}={value}" for name, value in labels.items()]
        return list(client.containers.list(all=True, filters={"label": filters}))
    finally:
        client.close()


def test_a_stack_runs_in_containers_sees_the_data_folder_and_is_found_again(
    engine: Engine, tmp_path: Path
) -> None:
    import docker

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
    client = docker.DockerClient(base_url=engine.url)
    # Someone else's container, with the same owner label but of no platform: never touched.
    stranger = client.containers.create(
        f"{IMAGE}:{TAG}", ["sleep", "600"], labels={OWNER_LABEL: "alice", STACK_LABEL: "s1"}
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
        # Its layers (the root filesystem and the image's configuration) as they arrive.
        assert f"Pulling image {engine.pullable}:{TAG}: 2 of 2 layers downloaded" in messages
        assert f"Pulled image {engine.pullable}:{TAG}" in messages
        assert ready.endpoints is not None and fetch(ready.endpoints[0].url) == b"pulled\n"
    finally:
        runtime.remove(plan)
        runtime.close()
        engine.run("rmi", "--force", f"{engine.pullable}:{TAG}")


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

    assert Settings.from_env({}).runtime.kind == "auto"
    assert kind({"DOCKER_HOST": f"unix://{tmp_path}/none.sock"}) == "local"
    assert kind({"DOCKER_HOST": engine.url}) == "docker"
    assert kind({"DOCKER_HOST": engine.url, "WORKBENCH_RUNTIME": "local"}) == "local"
    assert kind({"WORKBENCH_RUNTIME": "docker"}) == "docker"


@pytest.mark.e2e
def test_workbench_run_finds_the_engine_and_a_sent_dataset_is_inside_the_app(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`workbench run` with nothing set but DOCKER_HOST: a user's stack runs in a container, and a
    dataset Clowder sends is read inside it and through its Connect URL."""
    import httpx

    from events.producer import send
    from tests.clowder_server import ClowderServer
    from tests.conftest import ADMIN_PASSWORD
    from tests.test_e2e import Platform as Workbench
    from tests.test_e2e import bearer, wait_for_status
    from tests.test_transfer_flow import API_KEY, SECRET, signed_request, wait_for_transfer

    content = {"readme.txt": b"hello from Clowder\n", "raw/data.bin": os.urandom(200_000)}
    app = {
        "key": "notebook",
        "label": "Notebook",
        "description": "busybox httpd serving its folder",
        "image": {"name": IMAGE, "tags": [TAG]},
        "access": "external",
        "display": "stack",
        "command": ["/bin/sh", "-c"],
        # A shell as process 1 that ends on SIGTERM (one that ignores it waits out the stop's grace).
        "args": ["trap 'exit 0' TERM; httpd -f -v -p 8888 -h /home/user/work & wait"],
        "ports": [{"port": 8888, "protocol": "http"}],
        "readinessProbe": {"type": "tcp", "path": "", "port": 8888, "initialDelay": 0, "timeout": 30},
        "volumeMounts": [{"mountPath": "/home/user/work"}],
        "resourceLimits": {"cpuMax": 500, "cpuDefault": 100, "memMax": 64, "memDefault": 32},
    }
    with ClowderServer(tmp_path / "clowder", 2, API_KEY) as clowder:
        dataset_id = clowder.add_dataset("Field Study")
        clowder.add_files(dataset_id, content)
        monkeypatch.setenv("WORKBENCH_RUNTIME", "auto")  # the default, as on a machine where nothing is set
        monkeypatch.setenv("DOCKER_HOST", engine.url)
        monkeypatch.setenv("WORKBENCH_CLOWDER_URL", clowder.url)
        monkeypatch.setenv("WORKBENCH_CLOWDER_API_KEY", API_KEY)
        monkeypatch.setenv("WORKBENCH_EVENT_SECRET", SECRET)
        workbench = Workbench(
            tmp_path / "data",
            passed=(
                "WORKBENCH_CLOWDER_URL",
                "WORKBENCH_CLOWDER_API_KEY",
                "WORKBENCH_EVENT_SECRET",
                "WORKBENCH_RUNTIME",
            ),
        )
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
