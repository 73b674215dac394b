"""The shovel's direct downloads: kept-alive connections per thread, and bodies that break off."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shovel.sync import Downloads, Retry

BODY = bytes(range(256)) * 4096  # 1 MiB


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keeps the connection open between requests

    def do_GET(self) -> None:
        server = self.server
        assert isinstance(server, _Server)
        with server.lock:
            server.connections.add(self.client_address)
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        if self.path == "/cut":
            self.wfile.write(BODY[:1000])
            self.close_connection = True
            return
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.connections: set[tuple[str, int]] = set()


@pytest.fixture
def server() -> Iterator[_Server]:
    running = _Server()
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield running
    running.shutdown()
    running.server_close()


def _fetch(downloads: Downloads, url: str) -> bytes:
    pieces: list[bytes] = []
    downloads.get(url, lambda piece: pieces.append(bytes(piece)))
    return b"".join(pieces)


def test_one_thread_downloads_over_one_kept_connection_and_each_thread_over_its_own(server: _Server) -> None:
    url = f"http://127.0.0.1:{server.server_address[1]}/file"
    downloads = Downloads()
    try:
        assert _fetch(downloads, url) == BODY
        assert _fetch(downloads, url) == BODY
        assert len(server.connections) == 1

        other = threading.Thread(target=_fetch, args=(downloads, url))
        other.start()
        other.join()
        assert len(server.connections) == 2
    finally:
        downloads.close()


def test_a_body_cut_short_is_a_retry_and_the_next_download_connects_afresh(server: _Server) -> None:
    base = f"http://127.0.0.1:{server.server_address[1]}"
    downloads = Downloads()
    try:
        with pytest.raises(Retry, match="before the end"):
            _fetch(downloads, f"{base}/cut")
        assert _fetch(downloads, f"{base}/file") == BODY
        assert len(server.connections) == 2
    finally:
        downloads.close()
