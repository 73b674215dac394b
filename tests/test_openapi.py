"""The served OpenAPI document, and a bounded property-based fuzz run of the whole API against it."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared import registry
from shared.bootstrap import Platform
from shared.gateway import Gateway
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
