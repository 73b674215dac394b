"""Exports: a folder of a user's home to a new Clowder dataset, by ``POST /api/exports`` or CloudEvent.

The same setting as ``test_transfers``: the Clowder test server, the local object store and Broker
served by a Gateway on the platform's port, and in-process shovels beside the started stacks.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest

from events import types
from events.codec import Event, new_event
from events.signing import derive_key
from shared.bootstrap import Platform
from shared.domain import exports
from tests.clowder_pairing import SECRET, SOURCE, Served
from tests.clowder_server import ClowderServer
from tests.conftest import Api
from tests.crates import payload
from tests.support import wait_for_status, wait_until
from tests.test_transfers import ClientFactory, accepted, deliver, queued, refused, started_stack

pytestmark = pytest.mark.usefixtures("quick_retries", "no_stack_left")


@pytest.fixture
def environment(paired_environment: dict[str, str]) -> dict[str, str]:
    return paired_environment


FOLDER = {
    "summary.txt": b"three samples, all fine\n",
    "empty.dat": b"",
    "plots/figure.png": os.urandom(70_000),
    "plots/deep/nested/readings.bin": os.urandom(400_000),
}


def write_folder(platform: Platform, user: str, folder: str, content: dict[str, bytes]) -> None:
    """Files an app wrote into ``folder`` of the user's data folder."""
    root = platform.data_dir / "home" / user / "Clowder" / folder
    for path, data in content.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)


def export_of(api: Api, token: str, export_id: str) -> dict[str, Any]:
    response = api.call("GET", f"/api/exports/{export_id}", token)
    assert response.status_code == 200, response.get_json()
    export: dict[str, Any] = response.get_json()
    return export


def wait_for_export(api: Api, token: str, export_id: str, state: str) -> dict[str, Any]:
    """Poll the export until it is ``state``; a final state other than that fails at once."""
    return wait_for_status(
        lambda: export_of(api, token, export_id),
        state,
        f"export {export_id}",
        field="state",
        passing=("requested", "uploading", "creating"),
    )


def post_export(api: Api, token: str | None, **body: Any) -> Any:
    return api.call("POST", "/api/exports", token, json=body)


def export_request(
    clowder: ClowderServer, folder: str, *, email: str = "alice@example.org", **changes: Any
) -> Event:
    data = {
        "clowder_url": clowder.url,
        "email": email,
        "folder": folder,
        "dataset_name": "From the workbench",
    }
    return new_event(types.EXPORT_REQUESTED, {**data, **changes}, source=SOURCE, secret=SECRET.encode())


def staged_exports(platform: Platform) -> list[tuple[str, int]]:
    return platform.objects.list("exports/")


@pytest.mark.parametrize("version", [1, 2])
def test_a_folder_becomes_a_new_clowder_dataset(
    api: Api, platform: Platform, clowder: ClowderServer, shovels: Served, alice: str
) -> None:
    started_stack(api, alice)
    write_folder(platform, "alice", "results", FOLDER)

    response = post_export(api, alice, folder="results", name="My results", description="Made in a notebook")
    assert response.status_code == 202, response.get_json()
    requested = response.get_json()
    assert (requested["state"], requested["user"]) == ("uploading", "alice")
    assert requested["folder"] == "Clowder/results"  # relative to the data folder

    done = wait_for_export(api, alice, requested["id"], "completed")
    assert done["datasetId"] in clowder.datasets
    dataset = clowder.datasets[done["datasetId"]]
    assert (dataset.name, dataset.description) == ("My results", "Made in a notebook")
    assert payload(clowder.read_tree(dataset.id)) == FOLDER
    assert (done["files"], done["bytes"]) == (len(FOLDER), sum(len(data) for data in FOLDER.values()))
    assert (done["errors"], done["message"]) == ([], "")
    assert staged_exports(platform) == []  # the staged copies are gone once Clowder has the files
    assert queued(platform, "alice") == 0


def test_an_export_requested_event_does_the_same_once(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, shovels: Served, alice: str
) -> None:
    started_stack(api, alice)
    write_folder(platform, "alice", "analysis/out", FOLDER)
    event = export_request(clowder, "analysis/out", description="From Clowder's button")

    accepted(deliver(client, "export", event, "structured"))
    export_id = exports.export_id_for(event.source, event.id)
    done = wait_for_export(api, alice, export_id, "completed")
    assert payload(clowder.read_tree(done["datasetId"])) == FOLDER
    assert clowder.datasets[done["datasetId"]].name == "From the workbench"

    accepted(deliver(client, "export", event, "binary"))  # delivered again: nothing more happens
    shovels.wait_idle()
    assert [export["id"] for export in api.call("GET", "/api/exports", alice).get_json()] == [export_id]
    assert len(clowder.datasets) == 1
    assert queued(platform, "alice") == 0


def test_a_folder_is_named_as_the_app_sees_it_or_relative_to_the_data_folder(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, shovels: Served, alice: str
) -> None:
    sid = started_stack(api, alice)  # its app mounts its folder at /home/user/work
    write_folder(platform, "alice", "results", FOLDER)
    response = post_export(api, alice, folder="/home/user/work/clowder/results", name="Seen in the app")
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["folder"] == "Clowder/results"
    done = wait_for_export(api, alice, response.get_json()["id"], "completed")
    assert payload(clowder.read_tree(done["datasetId"])) == FOLDER
    for same in ("Clowder/results", "results/"):
        assert post_export(api, alice, folder=same, name="Same").get_json()["folder"] == "Clowder/results"

    # The app's own folder is a folder of the home too.
    (own,) = api.call("GET", f"/api/stacks/{sid}", alice).get_json()["services"][0]["volumeMounts"]
    notes = post_export(api, alice, folder="/home/user/work/notes", name="Notes").get_json()
    assert notes["folder"] == f"{own}/notes"
    event = export_request(clowder, "/home/user/work/clowder/results")
    accepted(deliver(client, "export", event))
    assert (
        api.call("GET", f"/api/exports/{exports.export_id_for(event.source, event.id)}", alice).get_json()[
            "folder"
        ]
        == "Clowder/results"
    )

    # A path no app of hers sees, or one that climbs out of the app's folder, is refused.
    for folder in ("/srv/results", "/home/user/work/../../../etc", "/home/user"):
        refused(post_export(api, alice, folder=folder, name="Elsewhere"), "folder")
    refused(deliver(client, "export", export_request(clowder, "/srv/results")), "folder")


@pytest.mark.parametrize(
    "folder",
    ["../x", "/etc", "a/../../b", "nul\x00folder", ""],
    ids=["up", "absolute", "climbing", "nul", "empty"],
)
def test_hostile_or_missing_folders_are_refused(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str, folder: str
) -> None:
    refused(post_export(api, alice, folder=folder, name="Escape"), "folder")
    refused(deliver(client, "export", export_request(clowder, folder)), "folder")
    assert api.call("GET", "/api/exports", alice).get_json() == []
    assert queued(platform, "alice") == 0
    assert clowder.requests == []


def test_missing_names_foreign_people_and_clowders_and_forged_requests_are_refused(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str
) -> None:
    refused(post_export(api, alice, folder="results", name="  "), "name")
    refused(post_export(api, alice, folder="results"), "name")
    refused(
        deliver(client, "export", export_request(clowder, "results", email="nobody@example.org")), "email"
    )
    refused(
        deliver(
            client, "export", export_request(clowder, "results", clowder_url="https://other.example.org")
        ),
        "clowder_url",
    )
    forged = new_event(
        types.EXPORT_REQUESTED,
        {"clowder_url": clowder.url, "email": "alice@example.org", "folder": "results", "dataset_name": "x"},
        source=SOURCE,
        secret=b"not-the-pairing-secret",
    )
    refused(deliver(client, "export", forged), "wbsignature")

    assert api.call("GET", "/api/exports", alice).get_json() == []
    assert queued(platform, "alice") == 0
    assert clowder.requests == []


def test_each_user_sees_only_their_own_exports(api: Api, platform: Platform, alice: str, bob: str) -> None:
    alices = post_export(api, alice, folder="results", name="Alice's").get_json()["id"]
    bobs = post_export(api, bob, folder="results", name="Bob's").get_json()["id"]

    assert [export["id"] for export in api.call("GET", "/api/exports", alice).get_json()] == [alices]
    assert [export["id"] for export in api.call("GET", "/api/exports", bob).get_json()] == [bobs]
    assert export_of(api, alice, alices)["name"] == "Alice's"
    refused(api.call("GET", f"/api/exports/{bobs}", alice), bobs, status=404)
    refused(api.call("GET", f"/api/exports/{alices}", bob), alices, status=404)
    refused(api.call("GET", "/api/exports"), status=401)
    refused(post_export(api, None, folder="results", name="x"), status=401)
    assert queued(platform, "alice") == queued(platform, "bob") == 1


def uploaded_event(export_id: str, user: str, files: list[dict[str, Any]], *, key_user: str = "") -> Event:
    """A shovel's report that the folder is staged, signed with the derived key of ``key_user`` (or ``user``)."""
    key = derive_key(SECRET.encode(), f"shovel:{key_user or user}")
    data = {"export_id": export_id, "user": user, "files": files}
    return new_event(types.EXPORT_UPLOADED, data, source="shovel://test/", secret=key)


def test_upload_reports_count_only_from_the_exports_user_and_its_staging_area(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str, bob: str
) -> None:
    response = post_export(api, alice, folder="results", name="Reported")
    assert response.status_code == 202, response.get_json()
    export_id = response.get_json()["id"]
    before = export_of(api, alice, export_id)
    data = b"staged by the shovel"
    key = f"exports/{export_id}/notes/a.txt"
    platform.objects.put(key, [data])
    good = {"path": "notes/a.txt", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "key": key}

    forged = uploaded_event(export_id, "alice", [good], key_user="bob")
    refused(deliver(client, "shovel_reports", forged), "wbsignature")
    foreign = uploaded_event(export_id, "bob", [good])
    refused(deliver(client, "shovel_reports", foreign), export_id)
    elsewhere = uploaded_event(export_id, "alice", [{**good, "key": "blobs/sha256/ab/abc"}])
    refused(deliver(client, "shovel_reports", elsewhere, "structured"), "staging area")
    climbing = uploaded_event(export_id, "alice", [{**good, "path": "../../a.txt"}])
    refused(deliver(client, "shovel_reports", climbing), "path", "'..'")
    assert export_of(api, alice, export_id) == before
    assert clowder.requests == []

    report = uploaded_event(export_id, "alice", [good])
    accepted(deliver(client, "shovel_reports", report, "structured"))
    done = export_of(api, alice, export_id)
    assert (done["state"], done["files"], done["bytes"]) == ("completed", 1, len(data))
    assert payload(clowder.read_tree(done["datasetId"])) == {"notes/a.txt": data}
    assert staged_exports(platform) == []

    # The same report delivered again makes no second dataset and uploads nothing twice.
    requests_before = len(clowder.requests)
    accepted(deliver(client, "shovel_reports", report))
    assert len(clowder.datasets) == 1
    assert len(clowder.requests) == requests_before
    assert export_of(api, alice, export_id) == done


@pytest.mark.parametrize("version", [1, 2])
def test_clowder_refusing_the_upload_fails_the_export_clearly(
    api: Api, platform: Platform, clowder: ClowderServer, shovels: Served, alice: str
) -> None:
    started_stack(api, alice)
    write_folder(platform, "alice", "results", FOLDER)
    upload = "/api/uploadToDataset/*" if clowder.version == 1 else "/api/v2/datasets/*/files"
    clowder.fail(upload, 400, method="POST")

    response = post_export(api, alice, folder="results", name="Never complete")
    assert response.status_code == 202, response.get_json()
    failed = wait_for_export(api, alice, response.get_json()["id"], "failed")
    assert failed["message"].startswith("Clowder could not take the export"), failed
    assert "400" in failed["message"]
    # The dataset it created is deleted again: a failed export leaves nothing behind in Clowder.
    assert "it created was deleted" in failed["message"], failed
    assert failed["datasetId"] == ""
    assert len(clowder.requests_to("*/datasets/*", method="DELETE")) == 1
    assert clowder.datasets == {}
    # A failed export is final: its staged copies are gone, also those of a report that comes late.
    wait_until(lambda: staged_exports(platform) == [], "the failed export's staged copies to be deleted", 10)


def test_a_report_of_an_export_already_given_up_leaves_nothing_staged(
    api: Api, platform: Platform, alice: str
) -> None:
    """A shovel's late or repeated report of what it staged, for an export that already failed: the
    export stays failed and the files it names are deleted from staging."""
    from shared.core.models import Export

    export = Export(
        id="e-given-up", user="alice", folder="results", name="Late", source="clowder", state="failed"
    )
    platform.store.insert_export(export)
    key = f"exports/{export.id}/late.png"
    platform.objects.put(key, [b"x" * 100])
    uploaded = types.ExportUploaded(
        export_id=export.id,
        user="alice",
        files=[
            types.UploadedFile(
                path="late.png", key=key, size=100, sha256=hashlib.sha256(b"x" * 100).hexdigest()
            )
        ],
    )
    assert exports.record_uploaded(platform, uploaded).state == "failed"
    assert staged_exports(platform) == []
