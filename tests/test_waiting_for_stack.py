"""A transfer whose files wait for one of the user's stacks says so: ``waitingForStack``, worked out
when the transfer is read, and the command line tells the person."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from shared.adapters.runtime import local
from shared.bootstrap import Platform
from shared.tools import client_cli
from tests.clowder_server import ClowderServer
from tests.conftest import Api
from tests.test_transfers import new_stack


@pytest.fixture
def environment(paired_environment: dict[str, str]) -> dict[str, str]:
    return paired_environment


def seen(api: Api, token: str, transfer_id: str) -> tuple[bool, bool]:
    """``waitingForStack`` of the transfer, as read alone and as listed."""
    one = api.call("GET", f"/api/transfers/{transfer_id}", token).get_json()
    (listed,) = [
        item for item in api.call("GET", "/api/transfers", token).get_json() if item["id"] == transfer_id
    ]
    return one["waitingForStack"], listed["waitingForStack"]


def set_status(platform: Platform, owner: str, sid: str, status: str) -> None:
    platform.store.update_stack(owner, sid, lambda stack: stack.model_copy(update={"status": status}))


def test_a_transfer_waits_for_a_stack_while_none_of_the_users_stacks_runs(
    api: Api, platform: Platform, clowder: ClowderServer, alice: str, bob: str
) -> None:
    dataset_id = clowder.add_dataset("Samples")
    clowder.add_files(dataset_id, {"a.txt": b"a"})

    response = api.call("POST", "/api/transfers", alice, json={"datasetId": dataset_id})
    assert response.status_code == 202, response.get_json()
    transfer = response.get_json()
    assert transfer["state"] == "syncing"
    assert transfer["waitingForStack"] is True
    assert seen(api, alice, transfer["id"]) == (True, True)

    sid = new_stack(api, alice)
    assert seen(api, alice, transfer["id"]) == (True, True)  # a stopped stack has no shovel
    set_status(platform, "alice", sid, "starting")
    assert seen(api, alice, transfer["id"]) == (False, False)
    set_status(platform, "alice", sid, "started")
    assert seen(api, alice, transfer["id"]) == (False, False)
    # Another user's running stack does not place alice's files.
    set_status(platform, "alice", sid, "stopped")
    other = new_stack(api, bob)
    set_status(platform, "bob", other, "started")
    assert seen(api, alice, transfer["id"]) == (True, True)

    # Never stored: the record keeps no answer of a read.
    stored = platform.store.get_transfer(transfer["id"])
    assert stored is not None and stored.waitingForStack is False

    # A finished transfer waits for nothing.
    platform.store.update_transfer(
        transfer["id"], lambda item: item.model_copy(update={"state": "completed"})
    )
    assert seen(api, alice, transfer["id"]) == (False, False)


# --- the command line's words, on answers of the API ----------------------------------------------------


class Answers:
    """A session that answers each call with the next of the given replies."""

    def __init__(self, *replies: Any) -> None:
        self.replies = list(replies)
        self.calls: list[tuple[str, str]] = []

    def call(self, method: str, path: str, **_: Any) -> Any:
        self.calls.append((method, path))
        return self.replies.pop(0)


def test_transfers_list_marks_the_transfers_that_wait_for_a_stack(
    api: Api,
    platform: Platform,
    clowder: ClowderServer,
    alice: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    names = ("Samples", "Cores")
    ids = {}
    for name in names:
        dataset_id = clowder.add_dataset(name)
        clowder.add_files(dataset_id, {"a.txt": b"a"})
        response = api.call("POST", "/api/transfers", alice, json={"datasetId": dataset_id})
        assert response.status_code == 202, response.get_json()
        ids[name] = response.get_json()["id"]
    platform.store.update_transfer(ids["Cores"], lambda item: item.model_copy(update={"state": "completed"}))

    # The table of the API's own answer, as `workbench transfers list` prints it.
    listed = api.call("GET", "/api/transfers", alice).get_json()
    monkeypatch.setattr(client_cli, "session", lambda: Answers(listed))
    assert client_cli.transfers_list(argparse.Namespace(json=False)) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    state = header.index("STATE")
    files = header.index("FILES")
    by_id = {row.split()[0]: row[state:files].strip() for row in rows}
    assert by_id == {ids["Samples"]: "syncing (waiting for a stack)", ids["Cores"]: "completed"}

    # Once one of alice's stacks starts, the files no longer wait.
    sid = new_stack(api, alice)
    set_status(platform, "alice", sid, "started")
    listed = api.call("GET", "/api/transfers", alice).get_json()
    monkeypatch.setattr(client_cli, "session", lambda: Answers(listed))
    assert client_cli.transfers_list(argparse.Namespace(json=False)) == 0
    assert "waiting for a stack" not in capsys.readouterr().out


def stack(sid: str, status: str, *services: dict[str, Any]) -> dict[str, Any]:
    return {"id": sid, "key": "jupyter", "name": f"Stack {sid}", "status": status, "services": list(services)}


def service(ssid: str, *urls: str, messages: tuple[str, ...] = (), address: bool = False) -> dict[str, Any]:
    endpoints = [{"host": "127.0.0.1", "port": 80, "url": url} for url in urls]
    if address:  # an internal service: its address, no URL
        endpoints.append({"host": "127.0.0.1", "port": 27017, "nodePort": 40001, "url": ""})
    return {"id": ssid, "statusMessages": list(messages), "endpoints": endpoints or None}


def test_stacks_list_labels_each_url_with_its_service_and_marks_file_previews(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    preview = (
        "File preview: serving the service's folder read-only on http://127.0.0.1:4001/, not jupyter itself."
    )
    listed = [
        stack(
            "s1abcd",
            "started",
            service("s1abcd-jupyter", "http://127.0.0.1:4001/", messages=("File preview: starting", preview)),
            service("s1abcd-mongo", address=True, messages=("Listening on 127.0.0.1:40001",)),
            service(
                "s1abcd-web", "http://127.0.0.1:4002/", "http://127.0.0.1:4003/x", messages=("Serving on",)
            ),
        ),
        stack("s2efgh", "stopped", service("s2efgh-jupyter", messages=("File preview: starting", "Stopped"))),
    ]
    monkeypatch.setattr(client_cli, "session", lambda: Answers(listed))
    assert client_cli.stacks_list(argparse.Namespace(json=False)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == [
        "ID      KEY      NAME          STATUS",
        "s1abcd  jupyter  Stack s1abcd  started",
        "s2efgh  jupyter  Stack s2efgh  stopped",
    ]
    assert lines[4:9] == [
        "SERVICE         CONNECT",
        "s1abcd-jupyter  http://127.0.0.1:4001/   file preview",
        "s1abcd-web      http://127.0.0.1:4002/",
        "s1abcd-web      http://127.0.0.1:4003/x",
        "",
    ]
    assert not any("mongo" in line or "40001" in line for line in lines)  # internal: no Connect link
    assert lines[9] == client_cli.REAL_APP
    assert "Docker or Podman" in lines[9] and "WORKBENCH_LOCAL_COMMANDS" in lines[9]
    # The command line knows a preview by the runtime's own words.
    assert client_cli.PREVIEW == local.PREVIEW


def test_send_wait_says_once_that_the_files_wait_for_a_stack(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = {
        "id": "t1",
        "datasetId": "d1",
        "datasetName": "Samples",
        "target": "Clowder/Samples",
        "filesTotal": 1,
        "bytesTotal": 1,
        "bytesDone": 0,
        "filesDone": 0,
    }
    waiting = {**base, "state": "syncing", "waitingForStack": True}
    done = {**base, "state": "completed", "filesDone": 1, "bytesDone": 1, "waitingForStack": False}
    answers = Answers(waiting, waiting, waiting, done)
    monkeypatch.setattr(client_cli, "session", lambda: answers)
    monkeypatch.setattr(client_cli, "POLL_SECONDS", 0)
    arguments = argparse.Namespace(dataset="d1", clowder=None, to=None, wait=True, json=False)
    assert client_cli.send(arguments) == 0
    output = capsys.readouterr().out
    assert output.count(client_cli.WAITING_FOR_STACK) == 1
    assert "files arrive when one of your stacks starts" in client_cli.WAITING_FOR_STACK
    assert output.index(client_cli.WAITING_FOR_STACK) < output.index("Completed: 1 files")

    answers = Answers(done)
    monkeypatch.setattr(client_cli, "session", lambda: answers)
    client_cli.send(arguments)
    assert client_cli.WAITING_FOR_STACK not in capsys.readouterr().out
