"""HTTP function ``transfers``: the caller asks for transfers and follows their state."""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from shared.core.models import Transfer
from shared.domain import transfers as transfer_service
from shared.serving.api import Call, json_errors, serve


def list_transfers(call: Call) -> list[Transfer]:
    return transfer_service.as_owner_sees(
        call.platform, call.platform.store.list_transfers(call.principal.user)
    )


def create(call: Call) -> Transfer:
    transfer = transfer_service.request_for(call.platform, call.principal.user, call.body)
    return transfer_service.as_owner_sees(call.platform, [transfer])[0]


def read(call: Call) -> Transfer:
    principal = call.principal
    transfer = transfer_service.read(
        call.platform, principal.user, call.params["transfer_id"], admin=principal.admin
    )
    return transfer_service.as_owner_sees(call.platform, [transfer])[0]


json_errors()


@functions_framework.http
def transfers(request: Request) -> Response:
    return serve("transfers", request, {"list": list_transfers, "create": create, "read": read})
