"""The shovel's health endpoint: ``GET /healthz`` for the kubelet's probes and the platform."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from shared.core.errors import InvalidInput

log = logging.getLogger(__name__)

State = Callable[[], tuple[int, dict[str, Any]]]
"""Gives the status code and JSON body of a health answer."""


class HealthServer:
    """A tiny HTTP server on its own thread; ``port`` is the bound one (useful with port 0)."""

    def __init__(self, host: str, port: int, state: State) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/healthz":
                    self._answer(404, {"Error": f"no such path {self.path.split('?')[0]!r}; try /healthz"})
                    return
                status, body = state()
                self._answer(status, body)

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *arguments: Any) -> None:
                # Probes come every few seconds; they belong in the debug log only.
                log.debug("health: " + format, *arguments)

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as error:
            raise InvalidInput(
                f"cannot serve health checks on {host}:{port}: {error.strerror or error}",
                field="WORKBENCH_SHOVEL_HEALTH_PORT",
            ) from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="shovel-health", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
