"""Checking an RO-Crate against the RO-Crate 1.1 profile with the RO-Crate community's validator, offline."""

from __future__ import annotations

import hashlib
import io
import json
import urllib.parse
from pathlib import Path

import requests
import urllib3

CRATE_NAME = "ro-crate-metadata.json"
CONTEXT_URL = "https://w3id.org/ro/crate/1.1/context"
CONTEXT = Path(__file__).parent / "data" / "ro-crate" / "context-1.1.jsonld"


def crate_problems(folder: Path, cache: Path, *, severity: str = "RECOMMENDED") -> list[str]:
    """Each issue the validator finds with the crate in ``folder`` (its ``ro-crate-metadata.json`` and
    files), at ``severity`` and above (REQUIRED: the profile's MUSTs; RECOMMENDED: its SHOULDs too).

    The validator fetches the RO-Crate 1.1 context from w3id.org; here it finds the context in its own
    HTTP cache, put there from ``tests/data`` (this machine has no network)."""
    from rocrate_validator import models, services
    from rocrate_validator.utils.http import HttpRequester

    settings = services.ValidationSettings(
        rocrate_uri=str(folder),
        profile_identifier="ro-crate-1.1",
        requirement_severity=models.Severity[severity],
        offline=True,
        cache_path=cache,
    )
    _cache_context(HttpRequester().session)
    result = services.validate(settings)
    return [f"{issue.severity.name}: {issue.message}" for issue in result.get_issues()]


def _cache_context(session: requests.Session) -> None:
    body = CONTEXT.read_bytes()
    headers = {"Content-Type": "application/ld+json"}
    response = requests.Response()
    response.status_code = 200
    response.url = CONTEXT_URL
    response.encoding = "utf-8"
    response.headers.update(headers)
    response._content = body
    response.raw = urllib3.HTTPResponse(
        body=io.BytesIO(body), headers=headers, status=200, preload_content=False, request_url=CONTEXT_URL
    )
    response.request = requests.Request(
        "GET", CONTEXT_URL, headers={"Accept": "application/ld+json, application/json"}
    ).prepare()
    session.cache.save_response(response)  # type: ignore[attr-defined]


def payload(tree: dict[str, bytes]) -> dict[str, bytes]:
    """An exported dataset's files without its ``ro-crate-metadata.json``, once the crate is shown to
    list exactly those files, each with its sha256."""
    document = json.loads(tree[CRATE_NAME])
    files = {
        urllib.parse.unquote(entity["@id"]): entity.get("sha256")
        for entity in document["@graph"]
        if entity.get("@type") == "File"
    }
    rest = {path: data for path, data in tree.items() if path != CRATE_NAME}
    assert files == {path: hashlib.sha256(data).hexdigest() for path, data in rest.items()}
    return rest
