"""Where a transfer's files are, in the app's terms: worked out when read, from the user's running stacks."""

from __future__ import annotations

from typing import Any

import pytest

from events import types
from shared.bootstrap import Platform
from shared.core.models import Transfer
from shared.domain import transfers as transfer_service
from tests.conftest import Api
from tests.test_transfers import new_stack


@pytest.fixture
def environment(paired_environment: dict[str, str]) -> dict[str, str]:
    return paired_environment


def run(platform: Platform, owner: str, sid: str, stack_status: str, service_status: str) -> None:
    """What the runtime reports of a stack and its services."""

    def change(stack: Any) -> Any:
        services = [service.model_copy(update={"status": service_status}) for service in stack.services]
        return stack.model_copy(update={"status": stack_status, "services": services})

    platform.store.update_stack(owner, sid, change)


def placed(platform: Platform, transfer_id: str, target: str) -> Transfer:
    transfer = Transfer(
        id=transfer_id,
        user="alice",
        source="https://clowder.example.org",
        datasetId="d1",
        target=target,
        state="completed",
    )
    platform.store.insert_transfer(transfer)
    return transfer


def locations(api: Api, token: str, transfer_id: str) -> list[dict[str, str]]:
    one = api.call("GET", f"/api/transfers/{transfer_id}", token).get_json()
    (listed,) = [
        item for item in api.call("GET", "/api/transfers", token).get_json() if item["id"] == transfer_id
    ]
    assert one["locations"] == listed["locations"]
    return list(one["locations"])


def test_each_running_service_of_the_user_says_where_it_sees_the_files(
    api: Api, platform: Platform, alice: str, bob: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    placed(platform, "t-soil", "Clowder/Soil samples")
    first, second = new_stack(api, alice), new_stack(api, alice)
    assert locations(api, alice, "t-soil") == []  # no stack runs

    run(platform, "alice", first, "started", "ready")
    where = "/home/user/work/clowder/Soil samples"  # the spec mounts its folder at /home/user/work
    assert locations(api, alice, "t-soil") == [{"service": f"{first}-notebook", "path": where}]
    run(platform, "alice", second, "starting", "starting")
    assert sorted(item["service"] for item in locations(api, alice, "t-soil")) == sorted(
        [f"{first}-notebook", f"{second}-notebook"]
    )
    run(platform, "alice", first, "stopped", "stopped")
    assert locations(api, alice, "t-soil") == [{"service": f"{second}-notebook", "path": where}]
    # Another user's running stack does not see alice's home.
    run(platform, "bob", new_stack(api, bob), "started", "ready")
    assert [item["service"] for item in locations(api, alice, "t-soil")] == [f"{second}-notebook"]
    # Never stored.
    stored = platform.store.get_transfer("t-soil")
    assert stored is not None and stored.locations == []

    # A transfer recorded before targets were kept inside the data folder is seen by no app.
    placed(platform, "t-old", "incoming")
    assert locations(api, alice, "t-old") == []

    # The completed event says the same, as the stacks run when it goes out.
    sent: list[Any] = []
    monkeypatch.setattr(
        "shared.adapters.sink.http.HttpSink.emit",
        lambda sink, kind, data, subject=None: sent.append((kind, data)),
    )
    transfer = platform.store.get_transfer("t-soil")
    assert transfer is not None
    transfer_service._announce(platform, transfer)
    [(kind, outcome)] = sent
    assert kind == types.TRANSFER_COMPLETED
    assert outcome.target == "Clowder/Soil samples"
    assert [(item.service, item.path) for item in outcome.locations] == [(f"{second}-notebook", where)]
