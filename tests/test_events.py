"""The events package: schemas, the codec in every content mode, signatures, the producer and its command."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]  # comes with schemathesis (a dev dependency)
import pytest

from events import generate, producer, signing
from events.codec import (
    Event,
    canonical_json,
    from_amqp,
    from_http,
    new_event,
    parse_data,
    signed,
    to_amqp,
    to_http,
    verify,
)
from events.errors import DeliveryError, InvalidEvent, InvalidSignature, UnknownEventType
from events.producer import emit, send
from events.types import (
    DATA_MODELS,
    SHOVEL_HEARTBEAT,
    TRANSFER_PROGRESS,
    TRANSFER_REQUESTED,
    TransferRequested,
    dataschema,
)
from tests.conftest import ROOT
from tests.receiver import Receiver

WORKBENCH = Path(sys.executable).with_name("workbench")
SECRET = b"the-pairing-secret"
CLOWDER = "https://clowder.example.org"

OUTCOME = {
    "transfer_id": "t1",
    "user": "alice",
    "dataset_id": "d1",
    "files_done": 1,
    "files_total": 2,
    "bytes_done": 10,
    "bytes_total": 20,
    "errors": [{"path": "b.csv", "error": "checksum mismatch"}],
}
STACK_OUTCOME = {"user": "alice", "stack_id": "s1abc", "status": "started", "endpoints": ["https://x"]}
EXPORT_OUTCOME = {"export_id": "e1", "user": "alice", "dataset_id": "d9", "clowder_url": CLOWDER, "files": 3}
SAMPLES: dict[str, dict[str, Any]] = {
    "org.clowder.workbench.transfer.requested": {
        "clowder_url": CLOWDER,
        "dataset_id": "5f1e",
        "email": "alice@example.org",
        "files": ["f1", "f2"],
        "target_folder": "Clowder/Übung",
        "mode": "link",
    },
    "org.clowder.workbench.export.requested": {
        "clowder_url": CLOWDER,
        "email": "alice@example.org",
        "folder": "results",
        "dataset_name": "Results «2024»",
    },
    "org.clowder.workbench.stack.start.requested": {"email": "alice@example.org", "stack_id": "s1abc"},
    "org.clowder.workbench.stack.stop.requested": {"email": "alice@example.org", "stack_id": "s1abc"},
    "org.clowder.workbench.dataset.withdrawn": {
        "clowder_url": CLOWDER,
        "dataset_id": "5f1e",
        "reason": "access-withdrawn",
        "emails": ["alice@example.org"],
        "version": "2",
        "message": "Zugriff entzogen «2024»",
    },
    "org.ndslabs.workbench.transfer.staged": {
        "transfer_id": "t1",
        "user": "alice",
        "files_total": 2,
        "bytes_total": 20,
    },
    "org.ndslabs.workbench.transfer.progress": {
        "transfer_id": "t1",
        "user": "alice",
        "stack_id": "s1abc",
        "placed": ["a.csv"],
        "bytes_placed": 10,
    },
    "org.ndslabs.workbench.transfer.completed": OUTCOME,
    "org.ndslabs.workbench.transfer.failed": OUTCOME,
    "org.ndslabs.workbench.export.uploaded": {
        "export_id": "e1",
        "user": "alice",
        "files": [{"path": "a.csv", "size": 10, "sha256": "ab" * 32, "key": "blobs/sha256/ab"}],
    },
    "org.ndslabs.workbench.export.completed": EXPORT_OUTCOME,
    "org.ndslabs.workbench.export.failed": {**EXPORT_OUTCOME, "dataset_id": None, "error": "Clowder said no"},
    "org.ndslabs.workbench.stack.started": STACK_OUTCOME,
    "org.ndslabs.workbench.stack.stopped": STACK_OUTCOME,
    "org.ndslabs.workbench.stack.failed": {**STACK_OUTCOME, "status": "error", "message": "no image"},
    "org.ndslabs.workbench.shovel.heartbeat": {
        "user": "alice",
        "stack_id": "s1abc",
        "version": "0.1.0",
        "status": "ready",
        "free_bytes": 12345,
    },
    "org.ndslabs.workbench.shovel.command.abandoned": {
        "user": "alice",
        "stack_id": "s1abc",
        "kind": "sync",
        "subject": "t-1",
        "failures": 5,
        "reason": "the shovel gave up after 5 failed attempts: HTTP 500",
    },
    "org.ndslabs.workbench.transfer.verified": {
        "check_id": "c-1",
        "transfer_id": "t-1",
        "user": "alice",
        "stack_id": "s1abc",
        "receipts": 1,
        "checked": 3,
        "modified": ["readme.txt"],
        "modified_count": 1,
    },
}
TYPES = sorted(DATA_MODELS)

Trip = Callable[[Event], Event]
TRIPS: dict[str, Trip] = {
    "binary HTTP": lambda event: from_http(*to_http(event, "binary")),
    "structured HTTP": lambda event: from_http(*to_http(event, "structured")),
    "AMQP": lambda event: from_amqp(*to_amqp(event)),
}


def sample_event(event_type: str = TRANSFER_REQUESTED, secret: bytes | None = SECRET) -> Event:
    return new_event(event_type, SAMPLES[event_type], source=CLOWDER, subject="alice", secret=secret)


def test_every_type_has_a_sample() -> None:
    assert set(SAMPLES) == set(DATA_MODELS)


# Schemas


def test_schema_files_are_current() -> None:
    stale = generate.differences()
    assert not stale, (
        f"events/schemas/ is out of date ({', '.join(stale)}); regenerate it with: python -m events.generate"
    )


def test_differences_finds_stale_missing_and_extra_files(tmp_path: Path) -> None:
    assert sorted(generate.write(tmp_path)) == sorted(generate.expected_files())
    assert generate.differences(tmp_path) == []
    (tmp_path / f"{TRANSFER_REQUESTED}.json").write_text("{}\n")
    (tmp_path / f"{SHOVEL_HEARTBEAT}.json").unlink()
    (tmp_path / "org.example.gone.json").write_text("{}\n")

    assert generate.differences(tmp_path) == sorted(
        [f"{TRANSFER_REQUESTED}.json", f"{SHOVEL_HEARTBEAT}.json", "org.example.gone.json"]
    )
    generate.write(tmp_path)
    assert generate.differences(tmp_path) == []
    assert not (tmp_path / "org.example.gone.json").exists()


@pytest.mark.parametrize("event_type", TYPES)
def test_schema_file_describes_the_data(event_type: str) -> None:
    schema = json.loads((generate.SCHEMAS / f"{event_type}.json").read_text(encoding="utf-8"))
    assert schema["$id"] == dataschema(event_type)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)

    validator.validate(sample_event(event_type).json())
    with pytest.raises(jsonschema.ValidationError, match="surprise"):
        validator.validate({**SAMPLES[event_type], "surprise": 1})


# The codec


@pytest.mark.parametrize("trip", TRIPS)
@pytest.mark.parametrize("event_type", TYPES)
def test_round_trip_keeps_attributes_and_data_bytes(event_type: str, trip: str) -> None:
    event = sample_event(event_type)

    received = TRIPS[trip](event)

    assert received.attributes == event.attributes
    assert received.data == event.data
    verify(received, SECRET)
    assert parse_data(received) == DATA_MODELS[event_type].model_validate(SAMPLES[event_type])


@pytest.mark.parametrize("trip", TRIPS)
def test_round_trip_of_unusual_events(trip: str) -> None:
    """Bare attributes, extensions, a subject to be percent-encoded, data that is not canonical JSON."""
    bare = signed(
        Event(
            {
                "specversion": "1.0",
                "id": "e-1",
                "source": "/clowder",
                "type": TRANSFER_REQUESTED,
                "subject": 'Jöhn "the" Døe 100%',
                "traceparent": "00-abc-01",
            },
            b'{ "dataset_id": "d1",\n  "email": "j\\u00f6hn@example.org" }',
        ),
        SECRET,
    )
    null_data = signed(Event(dict(bare.attributes), b"null"), SECRET)
    no_data = signed(Event(dict(bare.attributes), b""), SECRET)

    for event in (bare, null_data, no_data):
        received = TRIPS[trip](event)
        assert received.attributes == event.attributes
        assert received.data == event.data
        verify(received, SECRET)


def test_binary_mode_uses_ce_headers_and_the_data_as_body() -> None:
    event = sample_event()

    headers, body = to_http(event, "binary")

    assert body == event.data
    assert headers["content-type"] == "application/json"
    assert {name for name in headers if name != "content-type"} == {
        f"ce-{name}" for name in event.attributes if name != "datacontenttype"
    }
    assert headers["ce-wbsignature"] == event.attributes["wbsignature"]


def test_structured_mode_embeds_the_data_as_json() -> None:
    event = sample_event()

    headers, body = to_http(event, "structured")

    assert headers["content-type"].startswith("application/cloudevents+json")
    envelope = json.loads(body)
    assert envelope["data"] == SAMPLES[TRANSFER_REQUESTED] | envelope["data"]
    assert {name: envelope[name] for name in event.attributes} == event.attributes


def test_amqp_headers_use_the_binding_prefix() -> None:
    event = sample_event()

    headers, body = to_amqp(event)

    assert body == event.data
    assert headers["content-type"] == "application/json"
    assert headers["cloudEvents:type"] == TRANSFER_REQUESTED
    assert "cloudEvents:datacontenttype" not in headers
    # pika hands back undecodable long strings as bytes, and RabbitMQ adds headers of its own.
    raw = {name: value.encode() for name, value in headers.items()} | {"x-death": [{"count": 1}]}
    assert from_amqp(raw, body) == event


def test_new_event_fills_in_the_attributes() -> None:
    event = sample_event(secret=None)

    assert event.attributes["specversion"] == "1.0"
    assert uuid.UUID(event.id).version == 4
    assert datetime.fromisoformat(event.attributes["time"]).tzinfo is not None
    assert event.attributes["time"].endswith("Z")
    assert event.attributes["datacontenttype"] == "application/json"
    assert event.attributes["dataschema"] == dataschema(TRANSFER_REQUESTED)
    assert (event.type, event.source, event.subject) == (TRANSFER_REQUESTED, CLOWDER, "alice")
    assert "wbsignature" not in event.attributes
    assert event.data == canonical_json(event.json())
    assert new_event(TRANSFER_REQUESTED, parse_data(event), source=CLOWDER).data == event.data


def test_an_event_cannot_be_changed_through_the_callers_dict() -> None:
    attributes = dict(sample_event().attributes)
    event = Event(attributes, b"{}")
    attributes["type"] = "org.example.other"
    assert event.type == TRANSFER_REQUESTED


def test_imports_stay_cheap() -> None:
    """The command line loads no events code until asked; the types and codec load no cloudevents."""
    script = (
        "import sys\n"
        "import shared.tools.cli\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in {'events', 'cloudevents', 'httpx'}]\n"
        "import events.types, events.codec, events.signing\n"
        "assert 'cloudevents' not in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


# Signatures

Tamper = Callable[[Event], Event]


def _with(**changes: str) -> Tamper:
    return lambda event: Event(event.attributes | changes, event.data)


def _drop_signature(event: Event) -> Event:
    return Event({k: v for k, v in event.attributes.items() if k != "wbsignature"}, event.data)


TAMPERING: dict[str, Tamper] = {
    "a changed data byte": lambda event: Event(event.attributes, event.data.replace(b"5f1e", b"5f1f")),
    "a changed type": _with(type="org.clowder.workbench.export.requested"),
    "a changed source": _with(source="https://evil.example.org"),
    "a changed subject": _with(subject="bob"),
    "an added subject line": _with(subject="alice\ntime=2020-01-01T00:00:00Z"),
    "a missing wbsignature": _drop_signature,
    "another scheme": _with(wbsignature="v0=" + "0" * 64),
}


@pytest.mark.parametrize("trip", TRIPS)
@pytest.mark.parametrize("tamper", TAMPERING)
def test_signature_fails_for_a_changed_event(trip: str, tamper: str) -> None:
    received = TRIPS[trip](sample_event())
    verify(received, SECRET)

    with pytest.raises(InvalidSignature) as caught:
        verify(TAMPERING[tamper](received), SECRET)
    assert caught.value.field == "wbsignature"


@pytest.mark.parametrize("trip", TRIPS)
def test_signature_fails_for_a_wrong_secret(trip: str) -> None:
    received = TRIPS[trip](sample_event())

    with pytest.raises(InvalidSignature, match="does not match"):
        verify(received, b"another-secret")


def test_signature_fails_for_a_changed_byte_on_the_wire() -> None:
    headers, body = to_http(sample_event(), "binary")
    tampered = body.replace(b'"mode":"link"', b'"mode":"stage"')
    assert tampered != body

    with pytest.raises(InvalidSignature):
        verify(from_http(headers, tampered), SECRET)
    with pytest.raises(InvalidSignature):
        verify(from_http(headers | {"ce-source": "https://evil.example.org"}, body), SECRET)


def test_missing_signature_is_named() -> None:
    with pytest.raises(InvalidSignature, match="no wbsignature"):
        verify(sample_event(secret=None), SECRET)


def test_signing_refuses_a_line_break_in_an_attribute() -> None:
    attributes = {"specversion": "1.0", "id": "1", "source": "s", "type": "t", "subject": "a\ntime=x"}
    with pytest.raises(InvalidEvent, match="'subject' contains a line break"):
        signing.sign(attributes, b"{}", SECRET)


def test_canonical_form_lists_the_signed_attributes_in_order() -> None:
    attributes = {"type": "t", "id": "1", "specversion": "1.0", "source": "s", "other": "x"}
    assert (
        signing.canonical_form(attributes, b'{"a":1}')
        == b'specversion=1.0\nid=1\nsource=s\ntype=t\n\n{"a":1}'
    )


def test_derived_keys_differ_per_purpose() -> None:
    alice = signing.derive_key(SECRET, "shovel:alice")
    bob = signing.derive_key(SECRET, "shovel:bob")

    assert len(alice) == 32
    assert alice == signing.derive_key(SECRET, "shovel:alice")
    assert len({alice, bob, signing.derive_key(b"other", "shovel:alice"), SECRET}) == 4
    event = sample_event(SHOVEL_HEARTBEAT, secret=alice)
    verify(event, alice)
    with pytest.raises(InvalidSignature):
        verify(event, bob)


# Refusals

BINARY = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s", "ce-type": TRANSFER_REQUESTED}
STRUCTURED = {"content-type": "application/cloudevents+json"}
ENVELOPE = {"specversion": "1.0", "id": "1", "source": "s", "type": TRANSFER_REQUESTED}


@pytest.mark.parametrize(
    ("headers", "body", "problem", "field"),
    [
        ({}, b"hello", "not a CloudEvent: no ce-* headers, and the body is not a JSON envelope", None),
        ({"content-type": "application/json"}, b'{"dataset_id": "1"}', "no envelope with a specversion", "specversion"),
        (STRUCTURED, b"[1, 2]", "no envelope with a specversion", "specversion"),
        ({k: v for k, v in BINARY.items() if k != "ce-source"}, b"{}", "lacks the attribute(s) source (header ce-source)", "source"),
        (STRUCTURED, json.dumps({k: v for k, v in ENVELOPE.items() if k != "id"}).encode(), "lacks the attribute(s) id", "id"),
        ({"content-type": "application/cloudevents-batch+json"}, b"[]", "batched events are not accepted", None),
        (BINARY, b'{"dataset_id": ', "the event's data is not valid JSON", "data"),
        (BINARY | {"content-type": "text/plain"}, b"hi", "datacontenttype 'text/plain' is not JSON", "datacontenttype"),
        (BINARY | {"ce-specversion": "0.3"}, b"{}", "specversion '0.3' is not supported", "specversion"),
        (STRUCTURED, json.dumps(ENVELOPE | {"specversion": "0.3"}).encode(), "specversion '0.3' is not supported", "specversion"),
        (STRUCTURED, json.dumps(ENVELOPE | {"Type": "x"}).encode(), "'Type' is not a CloudEvents attribute name", "Type"),
        (STRUCTURED, json.dumps(ENVELOPE | {"subject": {"a": 1}}).encode(), "attribute 'subject' is not a string", "subject"),
    ],
)  # fmt: skip
def test_from_http_names_the_problem(
    headers: dict[str, str], body: bytes, problem: str, field: str | None
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        from_http(headers, body)
    assert problem in caught.value.message
    assert caught.value.field == field


def test_the_content_type_decides_the_mode() -> None:
    event = sample_event()
    headers, body = to_http(event, "structured")
    stray = {"ce-specversion": "1.0", "ce-id": "2", "ce-source": "elsewhere", "ce-type": SHOVEL_HEARTBEAT}

    assert from_http(headers | stray, body) == event


def test_from_http_takes_json_numbers_and_booleans_as_attribute_text() -> None:
    body = json.dumps(ENVELOPE | {"retries": 3, "replay": True, "data": {}}).encode()
    event = from_http(STRUCTURED, body)
    assert (event.attributes["retries"], event.attributes["replay"], event.data) == ("3", "true", b"{}")


def test_from_amqp_names_the_missing_attribute() -> None:
    headers, body = to_amqp(sample_event())
    del headers["cloudEvents:type"]
    with pytest.raises(InvalidEvent, match=r"lacks the attribute\(s\) type \(header cloudEvents:type\)"):
        from_amqp(headers, body)


def test_parse_data_refuses_an_unknown_type() -> None:
    event = Event(ENVELOPE | {"type": "org.example.nothing"}, b"{}")
    with pytest.raises(UnknownEventType, match=r"unknown event type 'org\.example\.nothing'"):
        parse_data(event)
    with pytest.raises(UnknownEventType):
        new_event("org.example.nothing", {}, source="s")


@pytest.mark.parametrize(
    ("event_type", "data", "field", "problem"),
    [
        (TRANSFER_REQUESTED, {"clowder_url": CLOWDER, "email": "a@b"}, "dataset_id", "Field required"),
        (TRANSFER_REQUESTED, SAMPLES[TRANSFER_REQUESTED] | {"surprise": 1}, "surprise", "Extra inputs"),
        (TRANSFER_REQUESTED, SAMPLES[TRANSFER_REQUESTED] | {"mode": "move"}, "mode", "'stage' or 'link'"),
        (TRANSFER_PROGRESS, {"transfer_id": "t", "user": "u", "errors": [{"error": "x"}]}, "errors.0.path", "Field required"),
        (SHOVEL_HEARTBEAT, [], "data", "should be an object"),
    ],
)  # fmt: skip
def test_bad_data_is_refused_naming_the_field(event_type: str, data: Any, field: str, problem: str) -> None:
    event = Event(ENVELOPE | {"type": event_type}, canonical_json(data))
    with pytest.raises(InvalidEvent) as parsing:
        parse_data(event)
    if isinstance(data, dict):
        with pytest.raises(InvalidEvent) as making:
            new_event(event_type, data, source="s")
        assert making.value.field == field
    assert parsing.value.field == field
    assert f"invalid data for {event_type}: {field}: " in parsing.value.message
    assert problem in parsing.value.message


def test_new_event_refuses_the_model_of_another_type() -> None:
    with pytest.raises(InvalidEvent, match="is a ShovelHeartbeat, not a TransferRequested"):
        new_event(SHOVEL_HEARTBEAT, TransferRequested.model_validate(SAMPLES[TRANSFER_REQUESTED]), source="s")


def test_an_event_needs_its_required_attributes() -> None:
    with pytest.raises(InvalidEvent, match=r"lacks the attribute\(s\) id, source"):
        Event({"specversion": "1.0", "type": "t"}, b"{}")


# The producer and `workbench events send`


def test_send_delivers_a_binary_event(receiver: Receiver) -> None:
    event = sample_event()

    assert send(event, receiver.url) == 202

    [(headers, body)] = receiver.requests
    lowered = {name.lower(): value for name, value in headers.items()}
    assert {name for name in lowered if name.startswith("ce-")} == {
        f"ce-{name}" for name in event.attributes if name != "datacontenttype"
    }
    assert lowered["content-type"] == "application/json"
    assert body == event.data
    assert from_http(headers, body) == event


def test_emit_sends_a_signed_structured_event(receiver: Receiver) -> None:
    delivery = emit(
        SHOVEL_HEARTBEAT,
        SAMPLES[SHOVEL_HEARTBEAT],
        url=receiver.url,
        source="urn:shovel:alice",
        secret=SECRET,
        mode="structured",
    )

    assert delivery.ok
    [(headers, body)] = receiver.requests
    assert headers["content-type"].startswith("application/cloudevents+json")
    received = from_http(headers, body)
    assert received == delivery.event
    verify(received, SECRET)


def test_send_returns_a_refusal(receiver: Receiver) -> None:
    receiver.status = 400
    assert send(sample_event(), receiver.url) == 400


def test_send_reports_an_unreachable_receiver() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    event = sample_event()
    url = f"http://127.0.0.1:{port}/events"

    with pytest.raises(DeliveryError) as caught:
        send(event, url, timeout=5)
    assert f"could not deliver event {event.id} to {url}" in caught.value.message


def test_the_producer_makes_one_client_for_all_its_events(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[httpx.Client] = []
    original = httpx.Client.__init__

    def counted(self: httpx.Client, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(producer, "_client", None)
    monkeypatch.setattr(httpx.Client, "__init__", counted)
    try:
        senders = [threading.Thread(target=send, args=(sample_event(), receiver.url)) for _ in range(6)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(timeout=30)
        send(sample_event(), receiver.url)
    finally:
        for client in made:
            client.close()

    assert len(receiver.requests) == 7
    assert len(made) == 1


def test_each_event_goes_out_on_a_connection_of_its_own(receiver: Receiver) -> None:
    # A connection kept open between events could be closed by the receiver just as the next event
    # goes out on it; each event opens its own instead.
    for _ in range(3):
        assert send(sample_event(), receiver.url) == 202

    assert len(set(receiver.connections)) == 3


def workbench(*arguments: str, **environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(WORKBENCH), "events", "send", *arguments],
        cwd=ROOT,
        env=dict(os.environ) | environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_command_sends_a_signed_event(receiver: Receiver) -> None:
    data = json.dumps(SAMPLES[TRANSFER_REQUESTED])

    result = workbench(
        TRANSFER_REQUESTED, "--data", data, "--to", receiver.url, WORKBENCH_EVENT_SECRET=SECRET.decode()
    )

    assert result.returncode == 0, result.stderr
    [(headers, body)] = receiver.requests
    event = from_http(headers, body)
    assert result.stdout == f"event {event.id}: HTTP 202\n"
    assert "ce-wbsignature" in {name.lower() for name in headers}
    verify(event, SECRET)
    assert event.source == "urn:workbench:cli"
    assert parse_data(event) == TransferRequested.model_validate(SAMPLES[TRANSFER_REQUESTED])


def test_command_takes_the_url_and_secret_from_the_environment(receiver: Receiver) -> None:
    result = workbench(
        SHOVEL_HEARTBEAT,
        "--data",
        json.dumps(SAMPLES[SHOVEL_HEARTBEAT]),
        "--structured",
        "--secret-env",
        "PAIRING",
        "--source",
        "urn:test",
        WORKBENCH_EVENTS_URL=receiver.url,
        PAIRING="pairing",
    )

    assert result.returncode == 0, result.stderr
    [(headers, body)] = receiver.requests
    assert headers["content-type"].startswith("application/cloudevents+json")
    event = from_http(headers, body)
    assert event.source == "urn:test"
    verify(event, b"pairing")


def test_command_sends_unsigned_without_a_secret(receiver: Receiver) -> None:
    result = workbench(
        SHOVEL_HEARTBEAT, "--data", json.dumps(SAMPLES[SHOVEL_HEARTBEAT]), "--to", receiver.url
    )

    assert result.returncode == 0, result.stderr
    assert "WORKBENCH_EVENT_SECRET is not set" in result.stderr
    assert "sending the event unsigned" in result.stderr
    [(headers, body)] = receiver.requests
    assert "wbsignature" not in from_http(headers, body).attributes


@pytest.mark.parametrize(
    ("event_type", "data", "problem"),
    [
        (TRANSFER_REQUESTED, '{"dataset_id": ', "--data is not JSON"),
        (TRANSFER_REQUESTED, "[]", "--data must be a JSON object"),
        (
            TRANSFER_REQUESTED,
            json.dumps({"clowder_url": CLOWDER, "email": "a@b"}),
            "dataset_id: Field required",
        ),
        ("org.example.nothing", "{}", f"unknown event type 'org.example.nothing'; known types: {TYPES[0]}"),
    ],
)
def test_command_refuses_bad_input_before_sending(
    receiver: Receiver, event_type: str, data: str, problem: str
) -> None:
    result = workbench(event_type, "--data", data, "--to", receiver.url, WORKBENCH_EVENT_SECRET="s")

    assert result.returncode == 1
    assert problem in result.stderr
    assert "Traceback" not in result.stderr
    assert receiver.requests == []


def test_command_fails_when_the_receiver_refuses(receiver: Receiver) -> None:
    receiver.status = 400
    receiver.reply = b'{"Error": "dataset_id: unknown dataset"}'

    result = workbench(
        TRANSFER_REQUESTED, "--data", json.dumps(SAMPLES[TRANSFER_REQUESTED]), "--to", receiver.url
    )

    assert result.returncode == 1
    assert "HTTP 400" in result.stdout
    assert 'refused the event: {"Error": "dataset_id: unknown dataset"}' in result.stderr


def test_command_fails_when_nothing_answers() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    result = workbench(
        SHOVEL_HEARTBEAT, "--data", json.dumps(SAMPLES[SHOVEL_HEARTBEAT]), "--to", f"http://127.0.0.1:{port}/"
    )

    assert result.returncode == 1
    assert "could not deliver event" in result.stderr
    assert "Traceback" not in result.stderr
