"""A read-only HTTP server for one directory: what the local runtime runs for a service without a command.

Further directories may be mounted at paths beneath it (``--mount clowder=<home>/Clowder``), as a
container runtime mounts the user's data folder inside the app's own folder.

It is run by its file path under isolated Python (``python -I``), so it imports the standard library
only: nothing of the project, the user's home or the working directory is on its path. A secure
stack's site admits only visitors who bring an access grant the platform signed for this service
(in the Connect URL it hands the stack's owner), and then remembers them with a cookie of its own.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import re
import sys
import time
from collections.abc import Sequence
from functools import partial
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from typing import Any, BinaryIO
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

LOOPBACK = "127.0.0.1"
ACCESS_PARAMETER = "workbench-access"
"""The query parameter of a Connect URL that carries the access grant."""
GRANT_SECONDS = 300
"""How long a Connect URL's grant may be used: the management page fetches a fresh one every 2 s."""
COOKIE_SECONDS = 12 * 3600
"""How long a visitor admitted by a grant is remembered by the site's cookie."""
COOKIE_PREFIX = "workbench-access-"
KEY_BYTES_LIMIT = 1024
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_EXPIRY = re.compile(r"[0-9]{1,12}")
_COOKIE_SAFE = re.compile(r"[A-Za-z0-9_-]{1,100}")


# --- Grants: signed by the platform, checked by the site ------------------------------------


def service_key(site_key: bytes, owner: str, ssid: str) -> bytes:
    """The key of one service's grants: the site holds only its own, so it admits to no other. The
    platform's (and the domain's) is ``shared.adapters.runtime.grants.service_key``: this module runs
    apart from the project and imports none of it, so it keeps its own copy of the format."""
    return hmac.new(site_key, f"static-site:{owner}/{ssid}".encode(), hashlib.sha256).digest()


def _signature(key: bytes, purpose: str, expiry: int) -> str:
    return hmac.new(key, f"{purpose}:{expiry}".encode(), hashlib.sha256).hexdigest()


def issue(key: bytes, purpose: str, seconds: int, *, now: float | None = None) -> str:
    """``<expiry>.<signature>``: a grant (``purpose`` "grant") or a cookie value ("cookie")."""
    expiry = int(time.time() if now is None else now) + seconds
    return f"{expiry}.{_signature(key, purpose, expiry)}"


def admits(key: bytes, purpose: str, token: str, *, now: float | None = None) -> bool:
    """Whether ``token`` was issued with ``key`` for ``purpose`` and has not expired."""
    expiry, _, signature = token.partition(".")
    if not (_EXPIRY.fullmatch(expiry) and _SIGNATURE.fullmatch(signature)):
        return False
    if int(expiry) < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(_signature(key, purpose, int(expiry)), signature)


def granted_url(url: str, key: bytes, *, now: float | None = None) -> str:
    """``url`` with a fresh grant of the service whose key is ``key`` (as the platform's
    ``shared.adapters.runtime.grants.granted_url`` makes it)."""
    parts = urlsplit(url)
    query = [(name, value) for name, value in parse_qsl(parts.query) if name != ACCESS_PARAMETER]
    query.append((ACCESS_PARAMETER, issue(key, "grant", GRANT_SECONDS, now=now)))
    return urlunsplit(parts._replace(query=urlencode(query)))


def cookie_name(ssid: str) -> str:
    """The site's cookie: one per service, since a browser sends 127.0.0.1's cookies to every port."""
    if _COOKIE_SAFE.fullmatch(ssid):
        return COOKIE_PREFIX + ssid
    return COOKIE_PREFIX + hashlib.sha256(ssid.encode("utf-8", "surrogatepass")).hexdigest()[:32]


# --- The server ------------------------------------------------------------------------------


class Access:
    """Who may visit a secure site: holders of a valid grant or of the cookie it was exchanged for."""

    def __init__(self, key: bytes, cookie: str) -> None:
        self.key = key
        self.cookie = cookie


class Mount:
    """A directory served beneath the site's own at ``prefix`` (URL path words, e.g. ``("clowder",)``).

    Its folder's parent is resolved once, at start (the platform's own path); the folder itself is
    resolved at each request and must still be that very folder, not a symlink put in its place."""

    def __init__(self, prefix: str, directory: str) -> None:
        self.words = tuple(word for word in prefix.split("/") if word)
        parent, name = os.path.split(os.path.abspath(directory))
        self.directory = os.path.join(os.path.realpath(parent), name)

    def root(self) -> str | None:
        """The folder's real path, or None when it is missing or no longer itself."""
        if os.path.realpath(self.directory) != self.directory or not os.path.isdir(self.directory):
            return None
        return self.directory


def _words(path: str) -> tuple[list[str], bool]:
    """A request path's words as the base class reads them (query and fragment dropped, ``.`` and
    ``..`` skipped), and whether it ends with a slash."""
    path = unquote(path.split("?", 1)[0].split("#", 1)[0])
    words = [word for word in path.split("/") if word and word not in (os.curdir, os.pardir)]
    return words, path.rstrip().endswith("/")


class DirectoryHandler(SimpleHTTPRequestHandler):
    """Serves files and listings below ``directory`` (and each mount below its own folder) and nothing
    else, not even through symlinks."""

    # Only GET and HEAD are defined, so every other method is answered 501 by the base class.

    def __init__(
        self, *args: Any, access: Access | None = None, mounts: Sequence[Mount] = (), **kwargs: Any
    ) -> None:
        self.access = access  # before the base class, which handles the request as it is made
        # The longest prefix first, so a mount nested in another is found before it.
        self.mounts = sorted(mounts, key=lambda mount: len(mount.words), reverse=True)
        super().__init__(*args, **kwargs)

    def _served(self, path: str) -> tuple[str | None, str]:
        """The root that serves a request path (None: a mount that is gone) and the path within it."""
        words, trailing = _words(path)
        for mount in self.mounts:
            if tuple(words[: len(mount.words)]) == mount.words:
                rest = words[len(mount.words) :]
                inner = "/" + "/".join(rest) + ("/" if trailing and rest else "")
                return mount.root(), quote(inner)
        return os.path.realpath(self.directory), path

    def translate_path(self, path: str) -> str:
        # The base class drops ".." but follows symlinks; resolving them here means the file
        # opened is the one whose location was checked.
        root, inner = self._served(path)
        if root is None:
            return os.devnull + "/missing"
        directory = self.directory
        self.directory = root
        try:
            requested = super().translate_path(inner)
        finally:
            self.directory = directory
        resolved = os.path.realpath(requested)
        return resolved + "/" if requested.endswith("/") and resolved != "/" else resolved

    def send_head(self) -> BinaryIO | BytesIO | None:
        if self.access is not None and not self._admitted(self.access):
            return None
        root, _ = self._served(self.path)
        target = self.translate_path(self.path).rstrip("/") or "/"
        if root is None or (target != root and not target.startswith(root + os.sep)):
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        return super().send_head()

    def _admitted(self, access: Access) -> bool:
        """True when the visitor may see the site; otherwise the answer (a refusal, or the redirect
        that exchanges a grant for the cookie) has been sent."""
        parts = urlsplit(self.path)
        query = parse_qsl(parts.query, keep_blank_values=True)
        grants = [value for name, value in query if name == ACCESS_PARAMETER]
        if grants:
            if len(grants) != 1 or not admits(access.key, "grant", grants[0]):
                self._refuse("This link has expired: open the service again from the Workbench page.")
                return False
            # The grant leaves the address bar at once: the visitor goes on with the cookie only.
            rest = urlencode([(name, value) for name, value in query if name != ACCESS_PARAMETER])
            self.send_response(HTTPStatus.SEE_OTHER)
            # One leading slash: "//host/…" would send the visitor to another site.
            location = urlunsplit(("", "", "/" + parts.path.lstrip("/"), rest, ""))
            self.send_header("Location", location)
            cookie = issue(access.key, "cookie", COOKIE_SECONDS)
            self.send_header(
                "Set-Cookie",
                f"{access.cookie}={cookie}; Max-Age={COOKIE_SECONDS}; Path=/; HttpOnly; SameSite=Lax",
            )
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return False
        try:
            cookies = SimpleCookie(self.headers.get("Cookie", ""))
        except CookieError:
            cookies = SimpleCookie()
        morsel = cookies.get(access.cookie)
        if morsel is not None and admits(access.key, "cookie", morsel.value):
            return True
        self._refuse("This service is secure: open it from its Connect link on the Workbench page.")
        return False

    def _refuse(self, explanation: str) -> None:
        self.send_error(HTTPStatus.FORBIDDEN, "Forbidden", explanation)


def serve(directory: str, port: int, access: Access | None = None, mounts: Sequence[Mount] = ()) -> None:
    """Serve ``directory`` (and each mount at its prefix) on 127.0.0.1:``port`` until the process is
    stopped."""
    handler = partial(DirectoryHandler, directory=directory, access=access, mounts=mounts)
    with ThreadingHTTPServer((LOOPBACK, port), handler) as server:
        secured = ", to holders of an access grant only" if access is not None else ""
        for mount in mounts:
            print(f"Serving {mount.directory} at /{'/'.join(mount.words)}/", flush=True)
        print(f"Serving {directory} on http://{LOOPBACK}:{port}/{secured}", flush=True)
        server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument("--directory", required=True, help="the directory to serve")
    parser.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="PREFIX=DIRECTORY",
        help="also serve DIRECTORY at the URL path PREFIX (e.g. clowder=/home/alice/Clowder)",
    )
    parser.add_argument(
        "--access-cookie",
        help="admit only holders of a grant (its key, in hex, is read from standard input) and name "
        "the cookie that remembers them so",
    )
    arguments = parser.parse_args(argv)
    directory = os.path.realpath(arguments.directory)
    if not os.path.isdir(directory):
        print(f"Not a directory: {arguments.directory}", file=sys.stderr, flush=True)
        return 2
    mounts = []
    for given in arguments.mount:
        prefix, separator, mounted = given.partition("=")
        if not separator or not prefix.strip("/") or not mounted:
            print(f"A mount is PREFIX=DIRECTORY, not {given!r}", file=sys.stderr, flush=True)
            return 2
        mounts.append(Mount(prefix, mounted))
    access = None
    if arguments.access_cookie is not None:
        # The key comes through a pipe from the platform: not in the environment or the command
        # line (which other processes may read), nor in the home (which the user may read).
        try:
            key = bytes.fromhex(sys.stdin.buffer.read(KEY_BYTES_LIMIT).decode("ascii").strip())
        except ValueError:
            key = b""
        if not key:
            print("A secure site needs its access key on standard input", file=sys.stderr, flush=True)
            return 2
        access = Access(key, arguments.access_cookie)
    serve(directory, arguments.port, access, mounts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
