"""Clowder withdraws a dataset (deletes it, or withdraws some users' access): the copies the platform placed
are flagged to their owners, through the API and by one mail, and nothing leaves their homes.

Events go through the ``withdrawal`` function as functions-framework serves it, in binary and structured
mode; the transfers are recorded in the real store (SQLite, and PostgreSQL where marked) as completed
ones are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from events import types
from events.codec import Event, Mode, canonical_json, new_event
from shared.bootstrap import Platform
from shared.core import clock
from shared.core.models import Transfer
from shared.tools import client_cli
from tests.clowder_pairing import SECRET, SERVICE_TOKEN, SOURCE
from tests.clowder_server import ClowderServer
from tests.conftest import Api
from tests.test_auth import body_of, mails
from tests.test_transfers import MODES, ClientFactory, accepted, deliver, raw_event, refused
from tests.users import Users

DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture
def environment(paired_environment: dict[str, str]) -> dict[str, str]:
    return paired_environment


def copy_of(
    platform: Platform,
    transfer_id: str,
    user: str,
    dataset_id: str,
    *,
    state: str = "completed",
    version: str = "",
    source: str | None = None,
) -> str:
    """A transfer of the dataset to the user's home, recorded as the transfer function records one."""
    transfer = Transfer(
        id=transfer_id,
        user=user,
        state=state,  # type: ignore[arg-type]
        source=source or platform.settings.clowder.url or "",
        datasetId=dataset_id,
        datasetName=f"Dataset {dataset_id}",
        datasetVersion=version,
        target=f"Clowder/{transfer_id}",
        filesTotal=2,
        filesDone=2 if state == "completed" else 0,
        createdTime=clock.now(),
        updateTime=clock.now(),
    )
    assert platform.store.insert_transfer(transfer)
    return transfer_id


def withdrawal(
    clowder: ClowderServer,
    dataset_id: str,
    reason: str = "deleted",
    *,
    secret: str | None = SECRET,
    event_id: str | None = None,
    **changes: Any,
) -> Event:
    data = {"clowder_url": clowder.url, "dataset_id": dataset_id, "reason": reason, **changes}
    return new_event(
        types.DATASET_WITHDRAWN,
        data,
        source=SOURCE,
        secret=secret.encode() if secret is not None else None,
        event_id=event_id,
    )


def flags(platform: Platform) -> dict[str, Any]:
    """Every transfer's flag (None where it has none), by transfer id."""
    return {
        transfer.id: transfer.withdrawn.model_dump() if transfer.withdrawn else None
        for transfer in platform.store.list_transfers()
    }


def reasons(platform: Platform) -> dict[str, str | None]:
    return {key: flag and flag["reason"] for key, flag in flags(platform).items()}


# --- who is flagged ------------------------------------------------------------------------------------


@pytest.mark.parametrize("database", DATABASES)
@pytest.mark.parametrize("mode", MODES)
def test_the_paired_clowder_flags_exactly_the_copies_it_withdrew(
    client: ClientFactory,
    platform: Platform,
    clowder: ClowderServer,
    alice: str,
    bob: str,
    users: Users,
    mode: Mode,
) -> None:
    users.make("carol")
    copy_of(platform, "alice-d1", "alice", "d1")
    copy_of(platform, "alice-d2", "alice", "d2")
    copy_of(platform, "bob-d1", "bob", "d1")
    copy_of(platform, "carol-d1", "carol", "d1", state="syncing")  # a copy on its way
    copy_of(platform, "bob-d1-failed", "bob", "d1", state="failed")
    copy_of(platform, "alice-d1-elsewhere", "alice", "d1", source="https://old-clowder.example.org")

    withdrawn = withdrawal(
        clowder,
        "d1",
        "access-withdrawn",
        emails=["ALICE@example.org", "carol@example.org", "nobody@example.org"],
        message="The project ended",
    )
    accepted(deliver(client, "withdrawal", withdrawn, mode))
    assert reasons(platform) == {
        "alice-d1": "access-withdrawn",
        "alice-d2": None,
        "bob-d1": None,
        "carol-d1": "access-withdrawn",
        "bob-d1-failed": None,
        "alice-d1-elsewhere": None,
    }
    flag = flags(platform)["alice-d1"]
    assert flag["message"] == "The project ended" and abs(flag["time"] - clock.now()) <= 5

    # Deleted: gone for everyone, and graver than a withdrawn access.
    accepted(deliver(client, "withdrawal", withdrawal(clowder, "d1", message="Retracted"), mode))
    assert reasons(platform) == {
        "alice-d1": "deleted",
        "alice-d2": None,
        "bob-d1": "deleted",
        "carol-d1": "deleted",
        "bob-d1-failed": None,
        "alice-d1-elsewhere": None,
    }
    # The rest of each transfer is as it was: only the flag is new.
    alices = platform.store.get_transfer("alice-d1")
    assert alices is not None
    assert (alices.state, alices.filesDone, alices.target) == ("completed", 2, "Clowder/alice-d1")


def test_only_the_copies_of_the_version_named_are_flagged(
    client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str
) -> None:
    copy_of(platform, "v1", "alice", "d1", version="1")
    copy_of(platform, "v2", "alice", "d1", version="2")
    accepted(deliver(client, "withdrawal", withdrawal(clowder, "d1", version="2")))
    assert reasons(platform) == {"v1": None, "v2": "deleted"}


def test_a_copy_recorded_before_the_dataset_column_is_found_by_its_document(
    client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str
) -> None:
    copy_of(platform, "older", "alice", "d1")
    copy_of(platform, "other", "alice", "d2")
    with platform.store._transaction(write=True) as db:  # type: ignore[attr-defined]
        db.run("UPDATE transfers SET dataset_id = NULL")  # as rows written before schema version 9
    accepted(deliver(client, "withdrawal", withdrawal(clowder, "d1")))
    assert reasons(platform) == {"older": "deleted", "other": None}


# --- refused: changes nothing ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_unsigned_forged_foreign_and_malformed_withdrawals_are_refused_and_change_nothing(
    client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str, mode: Mode
) -> None:
    copy_of(platform, "alice-d1", "alice", "d1")

    refused(
        deliver(client, "withdrawal", withdrawal(clowder, "d1", secret=None), mode), "carries no wbsignature"
    )
    forged = withdrawal(clowder, "d1", secret="not-the-pairing-secret")
    refused(deliver(client, "withdrawal", forged, mode), "wbsignature does not match")
    genuine = withdrawal(clowder, "d2")
    tampered = Event(genuine.attributes, canonical_json({**json.loads(genuine.data), "dataset_id": "d1"}))
    refused(deliver(client, "withdrawal", tampered, mode), "wbsignature does not match")

    elsewhere = withdrawal(clowder, "d1", clowder_url="https://other-clowder.example.org")
    refused(deliver(client, "withdrawal", elsewhere, mode), "clowder_url", "other-clowder.example.org")

    good: Mapping[str, Any] = {"clowder_url": clowder.url, "dataset_id": "d1", "reason": "deleted"}
    for bad, named in (
        ({**good, "reason": "misplaced"}, "reason"),
        ({**good, "emails": ["alice@example.org"]}, "a deleted dataset is gone for everyone"),
        ({**good, "reason": "access-withdrawn", "emails": []}, "emails"),
        ({**good, "dataset_id": "../d1"}, "dataset_id"),
        ({**good, "colour": "red"}, "colour"),
        ({key: value for key, value in good.items() if key != "dataset_id"}, "dataset_id"),
        ({**good, "message": "x" * 2001}, "message"),
    ):
        refused(deliver(client, "withdrawal", raw_event(types.DATASET_WITHDRAWN, bad), mode), named)
    # A known type that this function does not receive is refused naming it.
    other = raw_event(types.TRANSFER_REQUESTED, {**good, "email": "alice@example.org"})
    refused(deliver(client, "withdrawal", other, mode), types.TRANSFER_REQUESTED, "withdrawal")

    assert flags(platform) == {"alice-d1": None}
    assert mails(platform, "alice@example.org") == []


# --- once -------------------------------------------------------------------------------------------------


def test_a_redelivered_or_repeated_withdrawal_changes_nothing_and_mails_once(
    client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str, bob: str
) -> None:
    copy_of(platform, "first", "alice", "d1")
    copy_of(platform, "second", "alice", "d1")
    copy_of(platform, "bobs", "bob", "d1")
    event = withdrawal(clowder, "d1", message="Retracted by its authors")

    accepted(deliver(client, "withdrawal", event))
    flagged = flags(platform)
    accepted(deliver(client, "withdrawal", event))  # the Broker delivers it again
    accepted(deliver(client, "withdrawal", event, "structured"))
    # Clowder sends the same withdrawal again (a new event), or a milder one after it.
    accepted(deliver(client, "withdrawal", withdrawal(clowder, "d1", message="Said again")))
    mild = withdrawal(clowder, "d1", "access-withdrawn", emails=["alice@example.org"], message="Milder")
    accepted(deliver(client, "withdrawal", mild))
    assert flags(platform) == flagged

    (mail,) = mails(platform, "alice@example.org")  # one mail for both of alice's copies
    assert mail["Subject"] == "Clowder withdrew the dataset Dataset d1"
    body = body_of(mail)
    assert "Clowder withdrew this dataset (deleted) on " in body and "Retracted by its authors" in body
    assert "Clowder/first" in body and "Clowder/second" in body and "Clowder/bobs" not in body
    assert "Nothing has been deleted" in body
    (bobs,) = mails(platform, "bob@example.org")
    assert "Clowder/bobs" in body_of(bobs) and "Clowder/first" not in body_of(bobs)


def test_a_dataset_name_with_line_breaks_stays_out_of_the_mails_headers(
    client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str
) -> None:
    copy_of(platform, "odd", "alice", "d1")
    platform.store.update_transfer(
        "odd",
        lambda transfer: transfer.model_copy(update={"datasetName": "Soil\nBcc: mallory@example.org\x07"}),
    )
    accepted(deliver(client, "withdrawal", withdrawal(clowder, "d1")))
    (mail,) = mails(platform, "alice@example.org")
    assert mail["Subject"] == "Clowder withdrew the dataset Soil Bcc: mallory@example.org\\x07"
    assert mail["Bcc"] is None


# --- who sees it ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("database", DATABASES)
def test_the_owner_sees_the_flag_and_nobody_sees_anothers_transfers(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str, bob: str
) -> None:
    copy_of(platform, "alice-d1", "alice", "d1")
    copy_of(platform, "bob-d2", "bob", "d2")
    accepted(deliver(client, "withdrawal", withdrawal(clowder, "d1", message="Retracted")))

    (listed,) = api.call("GET", "/api/transfers", alice).get_json()
    assert listed["id"] == "alice-d1"
    assert (listed["withdrawn"]["reason"], listed["withdrawn"]["message"]) == ("deleted", "Retracted")
    read = api.call("GET", "/api/transfers/alice-d1", alice)
    assert read.status_code == 200 and read.get_json()["withdrawn"] == listed["withdrawn"]

    (bobs,) = api.call("GET", "/api/transfers", bob).get_json()
    assert (bobs["id"], bobs["withdrawn"]) == ("bob-d2", None)
    refused(api.call("GET", "/api/transfers/alice-d1", bob), "alice-d1", status=404)

    # Where the copies went, for Clowder and the admin, says so too; users may not ask.
    (copy,) = api.call("GET", "/api/datasets/d1/copies", SERVICE_TOKEN).get_json()
    assert (copy["transferId"], copy["withdrawn"]["reason"]) == ("alice-d1", "deleted")
    (untouched,) = api.call("GET", "/api/datasets/d2/copies", Users(api, platform).admin()).get_json()
    assert untouched["withdrawn"] is None
    refused(api.call("GET", "/api/datasets/d1/copies", bob), status=403)


def test_the_command_line_marks_a_withdrawn_copy(
    api: Api, client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str
) -> None:
    copy_of(platform, "alice-d1", "alice", "d1")
    copy_of(platform, "alice-d2", "alice", "d2")
    withdrawn = withdrawal(clowder, "d1", "access-withdrawn", emails=["alice@example.org"], message="Ended")
    accepted(deliver(client, "withdrawal", withdrawn))
    listed = {item["id"]: item for item in api.call("GET", "/api/transfers", alice).get_json()}

    assert client_cli.listed_state(listed["alice-d1"]) == "completed (withdrawn: access withdrawn)"
    assert client_cli.listed_state(listed["alice-d2"]) == "completed"
    note = client_cli.withdrawn_note(listed["alice-d1"])
    assert note is not None and note.startswith("Clowder withdrew this dataset (access withdrawn) on ")
    assert note.endswith(": Ended. Nothing was deleted: the copy in Clowder/alice-d1 stays yours.")
    assert client_cli.withdrawn_note(listed["alice-d2"]) is None
