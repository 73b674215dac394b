"""A receiver of events for the producer's and ``workbench events send``'s tests (a plugin of conftest)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Receiver:
    """A small HTTP server on 127.0.0.1 that records what is posted to it."""

    url: str
    status: int = 202
    reply: bytes = b""
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    connections: list[tuple[str, int]] = field(default_factory=list)
    """The client's address of each request (the same one twice means a reused connection)."""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keeps a connection open for as long as the client wants

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            state.requests.append((dict(self.headers.items()), body))
            state.connections.append(self.client_address)
            self.send_response(state.status)
            self.send_header("content-length", str(len(state.reply)))
            self.end_headers()
            self.wfile.write(state.reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test's output is no place for an access log

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/events")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
