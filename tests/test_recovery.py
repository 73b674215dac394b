"""Accepted work is not lost: transfers and exports whose work stopped (the platform killed, Clowder away)
are resumed on start and by the periodic sweep, or failed saying why; one instance resumes each at a time.

The in-process tests use the setting of ``test_transfers`` (its fixtures, as they are); the last one kills
a real ``workbench run`` with SIGKILL mid-transfer and starts it again.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.support import STATIC_SPEC
from events import producer, types
from shared.adapters.store import AccountRecord
from shared.adapters.store.sql import SqlStore, open_store
from shared.bootstrap import Platform
from shared.core.models import Account, Transfer
from shared.domain import recovery
from tests import test_transfers as transfers
from tests.clowder_pairing import SECRET, SOURCE, Served
from tests.clowder_server import ClowderServer
from tests.conftest import ADMIN_PASSWORD, Api
from tests.crates import payload
from tests.support import wait_until
from tests.test_e2e import Platform as PlatformProcess
from tests.test_exports import FOLDER, export_of, post_export, staged_exports, write_folder
from tests.test_transfers import (
    ClientFactory,
    accepted,
    deliver,
    every_file,
    field_study,
    only_transfer,
    queued,
    refused,
    started_stack,
    transfer_of,
    transfer_request,
)

pytestmark = pytest.mark.usefixtures("quick_retries", "no_stack_left")


@pytest.fixture
def environment(paired_environment: dict[str, str]) -> dict[str, str]:
    return paired_environment


QUICK = {"WORKBENCH_RESUME_AFTER_SECONDS": "1", "WORKBENCH_RESUME_ATTEMPTS": "2"}
"""Leases of a second and two resumptions: the sweep's rhythm, quickened for a test."""


@pytest.fixture
def extra_environment(database: str, request: pytest.FixtureRequest) -> dict[str, str]:
    extra = dict(QUICK)
    if database == "postgres":
        extra["WORKBENCH_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    return extra


def lease_passes() -> None:
    time.sleep(2.1)  # leases are whole seconds: past one, whatever the rounding


def upload_path(clowder: ClowderServer) -> str:
    return "/api/uploadToDataset/*" if clowder.version == 1 else "/api/v2/datasets/*/files"


# --- transfers that met a Clowder outage ------------------------------------------------------------------


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_transfer_left_retrying_by_an_outage_is_resumed_once_clowder_is_back(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str
) -> None:
    dataset_id, content, _ = field_study(clowder, big=1000)
    clowder.fail("/api/v2/datasets/*/files", 503)
    event = transfer_request(clowder, dataset_id)
    refused(deliver(client, "transfer", event), "Clowder", status=503)
    # The Broker's retries are spent while Clowder is away: nobody delivers the event again.
    transfer_id = only_transfer(platform, "alice")["id"]
    assert transfer_of(api, alice, transfer_id)["state"] == "requested"

    assert recovery.sweep(platform) == 0  # its lease has not run out yet
    lease_passes()
    assert recovery.sweep(platform) == 1  # resumed, and Clowder still away
    waiting = transfer_of(api, alice, transfer_id)
    assert waiting["state"] == "requested" and "retrying" in waiting["message"], waiting

    clowder.clear_faults()
    lease_passes()
    assert recovery.sweep(platform) == 1
    resumed = transfer_of(api, alice, transfer_id)
    assert (resumed["state"], resumed["message"], resumed["filesTotal"]) == ("syncing", "", len(content))
    assert queued(platform, "alice") == 1


def test_a_transfer_clowder_never_serves_again_fails_saying_why(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str
) -> None:
    dataset_id, _, _ = field_study(clowder, big=1000)
    clowder.fail("/api/v2/datasets/*/files", 503)
    refused(deliver(client, "transfer", transfer_request(clowder, dataset_id)), status=503)
    transfer_id = only_transfer(platform, "alice")["id"]
    for _ in range(3):  # two resumptions, then the third claim gives up
        lease_passes()
        recovery.sweep(platform)
    failed = transfer_of(api, alice, transfer_id)
    assert failed["state"] == "failed", failed
    assert failed["message"].startswith("gave up after 2 attempts to resume it: Clowder could not be read")
    lease_passes()
    assert recovery.sweep(platform) == 0  # failed is final


def test_a_transfer_killed_while_staging_is_staged_again_on_start(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str
) -> None:
    dataset_id, content, _ = field_study(clowder, big=1000)
    accepted(deliver(client, "transfer", transfer_request(clowder, dataset_id)))
    transfer_id = only_transfer(platform, "alice")["id"]
    # As the process left it when killed: staging, files listed, nothing sent.
    platform.store.update_transfer(
        transfer_id, lambda current: current.model_copy(update={"state": "staging", "stagingDone": False})
    )
    transfers.take_commands(platform, "alice")  # in-process queues end with the process

    claimed = recovery.claim_abandoned(platform, restarted=True)
    assert [(item.kind, item.item.id) for item in claimed] == [("transfer", transfer_id)]
    assert recovery.claim_abandoned(platform) == []  # its lease renewed: no sweep takes it meanwhile
    for item in claimed:
        recovery.resume(platform, item)
    assert transfer_of(api, alice, transfer_id)["state"] == "syncing"
    [command] = transfers.take_commands(platform, "alice")
    assert sorted(file.path for file in command.files) == sorted(content)


# --- exports -----------------------------------------------------------------------------------------------


def test_an_export_clowder_could_not_take_is_resumed_into_one_dataset(
    api: Api, platform: Platform, clowder: ClowderServer, shovels: Served, alice: str
) -> None:
    started_stack(api, alice)
    write_folder(platform, "alice", "results", FOLDER)
    clowder.fail(upload_path(clowder), 503, method="POST")
    export_id = post_export(api, alice, folder="results", name="Later").get_json()["id"]

    waiting = wait_until(
        lambda: (export := export_of(api, alice, export_id))["message"] and export, "the export to wait"
    )
    assert waiting["state"] == "creating" and "retrying" in waiting["message"], waiting
    assert len(clowder.datasets) == 1  # created before the uploads met the outage

    clowder.clear_faults()
    lease_passes()
    assert recovery.sweep(platform) == 1
    done = export_of(api, alice, export_id)
    assert (done["state"], done["message"]) == ("completed", ""), done
    assert list(clowder.datasets) == [done["datasetId"]]  # the same dataset, not a second one
    assert payload(clowder.read_tree(done["datasetId"])) == FOLDER
    assert staged_exports(platform) == []


def test_an_export_given_up_leaves_no_dataset_in_clowder(
    api: Api, platform: Platform, clowder: ClowderServer, shovels: Served, alice: str
) -> None:
    started_stack(api, alice)
    write_folder(platform, "alice", "results", FOLDER)
    clowder.fail(upload_path(clowder), 503, method="POST")
    export_id = post_export(api, alice, folder="results", name="Never").get_json()["id"]
    wait_until(lambda: export_of(api, alice, export_id)["message"], "the export to wait")
    assert len(clowder.datasets) == 1

    for _ in range(3):
        lease_passes()
        recovery.sweep(platform)
    failed = export_of(api, alice, export_id)
    assert failed["state"] == "failed", failed
    assert failed["message"].startswith("gave up after 2 attempts to resume it: Clowder could not take")
    assert "it created was deleted" in failed["message"]
    assert clowder.datasets == {} and clowder.files == {}
    assert staged_exports(platform) == []


# --- one instance at a time --------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def two_instances(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[SqlStore]]:
    """Two stores on one database, as two instances of the platform have."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    stores = [open_store(url), open_store(url)]
    yield stores  # type: ignore[misc]
    for store in stores:
        store.close()


def test_only_one_instance_claims_abandoned_work(two_instances: list[SqlStore]) -> None:
    first, second = two_instances
    first.insert_account(
        AccountRecord(Account(id="alice", namespace="alice", name="Alice", email="a@example.org"), "hash")
    )
    transfer = Transfer(id="t1", user="alice", source="https://clowder", datasetId="d1", state="staging")
    assert first.insert_transfer(transfer, work='{"the": "request"}')
    now = int(time.time())

    def staging_again(current: Transfer, attempt: int) -> Transfer:
        return current.model_copy(update={"message": f"attempt {attempt}"})

    # At work (written just now): nobody takes it.
    assert first.unfinished_transfers(["staging"], now - 60) == []
    assert first.claim_transfer("t1", now - 60, staging_again) is None

    with first._transaction(write=True) as db:
        db.run("UPDATE transfers SET updated_at = ? WHERE id = 't1'", (now - 600,))
    assert second.unfinished_transfers(["staging"], now - 60) == ["t1"]
    won: list[Any] = []
    lock = threading.Lock()

    def claim(store: SqlStore) -> None:
        taken = store.claim_transfer("t1", now - 60, staging_again)
        with lock:
            won.append(taken)

    threads = [threading.Thread(target=claim, args=(store,)) for store in (first, second) * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [taken] = [item for item in won if item is not None]
    assert (taken[0].message, taken[1]) == ("attempt 1", '{"the": "request"}')
    assert first.unfinished_transfers(["staging"], now - 60) == []  # its lease renewed by the claim


# --- the real thing: SIGKILL mid-transfer ------------------------------------------------------------------


@pytest.mark.e2e
def test_transfers_of_a_killed_platform_complete_after_its_restart(
    paired_workbench: PlatformProcess, clowder: ClowderServer
) -> None:
    _kill_and_restart(paired_workbench, clowder)


def _kill_and_restart(workbench: PlatformProcess, clowder: ClowderServer) -> None:
    http = httpx.Client(base_url=workbench.url, timeout=10)

    def login(user: str, password: str) -> dict[str, str]:
        response = http.post("/api/authenticate", json={"username": user, "password": password})
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['token']}"}

    account = {"namespace": "dora", "name": "Dora", "email": "dora@example.org", "password": "dora-pass"}
    assert http.post("/api/accounts", json=account, headers=login("admin", ADMIN_PASSWORD)).status_code == 200
    dora = login("dora", "dora-pass")

    def send(dataset_id: str) -> str:
        event = producer.emit(
            types.TRANSFER_REQUESTED,
            {"clowder_url": clowder.url, "dataset_id": dataset_id, "email": "dora@example.org"},
            url=f"{workbench.url}/events",
            source=SOURCE,
            secret=SECRET.encode(),
        )
        assert event.status == 202, event.reply
        from shared.domain.transfers import transfer_id_for

        return transfer_id_for(SOURCE, event.event.id)

    def state_of(transfer_id: str) -> dict[str, Any]:
        response = http.get(f"/api/transfers/{transfer_id}", headers=dora)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    def reaches(transfer_id: str, state: str, seconds: float = 40) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            # The Broker answers 202 before the function records the transfer: not there yet is not yet.
            if http.get(f"/api/transfers/{transfer_id}", headers=dora).status_code == 404:
                return None
            found = state_of(transfer_id)
            assert found["state"] != "failed" or state == "failed", found
            return found if found["state"] == state else None

        return wait_until(reached, f"transfer {transfer_id} to be {state}", seconds)

    # One transfer staged and waiting for a stack (its commands in the in-process queue), one staging.
    staged = {"a.txt": b"staged before the kill\n", "sub/b.bin": os.urandom(100_000)}
    staged_id = clowder.add_dataset("Staged")
    clowder.add_files(staged_id, staged)
    waiting = send(staged_id)
    reaches(waiting, "syncing")

    staging = {"small.txt": b"quick\n", "large.bin": os.urandom(600_000)}
    staging_id = clowder.add_dataset("Staging")
    files = clowder.add_files(staging_id, staging)
    clowder.slow(f"/api/v2/files/{files['large.bin']}", seconds=60)
    cut_off = send(staging_id)
    reaches(cut_off, "staging")
    wait_until(lambda: clowder.requests_to(f"/api/v2/files/{files['large.bin']}"), "the large download")

    assert workbench.process is not None
    workbench.process.send_signal(signal.SIGKILL)
    workbench.process.wait(timeout=10)
    clowder.clear_faults()
    workbench.start()

    reaches(cut_off, "syncing")  # staged again on start, from where it was
    spec = http.post("/api/services", json=STATIC_SPEC, headers=dora)
    assert spec.status_code == 200, spec.text
    sid = http.post("/api/stacks", json={"key": STATIC_SPEC["key"]}, headers=dora).json()["id"]
    assert http.get(f"/api/start/{sid}", headers=dora).status_code == 202
    for transfer_id in (waiting, cut_off):
        done = reaches(transfer_id, "completed")
        assert done["errors"] == [] and done["message"] == "", done
    home = workbench.data_dir / "home" / "dora" / "Clowder"
    assert every_file(home / "Staged") == staged
    assert every_file(home / "Staging") == staging


def test_an_export_whose_lineage_clowder_could_not_take_gets_it_once_when_resumed(
    api: Api, platform: Platform, clowder: ClowderServer, shovels: Served, alice: str
) -> None:
    started_stack(api, alice)
    write_folder(platform, "alice", "results", FOLDER)
    metadata = "/api/datasets/*/metadata.jsonld" if clowder.version == 1 else "/api/v2/datasets/*/metadata"
    clowder.fail(metadata, 503, method="POST")
    export_id = post_export(api, alice, folder="results", name="Traced").get_json()["id"]
    wait_until(lambda: export_of(api, alice, export_id)["message"], "the export to wait")

    clowder.clear_faults()
    lease_passes()
    assert recovery.sweep(platform) == 1
    done = export_of(api, alice, export_id)
    assert (done["state"], done["message"]) == ("completed", ""), done
    assert payload(clowder.read_tree(done["datasetId"])) == FOLDER  # each file once, and the crate
    crates = [file for file in clowder.files.values() if file.name == "ro-crate-metadata.json"]
    assert len(crates) == 1
    assert len(clowder.datasets[done["datasetId"]].metadata) == 1
