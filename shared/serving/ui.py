"""The management page's static assets: read once from the package data, served by name only."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "data" / "ui"
INDEX = "index.html"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""Only the page's own files run and style it; no inline script or style, no framing."""

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@dataclass(frozen=True)
class Asset:
    name: str
    body: bytes
    content_type: str
    etag: str


def _read(path: Path, name: str) -> Asset:
    body = path.read_bytes()
    return Asset(name, body, CONTENT_TYPES[path.suffix], hashlib.sha256(body).hexdigest()[:32])


@cache
def assets(root: Path = ASSETS) -> dict[str, Asset]:
    """Every servable file below ``root`` by its relative path: a request can only name one of these,
    so no path from outside is ever joined onto the file system."""
    found: dict[str, Asset] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if (
            path.is_file()
            and not path.is_symlink()
            and path.suffix in CONTENT_TYPES
            and not any(part.startswith(".") for part in relative.parts)
        ):
            found[relative.as_posix()] = _read(path, relative.as_posix())
    return found


def asset(name: str, root: Path = ASSETS) -> Asset | None:
    """The asset called ``name`` (e.g. ``js/main.js``); None for anything that is not one."""
    return assets(root).get(name)


def index(root: Path = ASSETS) -> Asset:
    found = asset(INDEX, root)
    if found is None:
        raise FileNotFoundError(f"the management page is missing: no {INDEX} in {root}")
    return found
