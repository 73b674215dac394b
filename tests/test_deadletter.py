"""The dead-letter sink: what no function could take is kept with Knative's reasons, for the admin only."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client as WsgiClient

from events import codec, types
from shared.bootstrap import Platform
from shared.domain.deadletters import ERROR_DATA_LIMIT, error_data
from shared.serving import registry
from shared.tools.gateway import Gateway
from shared.tools.ingress import EventIngress, WSGIApp
from tests.conftest import Api

REPLY = b'{"Error": "the signature does not match"}'


def dead_letter(
    event_type: str = types.TRANSFER_REQUESTED,
    *,
    event_id: str = "event-1",
    data: bytes | None = None,
    content_type: str = "application/json",
    **extensions: str,
) -> codec.Event:
    """An event as a Broker's dispatcher dead-letters it: the original, unsigned here, plus knativeerror*."""
    attributes = {
        "specversion": "1.0",
        "id": event_id,
        "source": "https://clowder.example.org",
        "type": event_type,
        "subject": "dataset-42",
        "time": "2025-01-02T03:04:05.000Z",
        "datacontenttype": content_type,
        "knativeerrordest": "http://transfer.workbench.svc.cluster.local",
        "knativeerrorcode": "400",
        "knativeerrordata": error_data(REPLY),
        **extensions,
    }
    if data is None:
        data = codec.canonical_json(
            {"clowder_url": "https://clowder.example.org", "dataset_id": "42", "email": "alice@example.org"}
        )
    return codec.Event({name: value for name, value in attributes.items() if value}, data)


def deliver(api: Api, event: codec.Event, mode: codec.Mode = "binary", path: str = "/") -> Any:
    headers, body = codec.to_http(event, mode)
    return api.client(registry.DEAD_LETTER_FUNCTION).post(path, headers=headers, data=body)


def listed(api: Api, token: str, query: str = "") -> Any:
    return api.call("GET", f"/api/deadletters{query}", token)


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_a_dead_letter_is_kept_with_knatives_reasons_and_shown_to_the_admin(
    api: Api, mode: codec.Mode
) -> None:
    assert deliver(api, dead_letter(), mode).status_code == 202
    response = listed(api, api.admin())
    assert response.status_code == 200
    (kept,) = response.get_json()
    assert kept["type"] == types.TRANSFER_REQUESTED
    assert kept["eventId"] == "event-1"
    assert kept["source"] == "https://clowder.example.org"
    assert kept["subject"] == "dataset-42"
    assert kept["eventTime"] == "2025-01-02T03:04:05.000Z"
    assert kept["errorCode"] == "400"
    assert kept["errorData"] == REPLY.decode()  # Knative sends it base64-encoded
    assert kept["errorDestination"] == "http://transfer.workbench.svc.cluster.local"
    assert json.loads(kept["data"])["dataset_id"] == "42"
    assert kept["receivedTime"] > 0


def test_only_the_admin_sees_dead_letters(api: Api) -> None:
    assert deliver(api, dead_letter()).status_code == 202
    alice = api.make_user("alice")
    assert listed(api, alice).status_code == 403
    assert api.call("GET", "/api/deadletters").status_code == 401


def test_an_unsigned_dead_letter_is_kept_but_changes_nothing_else(api: Api, platform: Platform) -> None:
    """Signatures are required (the default), yet a dead letter needs none: it is often an event
    refused for its signature. Keeping it is all that happens: no transfer, no account, no stack."""
    assert platform.settings.clowder.require_signatures
    api.make_user("alice")
    before = (platform.store.list_accounts(), platform.store.list_all_stacks())
    for event_type in (types.TRANSFER_REQUESTED, types.STACK_START_REQUESTED, types.EXPORT_REQUESTED):
        event = dead_letter(event_type, event_id=f"id-{event_type}")
        assert deliver(api, event).status_code == 202
    assert platform.store.list_transfers() == []
    assert platform.store.list_exports("alice") == []
    assert (platform.store.list_accounts(), platform.store.list_all_stacks()) == before
    assert len(listed(api, api.admin()).get_json()) == 3


def test_a_redelivered_dead_letter_is_kept_once(api: Api) -> None:
    for _ in range(3):
        assert deliver(api, dead_letter()).status_code == 202
    assert len(listed(api, api.admin()).get_json()) == 1
    assert deliver(api, dead_letter(event_id="event-2")).status_code == 202
    assert sorted(kept["eventId"] for kept in listed(api, api.admin()).get_json()) == ["event-1", "event-2"]


def test_any_type_and_data_are_kept_even_what_made_the_event_fail(api: Api) -> None:
    odd = dead_letter("com.example.unknown", data=b"Hello World!", content_type="text/plain", event_id="odd")
    assert deliver(api, odd).status_code == 202
    structured = dead_letter(
        "com.example.other", data=b"\xff\x00raw", content_type="application/octet-stream"
    )
    assert deliver(api, structured, "structured").status_code == 202
    kept = {item["type"]: item for item in listed(api, api.admin()).get_json()}
    assert kept["com.example.unknown"]["data"] == "Hello World!"
    assert kept["com.example.other"]["eventId"] == "event-1"


def test_an_old_dispatchers_plain_error_data_is_kept_as_is(api: Api) -> None:
    event = dead_letter(knativeerrordata="dispatch error: no such host", event_id="plain")
    assert deliver(api, event).status_code == 202
    (kept,) = listed(api, api.admin()).get_json()
    assert kept["errorData"] == "dispatch error: no such host"


def test_error_data_is_truncated_as_knative_does() -> None:
    assert base64.b64decode(error_data(b"x" * 5000)) == b"x" * ERROR_DATA_LIMIT


def test_an_event_that_was_never_dead_lettered_is_refused(api: Api) -> None:
    stray = dead_letter(knativeerrordest="")
    response = deliver(api, stray)
    assert response.status_code == 400
    assert "knativeerrordest" in response.get_json()["Error"]
    broken = api.client(registry.DEAD_LETTER_FUNCTION).post(
        "/", headers={"ce-specversion": "1.0", "content-type": "application/json"}, data=b"{}"
    )
    assert broken.status_code == 400
    assert listed(api, api.admin()).get_json() == []


def test_the_public_path_does_not_take_dead_letters(api: Api) -> None:
    """Only a dispatcher, posting to the Service's root, delivers dead letters; the public route
    reaches /api/deadletters, where a CloudEvent is just a request with the wrong method."""
    response = deliver(api, dead_letter(), path="/api/deadletters")
    assert response.status_code == 405
    assert listed(api, api.admin()).get_json() == []


def test_the_list_is_newest_first_and_bounded(api: Api, platform: Platform) -> None:
    from shared.domain.deadletters import from_event

    for number in range(5):
        platform.store.insert_dead_letter(from_event(dead_letter(event_id=f"e{number}"), now=1000 + number))
    admin = api.admin()
    assert [item["eventId"] for item in listed(api, admin).get_json()] == ["e4", "e3", "e2", "e1", "e0"]
    assert [item["eventId"] for item in listed(api, admin, "?limit=2").get_json()] == ["e4", "e3"]
    for bad in ("0", "x", "100000"):
        response = listed(api, admin, f"?limit={bad}")
        assert response.status_code == 400
        assert "limit" in response.get_json()["Error"]


def test_the_local_broker_dead_letters_through_the_function_too(api: Api, platform: Platform) -> None:
    """The /events ingress takes a signed event; the transfer function refuses it for good (400, not
    retried: nobody has the e-mail), and the ingress dead-letters it as a Trigger would: to the
    deadletter function, with the knativeerror* extensions, and into its folder. (A forged event is
    refused by the ingress itself and kept nowhere: tests/test_input_limits.py.)"""
    gateway = Gateway(data_dir=platform.data_dir)
    assert gateway.ingress is not None
    try:
        refused = codec.new_event(
            types.TRANSFER_REQUESTED,
            {"clowder_url": "https://clowder.example.org", "dataset_id": "42", "email": "nobody@example.org"},
            source="https://clowder.example.org",
            secret=platform.event_secret,
        )
        headers, body = codec.to_http(refused, "binary")
        response = WsgiClient(gateway).post("/events", headers=headers, data=body)
        assert response.status_code == 202
        assert gateway.ingress.wait_idle(30)
        (kept,) = listed(api, api.admin()).get_json()
        assert kept["eventId"] == refused.id
        assert kept["errorDestination"] == "transfer"
        assert kept["errorCode"] == "400"
        assert json.loads(kept["errorData"])["Error"]
        files = list(Path(platform.data_dir / "deadletter").glob("*.json"))
        assert len(files) == 1
        assert platform.store.list_transfers() == []
    finally:
        gateway.ingress.close()


@pytest.mark.parametrize(
    ("answers", "deliveries", "dead"),
    [
        pytest.param([503, 429, 409, 404, 201], 5, False, id="5xx-and-knatives-retried-4xx-then-success"),
        pytest.param([400, 200], 1, True, id="other-4xx-is-final"),
        pytest.param([500] * 9, 5, True, id="5xx-until-the-attempts-run-out"),
    ],
)
def test_the_local_broker_retries_what_knative_retries(
    platform: Platform, tmp_path: Path, answers: list[int], deliveries: int, dead: bool
) -> None:
    """Each delivery the function answers with the next status of ``answers``: 5xx and 404, 409, 429
    are delivered again, up to five deliveries in all, and what still fails goes to the deadletter
    function once."""
    calls: list[str] = []

    def app_for(name: str) -> WSGIApp:
        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
            calls.append(name)
            status = answers[calls.count(name) - 1] if name == "transfer" else 202
            start_response(f"{status} Status", [("Content-Length", "0")])
            return [b""]

        return app

    ingress = EventIngress(app_for, tmp_path / "deadletter", backoff_seconds=0.01)
    try:
        event = codec.new_event(
            types.TRANSFER_REQUESTED,
            {"clowder_url": "https://clowder.example.org", "dataset_id": "42", "email": "a@example.org"},
            source="https://clowder.example.org",
            secret=platform.event_secret,
        )
        headers, body = codec.to_http(event, "binary")
        assert WsgiClient(ingress).post("/", headers=headers, data=body).status_code == 202
        assert ingress.wait_idle(30)
    finally:
        ingress.close()
    assert calls.count("transfer") == deliveries
    assert calls.count(registry.DEAD_LETTER_FUNCTION) == (1 if dead else 0)
    assert len(list((tmp_path / "deadletter").glob("*.json"))) == (1 if dead else 0)


def test_the_local_broker_routes_no_event_to_the_catch_all() -> None:
    assert registry.function_for_event(registry.ANY_EVENT) is None
    assert registry.function_for_event("com.example.unknown") is None


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def test_the_store_keeps_each_dead_letter_once_and_lists_the_newest(database_url: str) -> None:
    from shared.adapters.store.sql import open_store
    from shared.domain.deadletters import from_event

    store = open_store(database_url)
    try:
        first = from_event(dead_letter(event_id="a"), now=100)
        assert store.insert_dead_letter(first)
        assert not store.insert_dead_letter(first.model_copy(update={"errorCode": "500"}))
        assert store.insert_dead_letter(from_event(dead_letter(event_id="b"), now=200))
        # The same event failing at another destination is another dead letter.
        elsewhere = dead_letter(event_id="a", knativeerrordest="http://export.workbench.svc.cluster.local")
        assert store.insert_dead_letter(from_event(elsewhere, now=300))
        newest = store.list_dead_letters(2)
        assert [(item.eventId, item.receivedTime) for item in newest] == [("a", 300), ("b", 200)]
        assert [item.errorCode for item in store.list_dead_letters(10)][-1] == "400"
    finally:
        store.close()


# --- Commands the shovels gave up on ------------------------------------------------------------------


class ShovelReports:
    """The shovel's events, signed with its user's key and delivered to ``shovel_reports`` as the Broker
    delivers them; the platform answers 503 to a report of placed files (down for that report), so the
    command that places them fails however often it is tried."""

    def __init__(self, platform: Platform, client: Callable[[str], Any], user: str) -> None:
        from events.signing import derive_key

        self.client = client
        self.key = derive_key(platform.event_secret, f"shovel:{user}")
        self.answers: list[tuple[str, int]] = []

    def __call__(self, event_type: str, payload: types.Payload) -> None:
        from events.errors import DeliveryError

        if isinstance(payload, types.TransferProgress) and payload.placed:
            self.answers.append((event_type, 503))
            raise DeliveryError("the platform answered HTTP 503 to an event " + event_type)
        event = codec.new_event(event_type, payload, source="workbench-shovel-test", secret=self.key)
        headers, body = codec.to_http(event, "binary")
        answer = self.client("shovel_reports").post("/", headers=headers, data=body)
        if event_type != types.SHOVEL_HEARTBEAT:
            self.answers.append((event_type, answer.status_code))


@pytest.mark.parametrize("broker", ["memory", "rabbitmq"])
def test_a_command_a_shovel_gives_up_on_is_a_dead_letter_and_its_file_is_reported_failed(
    broker: str,
    api: Api,
    platform: Platform,
    client: Callable[[str], Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import hashlib
    import uuid

    from shared.adapters.bus.memory import MemoryBus
    from shared.core.models import Transfer, TransferFile
    from shared.domain.messages import SyncCommand, SyncFile, queue_for
    from shovel.settings import ShovelSettings
    from tests.support import wait_until
    from tests.test_shovel import AMQP_URL, delete_queue, require_rabbitmq, running

    monkeypatch.setattr("shovel.daemon.RETRY_SECONDS", 0.05)
    user = f"poison{uuid.uuid4().hex[:8]}"
    api.make_user(user)
    data = b"alpha\n"
    platform.store.insert_transfer(
        Transfer(
            id="t-poison", user=user, state="syncing", source="https://c", datasetId="d1", target="Clowder/p"
        )
    )
    digest = hashlib.sha256(data).hexdigest()
    platform.store.put_transfer_files(
        "t-poison",
        [TransferFile(path="a.txt", size=len(data), sha256=digest, clowderId="f1", state="staged")],
    )
    (tmp_path / "home").mkdir()
    settings = ShovelSettings(
        user=user, stack_id="s1", home=tmp_path / "home", health_host="127.0.0.1", health_port=0, attempts=2
    )
    command = SyncCommand(
        transfer_id="t-poison",
        user=user,
        target="Clowder/p",
        files=[
            SyncFile(path="a.txt", size=len(data), sha256=digest, url="http://127.0.0.1:9/", content=data)
        ],
    )
    if broker == "rabbitmq":
        from shared.adapters.bus.amqp import AmqpBus

        require_rabbitmq()
        bus: Any = AmqpBus(AMQP_URL, name=f"test shovel {user}")
    else:
        bus = MemoryBus()
    reports = ShovelReports(platform, client, user)
    try:
        with running(settings, bus, emit=reports):
            bus.publish(queue_for(user), command.model_dump_json().encode())
            wait_until(
                lambda: len(reports.answers) == 4, "two failed reports, the files failed, the dead letter"
            )
    finally:
        bus.close()
        if broker == "rabbitmq":
            delete_queue(queue_for(user))
    assert reports.answers == [
        (types.TRANSFER_PROGRESS, 503),
        (types.TRANSFER_PROGRESS, 503),
        (types.TRANSFER_PROGRESS, 202),
        (types.SHOVEL_COMMAND_ABANDONED, 202),
    ]

    reason = "the shovel gave up after 2 failed attempts: the platform answered HTTP 503"
    [letter] = listed(api, api.admin()).get_json()
    assert letter["type"] == types.SHOVEL_COMMAND_ABANDONED and letter["subject"] == "sync t-poison"
    assert letter["errorDestination"] == queue_for(user) and letter["errorCode"] == "abandoned"
    assert letter["errorData"].startswith(reason)
    assert json.loads(letter["data"]) | {"reason": ""} == {
        "user": user,
        "stack_id": "s1",
        "kind": "sync",
        "subject": "t-poison",
        "failures": 2,
        "reason": "",
    }
    # The file is still reported failed, with the same reason.
    [file] = platform.store.list_transfer_files("t-poison")
    assert file.state == "failed" and file.error.startswith(reason)


def test_a_stack_command_given_up_is_a_dead_letter_without_its_token(
    api: Api,
    platform: Platform,
    client: Callable[[str], Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The API is unreachable for the shovel every time: the start is given up, and the dead letter
    names the stack and the reason, never the stack's control token the command carried."""
    from shared.adapters.bus.memory import MemoryBus
    from shared.adapters.runtime.processes import free_port
    from shared.domain.messages import StackCommand, queue_for
    from shovel.settings import ShovelSettings
    from tests.support import wait_until
    from tests.test_shovel import running

    monkeypatch.setattr("shovel.daemon.RETRY_SECONDS", 0.05)
    api.make_user("alice")
    (tmp_path / "home").mkdir()
    settings = ShovelSettings(
        user="alice",
        stack_id="s1",
        home=tmp_path / "home",
        health_host="127.0.0.1",
        health_port=0,
        attempts=2,
        api_url=f"http://127.0.0.1:{free_port()}",
    )
    token = platform.tokens.issue_stack_control("alice", "s2abcd")
    command = StackCommand(kind="start", user="alice", stack_id="s2abcd", token=token)
    bus = MemoryBus()
    reports = ShovelReports(platform, client, "alice")
    with running(settings, bus, emit=reports):
        bus.publish(queue_for("alice"), command.model_dump_json().encode())
        wait_until(lambda: reports.answers, "the dead letter")
    assert reports.answers == [(types.SHOVEL_COMMAND_ABANDONED, 202)]
    [letter] = listed(api, api.admin()).get_json()
    assert letter["subject"] == "start s2abcd" and letter["errorDestination"] == queue_for("alice")
    assert letter["errorData"].startswith("the shovel gave up after 2 failed attempts: ")
    assert token not in json.dumps(letter) and token.split(".")[-1] not in json.dumps(letter)


def test_the_local_broker_delivers_many_users_events_at_once(platform: Platform, tmp_path: Path) -> None:
    """Ten transfers arriving together are all in delivery together (each delivery lasts as long as
    its staging), as a Broker's deliveries to a function that scales out are: none waits for the others."""
    import threading

    from shared.tools.ingress import DELIVERY_WORKERS

    running, most = 0, 0
    lock = threading.Lock()
    everyone_in = threading.Barrier(10, timeout=30)

    def app_for(name: str) -> WSGIApp:
        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
            everyone_in.wait()  # breaks (and fails the test) unless all ten are delivered at once
            with lock:
                running -= 1
            start_response("202 Accepted", [("Content-Length", "0")])
            return [b""]

        return app

    ingress = EventIngress(app_for, tmp_path / "deadletter", backoff_seconds=0.01)
    try:
        for number in range(10):
            event = codec.new_event(
                types.TRANSFER_REQUESTED,
                {
                    "clowder_url": "https://clowder.example.org",
                    "dataset_id": "42",
                    "email": f"u{number}@example.org",
                },
                source="https://clowder.example.org",
                secret=platform.event_secret,
            )
            headers, body = codec.to_http(event, "binary")
            assert WsgiClient(ingress).post("/", headers=headers, data=body).status_code == 202
        assert ingress.wait_idle(30)
    finally:
        ingress.close()
    assert most == 10 <= DELIVERY_WORKERS
    assert not list((tmp_path / "deadletter").glob("*.json"))
