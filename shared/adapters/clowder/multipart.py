"""One file as a ``multipart/form-data`` request body, produced chunk by chunk, for Clowder uploads."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from typing import IO, TypeAlias, TypeGuard

Source: TypeAlias = IO[bytes] | Iterable[bytes] | bytes

CHUNK_SIZE = 256 * 1024
# The same escapes browsers (and httpx) use for a file name in a multipart header.
_FILENAME_ESCAPES = {'"': "%22", "\\": "\\\\"} | {
    chr(code): f"%{code:02X}" for code in range(0x20) if code != 0x1B
}


class SourceSizeMismatch(Exception):
    """The source gave another number of bytes than announced: ``sent`` of them, or more."""

    def __init__(self, sent: int) -> None:
        super().__init__(sent)
        self.sent = sent


class MultipartBody:
    """One file as ``multipart/form-data``, produced chunk by chunk so memory stays bounded.

    Built by hand rather than with httpx's ``files=`` so the request carries an exact Content-Length
    (some servers refuse chunked uploads) and a source that gives the wrong number of bytes is caught."""

    def __init__(self, field_name: str, filename: str, content_type: str, source: Source, size: int | None):
        boundary = secrets.token_hex(16)
        escaped = "".join(_FILENAME_ESCAPES.get(character, character) for character in filename)
        self.content_type = f"multipart/form-data; boundary={boundary}"
        self._head = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{field_name}"; filename="{escaped}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        self._tail = f"\r\n--{boundary}--\r\n".encode()
        self._source = source
        self._size = size
        self._started = False
        self._start_offset: int | None = None
        if _is_file(source) and source.seekable():
            self._start_offset = source.tell()
        self._rereadable = isinstance(source, bytes) or self._start_offset is not None

    @property
    def length(self) -> int | None:
        return None if self._size is None else len(self._head) + self._size + len(self._tail)

    def can_resend(self) -> bool:
        """A body can go again if none of it was read yet, or if its file can be rewound."""
        return not self._started or self._rereadable

    def chunks(self) -> Iterator[bytes]:
        self._started = True
        if self._start_offset is not None and _is_file(self._source):
            self._source.seek(self._start_offset)
        yield self._head
        sent = 0
        for chunk in _read(self._source):
            sent += len(chunk)
            if self._size is not None and sent > self._size:
                raise SourceSizeMismatch(sent)
            yield chunk
        if self._size is not None and sent != self._size:
            raise SourceSizeMismatch(sent)
        yield self._tail


def _is_file(source: Source) -> TypeGuard[IO[bytes]]:
    return hasattr(source, "read")


def _read(source: Source) -> Iterator[bytes]:
    if isinstance(source, bytes):
        yield source
    elif _is_file(source):
        while chunk := source.read(CHUNK_SIZE):
            yield chunk
    else:
        for chunk in source:
            if chunk:
                yield bytes(chunk)
