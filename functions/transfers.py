"""HTTP function ``transfers``: the caller asks for transfers and follows their state."""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from shared import transfers as transfer_service
from shared.api import Call, json_errors, serve
from shared.models import Transfer


def list_transfers(call: Call) -> list[Transfer]:
    return call.platform.store.list_transfers(call.principal.user)


def create(call: Call) -> Transfer:
    return transfer_service.request_for(call.platform, call.principal.user, call.body)


def read(call: Call) -> Transfer:
    principal = call.principal
    return transfer_service.read(
        call.platform, principal.user, call.params["transfer_id"], admin=principal.admin
    )


json_errors()


@functions_framework.http
def transfers(request: Request) -> Response:
    return serve("transfers", request, {"list": list_transfers, "create": create, "read": read})
