"""HTTP function ``configs``: the configuration options of the named service specs."""

from __future__ import annotations

from typing import Any

import functions_framework
from flask import Request, Response

from shared.domain import specs
from shared.serving.api import Call, json_errors, serve


def list_configs(call: Call) -> dict[str, Any]:
    return specs.configs(call.platform, call.principal, call.query("services"))


json_errors()


@functions_framework.http
def configs(request: Request) -> Response:
    return serve("configs", request, {"list": list_configs})
