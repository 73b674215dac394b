"""Kept-alive HTTP/1.1 connections of the standard library's ``http.client``, for large bodies.

A body read here passes through no per-piece parsing: httpx hands a body over 64 KiB at a time, each piece
parsed in Python, which costs more than the bytes themselves for a large file. Requests with retries,
redirects or proxies belong to httpx; this is for the hot path of downloads.

API:

``ConnectionPool(scheme, netloc, *, timeout, read_timeout=None, max_idle=32)``
    Connections to one origin (``scheme`` "http" or "https", ``netloc`` "host:port"), safe to share
    between threads: each request checks a connection out, and the response's ``close`` checks it back
    in (or closes it). ``timeout`` bounds connecting and, unless ``read_timeout`` is given, each read.
    ``pool.request(method, target, headers)`` sends the request and reads the status line and headers;
    a kept connection the server closed while it was idle is replaced once, silently. Failing to
    connect, send or read the head raises ``OSError`` or ``http.client.HTTPException``.
    ``pool.close()`` closes the idle connections.

``Pools(timeout=..., read_timeout=..., max_idle=...)``
    One ``ConnectionPool`` per scheme and netloc, made on first use: ``pools.request(method, url, headers)``.

``Response``
    ``status``, ``headers`` (an ``http.client.HTTPMessage``: ``get`` ignores case), and the body read by
    ``iter_bytes(size)`` or ``readinto(buffer)``. A body that breaks off (a read error, a timeout, or
    fewer bytes than its Content-Length before the connection closed, which ``http.client`` ends
    quietly) raises ``BodyBroken``. ``head(limit)`` reads the start of an error's body, never raising.
    ``close()`` returns the connection to its pool when the body was read to its end on a kept-alive
    connection, and closes it otherwise; the response is also a context manager.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

MAX_IDLE_CONNECTIONS = 32


class BodyBroken(Exception):
    """A response's body broke off before its end: the message says how."""


def describe(error: BaseException) -> str:
    """A short description of a failed request or read, for messages and logs."""
    if isinstance(error, TimeoutError):
        return f"timed out ({type(error).__name__})"
    text = str(error) or type(error).__name__
    return text[:200]


class Response:
    """An answer whose status and headers are read and whose body is still to come."""

    def __init__(self, pool: ConnectionPool, connection: http.client.HTTPConnection) -> None:
        self._pool = pool
        self._connection: http.client.HTTPConnection | None = connection
        self._response = connection.getresponse()
        self.status = self._response.status
        self.headers = self._response.headers

    def iter_bytes(self, size: int = 1 << 20) -> Iterator[bytes]:
        """The body in pieces of up to ``size`` bytes, as they arrive."""
        try:
            while chunk := self._response.read(size):
                yield chunk
        except (OSError, http.client.HTTPException) as error:
            self._drop()
            raise BodyBroken(describe(error)) from None
        self._check_complete()

    def readinto(self, buffer: memoryview | bytearray) -> int:
        """The next piece of the body into ``buffer``; 0 at its end."""
        try:
            count = self._response.readinto(buffer)
        except (OSError, http.client.HTTPException) as error:
            self._drop()
            raise BodyBroken(describe(error)) from None
        if count == 0:
            self._check_complete()
        return count

    def head(self, limit: int) -> bytes:
        """Up to ``limit`` bytes of the body (an error's explanation), or none if it cannot be read."""
        try:
            return self._response.read(limit)
        except (OSError, http.client.HTTPException):
            return b""

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._response.isclosed() and not self._response.will_close:
            self._pool.release(connection)  # the body was read to its end: the connection goes on
        else:
            self._response.close()
            connection.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_complete(self) -> None:
        if self._response.length:  # http.client ends a body cut short quietly
            self._drop()
            raise BodyBroken(f"the connection closed {self._response.length} bytes before the end")

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        self._response.close()
        if connection is not None:
            connection.close()


class ConnectionPool:
    """Kept-alive connections to one origin; any thread may take one."""

    def __init__(
        self,
        scheme: str,
        netloc: str,
        *,
        timeout: float,
        read_timeout: float | None = None,
        max_idle: int = MAX_IDLE_CONNECTIONS,
    ) -> None:
        if scheme not in ("http", "https"):
            raise ValueError(f"no HTTP connections for scheme {scheme!r}")
        self.scheme, self.netloc = scheme, netloc
        self.timeout, self.read_timeout = timeout, read_timeout
        self.max_idle = max_idle
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def request(self, method: str, target: str, headers: dict[str, str] | None = None) -> Response:
        """Send ``method target``; the answer's status and headers are read, its body not yet."""
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        if connection is not None:
            try:
                connection.request(method, target, headers=headers or {})
                return Response(self, connection)
            except (http.client.RemoteDisconnected, ConnectionError):
                connection.close()  # the server closed it while it was idle: not a failure of this request
        connection = self._new()
        try:
            connection.request(method, target, headers=headers or {})
            return Response(self, connection)
        except BaseException:
            connection.close()
            raise

    def release(self, connection: http.client.HTTPConnection) -> None:
        """Take back a connection whose last answer was read to its end."""
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _new(self) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        connection = kind(self.netloc, timeout=self.timeout)
        if self.read_timeout is not None:
            # Connect within ``timeout``, then wait up to ``read_timeout`` for each read.
            connection.connect()
            assert connection.sock is not None
            connection.sock.settimeout(self.read_timeout)
        return connection


class Pools:
    """One ``ConnectionPool`` per scheme and netloc, made on first use."""

    def __init__(
        self, *, timeout: float, read_timeout: float | None = None, max_idle: int = MAX_IDLE_CONNECTIONS
    ) -> None:
        self.timeout, self.read_timeout, self.max_idle = timeout, read_timeout, max_idle
        self._pools: dict[tuple[str, str], ConnectionPool] = {}
        self._lock = threading.Lock()

    def request(self, method: str, url: str, headers: dict[str, str] | None = None) -> Response:
        """``method url`` over a kept connection to the URL's origin (see ``ConnectionPool.request``)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an HTTP URL: scheme {parts.scheme!r}, host {parts.hostname!r}")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return self.pool(parts.scheme, parts.netloc).request(method, target, headers)

    def pool(self, scheme: str, netloc: str) -> ConnectionPool:
        with self._lock:
            pool = self._pools.get((scheme, netloc))
            if pool is None:
                pool = self._pools[scheme, netloc] = ConnectionPool(
                    scheme,
                    netloc,
                    timeout=self.timeout,
                    read_timeout=self.read_timeout,
                    max_idle=self.max_idle,
                )
            return pool

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()
