"""Clowder file downloads: streamed over kept-alive connections, resumed by byte range where Clowder
allows it, and checked against the size Clowder lists."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Generator, Iterator
from http.client import HTTPException
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from shared.adapters.clowder.transport import ERROR_BODY_BYTES, Transport, describe, log
from shared.core.errors import Unavailable
from shared.core.http import BodyBroken, ConnectionPool
from shared.core.http import Response as KeptResponse
from shared.core.retry import Again, Attempt, retry_after

DOWNLOAD_CHUNK_SIZE = 1 << 20

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)


class RestartRequired(Unavailable):
    """A download broke off and cannot continue where it stopped (Clowder offers no byte ranges).

    Whoever consumed the bytes so far (a hash, a partial file) must reset and download again from
    byte 0; ``received`` says how far the broken attempt got."""

    def __init__(self, message: str, *, received: int) -> None:
        super().__init__(message)
        self.received = received


class _Streamed(Protocol):
    """A download's answer whose body is read as it comes: httpx's, or a ``_DirectResponse``."""

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> httpx.Headers: ...
    def iter_bytes(self) -> Iterator[bytes]: ...
    def close(self) -> None: ...


class _DirectResponse:
    """A download's answer over a kept-alive connection of ``shared.core.http``, read in large pieces."""

    def __init__(self, response: KeptResponse) -> None:
        self._response = response
        self.status_code = response.status
        self.headers = httpx.Headers(list(response.headers.items()))

    def iter_bytes(self) -> Iterator[bytes]:
        return self._response.iter_bytes(DOWNLOAD_CHUNK_SIZE)

    def head(self, limit: int) -> bytes:
        return self._response.head(limit)

    def close(self) -> None:
        self._response.close()


class Downloads:
    """The downloads of one Clowder, over connections of their own where the requests need nothing
    that httpx does (see ``__init__``)."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        parts = urlsplit(transport.base_url)
        self._base_path = parts.path
        # Downloads go over connections of their own unless the requests need what only httpx does here:
        # a proxy the environment names, or credentials in the URL (sent as Basic authorization).
        proxied = parts.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(
            parts.hostname or ""
        )
        self._direct: ConnectionPool | None = None
        if not proxied and "@" not in parts.netloc and parts.scheme in ("http", "https"):
            self._direct = ConnectionPool(parts.scheme, parts.netloc, timeout=transport.timeout)

    def close(self) -> None:
        if self._direct is not None:
            self._direct.close()

    def download(
        self, path: str, file_id: str, *, offset: int = 0, size: int | None = None
    ) -> Generator[bytes, None, None]:
        """The bytes at ``path`` (file ``file_id``'s) from ``offset`` on, in chunks (see
        ``ClowderClient.download``)."""
        where = self._transport.where
        subject = ("Clowder file", file_id)
        operation = f"download file '{file_id}'"
        position = offset
        total: int | None = None
        breaks = 0
        while True:
            # Identity encoding keeps byte counts equal to Content-Length and to range offsets.
            headers = {"Accept": "*/*", "Accept-Encoding": "identity"}
            if position > 0:
                headers["Range"] = f"bytes={position}-"
            response = self._open(path, headers, operation, subject)
            try:
                body_total, resumable = self._check_body(response, position, file_id)
                if total is None:
                    total = body_total
                elif body_total is not None and body_total != total:
                    raise Unavailable(
                        f"Clowder at {where}: file '{file_id}' changed size from {total} to "
                        f"{body_total} bytes during the download"
                    )
                if size is not None and total is not None and total != size:
                    raise Unavailable(
                        f"Clowder at {where} sent file '{file_id}' with Content-Length for {total} bytes, "
                        f"but lists it with {size} bytes"
                    )
                try:
                    # Chunks as they arrive: a rechunking buffer would lose its bytes when the body breaks.
                    for chunk in response.iter_bytes():
                        if size is not None and position + len(chunk) > size:
                            raise Unavailable(
                                f"Clowder at {where} sent more than the {size} bytes "
                                f"it lists for file '{file_id}'"
                            )
                        position += len(chunk)
                        yield chunk
                    if total is None and size is not None and position < size:
                        raise BodyBroken(f"the body ended at byte {position} of {size}")
                except (httpx.TransportError, BodyBroken) as error:
                    breaks += 1
                    reason = describe(error)
                    known = total if total is not None else size
                    of_total = f" of {known}" if known is not None else ""
                    if not resumable:
                        raise RestartRequired(
                            f"the download of file '{file_id}' from Clowder at {where} broke off after "
                            f"{position}{of_total} bytes ({reason}) and Clowder offers no byte ranges to "
                            "resume it: start again from byte 0",
                            received=position,
                        ) from None
                    if breaks > self._transport.policy.retries:
                        raise Unavailable(
                            f"the download of file '{file_id}' from Clowder at {where} broke off "
                            f"{breaks} times, last after {position}{of_total} bytes ({reason})"
                        ) from None
                    log.warning(
                        "Clowder at %s: download of file %s broke off after %d bytes (%s); resuming",
                        where,
                        file_id,
                        position,
                        reason,
                    )
                    self._transport.policy.pause(breaks)
                    continue
            finally:
                response.close()
            expected = total if total is not None else size
            if expected is not None and position != expected:
                raise Unavailable(
                    f"Clowder at {where} ended file '{file_id}' after {position} bytes, "
                    f"but announced {expected}: a wrong Content-Length or a truncated body"
                )
            return

    def _open(
        self, path: str, headers: dict[str, str], operation: str, subject: tuple[str, str]
    ) -> _Streamed:
        """A download's answer (2xx), its body still to be read; retried and refused as ``call`` does."""
        transport = self._transport
        if self._direct is None:
            return transport.call(
                "GET", path, headers=headers, stream=True, operation=operation, subject=subject
            )
        direct = self._direct

        def attempt(now: Attempt) -> _Streamed:
            try:
                response = _DirectResponse(
                    direct.request(
                        "GET", self._base_path + path, {**headers, transport.key_header(): transport.api_key}
                    )
                )
            except (OSError, HTTPException) as error:
                if now.last:
                    raise Unavailable(transport.failed(operation, describe(error), now.number)) from None
                raise Again(describe(error)) from None
            status = response.status_code
            if 200 <= status < 300:
                return response
            if (status == 429 or status >= 500) and not now.last:
                response.close()
                raise Again(f"HTTP {status}", retry_after(response.headers.get("Retry-After")))
            refusal = httpx.Response(
                status,
                headers=response.headers,
                content=response.head(ERROR_BODY_BYTES),
                request=httpx.Request("GET", transport.base_url + path),
            )
            response.close()
            raise transport.error(refusal, operation, subject, now.number) from None

        return transport.policy.run(attempt, transport.on_retry("GET", path))

    def _check_body(self, response: _Streamed, position: int, file_id: str) -> tuple[int | None, bool]:
        """The full size the response announces, and whether the server takes byte ranges."""
        resumable = "bytes" in response.headers.get("Accept-Ranges", "").lower()
        if position == 0 and response.status_code != 206:
            length = response.headers.get("Content-Length")
            return (int(length) if length and length.isdigit() else None), resumable
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if response.status_code != 206 or match is None or int(match.group(1)) != position:
            raise RestartRequired(
                f"Clowder at {self._transport.where} did not answer the request for bytes {position}- of file "
                f"'{file_id}' with that range (HTTP {response.status_code}, Content-Range "
                f"{response.headers.get('Content-Range', 'missing')!r}): start again from byte 0",
                received=position,
            )
        return (None if match.group(3) == "*" else int(match.group(3))), True
