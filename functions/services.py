"""HTTP function ``services``: the system catalog and the caller's own catalog of service specs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import functions_framework
from flask import Request, Response

from shared.core.models import ServiceSpec
from shared.domain import specs
from shared.serving.api import Call, Reply, json_errors, serve, warning_header

if TYPE_CHECKING:
    from shared.domain.catalog import CheckedSpec


def list_specs(call: Call) -> list[ServiceSpec]:
    return specs.list_specs(call.platform, call.principal, call.query("catalog"))


def create(call: Call) -> Reply:
    return _with_warnings(specs.create(call.platform, call.principal, call.body, call.query("catalog")))


def read(call: Call) -> ServiceSpec:
    return specs.read(call.platform, call.principal, call.params["key"], call.query("catalog"))


def update(call: Call) -> Reply:
    return _with_warnings(
        specs.update(call.platform, call.principal, call.params["key"], call.body, call.query("catalog"))
    )


def _with_warnings(checked: CheckedSpec) -> Reply:
    """The spec, and each warning of the stricter checks as a ``Warning`` header (code 299, as the
    Kubernetes API sends its warnings)."""
    return Reply(200, checked.spec, tuple(("Warning", warning_header(text)) for text in checked.warnings))


def delete(call: Call) -> None:
    specs.delete(call.platform, call.principal, call.params["key"], call.query("catalog"))


json_errors()


@functions_framework.http
def services(request: Request) -> Response:
    return serve(
        "services",
        request,
        {
            "list": list_specs,
            "create": create,
            "read": read,
            "update": update,
            "delete": delete,
        },
    )
