"""The served OpenAPI document, and a bounded property-based fuzz run of the whole API against it."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from werkzeug.test import Client as WsgiClient

from shared.bootstrap import Platform
from shared.serving import registry
from shared.tools.gateway import Gateway
from tests.conftest import Api

# The API ignores query parameters it does not know (as the Go server did), so schemathesis's
# negative-data check, which expects unknown parameters to be refused, does not apply.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_the_document_lists_every_route(api: Api) -> None:
    response = api.call("GET", "/api/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"] == "3.1.0"
    for function in registry.http_functions():
        for route in function.routes:
            if not route.path.startswith("/api/"):
                assert route.path not in document["paths"]  # the management page is not the API
                continue
            path = route.path.replace("<", "{").replace(">", "}")
            assert route.method.lower() in document["paths"][path], (route.method, path)
    assert {"Stack", "StackService", "ServiceSpec", "Account", "Endpoint", "Config", "Vocabulary"} <= set(
        document["components"]["schemas"]
    )


@pytest.fixture
def api_schema(platform: Platform) -> Any:
    return schemathesis.openapi.from_wsgi("/api/openapi.json", Gateway())


@pytest.fixture
def admin_token(api: Api) -> str:
    return api.admin()


fuzzed = schemathesis.pytest.from_fixture("api_schema")


@fuzzed.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_keeps_to_its_document(case: Any, admin_token: str) -> None:
    """No 500, and every answer (status, content type, body) is one the document allows."""
    case.call_and_validate(headers={"Authorization": f"Bearer {admin_token}"}, checks=CHECKS)


# --- Hostile input on every route: 400 naming the field, never a 500 ---------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000
HUGE_INTEGER = b"1" + b"0" * 100_000
HOSTILE_TEXT = ["9" * 100_000, "é", "\u2603", "%ED%A0%80", "%00", "[" * 1000, "-1"]
"""For queries and paths: a 100,000-digit number, non-ASCII text, a lone surrogate's UTF-8 bytes, NUL."""


def _first_field(route: registry.Route) -> str:
    assert route.body is not None
    return "key" if route.validated_by_handler else next(iter(registry.model(route.body).model_fields))


def _path(route: registry.Route, value: str) -> str:
    return re.sub(r"<\w+>", quote(value, safe="%"), route.path)


def hostile_body(kind: str, field: str) -> tuple[bytes, str]:
    """A hostile body for a route whose first field is ``field``, and the name its error must start with."""
    if kind == "deep":
        return DEEP, "body"
    value = HUGE_INTEGER if kind == "huge-integer" else b'"\\ud800"'
    return b'{"' + field.encode() + b'": ' + value + b"}", field


@pytest.mark.parametrize("kind", ["deep", "huge-integer", "surrogate"])
def test_hostile_json_bodies_are_400_naming_the_field_on_every_route(
    api: Api, admin_token: str, kind: str
) -> None:
    """JSON nested 100,000 deep, a 100,000-digit integer and a lone surrogate, in the body of every route
    that takes one (with the admin's token, so that nothing but the body can be at fault)."""
    client = WsgiClient(Gateway())
    wrong = []
    for function in registry.http_functions():
        for route in function.routes:
            if route.body is None:
                continue
            body, named = hostile_body(kind, _first_field(route))
            response = client.open(
                _path(route, "x"),
                method=route.method,
                data=body,
                content_type="application/json",
                headers={"Authorization": f"Bearer {admin_token}"},
            )
            error = (response.get_json(silent=True) or {}).get("Error", "")
            if response.status_code != 400 or not error.startswith(f"{named}: "):
                wrong.append((route.method, route.path, response.status_code, error[:120]))
    assert wrong == []


ENDS_THE_SESSION = ("logout", "change_password")


def test_hostile_queries_and_paths_are_never_a_server_error(api: Api, admin_token: str) -> None:
    """Every route, every query parameter and path parameter set to each hostile text; the routes that
    end the token go last, so that every other one is reached with a valid token (no 401)."""
    client = WsgiClient(Gateway())
    failed = []
    routes = [route for function in registry.http_functions() for route in function.routes]
    for route in sorted(routes, key=lambda route: route.endpoint in ENDS_THE_SESSION):
        for value in HOSTILE_TEXT:
            query = "&".join(f"{name}={quote(value, safe='%')}" for name in route.query)
            response = client.open(
                _path(route, value) + (f"?{query}" if query else ""),
                method=route.method,
                data=b"{}" if route.body is not None else None,
                content_type="application/json",
                headers={"Authorization": f"Bearer {admin_token}"},
            )
            status = response.status_code
            if status >= 500 or (status == 401 and route.endpoint not in ENDS_THE_SESSION):
                failed.append((route.method, route.path, value[:20], status))
    assert failed == []


def test_hostile_events_and_object_urls_are_refused_not_500(platform: Platform) -> None:
    """The /events ingress and the /objects URLs of the local platform, with the same hostile input."""
    from events import codec, types

    gateway = Gateway(data_dir=platform.data_dir)
    client = WsgiClient(gateway)
    try:
        event = codec.new_event(
            types.TRANSFER_REQUESTED,
            {"clowder_url": "https://c.example.org", "dataset_id": "1", "email": "a@example.org"},
            source="https://c.example.org",
            secret=platform.event_secret,
        )
        headers, _ = codec.to_http(event, "binary")
        for data in (DEEP, b'{"dataset_id": ' + HUGE_INTEGER + b"}", b'{"dataset_id": "\\ud800"}'):
            response = client.post("/events", headers=headers, data=data)
            assert response.status_code == 400, response.get_json()
        platform.objects.put("exports/e1/f.txt", [b"data"])
        for value in HOSTILE_TEXT:
            quoted = quote(value, safe="%")
            for url in (
                f"/objects/exports/e1/f.txt?expires={quoted}&signature=abc",
                f"/objects/exports/e1/f.txt?expires=9999999999&signature={quoted}",
                f"/objects/{quoted}?expires=9999999999&signature=abc",
            ):
                response = client.get(url)
                assert response.status_code in (400, 403, 404), (url[:80], response.get_json())
    finally:
        assert gateway.ingress is not None
        gateway.ingress.close()
