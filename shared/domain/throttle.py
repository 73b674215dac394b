"""Throttling of logins and password-reset requests, counted in the shared store (every instance sees it)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import TYPE_CHECKING

from shared.core.errors import TooManyRequests

if TYPE_CHECKING:
    from shared.adapters.store import Store

KEY_CHARACTERS = 200
"""Counters are keyed by what the caller sent (an unknown name, an address): no longer than this."""


def client_address(peer: str | None, forwarded_for: str | None, trusted_proxies: Sequence[str]) -> str:
    """The address a request came from: the peer's, unless the peer is a trusted proxy; then the
    right-most address in ``X-Forwarded-For`` that is not one (the one the first trusted proxy saw).
    Entries further left are the client's to write, so they are never believed."""
    peer = (peer or "").strip()
    if not trusted_proxies or not forwarded_for:
        return peer
    networks = [ipaddress.ip_network(network) for network in trusted_proxies]

    def trusted(address: str) -> bool:
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(parsed in network for network in networks)

    if not trusted(peer):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not trusted(hop):
            return hop[:KEY_CHARACTERS]
    return hops[0][:KEY_CHARACTERS] if hops else peer


def count(store: Store, key: str, *, limit: int, now: int, window_seconds: int, what: str) -> None:
    """Count one attempt against ``key``; past ``limit`` in the window, ``TooManyRequests`` saying
    ``what`` was throttled and when to try again."""
    (counter,) = store.hit_throttles([key], now, window_seconds)
    if counter.hits > limit:
        wait = counter.window_ends - now
        raise TooManyRequests(f"too many {what}; try again in {wait} seconds", retry_after=wait)


def counter_key(kind: str, name: str) -> str:
    """The counter of ``name`` (an account, an address) for ``kind`` of attempt."""
    return f"{kind}:{name}"[:KEY_CHARACTERS]
