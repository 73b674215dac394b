"""shared.core.http: kept-alive connections, and bodies that break off, against a server of raw sockets."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from shared.core.http import BodyBroken, ConnectionPool, Pools

Answer = Callable[[socket.socket, int], bool]
"""Writes one answer to the request numbered on its connection; False closes the connection after it."""


class RawServer:
    """Reads each request's head and lets ``answer`` write whatever bytes it likes; counts connections."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.netloc = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection, connection.makefile("rb") as reader:
            number = 0
            while True:
                line = reader.readline()
                if not line:
                    return
                while reader.readline() not in (b"\r\n", b""):
                    pass
                number += 1
                if not self.answer(connection, number):
                    return

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Answer], RawServer]]:
    servers: list[RawServer] = []

    def start(answer: Answer) -> RawServer:
        servers.append(RawServer(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def whole(body: bytes) -> Answer:
    def answer(connection: socket.socket, number: int) -> bool:
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        return True

    return answer


def test_a_connection_is_kept_for_the_next_request(serve: Callable[[Answer], RawServer]) -> None:
    server = serve(whole(b"x" * 100_000))
    pool = ConnectionPool("http", server.netloc, timeout=5)
    for _ in range(3):
        with pool.request("GET", "/f", {"Accept-Encoding": "identity"}) as response:
            assert response.status == 200
            assert response.headers.get("content-length") == "100000"
            assert b"".join(response.iter_bytes(4096)) == b"x" * 100_000
    pool.close()
    assert server.connections == 1


def test_a_body_cut_short_is_broken_and_its_connection_not_kept(
    serve: Callable[[Answer], RawServer],
) -> None:
    def short(connection: socket.socket, number: int) -> bool:
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"y" * 400)
        return False

    server = serve(short)
    pool = ConnectionPool("http", server.netloc, timeout=5)
    response = pool.request("GET", "/f")
    received = bytearray()
    with pytest.raises(BodyBroken, match="600 bytes before the end"):
        for chunk in response.iter_bytes(128):
            received += chunk
    response.close()
    assert bytes(received) == b"y" * 400

    buffer = bytearray(256)
    with pytest.raises(BodyBroken), pool.request("GET", "/f") as again:
        while again.readinto(buffer):
            pass
    assert server.connections == 2


def test_a_connection_the_server_closed_while_idle_is_replaced(
    serve: Callable[[Answer], RawServer],
) -> None:
    def one_answer_each(connection: socket.socket, number: int) -> bool:
        # Claims to keep the connection, then closes it: the next request finds it dead.
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return False

    server = serve(one_answer_each)
    pools = Pools(timeout=5, read_timeout=5)
    for _ in range(3):
        with pools.request("GET", f"http://{server.netloc}/f") as response:
            assert b"".join(response.iter_bytes()) == b"ok"
    pools.close()
    assert server.connections == 3


def test_an_error_body_is_read_in_part(serve: Callable[[Answer], RawServer]) -> None:
    def refusing(connection: socket.socket, number: int) -> bool:
        body = b"no such file " * 100
        connection.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        return True

    server = serve(refusing)
    with ConnectionPool("http", server.netloc, timeout=5).request("GET", "/f") as response:
        assert response.status == 404
        assert response.head(20) == b"no such file no such"
