"""A plan before sending: ``POST /api/transfers?dry_run=1`` and ``workbench send --plan`` say what a
transfer would move and whether it fits, changing nothing; a transfer that would not fit the account's
storage quota or the home's volume is refused before anything moves (over HTTP, and as an event)."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from events import types
from shared.bootstrap import Platform
from shared.core.models import Transfer
from shared.domain import clowder_jobs, transfers
from shared.tools import client_cli
from tests import test_clowder_jobs as jobs
from tests.clowder_pairing import Served
from tests.clowder_server import ClowderServer
from tests.conftest import Api
from tests.test_shovel import AMQP_URL, require_rabbitmq
from tests.test_transfers import ClientFactory, deliver, queued, transfer_request

pytestmark = pytest.mark.usefixtures("quick_retries")

GIB = 1 << 30


@pytest.fixture
def environment(paired_environment: dict[str, str]) -> dict[str, str]:
    return paired_environment


def home(platform: Platform, user: str) -> Path:
    return platform.data_dir / "home" / user


def dry_run(api: Api, token: str, body: dict[str, Any]) -> dict[str, Any]:
    response = api.call("POST", "/api/transfers?dry_run=1", token, json=body)
    assert response.status_code == 200, response.get_json()
    plan: dict[str, Any] = response.get_json()
    return plan


def nothing_moved(platform: Platform, clowder: ClowderServer, user: str) -> None:
    assert platform.store.list_transfers(user) == []
    assert queued(platform, user) == 0
    assert not (home(platform, user) / ".workbench-partial").exists() or not any(
        (home(platform, user) / ".workbench-partial").iterdir()
    )
    assert clowder.requests_to("/api/v2/files/*", "GET") == []  # not one byte fetched


def set_quota(platform: Platform, user: str, gib: int) -> None:
    def change(record: Any) -> Any:
        limits = record.account.resourceLimits.model_copy(update={"storageQuota": gib})
        record.account = record.account.model_copy(update={"resourceLimits": limits})
        return record

    platform.store.update_account(user, change)


# --- the dry run ----------------------------------------------------------------------------------------


def test_a_dry_run_answers_the_plan_and_changes_nothing(
    api: Api, platform: Platform, shovels: Served, clowder: ClowderServer, alice: str
) -> None:
    dataset_id = clowder.add_dataset("Samples")
    clowder.add_files(dataset_id, {"a.txt": b"aaaa", "docs/b.txt": b"bb", "docs/c.txt": b"c"})
    # One file is in place already with the same size; one with another size; a link is no file in place.
    folder = home(platform, "alice") / "Clowder" / "Samples"
    (folder / "docs").mkdir(parents=True)
    (folder / "a.txt").write_bytes(b"AAAA")
    (folder / "docs" / "b.txt").write_bytes(b"changed")
    outside = platform.data_dir / "outside.txt"
    outside.write_bytes(b"c")
    (folder / "docs" / "c.txt").symlink_to(outside)

    plan = dry_run(api, alice, {"datasetId": dataset_id})

    assert (plan["datasetName"], plan["target"]) == ("Samples", "Clowder/Samples")
    assert (plan["files"], plan["bytes"]) == (3, 7)
    assert (plan["inPlaceFiles"], plan["inPlaceBytes"]) == (1, 4)
    assert (plan["stagedFiles"], plan["fetchBytes"], plan["neededBytes"]) == (0, 3, 3)
    # The default quota (10 GiB) against the home's files, counted by a scan (the link not followed).
    assert plan["quotaBytes"] == 10 * GIB
    assert (plan["usedBytes"], plan["usageFrom"]) == (4 + 7, "home scan")
    assert plan["fitsQuota"] is True
    volume = os.statvfs(home(platform, "alice"))
    assert abs(plan["freeBytes"] - volume.f_bavail * volume.f_frsize) < 64 * 1024 * 1024
    assert (plan["fitsFreeSpace"], plan["fits"]) == (True, True)
    assert (plan["estimateSeconds"], plan["throughput"]) == (None, None)
    assert any("no estimate yet" in note for note in plan["notes"])
    nothing_moved(platform, clowder, "alice")

    only = dry_run(api, alice, {"datasetId": dataset_id, "folders": ["docs"], "target": "Elsewhere"})
    assert (only["files"], only["bytes"], only["target"], only["inPlaceFiles"]) == (
        2,
        3,
        "Clowder/Elsewhere",
        0,
    )
    nothing_moved(platform, clowder, "alice")

    # Refusals are those of a real request: no such dataset, a target outside the data folder.
    refused = api.call("POST", "/api/transfers?dry_run=1", alice, json={"datasetId": "5f1e" * 6})
    assert refused.status_code == 400, refused.get_json()
    refused = api.call(
        "POST", "/api/transfers?dry_run=1", alice, json={"datasetId": dataset_id, "target": "../x"}
    )
    assert refused.status_code == 400, refused.get_json()
    unclear = api.call("POST", "/api/transfers?dry_run=maybe", alice, json={"datasetId": dataset_id})
    assert unclear.status_code == 400 and "dry_run" in unclear.get_json()["Error"]
    nothing_moved(platform, clowder, "alice")

    # dry_run=0 is a real transfer.
    sent = api.call("POST", "/api/transfers?dry_run=0", alice, json={"datasetId": dataset_id})
    assert sent.status_code == 202, sent.get_json()
    assert [transfer.id for transfer in platform.store.list_transfers("alice")] == [sent.get_json()["id"]]


def test_a_plan_counts_what_is_staged_already_and_estimates_from_completed_transfers(
    api: Api, platform: Platform, clowder: ClowderServer, alice: str
) -> None:
    # No shovels here: the platform does not reach the homes, so files stage in the object store and
    # the plan cannot tell the volume's free space; the usage comes from the transfer records.
    dataset_id = clowder.add_dataset("Cores")
    clowder.add_files(dataset_id, {"a.bin": b"a" * 3000, "b.bin": b"b" * 1000})
    first = dry_run(api, alice, {"datasetId": dataset_id})
    assert (first["stagedFiles"], first["fetchBytes"], first["usageFrom"]) == (0, 4000, "transfer records")
    assert (first["freeBytes"], first["fitsFreeSpace"], first["fits"]) == (None, None, True)
    assert any("free space" in note for note in first["notes"])

    sent = api.call("POST", "/api/transfers", alice, json={"datasetId": dataset_id})
    assert sent.status_code == 202, sent.get_json()
    transfer = sent.get_json()
    # The shovel's report that both files are placed: the transfer completes and is measured.
    platform.store.update_transfer(
        transfer["id"], lambda item: item.model_copy(update={"createdTime": item.createdTime - 4})
    )
    progress = types.TransferProgress(transfer_id=transfer["id"], user="alice", placed=["a.bin", "b.bin"])
    done = transfers.record_progress(platform, progress)
    assert done.state == "completed"

    second = dry_run(api, alice, {"datasetId": dataset_id, "target": "Again"})
    assert (second["stagedFiles"], second["stagedBytes"], second["fetchBytes"]) == (2, 4000, 0)
    assert (second["usedBytes"], second["neededBytes"]) == (4000, 4000)
    rate = second["throughput"]
    assert rate is not None and 4000 / 6 <= rate <= 4000 / 4
    assert second["estimateSeconds"] == 0  # nothing left to fetch

    clowder.add_files(dataset_id, {"c.bin": b"c" * 8000})
    third = dry_run(api, alice, {"datasetId": dataset_id, "target": "Again"})
    assert third["fetchBytes"] == 8000
    assert third["estimateSeconds"] == math.ceil(8000 / rate)


# --- refused up front -----------------------------------------------------------------------------------


def test_a_transfer_over_the_quota_is_refused_before_anything_moves(
    api: Api, platform: Platform, shovels: Served, client: ClientFactory, clowder: ClowderServer, alice: str
) -> None:
    dataset_id = clowder.add_dataset("Big")
    clowder.add_files(dataset_id, {"a.txt": b"a" * 1000})
    set_quota(platform, "alice", 1)
    # The home holds a (sparse) file of one GiB less 500 bytes: 500 bytes of the quota are left.
    home(platform, "alice").mkdir(parents=True)
    with open(home(platform, "alice") / "large.bin", "wb") as handle:
        handle.truncate(GIB - 500)

    plan = dry_run(api, alice, {"datasetId": dataset_id})
    assert (plan["fitsQuota"], plan["fits"], plan["neededBytes"]) == (False, False, 1000)

    response = api.call("POST", "/api/transfers", alice, json={"datasetId": dataset_id})
    assert response.status_code == 409, response.get_json()
    body = response.get_json()
    assert (body["limit"], body["neededBytes"], body["availableBytes"]) == ("quota", 1000, 500)
    assert "storage quota" in body["Error"]
    nothing_moved(platform, clowder, "alice")

    # Asked for by Clowder's signed event: the transfer ends failed with the reason, nothing staged.
    answer = deliver(client, "transfer", transfer_request(clowder, dataset_id))
    assert answer.status_code < 300, answer.get_data(as_text=True)
    (failed,) = platform.store.list_transfers("alice")
    assert failed.state == "failed"
    assert "storage quota" in failed.message and "1000 bytes" in failed.message
    assert platform.store.list_transfer_files(failed.id) == []
    assert queued(platform, "alice") == 0
    assert clowder.requests_to("/api/v2/files/*", "GET") == []

    # With room made, the same request goes through.
    (home(platform, "alice") / "large.bin").unlink()
    assert api.call("POST", "/api/transfers", alice, json={"datasetId": dataset_id}).status_code == 202


@pytest.fixture
def small_home(platform: Platform) -> Iterator[Path]:
    """Alice's home on a volume of its own, of 1 MiB (a tmpfs)."""
    place = home(platform, "alice")
    place.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(place)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        if os.environ.get("WORKBENCH_REQUIRE_SERVICES"):
            pytest.fail(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield place
    finally:
        subprocess.run(["umount", "--lazy", str(place)], check=True)


def test_a_transfer_over_the_volumes_free_space_is_refused_before_anything_moves(
    api: Api,
    platform: Platform,
    shovels: Served,
    client: ClientFactory,
    clowder: ClowderServer,
    alice: str,
    small_home: Path,
) -> None:
    dataset_id = clowder.add_dataset("Wide")
    clowder.add_files(dataset_id, {"a.bin": b"a" * (2 << 20)})
    free = os.statvfs(small_home).f_bavail * os.statvfs(small_home).f_frsize

    plan = dry_run(api, alice, {"datasetId": dataset_id})
    assert (plan["freeBytes"], plan["fitsFreeSpace"], plan["fitsQuota"], plan["fits"]) == (
        free,
        False,
        True,
        False,
    )

    response = api.call("POST", "/api/transfers", alice, json={"datasetId": dataset_id})
    assert response.status_code == 507, response.get_json()
    body = response.get_json()
    assert (body["limit"], body["neededBytes"], body["availableBytes"]) == ("free space", 2 << 20, free)
    nothing_moved(platform, clowder, "alice")

    answer = deliver(client, "transfer", transfer_request(clowder, dataset_id), "structured")
    assert answer.status_code < 300, answer.get_data(as_text=True)
    (failed,) = platform.store.list_transfers("alice")
    assert failed.state == "failed" and "free space" in failed.message
    assert queued(platform, "alice") == 0
    assert clowder.requests_to("/api/v2/files/*", "GET") == []

    # What fits the volume is sent.
    small = clowder.add_dataset("Narrow")
    clowder.add_files(small, {"a.bin": b"a" * 1000})
    assert api.call("POST", "/api/transfers", alice, json={"datasetId": small}).status_code == 202


# --- the command line -----------------------------------------------------------------------------------


def test_send_plan_prints_the_plan_and_sends_nothing(
    api: Api,
    platform: Platform,
    shovels: Served,
    clowder: ClowderServer,
    alice: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dataset_id = clowder.add_dataset("Field Study")
    clowder.add_files(dataset_id, {"a.txt": b"a" * 1500, "b.txt": b"b" * 500})
    monkeypatch.setattr(client_cli, "session", lambda: client_cli.Session(shovels.url, alice))

    def send(*flags: str) -> int:
        parser = argparse.ArgumentParser()
        client_cli.register(parser.add_subparsers(dest="command"))
        arguments = parser.parse_args(["send", f"{clowder.url}/datasets/{dataset_id}", *flags])
        result: int = arguments.handler(arguments)
        return result

    assert send("--plan") == 0
    printed = capsys.readouterr().out
    assert "Plan for 'Field Study' → Clowder/Field Study (nothing is sent)" in printed
    assert "files:          2 (2.0 KB)" in printed
    assert "quota:          fits" in printed and "free space:     fits" in printed
    assert "no estimate yet" in printed
    nothing_moved(platform, clowder, "alice")

    assert send("--plan", "--json") == 0
    assert '"fits": true' in capsys.readouterr().out
    nothing_moved(platform, clowder, "alice")

    set_quota(platform, "alice", 1)
    home(platform, "alice").mkdir(parents=True, exist_ok=True)
    with open(home(platform, "alice") / "large.bin", "wb") as handle:
        handle.truncate(GIB)
    assert send("--plan") == 1
    assert "DOES NOT FIT" in capsys.readouterr().out
    assert send() == 1
    assert "storage quota" in capsys.readouterr().err
    nothing_moved(platform, clowder, "alice")


# --- a Clowder job ----------------------------------------------------------------------------------------


class TestAClowderJob:
    """A job on Clowder's extractor queue, as a RabbitmqSource delivers it, over the quota: it ends
    failed in Clowder with the reason, nothing staged."""

    @pytest.fixture
    def clowder(self, tmp_path: Path) -> Iterator[ClowderServer]:
        require_rabbitmq()
        try:
            with ClowderServer(tmp_path / "clowder", 2, jobs.API_KEY, amqp_url=AMQP_URL) as server:
                yield server
        finally:
            jobs.delete_queues()

    @pytest.fixture
    def environment(self, clowder: ClowderServer) -> dict[str, str]:
        return {
            "WORKBENCH_CLOWDER_URL": clowder.url,
            "WORKBENCH_CLOWDER_API_KEY": jobs.API_KEY,
            "WORKBENCH_CLOWDER_AMQP_URL": AMQP_URL,
            "WORKBENCH_CLOWDER_EXTRACTOR_PREFIX": jobs.PREFIX,
            "WORKBENCH_CLOWDER_REPLY_QUEUE": clowder.reply_queue,
        }

    def test_a_job_over_the_quota_ends_failed_in_clowder_with_the_reason(
        self, clowder: ClowderServer, platform: Platform, api: Api, client: ClientFactory
    ) -> None:
        from events import codec

        api.make_user("dana")
        key = clowder.add_user("dana@example.org")
        dataset_id = clowder.add_dataset("Soil samples")
        clowder.add_files(dataset_id, {"a.csv": b"1,2\n"})
        set_quota(platform, "dana", 1)
        # The platform does not reach the homes here: their usage is what its transfers placed there.
        earlier = Transfer(
            id=str(uuid.uuid4()),
            user="dana",
            state="completed",
            source=clowder.url,
            datasetId="earlier",
            bytesTotal=GIB,
            bytesDone=GIB,
        )
        platform.store.insert_transfer(earlier)

        job_id = uuid.uuid4().hex[:24]
        body = {
            "host": clowder.url,
            "secretKey": key,
            "id": dataset_id,
            "datasetId": dataset_id,
            "job_id": job_id,
        }
        event = codec.Event(
            {
                "specversion": "1.0",
                "type": clowder_jobs.JOB_EVENT,
                "source": jobs.SOURCE_OF_SEND,
                "id": uuid.uuid4().hex,
                "datacontenttype": "application/json",
            },
            json.dumps(body).encode(),
        )
        headers, data = codec.to_http(event, "binary")
        answer = client("clowder_job").post("/", headers=headers, data=data)
        assert answer.status_code == 202, answer.get_data(as_text=True)
        (failed,) = [item for item in platform.store.list_transfers("dana") if item.id != earlier.id]
        assert failed.state == "failed" and "storage quota" in failed.message
        assert platform.store.list_transfer_files(failed.id) == []
        assert clowder.requests_to("/api/v2/files/*", "GET") == []

        # Its outcome event (as the Broker delivers it) ends the job in Clowder, saying why.
        outcome = codec.new_event(
            types.TRANSFER_FAILED,
            types.TransferOutcome(
                transfer_id=failed.id,
                user="dana",
                dataset_id=dataset_id,
                files_done=0,
                files_total=0,
                bytes_done=0,
                bytes_total=0,
            ),
            source=platform.event_source,
            secret=platform.event_secret,
        )
        headers, data = codec.to_http(outcome, "binary")
        answer = client("clowder_job").post("/", headers=headers, data=data)
        assert answer.status_code == 202, answer.get_data(as_text=True)
        ended = jobs.final_status(clowder, job_id)
        assert ended["message_type"] == "StatusMessage.error"
        assert "does not fit the storage quota" in ended["message"], ended["message"]
