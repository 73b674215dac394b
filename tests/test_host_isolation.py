"""Nothing a user controls runs on the host: attacks on the local runtime, performed for real, that fail.

Each test starts stacks through the API against the local platform, as a user would, and checks on
the real processes (their environment in /proc, files a payload would write) that the payload did
not run while legitimate configuration still reached the service in its safe form.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from shared.bootstrap import Platform
from shared.domain import stacks
from tests.conftest import Api
from tests.support import wait_until
from tests.test_stacks import add_spec, create, read, service_of, spec, started, stop, wait_for
from tests.users import Users

PYTHON_VERSION = f"python{sys.version_info.major}.{sys.version_info.minor}"
ACCESS = "workbench-access"

# Records its environment in the home, then listens on PORT: what an admin's local command may be.
RECORDER = """
import json, os, socket, time
with open(os.path.join(os.environ["WORKBENCH_HOME"], "recorder.json"), "w") as handle:
    json.dump(dict(os.environ), handle)
server = socket.socket()
server.bind(("127.0.0.1", int(os.environ["PORT"])))
server.listen()
time.sleep(60)
"""
ADMIN_COMMANDS = {
    "recorder": shlex.join([sys.executable, "-c", RECORDER]),
    # Writes a file in its working directory, the home: whoever runs it leaves the trace.
    "runner": shlex.join(["sh", "-c", "echo ran > admin-command-ran; exec sleep 60"]),
}


def payload(marker: Path) -> dict[str, str]:
    """The configuration that ran ``id`` as the platform's user: a warning filter that imports
    ``antigravity``, which opens a "browser" through the shell."""
    return {
        "PYTHONWARNINGS": "all:0:antigravity.x:0:0",
        "BROWSER": f'/bin/sh -c "id > {marker}" #%s',
    }


@pytest.fixture
def environment() -> dict[str, str]:
    return {"WORKBENCH_LOCAL_COMMANDS": json.dumps(ADMIN_COMMANDS)}


pytestmark = pytest.mark.usefixtures("no_stack_left")


def process_environment(platform: Platform, owner: str, ssid: str) -> dict[str, str]:
    """The environment the service's running process was started with, as the kernel keeps it."""
    record = json.loads((platform.data_dir / "run" / owner / f"{ssid}.json").read_text())
    raw = Path(f"/proc/{record['pid']}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if item)
    return {name.decode(): value.decode() for name, value in pairs}


def process_cwd(platform: Platform, owner: str, ssid: str) -> Path:
    record = json.loads((platform.data_dir / "run" / owner / f"{ssid}.json").read_text())
    return Path(f"/proc/{record['pid']}/cwd").readlink()


def endpoint_url(stack: dict[str, Any], key: str) -> str:
    url: str = service_of(stack, key)["endpoints"][0]["url"]
    return url


def bare(url: str) -> str:
    """The endpoint's address without the access grant a secure stack's Connect URL carries."""
    parts = urlsplit(url)
    return parts._replace(query="").geturl()


def settle() -> None:
    """Time for a payload started alongside the service to have done its work."""
    time.sleep(0.5)


# --- 1. Spec config never names a variable of the host process -----------------------------------


def test_a_user_specs_config_reaches_no_environment_of_a_host_process(
    api: Api, platform: Platform, alice: str, tmp_path: Path
) -> None:
    marker = tmp_path / "id-ran"
    config = [{"name": name, "value": value} for name, value in payload(marker).items()]
    config.append({"name": "GREETING", "value": "hello"})
    add_spec(api, alice, spec("pages", config=config, volumeMounts=None))
    stack = create(api, alice, {"key": "pages"})

    running = started(api, alice, stack["id"])
    settle()

    assert not marker.exists(), "the spec's config ran a command on the host"
    environment = process_environment(platform, "alice", f"{stack['id']}-pages")
    assert not {"PYTHONWARNINGS", "BROWSER", "GREETING"} & set(environment)
    assert not any(name.startswith(("PYTHON", "LD_")) for name in environment), environment
    assert httpx.get(endpoint_url(running, "pages"), timeout=5).status_code == 200
    stop(api, alice, stack["id"])

    # Running stacks are started again when the platform restarts: still nothing runs.
    started(api, alice, stack["id"])
    stacks.restore(platform)
    wait_for(api, alice, stack["id"], "started", passing=("starting",))
    settle()
    assert not marker.exists()


def test_an_admin_command_gets_config_values_only_under_names_no_interpreter_reads(
    api: Api, platform: Platform, admin: str, alice: str, tmp_path: Path
) -> None:
    marker = tmp_path / "id-ran"
    config: list[dict[str, Any]] = [
        {"name": name, "value": "", "canOverride": True}
        for name in ("PYTHONWARNINGS", "BROWSER", "LD_PRELOAD")
    ]
    config.append({"name": "GREETING", "value": "hello", "canOverride": True})
    add_spec(api, admin, spec("recorder", config=config, volumeMounts=None), catalog="system")
    values = {**payload(marker), "LD_PRELOAD": str(tmp_path / "evil.so"), "GREETING": "hi there"}
    stack = create(api, alice, {"key": "recorder", "services": [{"service": "recorder", "config": values}]})

    running = started(api, alice, stack["id"])
    settle()

    assert not marker.exists(), "the stack's config ran a command on the host"
    home = platform.data_dir / "home" / "alice"
    environment = json.loads((home / "recorder.json").read_text())
    for name, value in values.items():
        assert name not in environment
        assert environment[f"WORKBENCH_CONFIG_{name}"] == value  # the value, as inert data
    assert environment["NDSLABS_STACK"] == stack["id"]
    assert environment["PORT"] == str(service_of(running, "recorder")["endpoints"][0]["nodePort"])
    # Python started by an admin's command finds nothing of the user's home on its path.
    assert environment["PYTHONSAFEPATH"] == "1"
    assert environment["PYTHONNOUSERSITE"] == "1"
    assert "PYTHONPATH" not in environment


def test_a_user_spec_named_like_an_admin_command_gets_the_static_site(
    api: Api, platform: Platform, alice: str
) -> None:
    add_spec(api, alice, spec("runner", volumeMounts=None))
    stack = create(api, alice, {"key": "runner"})

    running = started(api, alice, stack["id"])
    settle()

    home = platform.data_dir / "home" / "alice"
    assert not (home / "admin-command-ran").exists()
    response = httpx.get(endpoint_url(running, "runner"), timeout=5)
    assert response.status_code == 200
    assert "Directory listing" in response.text


def test_the_admins_own_spec_runs_the_admins_command(api: Api, platform: Platform, admin: str) -> None:
    add_spec(api, admin, spec("runner", volumeMounts=None, ports=None), catalog="system")
    stack = create(api, admin, {"key": "runner"})

    started(api, admin, stack["id"])

    assert (platform.data_dir / "home" / "admin" / "admin-command-ran").read_text() == "ran\n"


# --- 2. Files in the home are never imported ------------------------------------------------------


def plant_python_code(folder: Path, marker: Path) -> None:
    """Every way a Python started in or near ``folder`` could pick up code from it."""
    code = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    (folder / "shared").mkdir(parents=True, exist_ok=True)
    (folder / "shared" / "__init__.py").write_text(code)
    for module in ("sitecustomize", "usercustomize", "socket", "argparse", "http"):
        (folder / f"{module}.py").write_text(code)
    user_site = folder / ".local" / "lib" / PYTHON_VERSION / "site-packages"
    user_site.mkdir(parents=True, exist_ok=True)
    (user_site / "evil.pth").write_text(f"import os; open({str(marker)!r}, 'a').write('pth\\n')\n")


def test_the_static_site_imports_nothing_from_the_home(
    api: Api, platform: Platform, alice: str, tmp_path: Path
) -> None:
    marker = tmp_path / "imported"
    add_spec(api, alice, spec("pages"))
    stack = create(api, alice, {"key": "pages"})
    home = platform.data_dir / "home" / "alice"
    volume = home / next(iter(service_of(stack, "pages")["volumeMounts"]))
    # What a Clowder dataset sent to the folders ``.`` and ``shared`` of the home would leave there.
    plant_python_code(home, marker)
    plant_python_code(volume, marker)
    (volume / "hello.txt").write_text("hello")

    running = started(api, alice, stack["id"])
    settle()

    assert not marker.exists(), marker.read_text()
    ssid = f"{stack['id']}-pages"
    assert process_cwd(platform, "alice", ssid) != home
    assert not process_cwd(platform, "alice", ssid).is_relative_to(home)
    assert httpx.get(endpoint_url(running, "pages") + "hello.txt", timeout=5).text == "hello"


def test_python_run_by_an_admin_command_imports_nothing_from_the_home(
    api: Api, platform: Platform, admin: str, alice: str, tmp_path: Path
) -> None:
    marker = tmp_path / "imported"
    add_spec(api, admin, spec("recorder", volumeMounts=None), catalog="system")
    stack = create(api, alice, {"key": "recorder"})
    plant_python_code(platform.data_dir / "home" / "alice", marker)

    started(api, alice, stack["id"])
    settle()

    assert not marker.exists(), marker.read_text()


# --- The platform's own environment ---------------------------------------------------------------


def test_no_variable_that_steers_an_interpreter_is_inherited_by_local_services() -> None:
    from shared.core.settings import INHERITED_VARIABLES, Settings

    steering = {
        "PYTHONPATH": ".",
        "PYTHONSTARTUP": "start.py",
        "PYTHONHOME": "/tmp",
        "LD_PRELOAD": "evil.so",
        "LD_LIBRARY_PATH": ".",
        "BASH_ENV": "evil.sh",
        "ENV": "evil.sh",
        "NODE_OPTIONS": "--require ./evil.js",
        "PERL5OPT": "-Mevil",
        "RUBYOPT": "-revil",
    }
    settings = Settings.from_env({"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **steering})

    assert dict(settings.runtime.inherited_environment) == {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    assert not set(steering) & set(INHERITED_VARIABLES)


# --- 3. A secure stack's local site admits its owner's Connect link only --------------------------


def grant_of(url: str) -> str:
    [grant] = parse_qs(urlsplit(url).query)[ACCESS]
    return grant


def test_a_secure_local_site_admits_only_visitors_with_the_owners_connect_link(
    api: Api, platform: Platform, users: Users, alice: str
) -> None:
    from shared.adapters.runtime.static_site import GRANT_SECONDS, granted_url, service_key

    bob = users.make("bob")
    add_spec(api, alice, spec("pages", volumeMounts=None))
    home = platform.data_dir / "home" / "alice"
    home.mkdir(parents=True, exist_ok=True)
    (home / "hello.txt").write_text("hello")
    secure = create(api, alice, {"key": "pages", "secure": True})
    sid, ssid = secure["id"], f"{secure['id']}-pages"

    connect = endpoint_url(started(api, alice, sid), "pages")
    site = bare(connect)

    # Anyone on the machine, without the link: refused, with a word on how to get in.
    refused = httpx.get(site + "hello.txt", timeout=5)
    assert refused.status_code == 403
    assert "Connect link" in refused.text
    # The owner's Connect link: admitted, the grant leaves the address, a cookie remembers them.
    with httpx.Client(timeout=5) as owner:
        admitted = owner.get(connect, follow_redirects=True)
        assert admitted.status_code == 200 and "hello.txt" in admitted.text
        assert ACCESS not in str(admitted.url)
        assert owner.get(site + "hello.txt").text == "hello"
    # What the management page shows (the listing it polls) carries a working grant too.
    [listed] = api.call("GET", "/api/stacks", alice).get_json()
    with httpx.Client(timeout=5) as page_visitor:
        assert page_visitor.get(endpoint_url(listed, "pages"), follow_redirects=True).status_code == 200

    # Grants are made for each read of the owner's: never stored or announced.
    stored = platform.store.get_stack("alice", sid)
    assert stored is not None
    assert ACCESS not in json.dumps(stored.model_dump())

    # Another user's stack's link, a forged, an expired or another service's grant: refused.
    add_spec(api, bob, spec("pages", volumeMounts=None))
    bobs = endpoint_url(started(api, bob, create(api, bob, {"key": "pages", "secure": True})["id"]), "pages")
    key = service_key(platform.site_key, "alice", ssid)
    forged = connect.replace(grant_of(connect), grant_of(connect)[:-1] + ("0" if connect[-1] != "0" else "1"))
    for url in (
        site + "?" + urlsplit(bobs).query,
        forged,
        granted_url(site, key, now=time.time() - GRANT_SECONDS - 1),
        granted_url(site, service_key(platform.site_key, "alice", f"{sid}-other")),
        granted_url(site, service_key(platform.site_key, "bob", ssid)),
    ):
        with httpx.Client(timeout=5) as stranger:
            assert stranger.get(url, follow_redirects=True).status_code == 403, url
    assert httpx.get(bare(bobs), timeout=5).status_code == 403

    # An open stack's site needs no link.
    add_spec(api, alice, spec("open", volumeMounts=None))
    open_stack = started(api, alice, create(api, alice, {"key": "open"})["id"])
    assert ACCESS not in endpoint_url(open_stack, "open")
    assert httpx.get(endpoint_url(open_stack, "open"), timeout=5).status_code == 200


def test_a_restored_secure_site_still_admits_its_visitor(api: Api, platform: Platform, alice: str) -> None:
    add_spec(api, alice, spec("pages", volumeMounts=None))
    sid = create(api, alice, {"key": "pages", "secure": True})["id"]
    connect = endpoint_url(started(api, alice, sid), "pages")
    with httpx.Client(timeout=5) as owner:
        assert owner.get(connect, follow_redirects=True).status_code == 200

        # A restart of the platform starts the site again (a new process, on the same port while it is
        # free); its cookie still works.
        before = read(api, alice, sid)["services"][0]["statusMessages"]
        stacks.restore(platform)

        def serving_again() -> dict[str, Any] | None:
            again = read(api, alice, sid)
            messages = again["services"][0]["statusMessages"]
            if again["status"] == "started" and messages != before and "serving" in " ".join(messages):
                return again
            return None

        again = wait_until(
            serving_again,
            lambda: (
                f"the site to serve again: {before} then {read(api, alice, sid)['services'][0]['statusMessages']}"
            ),
            15,
        )
        assert owner.get(bare(endpoint_url(again, "pages"))).status_code == 200
        assert httpx.get(bare(endpoint_url(again, "pages")), timeout=5).status_code == 403


# --- 4. A log read brings a bounded tail into memory ----------------------------------------------


def test_logs_without_a_number_of_lines_return_a_bounded_tail(
    api: Api, platform: Platform, alice: str
) -> None:
    from shared.adapters.runtime import LOG_DEFAULT_LINES, LOG_MAX_LINES

    add_spec(api, alice, spec("pages", volumeMounts=None))
    sid = create(api, alice, {"key": "pages"})["id"]
    started(api, alice, sid)
    log = platform.data_dir / "logs" / "alice" / f"{sid}-pages.log"
    with log.open("a") as handle:
        handle.writelines(f"noise {number}\n" for number in range(3 * LOG_MAX_LINES))

    def service_log(query: str) -> list[str]:
        response = api.call("GET", f"/api/logs/{sid}-pages{query}", alice)
        assert response.status_code == 200, response.get_json()
        text: str = response.get_json()
        return text.split("SERVICE LOG\n=====================\n", 1)[1].splitlines()

    assert service_log("") == [
        f"noise {n}" for n in range(3 * LOG_MAX_LINES - LOG_DEFAULT_LINES, 3 * LOG_MAX_LINES)
    ]
    assert len(service_log(f"?lines={10 * LOG_MAX_LINES}")) == LOG_MAX_LINES
    assert service_log("?lines=2") == [f"noise {3 * LOG_MAX_LINES - 2}", f"noise {3 * LOG_MAX_LINES - 1}"]
