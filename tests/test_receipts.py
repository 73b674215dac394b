"""Delivery receipts: written next to a completed transfer's files, checked by `workbench verify`; Clowder's
own digests checked on arrival; and where each copy of a dataset went (``GET /api/datasets/<id>/copies``)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import pytest

from shared.bootstrap import Platform
from shared.core import receipts
from shared.domain.messages import ReceiptCommand, ReceiptFile
from shared.tools import cli
from shovel.placing import PlacementError
from shovel.receipts import write_receipt
from tests.clowder_pairing import SERVICE_TOKEN, Served
from tests.clowder_server import ClowderServer
from tests.conftest import Api
from tests.support import wait_until
from tests.test_auth import error_of
from tests.test_exports import post_export, wait_for_export
from tests.test_transfers import (
    ClientFactory,
    accepted,
    deliver,
    field_study,
    only_transfer,
    started_stack,
    transfer_request,
    wait_for_transfer,
)
from tests.users import Users

pytestmark = pytest.mark.usefixtures("quick_retries", "no_stack_left")


@pytest.fixture
def environment(paired_environment: dict[str, str]) -> dict[str, str]:
    return paired_environment


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def receipt_of(target: Path, transfer_id: str) -> dict[str, Any]:
    path = target / receipts.RECEIPTS_FOLDER / f"{transfer_id}.json"
    wait_until(path.is_file, f"the receipt {path}")
    document: dict[str, Any] = json.loads(path.read_bytes())
    return document


def completed_transfer(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str
) -> tuple[str, str, dict[str, bytes], Path]:
    """Field Study sent to alice's running stack and completed: (dataset id, transfer id, bytes by
    path, target folder)."""
    dataset_id, content, _ = field_study(clowder, big=200_000)
    started_stack(api, alice)
    accepted(deliver(client, "transfer", transfer_request(clowder, dataset_id)))
    transfer_id = only_transfer(platform, "alice")["id"]
    wait_for_transfer(api, alice, transfer_id, "completed")
    return dataset_id, transfer_id, content, platform.data_dir / "home" / "alice" / "Clowder" / "Field Study"


# --- the receipt ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
def test_a_completed_transfer_leaves_its_receipt_and_manifest_next_to_the_data(
    api: Api,
    client: ClientFactory,
    platform: Platform,
    clowder: ClowderServer,
    shovels: Served,
    alice: str,
    version: Literal[1, 2],
) -> None:
    dataset_id, transfer_id, content, target = completed_transfer(api, client, platform, clowder, alice)

    receipt = receipt_of(target, transfer_id)
    assert receipt["format"] == receipts.RECEIPT_FORMAT
    assert receipt["transfer"] == transfer_id
    assert receipt["clowder"] == clowder.url.rstrip("/")
    assert receipt["dataset"] == {"id": dataset_id, "name": "Field Study", "version": None}
    assert receipt["target"] == "Clowder/Field Study"
    files = {entry["path"]: entry for entry in receipt["files"]}
    assert {path: (entry["size"], entry["sha256"]) for path, entry in files.items()} == {
        path: (len(data), sha256(data)) for path, data in content.items()
    }
    assert all(entry["placed"].endswith("Z") for entry in files.values())

    manifest = (target / receipts.RECEIPTS_FOLDER / f"{transfer_id}{receipts.MANIFEST_SUFFIX}").read_text()
    assert sorted(manifest.splitlines()) == sorted(
        f"{sha256(data)}  {path}" for path, data in content.items()
    )
    leftovers = [path.name for path in (target / receipts.RECEIPTS_FOLDER).iterdir()]
    assert sorted(leftovers) == sorted([f"{transfer_id}.json", f"{transfer_id}{receipts.MANIFEST_SUFFIX}"])

    assert receipts.verify(target).unchanged


def test_the_page_s_verify_rehashes_a_completed_transfer_on_one_machine(
    api: Api,
    client: ClientFactory,
    platform: Platform,
    clowder: ClowderServer,
    shovels: Served,
    alice: str,
    bob: str,
) -> None:
    _, transfer_id, content, target = completed_transfer(api, client, platform, clowder, alice)
    receipt_of(target, transfer_id)
    path = f"/api/transfers/{transfer_id}/verify"

    answer = api.call("POST", path, alice)
    assert answer.status_code == 200, answer.get_json()
    check = answer.get_json()
    assert (check["unchanged"], check["receipts"], check["checked"]) == (True, 1, len(content))

    (target / "readme.txt").write_bytes(b"edited in the app\n")
    (target / "raw" / "big.bin").unlink()
    (target / "notes.md").write_bytes(b"mine")
    check = api.call("POST", path, alice).get_json()
    assert check["unchanged"] is False
    assert (check["modified"], check["missing"], check["added"]) == (
        ["readme.txt"],
        ["raw/big.bin"],
        ["notes.md"],
    )
    latest = api.call("GET", path, alice).get_json()  # kept as the transfer's latest check
    assert (latest["state"], latest["result"]) == ("completed", check)

    assert api.call("POST", path, bob).status_code == 404
    assert api.call("GET", path, bob).status_code == 404


def test_a_file_whose_bytes_do_not_match_clowders_digest_fails_and_the_rest_arrive(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, shovels: Served, alice: str
) -> None:
    good, bad = b"as Clowder keeps it\n", b"changed on its way\n"
    dataset_id = clowder.add_dataset("Digests")
    clowder.add_file(dataset_id, "good.txt", good, digest=("sha512", hashlib.sha512(good).hexdigest()))
    clowder.add_file(dataset_id, "bad.txt", bad, digest=("sha512", hashlib.sha512(b"other").hexdigest()))
    started_stack(api, alice)

    accepted(deliver(client, "transfer", transfer_request(clowder, dataset_id)))
    transfer_id = only_transfer(platform, "alice")["id"]
    done = wait_for_transfer(api, alice, transfer_id, "failed")

    [error] = done["errors"]
    assert error["path"] == "bad.txt"
    assert "checksum mismatch" in error["error"] and "sha512" in error["error"]
    target = platform.data_dir / "home" / "alice" / "Clowder" / "Digests"
    assert (target / "good.txt").read_bytes() == good
    assert not (target / "bad.txt").exists()


# --- workbench verify -------------------------------------------------------------------------------------


def received(folder: Path, files: dict[str, bytes], *, transfer_id: str = "t1") -> None:
    """``files`` written into ``folder`` with a receipt for them, as a shovel leaves them."""
    for path, data in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    listed = [
        receipts.ReceivedFile(path, len(data), sha256(data), "2026-01-01T00:00:00Z")
        for path, data in files.items()
    ]
    document = receipts.receipt_document(
        transfer_id=transfer_id,
        clowder_url="https://clowder.example.org",
        dataset_id="d1",
        dataset_name="D",
        version=None,
        target="Clowder/D",
        completed="2026-01-01T00:00:00Z",
        files=listed,
    )
    (folder / receipts.RECEIPTS_FOLDER).mkdir(parents=True, exist_ok=True)
    (folder / receipts.RECEIPTS_FOLDER / f"{transfer_id}.json").write_text(json.dumps(document))


def test_verify_lists_what_was_modified_removed_and_added_since_the_receipt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp_path = tmp_path / "received"
    tmp_path.mkdir()
    received(tmp_path, {"a.txt": b"a", "sub/b.txt": b"b", "sub/c.txt": b"c", "d.txt": b"d"})
    assert cli.main(["verify", str(tmp_path)]) == 0
    assert "unchanged since received" in capsys.readouterr().out

    (tmp_path / "a.txt").write_bytes(b"A")  # same size, other bytes
    (tmp_path / "sub" / "b.txt").unlink()
    (tmp_path / "sub" / "new.txt").write_bytes(b"new")
    (tmp_path / "d.txt").unlink()
    os.symlink(tmp_path / "sub" / "c.txt", tmp_path / "d.txt")  # a link is not the file received

    assert cli.main(["verify", str(tmp_path), "--json"]) == 1
    outcome = json.loads(capsys.readouterr().out)
    assert outcome["modified"] == ["a.txt", "d.txt"]
    assert outcome["missing"] == ["sub/b.txt"]
    assert outcome["added"] == ["sub/new.txt"]
    assert outcome["unchanged"] is False


def test_verify_fails_a_folder_without_receipts_and_names_a_broken_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp_path = tmp_path / "received"
    tmp_path.mkdir()
    assert cli.main(["verify", str(tmp_path)]) == 1
    assert "no receipts" in capsys.readouterr().out

    received(tmp_path, {"a.txt": b"a"})
    (tmp_path / receipts.RECEIPTS_FOLDER / "t0.json").write_text("{not json")
    assert cli.main(["verify", str(tmp_path)]) == 1
    assert "problem: t0.json: cannot be read" in capsys.readouterr().out


def test_the_shovel_writes_a_receipt_only_inside_the_home_never_through_a_link(tmp_path: Path) -> None:
    home, outside = tmp_path / "home", tmp_path / "outside"
    (home / "Clowder" / "D").mkdir(parents=True)
    outside.mkdir()
    command = ReceiptCommand(
        transfer_id="t1",
        user="alice",
        target="Clowder/D",
        clowder_url="https://clowder.example.org",
        dataset_id="d1",
        completed="2026-01-01T00:00:00Z",
        files=[ReceiptFile(path="a.txt", size=1, sha256=sha256(b"a"))],
    )
    written = write_receipt(home, command)
    assert json.loads((home / written).read_bytes())["files"][0]["path"] == "a.txt"

    os.symlink(outside, home / "Clowder" / "E")
    with pytest.raises(PlacementError):
        write_receipt(home, command.model_copy(update={"target": "Clowder/E"}))
    assert list(outside.iterdir()) == []


# --- where each copy went --------------------------------------------------------------------------------


def test_copies_of_a_dataset_are_listed_for_the_admin_and_clowder_only(
    api: Api,
    client: ClientFactory,
    platform: Platform,
    clowder: ClowderServer,
    shovels: Served,
    alice: str,
    bob: str,
) -> None:
    dataset_id, transfer_id, content, _ = completed_transfer(api, client, platform, clowder, alice)
    path = f"/api/datasets/{dataset_id}/copies"

    assert api.call("GET", path).status_code == 401
    for user in (alice, bob):
        refused = api.call("GET", path, user)
        assert refused.status_code == 403, refused.get_json()
        assert "admin or Clowder" in error_of(refused)

    as_admin = api.call("GET", path, Users(api, platform).admin())
    assert as_admin.status_code == 200, as_admin.get_json()
    [copy] = as_admin.get_json()
    assert (copy["transferId"], copy["user"], copy["datasetId"]) == (transfer_id, "alice", dataset_id)
    assert (copy["target"], copy["datasetName"]) == ("Clowder/Field Study", "Field Study")
    assert (copy["filesDone"], copy["bytesDone"]) == (len(content), sum(map(len, content.values())))
    assert copy["locations"] and all(location["path"] for location in copy["locations"])

    as_clowder = api.call("GET", path, SERVICE_TOKEN)
    assert as_clowder.status_code == 200
    assert as_clowder.get_json() == as_admin.get_json()
    assert api.call("GET", f"{path}?version=3", SERVICE_TOKEN).get_json() == []
    assert api.call("GET", "/api/datasets/someotherdataset/copies", SERVICE_TOKEN).get_json() == []


@pytest.mark.parametrize("version", [2])
def test_a_released_version_is_named_in_the_receipt_the_copies_and_an_exports_lineage(
    api: Api,
    client: ClientFactory,
    platform: Platform,
    clowder: ClowderServer,
    shovels: Served,
    alice: str,
    version: Literal[2],
) -> None:
    """Clowder 2's released (frozen) versions: the version travels from Clowder's record into the
    transfer, its receipt, the dataset's copies and the lineage of what is exported from it."""
    dataset_id, content, _ = field_study(clowder, big=200_000)
    clowder.freeze(dataset_id, 3)
    started_stack(api, alice)
    accepted(deliver(client, "transfer", transfer_request(clowder, dataset_id)))
    transfer_id = only_transfer(platform, "alice")["id"]
    done = wait_for_transfer(api, alice, transfer_id, "completed")
    assert done["datasetVersion"] == "3"
    target = platform.data_dir / "home" / "alice" / "Clowder" / "Field Study"
    assert receipt_of(target, transfer_id)["dataset"] == {
        "id": dataset_id,
        "name": "Field Study",
        "version": "3",
    }

    copies = f"/api/datasets/{dataset_id}/copies"
    [copy] = api.call("GET", f"{copies}?version=3", SERVICE_TOKEN).get_json()
    assert (copy["transferId"], copy["datasetVersion"]) == (transfer_id, "3")
    assert api.call("GET", f"{copies}?version=2", SERVICE_TOKEN).get_json() == []

    export_id = post_export(api, alice, folder="Field Study", name="Analysed").get_json()["id"]
    exported = wait_for_export(api, alice, export_id, "completed")
    assert [(source["datasetId"], source["datasetVersion"]) for source in exported["derivedFrom"]] == [
        (dataset_id, "3")
    ]
    crate = json.loads(clowder.read_tree(exported["datasetId"])["ro-crate-metadata.json"])
    [source] = [entity for entity in crate["@graph"] if entity.get("identifier") == dataset_id]
    assert source["version"] == "3"
    parts = {part["@id"] for part in source["hasPart"]}
    assert {entity["name"]: entity["sha256"] for entity in crate["@graph"] if entity["@id"] in parts} == {
        path: sha256(data) for path, data in content.items()
    }


def test_verify_through_the_api_needs_a_completed_transfer(api: Api, platform: Platform, alice: str) -> None:
    """A transfer still under way has no receipt yet: 409. Without shovels beside the platform (as on a
    cluster) it does not reach the homes: the check is asked of the user's shovel, 202 (see
    tests/test_verify_cluster.py)."""
    from shared.core.models import Transfer

    for transfer_id, state in (("t-done", "completed"), ("t-busy", "syncing")):
        transfer = Transfer(
            id=transfer_id, user="alice", source="https://clowder.example.org", datasetId="d1"
        )
        platform.store.insert_transfer(transfer.model_copy(update={"state": state}), work="")

    answer = api.call("POST", "/api/transfers/t-done/verify", alice)
    assert answer.status_code == 202, answer.get_json()
    assert answer.get_json()["state"] == "requested"
    answer = api.call("POST", "/api/transfers/t-busy/verify", alice)
    assert answer.status_code == 409, answer.get_json()
    assert "syncing" in error_of(answer)


def test_verify_reads_lists_and_hashes_nothing_outside_the_folder(tmp_path: Path) -> None:
    """A receipt naming paths that lead out of the folder, a folder swapped for a link to elsewhere,
    and a receipts folder that is itself a link: nothing outside is read, listed or hashed."""
    folder, outside = tmp_path / "received", tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_bytes(b"not yours\n")
    (outside / "elsewhere.json").write_text(json.dumps({"format": receipts.RECEIPT_FORMAT, "files": []}))
    digest = hashlib.sha256(b"not yours\n").hexdigest()
    (folder / ".workbench" / "receipts").mkdir(parents=True)
    named = [
        {"path": "../outside/secret.txt", "size": 10, "sha256": digest},
        {"path": "linked/secret.txt", "size": 10, "sha256": digest},
    ]
    (folder / ".workbench" / "receipts" / "t1.json").write_text(
        json.dumps({"format": receipts.RECEIPT_FORMAT, "completed": "1", "files": named})
    )
    (folder / "linked").symlink_to(outside)

    result = receipts.verify(folder)

    assert result.checked == 0
    assert result.missing == ["../outside/secret.txt", "linked/secret.txt"]
    assert result.added == ["linked"]  # the link itself, never what it leads to

    # A receipts folder that is a link is not read at all.
    (folder / ".workbench" / "receipts").rename(tmp_path / "moved")
    (folder / ".workbench" / "receipts").symlink_to(outside)
    assert receipts.verify(folder).receipts == 0
