"""Clowder ids at the boundary: ``.``, ``..`` and whatever else could name another path of Clowder's API are
refused by the events, by ``POST /api/transfers`` and by the Clowder client, each naming its field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from events import types
from shared.adapters.clowder import ClowderClient
from shared.bootstrap import Platform
from shared.core.errors import InvalidInput
from tests.clowder_pairing import API_KEY
from tests.clowder_server import ClowderServer
from tests.conftest import Api
from tests.test_transfers import MODES, ClientFactory, deliver, nothing_recorded, raw_event, refused

pytestmark = pytest.mark.usefixtures("quick_retries", "no_stack_left")


@pytest.fixture
def environment(paired_environment: dict[str, str]) -> dict[str, str]:
    return paired_environment


UNSAFE_IDS = [".", "..", "../datasets", "a/b", "%2e%2e", "", " ", "x" * 65, "a\x00b", "ö"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("unsafe", UNSAFE_IDS)
def test_a_transfer_event_naming_no_clowder_id_is_refused(
    client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str, mode: str, unsafe: str
) -> None:
    # Signed as Clowder signs (the producer would refuse to make such an event at all).
    data = {"clowder_url": clowder.url, "dataset_id": unsafe, "email": "alice@example.org"}
    event = raw_event(types.TRANSFER_REQUESTED, data)
    refused(deliver(client, "transfer", event, mode), "dataset_id")  # type: ignore[arg-type]
    data = {**data, "dataset_id": clowder.add_dataset("Fine"), "files": ["0123456789abcdef01234567", unsafe]}
    refused(deliver(client, "transfer", raw_event(types.TRANSFER_REQUESTED, data), mode), "files.1")  # type: ignore[arg-type]
    nothing_recorded(platform, clowder)


def test_an_export_event_naming_no_clowder_space_is_refused(
    client: ClientFactory, platform: Platform, clowder: ClowderServer, alice: str
) -> None:
    data = {
        "clowder_url": clowder.url,
        "email": "alice@example.org",
        "folder": "results",
        "dataset_name": "Results",
        "space_id": "..",
    }
    refused(deliver(client, "export", raw_event(types.EXPORT_REQUESTED, data)), "space_id")
    assert platform.store.list_exports("alice") == []


@pytest.mark.parametrize("unsafe", UNSAFE_IDS)
def test_the_api_refuses_a_transfer_of_no_clowder_id(
    api: Api, platform: Platform, clowder: ClowderServer, alice: str, unsafe: str
) -> None:
    response = api.call("POST", "/api/transfers", alice, json={"datasetId": unsafe})
    assert response.status_code == 400, response.get_json()
    assert "datasetId" in response.get_json()["Error"]
    response = api.call("POST", "/api/transfers", alice, json={"datasetId": "5f1e", "files": [unsafe]})
    assert response.status_code == 400, response.get_json()
    assert "files" in response.get_json()["Error"]
    nothing_recorded(platform, clowder)


@pytest.mark.parametrize("version", [1, 2])
def test_the_clowder_client_sends_no_unsafe_id(tmp_path: Path, version: int) -> None:
    with (
        ClowderServer(tmp_path / "clowder", version, API_KEY) as server,  # type: ignore[arg-type]
        ClowderClient(server.url, API_KEY, version=version) as client,  # type: ignore[arg-type]
    ):
        dataset_id = server.add_dataset("Fine")
        calls: list[tuple[str, Callable[[str], object]]] = [
            ("dataset_id", client.dataset),
            ("dataset_id", client.files),
            ("dataset_id", client.delete_dataset),
            ("dataset_id", lambda unsafe: client.upload(unsafe, "a.txt", b"a", 1)),
            ("file_id", lambda unsafe: b"".join(client.download(unsafe))),
        ]
        for unsafe in (".", "..", "a/b", "%2e"):
            for field, call in calls:
                with pytest.raises(InvalidInput, match="is not a Clowder id") as raised:
                    call(unsafe)
                assert raised.value.field == field
        assert server.requests == []
        assert client.dataset(dataset_id).name == "Fine"  # a real id goes through


@pytest.mark.parametrize("version", [1, 2])
def test_the_clowder_client_deletes_a_dataset_once(tmp_path: Path, version: int) -> None:
    with (
        ClowderServer(tmp_path / "clowder", version, API_KEY) as server,  # type: ignore[arg-type]
        ClowderClient(server.url, API_KEY, version=version) as client,  # type: ignore[arg-type]
    ):
        dataset_id = client.create_dataset("Short-lived")
        client.upload(dataset_id, "folder/a.txt", b"a", 1)
        client.delete_dataset(dataset_id)
        assert server.datasets == {} and server.files == {} and server.folders == {}
        client.delete_dataset(dataset_id)  # gone already: nothing to do
        assert len(server.requests_to("*/datasets/*", method="DELETE")) == 2


def test_the_types_module_keeps_the_pattern_in_the_schema() -> None:
    schema = types.TransferRequested.model_json_schema()
    assert schema["properties"]["dataset_id"]["pattern"] == types.CLOWDER_ID_PATTERN
