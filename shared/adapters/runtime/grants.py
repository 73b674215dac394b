"""The access grants in a secure local stack's Connect URLs, as the platform signs them.

Pure functions (the standard library's HMAC, no I/O): the domain grants its owner access without
importing a concrete runtime. The static site that checks the grants (``static_site``) keeps its
own copy of this format, since it runs by its path under isolated Python and imports nothing of the
project; tests/test_runtime_grants.py holds the two to one format."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

ACCESS_PARAMETER = "workbench-access"
"""The query parameter of a Connect URL that carries the access grant."""
GRANT_SECONDS = 300
"""How long a Connect URL's grant may be used: the management page fetches a fresh one every 2 s."""


def service_key(site_key: bytes, owner: str, ssid: str) -> bytes:
    """The key of one service's grants: the site holds only its own, so it admits to no other."""
    return hmac.new(site_key, f"static-site:{owner}/{ssid}".encode(), hashlib.sha256).digest()


def grant(key: bytes, *, now: float | None = None) -> str:
    """``<expiry>.<signature>``: a grant of the service whose key is ``key``, valid ``GRANT_SECONDS``."""
    expiry = int(time.time() if now is None else now) + GRANT_SECONDS
    signature = hmac.new(key, f"grant:{expiry}".encode(), hashlib.sha256).hexdigest()
    return f"{expiry}.{signature}"


def granted_url(url: str, key: bytes, *, now: float | None = None) -> str:
    """``url`` with a fresh grant of the service whose key is ``key``."""
    parts = urlsplit(url)
    query = [(name, value) for name, value in parse_qsl(parts.query) if name != ACCESS_PARAMETER]
    query.append((ACCESS_PARAMETER, grant(key, now=now)))
    return urlunsplit(parts._replace(query=urlencode(query)))
