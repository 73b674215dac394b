"""The ``workbench`` command line for people, run as a process against the running local platform."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.adapters.runtime.processes import free_port
from shared.bootstrap import Platform as LocalPlatform
from tests.clowder_server import ClowderServer
from tests.conftest import ADMIN_PASSWORD, Api
from tests.crates import payload
from tests.support import wait_for_status
from tests.test_e2e import STATIC_SPEC, Platform, bearer
from tests.test_transfers import refused


@pytest.fixture
def environment(paired_environment: dict[str, str]) -> dict[str, str]:
    return paired_environment


EXECUTABLE = Path(sys.executable).with_name("workbench")
WAIT = 60.0


class Cli:
    """Runs ``workbench`` as a person would, with its own configuration file and no WORKBENCH_* leaking in."""

    def __init__(self, config: Path, url: str | None = None) -> None:
        self.config = config
        self.url = url

    def __call__(
        self, *arguments: str, stdin: str | None = None, **environment: str
    ) -> subprocess.CompletedProcess[str]:
        clean = {key: value for key, value in os.environ.items() if not key.startswith("WORKBENCH_")}
        clean["WORKBENCH_CONFIG"] = str(self.config)
        if self.url:
            clean["WORKBENCH_URL"] = self.url
        return subprocess.run(
            [str(EXECUTABLE), *arguments],
            env={**clean, **environment},
            input=stdin or "",
            capture_output=True,
            text=True,
            timeout=WAIT * 2,
        )

    def ok(self, *arguments: str, stdin: str | None = None) -> str:
        result = self(*arguments, stdin=stdin)
        assert result.returncode == 0, (arguments, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        return result.stdout

    def json(self, *arguments: str) -> Any:
        return json.loads(self.ok(*arguments, "--json"))

    def failed(self, *arguments: str, code: int = 1, stdin: str | None = None, **environment: str) -> str:
        result = self(*arguments, stdin=stdin, **environment)
        assert result.returncode == code, (arguments, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        return result.stderr

    def login(self, username: str, password: str) -> None:
        self.ok(
            "login",
            "--url",
            self.url or "",
            "--username",
            username,
            "--password-stdin",
            stdin=password + "\n",
        )


def token_of(cli: Cli) -> str:
    token: str = json.loads(cli.config.read_text())["token"]
    return token


def listed_stack(cli: Cli, sid: str) -> dict[str, Any]:
    (stack,) = [stack for stack in cli.json("stacks", "list") if stack["id"] == sid]
    return dict(stack)


def wait_for_stack(cli: Cli, sid: str, status: str) -> dict[str, Any]:
    return wait_for_status(lambda: listed_stack(cli, sid), status, f"stack {sid}", seconds=WAIT, every=0.3)


# --- without a platform -------------------------------------------------------------------------------


def test_usage_errors_exit_2_and_every_command_has_help(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "config.json")
    cli.failed("stacks", code=2)
    cli.failed("stacks", "create", code=2)
    cli.failed("stacks", "logs", "s1-x", "--lines", "many", code=2)
    cli.failed("catalog", "list", "--catalog", "mine", code=2)
    cli.failed("export", "results", code=2)  # --name is required
    for command in (
        ["login"],
        ["stacks", "list"],
        ["stacks", "create"],
        ["stacks", "start"],
        ["stacks", "stop"],
        ["stacks", "delete"],
        ["stacks", "logs"],
        ["catalog", "list"],
        ["catalog", "show"],
        ["catalog", "import"],
        ["send"],
        ["transfers", "list"],
        ["transfers", "show"],
        ["export"],
        ["containers"],
    ):
        assert "usage: workbench" in cli.ok(*command, "--help")


def test_not_logged_in_or_unreachable_is_one_clear_line(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "config.json")
    message = cli.failed("stacks", "list")
    assert "not logged in" in message and "workbench login" in message
    nowhere = f"http://127.0.0.1:{free_port()}"
    message = cli.failed("stacks", "list", WORKBENCH_URL=nowhere, WORKBENCH_TOKEN="some-token")
    assert f"cannot reach the Workbench API at {nowhere}" in message
    message = cli.failed("login", "--url", nowhere, "--username", "a", "--password-stdin")
    assert "cannot reach" in message
    assert not cli.config.exists()
    message = cli.failed("login", "--url", nowhere, "--username", "a")
    assert "--password-stdin" in message  # no terminal to ask at


# --- against the local platform --------------------------------------------------------------------------


@pytest.mark.e2e
def test_log_in_browse_the_catalog_and_run_a_stack(workbench: Platform, tmp_path: Path) -> None:
    cli = Cli(tmp_path / "config" / "workbench.json", workbench.url)
    message = cli.failed("login", "--username", "admin", "--password-stdin", stdin="wrong\n")
    assert "workbench:" in message and "password" in message.lower()
    assert not cli.config.exists()

    cli.login("admin", ADMIN_PASSWORD)
    assert stat.S_IMODE(cli.config.stat().st_mode) == 0o600
    assert json.loads(cli.config.read_text())["url"] == workbench.url
    listed = cli.json("catalog", "list", "--catalog", "system")
    assert "ckan" in {spec["key"] for spec in listed}
    assert "ckan" in cli.ok("catalog", "list")
    assert cli.json("catalog", "show", "ckan")["key"] == "ckan"
    assert "ckan" in cli.ok("catalog", "show", "ckan")
    assert "nothing-such" in cli.failed("catalog", "show", "nothing-such")

    token = token_of(cli)
    response = httpx.post(
        f"{workbench.url}/api/services", json=STATIC_SPEC, headers=bearer(token), timeout=10
    )
    assert response.status_code == 200, response.text
    assert "No stacks yet" in cli.ok("stacks", "list")
    stack = cli.json("stacks", "create", "notebook", "--name", "My notebook")
    sid = stack["id"]
    assert (stack["name"], stack["status"]) == ("My notebook", "stopped")
    assert sid in cli.ok("stacks", "list")
    assert "missing" in cli.failed("stacks", "create", "missing")

    assert "Starting" in cli.ok("stacks", "start", sid)
    started = wait_for_stack(cli, sid, "started")
    (endpoint,) = started["services"][0]["endpoints"]
    assert endpoint["url"] in cli.ok("stacks", "list")
    assert "SERVICE LOG" in cli.ok("stacks", "logs", f"{sid}-notebook", "--lines", "5")
    assert isinstance(cli.json("stacks", "logs", f"{sid}-notebook"), str)
    assert cli.json("containers", "admin")[0]["id"] == sid
    cli.failed("stacks", "delete", sid)  # a running stack cannot be deleted

    cli.ok("stacks", "stop", sid)
    wait_for_stack(cli, sid, "stopped")
    assert sid in cli.ok("stacks", "delete", sid)
    assert cli.json("stacks", "list") == []
    assert sid in cli.failed("stacks", "start", sid)

    # WORKBENCH_TOKEN wins over the file, and the server's refusal is the message.
    message = cli.failed("stacks", "list", WORKBENCH_TOKEN="not-a-token")
    assert "workbench login" in message


# --- with the Clowder test server ---------------------------------------------------------------------


@pytest.mark.e2e
def test_send_a_dataset_follow_it_and_export_a_folder(
    paired_workbench: Platform, clowder: ClowderServer, tmp_path: Path
) -> None:
    content = {"readme.txt": b"hello from Clowder\n", "raw/data.bin": os.urandom(500_000)}
    dataset_id = clowder.add_dataset("Field Study")
    clowder.add_files(dataset_id, content)

    http = httpx.Client(base_url=paired_workbench.url, timeout=10)
    admin = http.post("/api/authenticate", json={"username": "admin", "password": ADMIN_PASSWORD}).json()[
        "token"
    ]
    account = {
        "namespace": "carol",
        "name": "Carol",
        "email": "carol@example.org",
        "password": "carol-password",
    }
    assert http.post("/api/accounts", json=account, headers=bearer(admin)).status_code == 200
    cli = Cli(tmp_path / "carol.json", paired_workbench.url)
    cli.login("carol", "carol-password")
    assert http.post("/api/services", json=STATIC_SPEC, headers=bearer(token_of(cli))).status_code == 200
    sid = cli.json("stacks", "create", "notebook")["id"]
    cli.ok("stacks", "start", sid)
    wait_for_stack(cli, sid, "started")

    output = cli.ok("send", f"{clowder.url}/datasets/{dataset_id}", "--to", "incoming", "--wait")
    assert "Completed: 2 files in Clowder/incoming" in output
    # Where the app sees them: STATIC_SPEC mounts its folder at /home/user/work.
    assert f"in {sid}-notebook: /home/user/work/clowder/incoming" in output
    home = paired_workbench.data_dir / "home" / "carol"
    assert (home / "Clowder" / "incoming" / "readme.txt").read_bytes() == content["readme.txt"]
    assert (home / "Clowder" / "incoming" / "raw" / "data.bin").read_bytes() == content["raw/data.bin"]
    refusal = cli.failed("send", dataset_id, "--to", "../AppData")
    assert "target" in refusal and "../AppData" in refusal

    (listed,) = cli.json("transfers", "list")
    assert (listed["state"], listed["filesDone"], listed["target"]) == ("completed", 2, "Clowder/incoming")
    assert cli.json("transfers", "show", listed["id"])["id"] == listed["id"]
    assert "Field Study" in cli.ok("transfers", "list")
    shown = cli.ok("transfers", "show", listed["id"])
    assert "completed" in shown and f"in {sid}-notebook: /home/user/work/clowder/incoming" in shown
    assert "nothing-such" in cli.failed("transfers", "show", "nothing-such")

    second = cli.json("send", dataset_id, "--wait")  # the id alone: the paired Clowder
    assert (second["state"], second["target"]) == ("completed", "Clowder/Field Study")
    assert "no-such-dataset" in cli.failed("send", "no-such-dataset")

    results = home / "Clowder" / "results"  # "results" is a folder of the data folder
    results.mkdir()
    (results / "summary.txt").write_bytes(b"all fine\n")
    output = cli.ok("export", "results", "--name", "Results", "--wait")
    assert "Completed: dataset" in output
    (made,) = [dataset for dataset in clowder.datasets.values() if dataset.name == "Results"]
    assert payload(clowder.read_tree(made.id)) == {"summary.txt": b"all fine\n"}
    assert "../outside" in cli.failed("export", "../outside", "--name", "No")

    (container,) = cli.json("containers", "carol")
    assert (container["id"], container["status"]) == (sid, "started")
    assert sid in cli.ok("containers", "carol")
    assert cli.failed("containers", "admin")  # another user's stacks are not carol's to see
    cli.ok("stacks", "stop", sid)
    wait_for_stack(cli, sid, "stopped")


# --- POST /api/transfers through the function ----------------------------------------------------------


def test_a_user_asks_for_a_transfer_of_their_own(
    api: Api, platform: LocalPlatform, clowder: ClowderServer, alice: str, bob: str
) -> None:
    dataset_id = clowder.add_dataset("Shared")
    clowder.add_files(dataset_id, {"a.txt": b"a", "docs/b.txt": b"bb"})

    response = api.call("POST", "/api/transfers", alice, json={"datasetId": dataset_id, "target": "in/here"})
    assert response.status_code == 202, response.get_json()
    transfer = response.get_json()
    assert (transfer["user"], transfer["datasetName"]) == ("alice", "Shared")
    assert transfer["target"] == "Clowder/in/here"
    assert (transfer["filesTotal"], transfer["bytesTotal"]) == (2, 3)
    assert transfer["state"] in ("staging", "syncing")

    again = api.call(
        "POST",
        "/api/transfers",
        alice,
        json={"datasetId": dataset_id, "clowderUrl": clowder.url, "folders": ["docs"]},
    ).get_json()
    assert again["id"] != transfer["id"]  # every request is a transfer of its own
    assert again["filesTotal"] == 1

    listed = api.call("GET", "/api/transfers", alice).get_json()
    assert {item["id"] for item in listed} == {transfer["id"], again["id"]}
    assert api.call("GET", "/api/transfers", bob).get_json() == []
    refused(api.call("GET", f"/api/transfers/{transfer['id']}", bob), transfer["id"], status=404)


def test_a_bad_transfer_request_is_refused(
    api: Api, platform: LocalPlatform, clowder: ClowderServer, alice: str
) -> None:
    dataset_id = clowder.add_dataset("Shared")
    clowder.add_files(dataset_id, {"a.txt": b"a"})
    refused(
        api.call("POST", "/api/transfers", alice, json={"datasetId": dataset_id, "target": "../out"}),
        "target",
    )
    refused(api.call("POST", "/api/transfers", alice, json={"datasetId": dataset_id, "target": "/abs"}))
    for outside in ("Clowder/../AppData", "Clowder"):
        refused(
            api.call("POST", "/api/transfers", alice, json={"datasetId": dataset_id, "target": outside}),
            "target",
        )
    refused(api.call("POST", "/api/transfers", alice, json={"target": "x"}), "datasetId")
    refused(
        api.call(
            "POST",
            "/api/transfers",
            alice,
            json={"datasetId": dataset_id, "clowderUrl": "https://other.example"},
        ),
        "paired",
    )
    refused(api.call("POST", "/api/transfers", json={"datasetId": dataset_id}), status=401)
    assert api.call("GET", "/api/transfers", alice).get_json() == []
