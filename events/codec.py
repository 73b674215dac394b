"""Events as neutral values, made, parsed and carried over HTTP and AMQP (the only user of cloudevents)."""

# The data bytes are what is signed, so every trip must give back the very bytes that were sent:
# - binary HTTP and AMQP carry the data bytes as the body, untouched both ways;
# - structured HTTP embeds JSON data in the envelope, where its bytes do not survive (the envelope is
#   re-serialised). Both sides therefore use one deterministic serialisation, ``canonical_json``:
#   data that is already canonical is embedded as JSON and re-serialised canonically on receipt;
#   any other bytes travel as ``data_base64``, which keeps them exactly. ``new_event`` always makes
#   canonical data, so its events read back byte for byte in either mode. A producer outside this
#   package that signs other bytes (pretty-printed JSON, say) should send in binary mode.

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, unquote

from pydantic import ValidationError

from events import safe_json, signing
from events.errors import InvalidEvent, UnknownEventType
from events.types import DATA_MODELS, Payload, dataschema

SPECVERSION = "1.0"
JSON_CONTENT_TYPE = "application/json"
REQUIRED_ATTRIBUTES = ("specversion", "id", "source", "type")
AMQP_PREFIX = "cloudEvents:"
"""Prefix of the attribute headers in AMQP messages, as the CloudEvents AMQP binding names them."""
AMQP_CONTENT_TYPE = "content-type"

Mode = Literal["binary", "structured"]

# Printable ASCII but the double quote and the percent sign: what a binary-mode header value may hold
# unencoded (HTTP binding 1.0, "Metadata Headers"); a space is encoded too.
_HEADER_SAFE = "".join(chr(code) for code in range(0x21, 0x7F) if chr(code) not in '"%')

# CloudEvents attribute names: lower-case ASCII letters and digits (spec 1.0, "Attribute Naming").
_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]+")
# A lone surrogate (from a "\ud800" escape) cannot be encoded as UTF-8, so cannot be signed or sent on;
# NUL cannot be kept in PostgreSQL's text (a dead letter's attributes).
_NOT_TEXT = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True)
class Event:
    """One CloudEvent, free of any SDK: its attributes (extensions included) and its data bytes."""

    attributes: dict[str, str]
    data: bytes

    def __post_init__(self) -> None:
        # A private copy, so that changing the caller's dict cannot change a (signed) event.
        object.__setattr__(self, "attributes", dict(self.attributes))
        for name, value in self.attributes.items():
            if not _ATTRIBUTE_NAME.fullmatch(name):
                raise InvalidEvent(
                    f"'{name}' is not a CloudEvents attribute name (lower-case letters and digits)",
                    field=name,
                )
            if not isinstance(value, str):
                raise InvalidEvent(f"attribute '{name}' is not a string", field=name)
            if _NOT_TEXT.search(value):
                raise InvalidEvent(
                    f"attribute '{name}' holds a NUL character or a lone surrogate", field=name
                )
        missing = [name for name in REQUIRED_ATTRIBUTES if not self.attributes.get(name)]
        if missing:
            raise InvalidEvent(f"the event lacks the attribute(s) {', '.join(missing)}", field=missing[0])
        if not isinstance(self.data, bytes):
            raise InvalidEvent("the event's data must be bytes", field="data")

    @property
    def type(self) -> str:
        return self.attributes["type"]

    @property
    def id(self) -> str:
        return self.attributes["id"]

    @property
    def source(self) -> str:
        return self.attributes["source"]

    @property
    def subject(self) -> str | None:
        return self.attributes.get("subject")

    def json(self) -> Any:
        """The data, parsed."""
        return json.loads(self.data)


def canonical_json(value: Any) -> bytes:
    """The one serialisation of JSON data that both ends of a structured-mode trip agree on."""
    return json.dumps(
        value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def validate_data(event_type: str, data: Payload | Mapping[str, Any]) -> Payload:
    """The data as its type's model; ``UnknownEventType`` or ``InvalidEvent`` naming the field."""
    model = DATA_MODELS.get(event_type)
    if model is None:
        raise UnknownEventType(event_type)
    if isinstance(data, Payload):
        if not isinstance(data, model):
            raise InvalidEvent(
                f"the data of {event_type} is a {model.__name__}, not a {type(data).__name__}",
                field="data",
            )
        return data
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise _invalid_data(event_type, error) from None


def new_event(
    event_type: str,
    data: Payload | Mapping[str, Any],
    *,
    source: str,
    subject: str | None = None,
    secret: bytes | None = None,
    event_id: str | None = None,
) -> Event:
    """A complete event of a known type, its data validated, signed when a secret is given."""
    payload = validate_data(event_type, data)
    attributes = {
        "specversion": SPECVERSION,
        "id": event_id or str(uuid.uuid4()),
        "source": source,
        "type": event_type,
    }
    if subject is not None:
        attributes["subject"] = subject
    attributes["time"] = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    attributes["datacontenttype"] = JSON_CONTENT_TYPE
    attributes["dataschema"] = dataschema(event_type)
    body = canonical_json(payload.model_dump(mode="json"))
    event = Event(attributes, body)
    return signed(event, secret) if secret is not None else event


def signed(event: Event, secret: bytes) -> Event:
    """The event with a ``wbsignature`` over its attributes and data (any former one replaced)."""
    attributes = dict(event.attributes)
    attributes.pop(signing.SIGNATURE_ATTRIBUTE, None)
    attributes[signing.SIGNATURE_ATTRIBUTE] = signing.sign(attributes, event.data, secret)
    return Event(attributes, event.data)


def verify(event: Event, secret: bytes) -> None:
    """Return if the event's signature is good; ``InvalidSignature`` saying why not."""
    signing.verify(event.attributes, event.data, secret)


def parse_data(event: Event) -> Payload:
    """The event's data validated with its type's model."""
    model = DATA_MODELS.get(event.type)
    if model is None:
        raise UnknownEventType(event.type)
    try:
        return model.model_validate_json(event.data)
    except ValidationError as error:
        raise _invalid_data(event.type, error) from None


def to_http(event: Event, mode: Mode = "binary") -> tuple[dict[str, str], bytes]:
    """Headers and body of an HTTP request carrying the event in binary or structured content mode."""
    from cloudevents.conversion import to_binary, to_structured
    from cloudevents.http import CloudEvent

    if mode not in ("binary", "structured"):
        raise ValueError(f"unknown content mode '{mode}'; use 'binary' or 'structured'")
    # Bytes become data_base64 in a structured envelope, parsed JSON becomes data (see the module notes).
    message = CloudEvent(dict(event.attributes), event.data if mode == "binary" else _embeddable(event.data))
    if "time" not in event.attributes:
        # The SDK fills in a missing time with "now"; that would change the signed attributes.
        del message["time"]
    if mode == "binary":
        # The identity marshaller sends the data bytes as they are; the default one would JSON-encode them.
        headers, body = to_binary(message, data_marshaller=_as_is)
        # The HTTP binding wants header values percent-encoded (the SDK leaves them raw, and a
        # non-ASCII subject could not be sent at all).
        headers = {
            name: quote(value, safe=_HEADER_SAFE) if name.startswith("ce-") else value
            for name, value in headers.items()
        }
    else:
        headers, body = to_structured(message)
    return {str(name): str(value) for name, value in headers.items()}, bytes(body)


def from_http(headers: Mapping[str, str], body: bytes) -> Event:
    """The event of an HTTP request in binary or structured mode; ``InvalidEvent`` saying what is wrong."""
    from cloudevents.exceptions import GenericException
    from cloudevents.http import from_http as parse_http

    lowered = {name.lower(): value for name, value in headers.items()}
    media_type = lowered.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/cloudevents-batch+json":
        raise InvalidEvent("batched events are not accepted; send one event per request")
    if media_type.startswith("application/cloudevents") or not any(
        name.startswith("ce-") for name in lowered
    ):
        # The content type decides the mode (HTTP binding 1.0, "Content Modes"); stray ce-* headers
        # must not make the SDK read the request as binary.
        lowered = {name: value for name, value in lowered.items() if not name.startswith("ce-")}
        sent = _structured_attribute_names(body)
    else:
        lowered = {
            name: unquote(value) if name.startswith("ce-") else value for name, value in lowered.items()
        }
        sent = _binary_attribute_names(lowered)
    try:
        message = parse_http(lowered, body, data_unmarshaller=_unmarshal_data)
    except GenericException as error:
        raise InvalidEvent(f"not a CloudEvent: {error}") from None
    attributes = {name: _attribute_text(name, value) for name, value in message.get_attributes().items()}
    if "time" not in sent:
        # The SDK fills in a missing time with "now"; that would change the signed attributes.
        attributes.pop("time", None)
    data = message.get_data()
    return _checked(attributes, data if isinstance(data, bytes) else b"")


def _binary_attribute_names(headers: Mapping[str, str]) -> set[str]:
    """The attributes a binary-mode request carries as ce-* headers, once the required ones are there."""
    sent = {name[3:] for name in headers if name.startswith("ce-")}
    missing = [name for name in REQUIRED_ATTRIBUTES if name not in sent]
    if missing:
        raise InvalidEvent(
            "the event lacks the attribute(s) " + ", ".join(f"{name} (header ce-{name})" for name in missing),
            field=missing[0],
        )
    _check_specversion(headers["ce-specversion"])
    return sent


def _structured_attribute_names(body: bytes) -> set[str]:
    """The attributes of a structured-mode envelope, once it is known to be one with the required ones."""
    try:
        envelope = safe_json.loads(body)
    except safe_json.RefusedJson as error:
        if error.path:
            field = error.field("")
            raise InvalidEvent(f"{field}: {error.message}", field=field) from None
        raise InvalidEvent(
            f"not a CloudEvent: no ce-* headers, and the body is not a JSON envelope ({error})"
        ) from None
    if not isinstance(envelope, dict) or "specversion" not in envelope:
        raise InvalidEvent(
            "not a CloudEvent: no ce-* headers, and the body is no envelope with a specversion",
            field="specversion",
        )
    # The SDK lower-cases names, so "Type" would quietly stand in for "type"; refuse it here.
    for name in envelope:
        if name not in ("data", "data_base64") and not _ATTRIBUTE_NAME.fullmatch(name):
            raise InvalidEvent(
                f"'{name}' is not a CloudEvents attribute name (lower-case letters and digits)", field=name
            )
    missing = [name for name in REQUIRED_ATTRIBUTES if name not in envelope]
    if missing:
        raise InvalidEvent(f"the event lacks the attribute(s) {', '.join(missing)}", field=missing[0])
    _check_specversion(envelope["specversion"])
    return set(envelope)


def _check_specversion(specversion: object) -> None:
    if specversion != SPECVERSION:
        raise InvalidEvent(
            f"specversion {specversion!r} is not supported (only {SPECVERSION})", field="specversion"
        )


def to_amqp(event: Event) -> tuple[dict[str, str], bytes]:
    """Headers and body of an AMQP 0-9-1 message carrying the event in binary mode.

    ``datacontenttype`` travels as the ``content-type`` header (put it in the message's
    ``content_type`` property, or leave it a header: ``from_amqp`` reads either name).
    """
    headers = {
        f"{AMQP_PREFIX}{name}": value for name, value in event.attributes.items() if name != "datacontenttype"
    }
    if "datacontenttype" in event.attributes:
        headers[AMQP_CONTENT_TYPE] = event.attributes["datacontenttype"]
    return headers, event.data


def from_amqp(headers: Mapping[str, object], body: bytes) -> Event:
    """The event of an AMQP message in binary mode; other headers (e.g. RabbitMQ's x-death) are ignored."""
    attributes: dict[str, str] = {}
    for name, value in headers.items():
        if name.startswith(AMQP_PREFIX):
            attribute = name[len(AMQP_PREFIX) :]
        elif name.lower() in (AMQP_CONTENT_TYPE, "content_type"):
            attribute = "datacontenttype"
        else:
            continue
        # pika hands back long strings it cannot decode as bytes.
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidEvent(f"header '{name}' is not UTF-8 text", field=attribute) from None
        attributes[attribute] = _attribute_text(attribute, value)
    missing = [name for name in REQUIRED_ATTRIBUTES if name not in attributes]
    if missing:
        raise InvalidEvent(
            "the event lacks the attribute(s) "
            + ", ".join(f"{name} (header {AMQP_PREFIX}{name})" for name in missing),
            field=missing[0],
        )
    _check_specversion(attributes["specversion"])
    return _checked(attributes, bytes(body))


def _checked(attributes: dict[str, str], data: bytes) -> Event:
    """An event whose data is JSON, as every type here requires."""
    content_type = attributes.get("datacontenttype", JSON_CONTENT_TYPE)
    media_type = content_type.split(";")[0].strip().lower()
    if media_type != JSON_CONTENT_TYPE and not media_type.endswith("+json"):
        raise InvalidEvent(
            f"datacontenttype '{content_type}' is not JSON; events carry {JSON_CONTENT_TYPE} data",
            field="datacontenttype",
        )
    if data:
        try:
            safe_json.loads(data)
        except safe_json.RefusedJson as error:
            if not error.path:
                raise InvalidEvent(f"the event's data is not valid JSON: {error}", field="data") from None
            field = error.field("data")
            raise InvalidEvent(
                f"the event's data is refused at {field}: {error.message}", field=field
            ) from None
    return Event(attributes, data)


def _invalid_data(event_type: str, error: ValidationError) -> InvalidEvent:
    """An ``InvalidEvent`` naming the first field at fault (and how many other problems there are)."""
    problems = error.errors()
    first = problems[0]
    field = ".".join(str(part) for part in first["loc"]) or "data"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return InvalidEvent(f"invalid data for {event_type}: {field}: {first['msg']}{more}", field=field)


def _attribute_text(name: str, value: object) -> str:
    """An attribute value as text; structured envelopes may hold JSON numbers and booleans."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    raise InvalidEvent(f"attribute '{name}' is not a string", field=name)


def _embeddable(data: bytes) -> Any:
    """What goes into a structured envelope: parsed JSON when that gives back the bytes, else the bytes."""
    if not data:
        return None
    try:
        parsed = json.loads(data)
        canonical = canonical_json(parsed)
    except ValueError:  # not JSON, or NaN and the infinities, which JSON proper has not
        return data
    # The SDK leaves a None out of the envelope, so JSON null travels as bytes too.
    if parsed is None or canonical != data:
        return data
    return parsed


def _as_is(data: Any) -> Any:
    return data


def _unmarshal_data(content: str | bytes) -> bytes:
    """The SDK's data as bytes: a binary body or ``data_base64`` as sent, embedded JSON canonically."""
    if isinstance(content, bytes):
        return content
    if content == "":
        # The SDK turns an empty binary body into "" before calling this.
        return b""
    # Structured mode hands over the embedded data as the SDK's own json.dumps of it.
    return canonical_json(json.loads(content))
