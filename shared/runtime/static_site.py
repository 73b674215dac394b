"""A read-only HTTP server for one directory: what the local runtime runs for a service without a command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from typing import BinaryIO

LOOPBACK = "127.0.0.1"


class DirectoryHandler(SimpleHTTPRequestHandler):
    """Serves files and listings below ``directory`` and nothing else, not even through symlinks."""

    # Only GET and HEAD are defined, so every other method is answered 501 by the base class.

    def translate_path(self, path: str) -> str:
        # The base class drops ".." but follows symlinks; resolving them here means the file
        # opened is the one whose location was checked.
        requested = super().translate_path(path)
        resolved = os.path.realpath(requested)
        return resolved + "/" if requested.endswith("/") and resolved != "/" else resolved

    def send_head(self) -> BinaryIO | BytesIO | None:
        root = os.path.realpath(self.directory)
        target = self.translate_path(self.path).rstrip("/") or "/"
        if target != root and not target.startswith(root + os.sep):
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        return super().send_head()


def serve(directory: str, port: int) -> None:
    """Serve ``directory`` on 127.0.0.1:``port`` until the process is stopped."""
    handler = partial(DirectoryHandler, directory=directory)
    with ThreadingHTTPServer((LOOPBACK, port), handler) as server:
        print(f"Serving {directory} on http://{LOOPBACK}:{port}/", flush=True)
        server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument("--directory", required=True, help="the directory to serve")
    arguments = parser.parse_args(argv)
    directory = os.path.realpath(arguments.directory)
    if not os.path.isdir(directory):
        print(f"Not a directory: {arguments.directory}", file=sys.stderr, flush=True)
        return 2
    serve(directory, arguments.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
