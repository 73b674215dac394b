"""JSON from outside, parsed so that no document can crash the parser or what later reads the values."""

# Python's json raises RecursionError on deep nesting and ValueError on integers of more than 4,300
# digits, and it turns a "\ud800" escape into a lone surrogate that every later UTF-8 encoding (the
# database, a reply, a signature) refuses. Callers would see those as server errors; here each one is
# a ``RefusedJson`` naming where in the document it is. Numbers are kept to what JSON's other readers
# agree on (64-bit integers, finite floats), as the Go apiserver's decoder did.

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects accepted; specs, account packages and events stay under 10."""
INTEGER_RANGE = (-(2**63), 2**63 - 1)
# What no text here may hold: lone surrogates (no UTF-8 encodes them) and NUL (PostgreSQL stores no
# NUL in text, and no command line or environment of a process can hold one). Only an escape
# ("\ud800", "\u0000") brings one into a document: JSON forbids raw NUL in strings.
_NOT_TEXT_ESCAPE = re.compile(r"\\u(?:[dD][89a-fA-F]|0000)")
_NOT_TEXT = re.compile("[\x00\ud800-\udfff]")
_SHOWN_PATH = 6


class RefusedJson(ValueError):
    """A document that is not JSON this platform takes; ``path`` leads to the part at fault (empty: all of it)."""

    def __init__(self, message: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def field(self, root: str) -> str:
        """Where the fault is, as a dotted field name below ``root`` (``root`` itself for the whole)."""
        parts = [str(part) for part in self.path[:_SHOWN_PATH]]
        if len(self.path) > _SHOWN_PATH:
            parts.append("…")
        if root:
            parts.insert(0, root)
        return ".".join(parts) or "body"


class _OutOfRange:
    """Stands in for a number no reader agrees on, until the walk finds where it is."""

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason


def loads(raw: bytes | str) -> Any:
    """The parsed document; ``RefusedJson`` for text that is not UTF-8 JSON, nesting deeper than
    ``MAX_DEPTH``, numbers beyond 64 bits or infinite, and strings holding lone surrogates or NUL."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8-sig")  # strictly: "surrogatepass", as json.loads(bytes) decodes, is not
        except UnicodeDecodeError as error:
            raise RefusedJson(f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    else:
        text = raw
    out_of_range: list[_OutOfRange] = []

    def integer(digits: str) -> int | _OutOfRange:
        if len(digits) <= 20:  # a sign and 19 digits: converting it is cheap, whatever its value
            value = int(digits)
            if INTEGER_RANGE[0] <= value <= INTEGER_RANGE[1]:
                return value
        out_of_range.append(_OutOfRange(digits, "is beyond what 64 bits hold"))
        return out_of_range[-1]

    def number(digits: str) -> float | _OutOfRange:
        value = float(digits)
        if math.isfinite(value):
            return value
        out_of_range.append(_OutOfRange(digits, "is not a finite number"))
        return out_of_range[-1]

    def constant(name: str) -> None:
        raise RefusedJson(f"{name} is not JSON")

    try:
        document = json.loads(text, parse_int=integer, parse_float=number, parse_constant=constant)
    except RecursionError:
        raise RefusedJson(f"nested deeper than {MAX_DEPTH} levels") from None
    except RefusedJson:
        raise
    except ValueError as error:  # json.JSONDecodeError among them
        raise RefusedJson(f"malformed JSON: {error}") from None
    # Most documents are checked by counting: the walk is needed only when something may be wrong.
    if out_of_range or _NOT_TEXT_ESCAPE.search(text) or text.count("[") + text.count("{") > MAX_DEPTH:
        _walk(document)
    return document


def _walk(document: Any) -> None:
    """Raise ``RefusedJson`` at the first value that is too deep, out of range or not Unicode text."""
    pending: list[tuple[Any, tuple[str | int, ...]]] = [(document, ())]
    while pending:
        value, path = pending.pop()
        if isinstance(value, str):
            if _NOT_TEXT.search(value):
                raise RefusedJson(_what_is_wrong(value), path)
        elif isinstance(value, dict | list):
            if len(path) >= MAX_DEPTH:
                raise RefusedJson(f"nested deeper than {MAX_DEPTH} levels", path)
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in reversed(list(items)):
                if isinstance(key, str) and _NOT_TEXT.search(key):
                    raise RefusedJson(f"has a member name that {_what_is_wrong(key)}", path)
                pending.append((item, (*path, key)))
        elif isinstance(value, _OutOfRange):
            shown = (
                value.text if len(value.text) <= 24 else f"{value.text[:12]}…({len(value.text)} characters)"
            )
            raise RefusedJson(f"the number {shown} {value.reason}", path)


def _what_is_wrong(text: str) -> str:
    if "\x00" in text:
        return "holds a NUL character"
    return "is not valid Unicode text (it holds a lone surrogate)"
