"""The OpenAPI 3.1 document of the API, generated from the registry and the pydantic models."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared import __version__
from shared.core import models
from shared.serving import registry

REF = "#/components/schemas/{model}"
ERRORS = {
    400: "Bad input; the message names the field at fault",
    401: "Missing, invalid or expired token",
    403: "Not allowed for the caller",
    404: "Not found (or not the caller's)",
    405: "Method not allowed on this path",
    409: "Conflicts with the current state",
    422: "Cannot be carried out as asked",
    503: "A dependency (e.g. the database) is unavailable; retry later",
}
THROTTLED = {
    ("authenticate", "login"): "Too many failed logins from this address or for this account",
    ("register", "reset"): "Too many failed logins and reset requests from this address",
}
"""Routes counted against the login limits: (function, endpoint) → what their 429 means."""
QUERY_PARAMETERS = {
    ("transfers", "create", "dry_run"): "`1` (or `true`): answer 200 with the transfer's plan (files, bytes, "
    "what is staged already or in place, the storage quota and the volume's free space it needs, an estimate "
    "of the time) and change nothing: no transfer is recorded, nothing is staged or sent",
    ("containers", "copies", "version"): "Only the copies of this version of the dataset (where Clowder has "
    "versions)",
}
"""The description of each query parameter that has one: (function, endpoint, parameter) → text."""
OWN_REPLIES = {
    ("transfers", "create"): {
        200: ("TransferPlan", "With `dry_run=1`: the plan; nothing changed"),
        409: ("TransferRefusal", "The transfer would not fit the account's storage quota; nothing moved"),
        507: (
            "TransferRefusal",
            "The transfer would not fit the free space of the home's volume; nothing moved",
        ),
    },
    ("transfers", "verify"): {
        202: (
            "TransferCheck",
            "The platform does not reach the homes here (a cluster): the check, requested of the user's "
            "shovel; `GET` on the same path follows it",
        ),
    },
}
"""Replies a route gives besides its usual one and the errors: (function, endpoint) → status → (model, text)."""


def _models() -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = [models.ErrorBody]
    for replies in OWN_REPLIES.values():
        found.extend(registry.model(name) for name, _ in replies.values())
    for function in registry.FUNCTIONS:
        for route in function.routes:
            for named in (route.body, route.reply):
                annotation = None if named is None else registry.annotation(named)
                for candidate in (annotation, *getattr(annotation, "__args__", ())):
                    if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                        found.append(candidate)
    return list(dict.fromkeys(found))


def _schema_of(named: str) -> dict[str, Any]:
    from pydantic import TypeAdapter

    annotation = registry.annotation(named)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {"$ref": REF.format(model=annotation.__name__)}
    schema: dict[str, Any] = TypeAdapter(annotation).json_schema(ref_template=REF)
    schema.pop("$defs", None)
    return schema


def _spec_schema() -> dict[str, Any]:
    from shared.domain.catalog import DEFAULT_CATALOG

    schema: dict[str, Any] = json.loads((DEFAULT_CATALOG / "schemas" / "spec-schema.json").read_text())
    schema.pop("$schema", None)
    return schema


def _operation(route: registry.Route, function_name: str) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"<(\w+)>", route.path)
    ] + [
        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}} for name in route.query
    ]
    for parameter in parameters:
        described = QUERY_PARAMETERS.get((function_name, route.endpoint, parameter["name"]))
        if described is not None and parameter["in"] == "query":
            parameter["description"] = described
    ok: dict[str, Any] = {"description": route.summary}
    if route.reply is not None:
        ok["content"] = {"application/json": {"schema": _schema_of(route.reply)}}
    elif route.endpoint == "openapi":
        ok["content"] = {"application/json": {"schema": {"type": "object"}}}
    elif (function_name, route.endpoint) == ("stacks", "events"):
        ok["content"] = {"text/event-stream": {"schema": {"type": "string"}}}
        parameters.append(
            {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"}}
        )
    elif route.endpoint == "download":
        ok["content"] = {"text/html": {"schema": {"type": "string"}}}
    if route.validated_by_handler:
        ok["headers"] = {
            "Warning": {
                "description": 'One `299 - "…"` per finding of the spec schema on the body as sent, which '
                "the Go apiserver's checks let pass",
                "schema": {"type": "string"},
            }
        }
    responses: dict[str, Any] = {str(route.status): ok}
    if route.status == 202:
        responses["200"] = ok  # quickstart of a stack that already runs
    if route.endpoint == "healthz":
        responses["503"] = ok
    for status, (name, description) in OWN_REPLIES.get((function_name, route.endpoint), {}).items():
        content = {"application/json": {"schema": {"$ref": REF.format(model=name)}}}
        responses[str(status)] = {"description": description, "content": content}
    error = {"application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}}
    for status, description in ERRORS.items():
        responses.setdefault(str(status), {"description": description, "content": error})
    throttled = THROTTLED.get((function_name, route.endpoint))
    if throttled is not None:
        responses["429"] = {
            "description": f"{throttled}; Retry-After gives the seconds until the window ends",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            "content": error,
        }
    operation: dict[str, Any] = {
        "operationId": f"{route.endpoint}_{route.path}".replace("/", "_").replace("<", "").replace(">", ""),
        "summary": route.summary,
        "parameters": parameters,
        "responses": responses,
        "security": [] if route.access == "public" else [{"bearer": []}],
    }
    if route.body is not None:
        responses["413"] = {
            "description": "The body is larger than the limit (WORKBENCH_MAX_BODY_BYTES, 1 MiB by default)",
            "content": error,
        }
        schema = _spec_schema() if route.validated_by_handler else _schema_of(route.body)
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    return operation


@cache
def document() -> dict[str, Any]:
    """The whole document; built once per process."""
    _, definitions = models_json_schema([(model, "validation") for model in _models()], ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for function in registry.http_functions():
        for route in function.routes:
            if not route.path.startswith("/api/"):
                continue  # the management page and its assets are not part of the API
            path = re.sub(r"<(\w+)>", r"{\1}", route.path)
            operation = _operation(route, function.name)
            operation["tags"] = [function.name]
            paths.setdefault(path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Workbench Functions API",
            "version": __version__,
            "description": "The Labs Workbench API (compatible with the Go apiserver), one function per group.",
        },
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
