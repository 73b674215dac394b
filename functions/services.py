"""HTTP function ``services``: the system catalog and the caller's own catalog of service specs."""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from shared import specs
from shared.api import Call, json_errors, serve
from shared.models import ServiceSpec


def list_specs(call: Call) -> list[ServiceSpec]:
    return specs.list_specs(call.platform, call.principal, call.query("catalog"))


def create(call: Call) -> ServiceSpec:
    return specs.create(call.platform, call.principal, call.body, call.query("catalog"))


def read(call: Call) -> ServiceSpec:
    return specs.read(call.platform, call.principal, call.params["key"], call.query("catalog"))


def update(call: Call) -> ServiceSpec:
    return specs.update(call.platform, call.principal, call.params["key"], call.body, call.query("catalog"))


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
