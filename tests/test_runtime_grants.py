"""The access grants the platform puts in a secure local stack's Connect URLs are the ones its
static sites admit: the site keeps its own copy of the format (it runs apart from the project)."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

from shared.adapters.runtime import grants, static_site

SITE_KEY = b"the platform's site key"


def grant_of(url: str) -> str:
    (token,) = parse_qs(urlsplit(url).query)[static_site.ACCESS_PARAMETER]
    return token


def test_a_service_has_the_same_key_on_both_sides() -> None:
    assert grants.service_key(SITE_KEY, "rae", "s33-web") == static_site.service_key(
        SITE_KEY, "rae", "s33-web"
    )
    assert grants.service_key(SITE_KEY, "rae", "s33-web") != grants.service_key(SITE_KEY, "rae", "s34-web")


def test_the_site_admits_a_fresh_grant_of_its_own_service_only() -> None:
    key = grants.service_key(SITE_KEY, "rae", "s33-web")
    url = grants.granted_url("http://127.0.0.1:8123/notebook/?page=2", key)
    assert url.startswith("http://127.0.0.1:8123/notebook/?page=2&")
    assert static_site.admits(key, "grant", grant_of(url))
    other = grants.service_key(SITE_KEY, "sam", "s33-web")
    assert not static_site.admits(other, "grant", grant_of(url))
    assert not static_site.admits(key, "cookie", grant_of(url))


def test_a_grant_expires_as_the_sites_own_do() -> None:
    key = grants.service_key(SITE_KEY, "rae", "s33-web")
    now = time.time()
    url = grants.granted_url("http://127.0.0.1:8123/", key, now=now)
    assert grants.GRANT_SECONDS == static_site.GRANT_SECONDS
    assert grant_of(url) == grant_of(static_site.granted_url("http://127.0.0.1:8123/", key, now=now))
    expired = grants.granted_url("http://127.0.0.1:8123/", key, now=now - grants.GRANT_SECONDS - 1)
    assert not static_site.admits(key, "grant", grant_of(expired))


def test_a_new_grant_replaces_the_one_a_url_carries() -> None:
    key = grants.service_key(SITE_KEY, "rae", "s33-web")
    old = grants.granted_url("http://127.0.0.1:8123/", key, now=time.time() - 10)
    renewed = grants.granted_url(old, key)
    assert len(parse_qs(urlsplit(renewed).query)[grants.ACCESS_PARAMETER]) == 1
    assert grant_of(renewed) != grant_of(old)
