"""Real container engines for the container runtime's tests: Podman's service and Docker Engine, each on a
socket and storage of its own for the test session, with an image built here (nothing is pulled from
the Internet) and a small image registry on 127.0.0.1."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import tarfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.runtime import ServicePlan, StackPlan, StatusReport
from shared.adapters.runtime.docker_engine import DockerRuntime
from shared.core.models import ServiceSpec
from shared.core.settings import DockerSettings, RuntimeSettings
from tests.conftest import need

IMAGE = "localhost/workbench-test/busybox"
TAG = "1"
BUSYBOX = Path("/bin/busybox")
APP_FOLDER = "/home/user/work"
"""The folder the image's file browser shows (its page at /, from /www/cgi-bin/index.cgi)."""
FILE_BROWSER = r"""#!/bin/sh
# The app's page: every file of its folder, the content of each small text file beneath its name.
root=/home/user/work
escape() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' -e 's/"/\&quot;/g'; }
printf 'Content-Type: text/html; charset=utf-8\r\n\r\n'
cat <<'HEAD'
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Files of the app</title>
<style>
body { font: 16px/1.5 sans-serif; margin: 2rem; color: #1d2733; }
h1 { font-size: 1.4rem; } li { margin: .6rem 0; } code { font-weight: bold; }
pre { background: #eef2f6; padding: .5rem .8rem; margin: .3rem 0; white-space: pre-wrap; }
.size { color: #566170; }
</style></head><body>
HEAD
printf '<h1>Files in <code>%s</code>, seen inside the container</h1>\n' "$(printf %s "$root" | escape)"
printf '<p>Container <code>%s</code></p>\n<ul>\n' "$(hostname | escape)"
cd "$root" || exit 0
find . -type f | sort | while IFS= read -r path; do
  name=${path#./}
  size=$(wc -c < "$path")
  printf '<li><code>%s</code> <span class="size">(%s bytes)</span>' "$(printf %s "$name" | escape)" "$size"
  case "$name" in
    *.txt) if [ "$size" -le 4096 ]; then printf '<pre>'; escape < "$path"; printf '</pre>'; fi ;;
  esac
  printf '</li>\n'
done
printf '</ul>\n</body></html>\n'
"""
CONTAINERS_CONF = """\
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"

[containers]
default_ulimits = []
"""
DOCKER_ADDRESS_POOL = "base=10.213.0.0/16,size=24"
"""Docker Engine's networks: a range of their own, apart from Podman's (10.88 and 10.89)."""
ENGINES = ("podman", "docker")
DEFAULT_NETWORKS = {"podman", "bridge", "host", "none"}
ENGINE_NAMES = {"podman": "Podman", "docker": "Docker Engine"}
START_SECONDS = 30


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


def root_filesystem(folder: Path) -> Path:
    """A tarball of a root filesystem: Debian's static busybox, its applets linked in /bin, and the
    file browser at /www/cgi-bin/index.cgi (``busybox httpd -h /www`` runs it for /)."""
    rootfs = folder / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, check=True).stdout.split()
    for applet in applets:
        name = applet.decode()
        if name != "busybox":
            (rootfs / "bin" / name).symlink_to("busybox")
    for empty in ("tmp", "srv", "etc", "proc", "sys", "dev", APP_FOLDER.lstrip("/")):
        (rootfs / empty).mkdir(parents=True, exist_ok=True)
    script = rootfs / "www" / "cgi-bin" / "index.cgi"
    script.parent.mkdir(parents=True)
    script.write_text(FILE_BROWSER)
    script.chmod(0o755)
    archive = folder / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(rootfs, arcname=".")
    return archive


class Engine:
    """A container engine serving the Docker Engine API on a socket of its own, for this test session."""

    name = ""
    kind = ""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.registry = Registry()
        self.process: subprocess.Popen[bytes] | None = None
        self.pullable = ""

    @property
    def url(self) -> str:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def start(self) -> None:
        log_path = self.folder / "engine.log"
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(), env=self.environment(), stdout=log, stderr=subprocess.STDOUT
            )
        import docker

        socket = Path(self.url.removeprefix("unix://"))
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} ended: {log_path.read_text()[-2000:]}")
            if not socket.exists():
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
        raise RuntimeError(
            f"{self.name} did not answer within {START_SECONDS} s: {log_path.read_text()[-2000:]}"
        )

    def client(self) -> Any:
        import docker

        return docker.DockerClient(base_url=self.url, timeout=120)

    def build_image(self) -> None:
        archive = root_filesystem(self.folder)
        self.import_image(archive)
        self.pullable = self.registry.add("workbench/pulled", TAG, archive.read_bytes())

    def import_image(self, archive: Path) -> None:
        client = self.client()
        try:
            client.api.import_image(src=str(archive), repository=IMAGE, tag=TAG, changes=['CMD ["/bin/sh"]'])
            client.images.get(f"{IMAGE}:{TAG}")
        finally:
            client.close()

    def remove_image(self, reference: str) -> None:
        client = self.client()
        try:
            client.images.remove(reference, force=True)
        finally:
            client.close()

    def clean(self) -> None:
        """Remove every container and network the session left (the engine is the session's own)."""
        client = self.client()
        try:
            for container in client.containers.list(all=True):
                container.remove(force=True)
            client.networks.prune()
        finally:
            client.close()

    def subnets(self) -> list[ipaddress.IPv4Network]:
        """The IPv4 subnets of the networks the engine made (not its default network, which every
        Podman of the host shares)."""
        client = self.client()
        try:
            found = []
            for network in client.networks.list():
                if network.name in DEFAULT_NETWORKS:
                    continue
                for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
                    with contextlib.suppress(ValueError, TypeError):
                        subnet = ipaddress.ip_network(config.get("Subnet", ""))
                        if isinstance(subnet, ipaddress.IPv4Network):
                            found.append(subnet)
            return found
        finally:
            client.close()

    def forget_networks(self, subnets: list[ipaddress.IPv4Network]) -> None:
        """Called once the engine has ended, with the subnets its networks had."""

    def stop(self) -> None:
        self.registry.close()
        if self.process is None:
            return
        subnets: list[ipaddress.IPv4Network] = []
        with contextlib.suppress(Exception):  # the engine is going anyway
            subnets = self.subnets()
            self.clean()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.forget_networks(subnets)


class Podman(Engine):
    """``podman system service`` with runc, the cgroupfs manager, no default ulimits and vfs storage."""

    name = "Podman"
    kind = "podman"

    @property
    def url(self) -> str:
        return f"unix://{self.folder / 'podman.sock'}"

    def podman(self) -> list[str]:
        return [
            "podman",
            "--root",
            str(self.folder / "storage"),
            "--runroot",
            str(self.folder / "run"),
            "--storage-driver",
            "vfs",
        ]

    def environment(self) -> dict[str, str]:
        conf = self.folder / "containers.conf"
        networks = self.folder / "networks"
        networks.mkdir(exist_ok=True)
        conf.write_text(f'{CONTAINERS_CONF}\n[network]\nnetwork_config_dir = "{networks}"\n')
        registries = self.folder / "registries.conf"
        registries.write_text(f'[[registry]]\nlocation = "{self.registry.address}"\ninsecure = true\n')
        return {
            **os.environ,
            "CONTAINERS_CONF": str(conf),
            "CONTAINERS_REGISTRIES_CONF": str(registries),
        }

    def command(self) -> list[str]:
        return [*self.podman(), "system", "service", "--time=0", self.url]

    def forget_networks(self, subnets: list[ipaddress.IPv4Network]) -> None:
        """Take away what netavark left of the engine's networks on the host: it now and then leaves a
        removed container's port rules (and its bridge) in place, and a rule left for a loopback port
        sends a later connection to that port nowhere ("No route to host")."""
        if not subnets:
            return
        for chain, jumps in stale_port_chains(nat_rules(), subnets).items():
            for source, handle in jumps:
                nft("delete", "rule", "ip", "nat", source, "handle", handle)
            nft("flush", "chain", "ip", "nat", chain)
            nft("delete", "chain", "ip", "nat", chain)
        for name, address in bridge_addresses():
            if any(address in subnet for subnet in subnets):
                subprocess.run(["ip", "link", "delete", name], check=False, capture_output=True)

    def import_image(self, archive: Path) -> None:
        done = subprocess.run(
            [*self.podman(), "import", "--change", 'CMD ["/bin/sh"]', str(archive), f"{IMAGE}:{TAG}"],
            env=self.environment(),
            capture_output=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"podman import: {done.stderr.decode(errors='replace')}")


class Docker(Engine):
    """``dockerd`` with runc and cgroupfs, vfs storage, its own data, state and configuration, and no
    changes to the host's firewall (``--iptables=false``: published ports go through its proxy)."""

    name = "Docker Engine"
    kind = "docker"

    @property
    def url(self) -> str:
        return f"unix://{self.folder / 'docker.sock'}"

    def command(self) -> list[str]:
        config = self.folder / "daemon.json"
        config.write_text("{}\n")
        return [
            "dockerd",
            "--host",
            self.url,
            "--config-file",
            str(config),
            "--data-root",
            str(self.folder / "root"),
            "--exec-root",
            str(self.folder / "exec"),
            "--pidfile",
            str(self.folder / "docker.pid"),
            "--storage-driver",
            "vfs",
            "--exec-opt",
            "native.cgroupdriver=cgroupfs",
            "--iptables=false",
            "--ip-masq=false",
            "--bridge=none",
            "--default-address-pool",
            DOCKER_ADDRESS_POOL,
        ]


def nft(*arguments: str) -> None:
    subprocess.run(["nft", *arguments], capture_output=True, timeout=10, check=False)


def nat_rules() -> str:
    """The host's IPv4 NAT table with rule handles ("" where it cannot be read)."""
    try:
        done = subprocess.run(
            ["nft", "-a", "list", "table", "ip", "nat"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout


def stale_port_chains(table: str, subnets: list[ipaddress.IPv4Network]) -> dict[str, list[tuple[str, str]]]:
    """Each chain that sends a published port to an address of those subnets, with the (chain, handle)
    of every rule that jumps to it."""
    stale: set[str] = set()
    jumps: list[tuple[str, str, str]] = []
    chain = ""
    for line in table.splitlines():
        words = line.split()
        if words[:1] == ["chain"] and len(words) > 1:
            chain = words[1]
        elif "# handle" in line and "jump" in words:
            jumps.append((chain, words[words.index("jump") + 1], line.rsplit("# handle", 1)[1].strip()))
        if "dnat to" in line:
            target = line.split("dnat to", 1)[1].split()[0].rsplit(":", 1)[0]
            with contextlib.suppress(ValueError):
                if any(ipaddress.ip_address(target) in subnet for subnet in subnets):
                    stale.add(chain)
    return {name: [(source, handle) for source, to, handle in jumps if to == name] for name in sorted(stale)}


def bridge_addresses() -> list[tuple[str, ipaddress.IPv4Address]]:
    """(interface, IPv4 address) of the host's interfaces."""
    try:
        done = subprocess.run(
            ["ip", "-j", "-4", "addr"], capture_output=True, text=True, timeout=10, check=False
        )
        interfaces = json.loads(done.stdout or "[]")
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return []
    return [
        (interface["ifname"], ipaddress.IPv4Address(info["local"]))
        for interface in interfaces
        for info in interface.get("addr_info", [])
        if info.get("family") == "inet"
    ]


def missing_programs(kind: str) -> list[str]:
    programs = {"podman": ("podman", "runc"), "docker": ("dockerd", "containerd", "runc")}[kind]
    missing = [name for name in programs if shutil.which(name) is None]
    if not BUSYBOX.is_file():
        missing.append("busybox-static")
    return missing


def started_engine(kind: str, folder: Path) -> Engine:
    """The engine of that kind, running with the test image; skips (fails in CI) when it cannot run."""
    name = ENGINE_NAMES[kind]
    missing = missing_programs(kind)
    if missing:
        packages = "podman runc" if kind == "podman" else "docker.io"
        need(name, f"{', '.join(missing)} not installed (apt-get install {packages} busybox-static)")
    engine: Engine = Podman(folder) if kind == "podman" else Docker(folder)
    try:
        engine.start()
        engine.build_image()
    except Exception as error:
        engine.stop()
        need(name, str(error))
    return engine


@pytest.fixture(scope="session", params=ENGINES)
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """Each engine in turn: a test that takes this fixture runs on Podman and on Docker Engine."""
    # A short folder: a unix socket's path is limited to 107 bytes.
    folder = Path(tmp_path_factory.mktemp(request.param))
    engine = started_engine(request.param, folder)
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


def spec(
    key: str,
    shell: str,
    *,
    port: int,
    image: str = IMAGE,
    probe: str = "http",
    limits: dict[str, int] | None = None,
) -> ServiceSpec:
    return ServiceSpec.model_validate(
        {
            "key": key,
            "image": {"name": image, "tags": [TAG]},
            "command": ["/bin/sh", "-c"],
            "args": [shell],
            "ports": [{"port": port, "protocol": "http"}],
            "readinessProbe": {"type": probe, "path": "/", "port": port, "timeout": 30},
            "volumeMounts": [{"type": "docker", "mountPath": "/srv"}],
            "resourceLimits": {"cpuMax": 500, "memMax": 64} if limits is None else limits,
        }
    )


def catalog_app(key: str, label: str, description: str, *, serves: str, probe: str = "tcp") -> dict[str, Any]:
    """A catalog entry of the test image, as a user posts it: busybox httpd serving the folder
    ``serves`` on port 8888, with the user's home mounted at ``APP_FOLDER``."""
    return {
        "key": key,
        "label": label,
        "description": description,
        "image": {"name": IMAGE, "tags": [TAG]},
        "access": "external",
        "display": "stack",
        "command": ["/bin/sh", "-c"],
        # A shell as process 1 that ends on SIGTERM (one that ignores it waits out the stop's grace).
        "args": [f"trap 'exit 0' TERM; httpd -f -v -p 8888 -h {serves} & wait"],
        "ports": [{"port": 8888, "protocol": "http"}],
        "readinessProbe": {
            "type": probe,
            "path": "/" if probe == "http" else "",
            "port": 8888,
            "initialDelay": 0,
            "timeout": 30,
        },
        "volumeMounts": [{"mountPath": APP_FOLDER}],
        "resourceLimits": {"cpuMax": 500, "cpuDefault": 100, "memMax": 64, "memDefault": 32},
    }


def plan_of(
    sid: str, *services: tuple[ServiceSpec, dict[str, str], tuple[str, ...]], **more: Any
) -> StackPlan:
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
        **more,
    )


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as answer:
        body: bytes = answer.read()
        return body


def ours(engine: Engine, **labels: str) -> list[Any]:
    client = engine.client()
    try:
        filters = [f"{name}={value}" for name, value in labels.items()]
        return list(client.containers.list(all=True, filters={"label": filters}))
    finally:
        client.close()
