"""HMAC-SHA256 signatures of events (the ``wbsignature`` extension attribute) and per-purpose keys."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from events.errors import InvalidEvent, InvalidSignature

SIGNATURE_ATTRIBUTE = "wbsignature"
SCHEME = "v1"
SIGNED_ATTRIBUTES = (
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
)


def canonical_form(attributes: Mapping[str, str], data: bytes) -> bytes:
    """The bytes that are signed.

    Each of ``SIGNED_ATTRIBUTES`` the event has, as ``name=value\\n`` in that order, then an empty
    line, then the data bytes exactly as they travel. Other extension attributes are not signed.
    """
    lines = []
    for name in SIGNED_ATTRIBUTES:
        value = attributes.get(name)
        if value is None:
            continue
        # A line break would let one attribute's value pose as another attribute (or as the end of
        # the attributes), so two different events could share a canonical form and a signature.
        if "\n" in value or "\r" in value:
            raise InvalidEvent(f"attribute '{name}' contains a line break", field=name)
        lines.append(f"{name}={value}\n")
    return "".join(lines).encode("utf-8") + b"\n" + data


def sign(attributes: Mapping[str, str], data: bytes, secret: bytes) -> str:
    """The ``wbsignature`` value of an event with these attributes and data bytes."""
    digest = hmac.new(secret, canonical_form(attributes, data), hashlib.sha256).hexdigest()
    return f"{SCHEME}={digest}"


def verify(attributes: Mapping[str, str], data: bytes, secret: bytes) -> None:
    """Return if the event's ``wbsignature`` matches; raise ``InvalidSignature`` saying why not."""
    given = attributes.get(SIGNATURE_ATTRIBUTE)
    if not given:
        raise InvalidSignature(f"the event carries no {SIGNATURE_ATTRIBUTE} attribute")
    scheme, separator, _ = given.partition("=")
    if not separator or scheme != SCHEME or not given.isascii():
        raise InvalidSignature(f"{SIGNATURE_ATTRIBUTE} is not of the form '{SCHEME}=<hex>'")
    try:
        expected = sign(attributes, data, secret)
    except InvalidEvent as error:
        raise InvalidSignature(error.message) from error
    # compare_digest takes the same time wherever the first difference is, so an attacker cannot
    # learn the signature byte by byte from response times.
    if not hmac.compare_digest(expected.encode("ascii"), given.encode("ascii")):
        raise InvalidSignature(f"{SIGNATURE_ATTRIBUTE} does not match the event's attributes and data")


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A key of its own for one purpose (e.g. ``shovel:<user>``), so one leaked key signs for no one else."""
    return hmac.new(secret, purpose.encode("utf-8"), hashlib.sha256).digest()
