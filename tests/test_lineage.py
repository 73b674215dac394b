"""Lineage on export: the new dataset's RO-Crate names what the exported folder was made from.

A dataset travels from the Clowder test server into alice's home (a real transfer, placed by the
in-process shovel beside her started stack); a folder holding it, or a file of it, is then exported,
and the dataset Clowder gets is read back: its ``ro-crate-metadata.json`` is checked against the RO-Crate
1.1 profile by the RO-Crate community's validator, read with the ``rocrate`` library, and compared with
the bytes Clowder holds and with the metadata set on the dataset.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from shared.bootstrap import Platform
from shared.core.models import Export, Transfer, TransferFile
from shared.domain import exports, lineage
from tests.clowder_pairing import Served
from tests.clowder_server import ClowderServer
from tests.conftest import Api
from tests.crates import CRATE_NAME, crate_problems, payload
from tests.support import wait_until
from tests.test_exports import post_export, wait_for_export
from tests.test_transfers import (
    ClientFactory,
    accepted,
    deliver,
    field_study,
    only_transfer,
    queued,
    started_stack,
    transfer_request,
    wait_for_transfer,
)

pytestmark = pytest.mark.usefixtures("quick_retries", "no_stack_left")


@pytest.fixture
def environment(paired_environment: dict[str, str]) -> dict[str, str]:
    return paired_environment


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def received(api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, token: str) -> Any:
    """Field Study sent to alice's home and placed there: (dataset id, its files, their Clowder ids)."""
    dataset_id, content, ids = field_study(clowder, big=200_000)
    accepted(deliver(client, "transfer", transfer_request(clowder, dataset_id)))
    transfer_id = only_transfer(platform, "alice")["id"]
    wait_for_transfer(api, token, transfer_id, "completed")
    wait_until(lambda: queued(platform, "alice") == 0, "alice's queue emptied (the receipt written)")
    return dataset_id, content, ids, transfer_id


def unpacked(tree: dict[str, bytes], folder: Path) -> Path:
    """The dataset's files written out as the crate they make, to validate and read it there."""
    for path, data in tree.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    return folder


def by_path(crate: Any) -> dict[str, Any]:
    return {urllib.parse.unquote(entity.id): entity for entity in crate.data_entities}


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("version", [1, 2])
def test_an_export_of_received_data_carries_a_valid_crate_naming_its_sources(
    api: Api,
    client: ClientFactory,
    platform: Platform,
    clowder: ClowderServer,
    shovels: Served,
    alice: str,
    tmp_path: Path,
    version: int,
) -> None:
    from rocrate.rocrate import ROCrate

    sid = started_stack(api, alice)
    dataset_id, content, ids, transfer_id = received(api, client, platform, clowder, alice)
    folder = platform.data_dir / "home" / "alice" / "Clowder" / "Field Study"
    (folder / "results").mkdir()
    (folder / "results" / "mean of readings.txt").write_bytes(b"4.2\n")

    requested = post_export(api, alice, folder="Field Study", name="Field Study, analysed")
    assert requested.status_code == 202, requested.get_json()
    done = wait_for_export(api, alice, requested.get_json()["id"], "completed")

    # The export's record names its source, and why.
    assert done["derivedFrom"] == [
        {
            "source": clowder.url,
            "datasetId": dataset_id,
            "datasetName": "Field Study",
            "datasetVersion": "",
            "transferId": transfer_id,
            "why": "folder",
        }
    ]
    tree = clowder.read_tree(done["datasetId"])
    files = payload(tree)  # the crate lists every file of the dataset with its sha256
    assert {path: files[path] for path in content} == content
    assert files["results/mean of readings.txt"] == b"4.2\n"

    crate_folder = unpacked(tree, tmp_path / "crate")
    assert crate_problems(crate_folder, tmp_path / "cache", severity="REQUIRED") == []
    should = crate_problems(crate_folder, tmp_path / "cache", severity="RECOMMENDED")
    # All the profile's SHOULDs hold but the author's organisation, which alice's account does not name.
    assert all("affiliation" in problem for problem in should), should

    crate = ROCrate(crate_folder)
    root = crate.root_dataset
    assert (root["name"], root["url"]) == (
        "Field Study, analysed",
        f"{clowder.url}/datasets/{done['datasetId']}",
    )
    source = listed(root["wasDerivedFrom"])
    assert [entity.id for entity in source] == [f"{clowder.url}/datasets/{dataset_id}"]
    assert source[0]["identifier"] == dataset_id and source[0]["name"] == "Field Study"
    assert [entity.id for entity in listed(root["isBasedOn"])] == [source[0].id]

    entities = by_path(crate)
    for path, data in files.items():
        assert entities[path]["sha256"] == sha256(data), path
        assert entities[path]["contentSize"] == str(len(data)), path
    # A received file exported unchanged is based on the Clowder file it came from, digest and all.
    origin = entities["readme.txt"]["isBasedOn"]
    assert origin.id == f"{clowder.url}/files/{ids['readme.txt']}"
    assert (origin["sha256"], origin["isPartOf"].id) == (sha256(content["readme.txt"]), source[0].id)
    assert "isBasedOn" not in entities["results/mean of readings.txt"]
    # The source lists every file it delivered, each with the digest it was received with.
    delivered = {part["name"]: (part["sha256"], part["contentSize"]) for part in listed(source[0]["hasPart"])}
    assert delivered == {path: (sha256(data), str(len(data))) for path, data in content.items()}

    # The stack that ran, its image, and who exported it.
    action = crate.get(f"#export-{done['id']}")
    assert action.type == "CreateAction"
    apps = listed(action["instrument"])
    stack = api.call("GET", f"/api/stacks/{sid}", alice).get_json()
    assert [app.id for app in apps] == [f"#stack-{sid}-{stack['services'][0]['id']}"]
    assert (apps[0]["identifier"], apps[0]["softwareVersion"]) == ("example/notebook:latest", "latest")
    assert apps[0]["name"] == f"Notebook in stack '{stack['name']}'"
    assert [entity.id for entity in listed(action["object"])] == [source[0].id]
    assert action["result"].id == "./"
    assert root["author"].id == action["agent"].id == "#workbench-user-alice"

    # On Clowder it is also the dataset's metadata.
    kept = clowder.datasets[done["datasetId"]].metadata
    assert [document["content"]["roCrate"] for document in kept] == [json.loads(tree[CRATE_NAME])]
    if version == 1:
        assert kept[0]["agent"]["@type"] == "cat:user"
        assert kept[0]["agent"]["user_id"].startswith(f"{clowder.url}/api/users/")


# --- which datasets an export derives from --------------------------------------------------------------


def completed_transfer(
    platform: Platform,
    user: str,
    dataset: str,
    target: str,
    files: dict[str, bytes],
    *,
    state: str = "completed",
) -> Transfer:
    """A transfer as the platform records one it completed (placed every file), straight into the store."""
    transfer = Transfer(
        id=f"t-{user}-{dataset}",
        user=user,
        state=state,  # type: ignore[arg-type]
        source="http://clowder.example.org",
        datasetId=dataset,
        datasetName=dataset.title(),
        target=target,
        updateTime=len(platform.store.list_transfers()) + 1,
    )
    assert platform.store.insert_transfer(transfer)
    platform.store.put_transfer_files(
        transfer.id,
        [
            TransferFile(path=path, size=len(data), sha256=sha256(data), clowderId=f"{dataset}-{path}")
            for path, data in files.items()
        ],
    )
    platform.store.settle_transfer_files(transfer.id, list(files), [])
    return transfer


def uploaded(files: dict[str, bytes]) -> list[Any]:
    from events.types import UploadedFile

    return [
        UploadedFile(path=path, size=len(data), sha256=sha256(data), key=f"k/{path}")
        for path, data in files.items()
    ]


def sources(platform: Platform, folder: str, files: dict[str, bytes]) -> list[tuple[str, str]]:
    export = Export(id="e", user="alice", folder=folder, name="n", source="http://clowder.example.org")
    return [
        (source.transfer.datasetId, source.why)
        for source in lineage.sources_of(platform.store, export, uploaded(files))
    ]


def test_the_sources_are_the_users_own_completed_copies_the_export_touches(
    platform: Platform, alice: str, bob: str
) -> None:
    rain = {"rain.csv": b"1,2,3\n"}
    completed_transfer(platform, "alice", "rain", "Clowder/rain", rain)
    completed_transfer(platform, "alice", "soil", "Clowder/soil", {"soil.csv": b"4,5\n"})
    completed_transfer(platform, "alice", "wind", "Clowder/wind", {"wind.csv": b"6\n"}, state="syncing")
    completed_transfer(platform, "bob", "rain", "Clowder/rain", rain)  # bob's copy: never alice's source

    # A folder holding a copy, a folder inside one, and the data folder holding them all.
    assert sources(platform, "Clowder/rain", {"a.txt": b"a"}) == [("rain", "folder")]
    assert sources(platform, "Clowder/rain/sub", {"a.txt": b"a"}) == [("rain", "folder")]
    assert sources(platform, "Clowder", {"a.txt": b"a"}) == [("rain", "folder"), ("soil", "folder")]
    # A results folder carrying a received file unchanged names that dataset alone.
    assert sources(platform, "Clowder/results", {"input.csv": rain["rain.csv"]}) == [("rain", "content")]
    # Results with nothing received in them: every dataset the home received (none unfinished, none of bob's).
    assert sources(platform, "Clowder/results", {"b.txt": b"b"}) == [("rain", "home"), ("soil", "home")]
    # A folder named like a copy, but beside it, is not inside it.
    assert sources(platform, "Clowder/rainfall", {"rain.csv": b"other"}) == [
        ("rain", "home"),
        ("soil", "home"),
    ]


def test_a_folder_with_its_own_crate_keeps_it_and_the_lineage_goes_into_the_metadata(
    api: Api,
    client: ClientFactory,
    platform: Platform,
    clowder: ClowderServer,
    shovels: Served,
    alice: str,
) -> None:
    started_stack(api, alice)
    dataset_id, _, _, _ = received(api, client, platform, clowder, alice)
    own = b'{"@context": "https://w3id.org/ro/crate/1.1/context", "@graph": []}\n'
    folder = platform.data_dir / "home" / "alice" / "Clowder" / "mine"
    folder.mkdir()
    (folder / CRATE_NAME).write_bytes(own)
    (folder / "out.txt").write_bytes(b"out\n")

    export_id = post_export(api, alice, folder="mine", name="Mine").get_json()["id"]
    done = wait_for_export(api, alice, export_id, "completed")
    assert done["message"] == exports.OWN_CRATE
    assert clowder.read_tree(done["datasetId"]) == {CRATE_NAME: own, "out.txt": b"out\n"}
    [document] = clowder.datasets[done["datasetId"]].metadata
    graph = document["content"]["roCrate"]["@graph"]
    assert {entity["@id"] for entity in graph} >= {
        f"{clowder.url}/datasets/{dataset_id}",
        "out.txt",
        CRATE_NAME,
    }
    assert [source["why"] for source in done["derivedFrom"]] == ["home"]
