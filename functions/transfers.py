"""HTTP function ``transfers``: the caller asks for transfers and follows their state."""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from shared.core.errors import InvalidInput
from shared.core.models import ReceiptCheck, Transfer, TransferCheck, TransferRefusal
from shared.domain import transfers as transfer_service
from shared.domain import verifications
from shared.serving.api import Call, Reply, json_errors, serve

DRY_RUN = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False, "": False}


def list_transfers(call: Call) -> list[Transfer]:
    return transfer_service.as_owner_sees(
        call.platform, call.platform.store.list_transfers(call.principal.user)
    )


def create(call: Call) -> Transfer | Reply:
    dry_run = DRY_RUN.get((call.query("dry_run") or "").lower())
    if dry_run is None:
        raise InvalidInput("must be 1 or 0 (true or false)", field="dry_run")
    if dry_run:
        return Reply(200, transfer_service.plan_for(call.platform, call.principal.user, call.body))
    try:
        transfer = transfer_service.request_for(call.platform, call.principal.user, call.body)
    except transfer_service.DoesNotFit as error:
        refusal = TransferRefusal(
            Error=error.message, limit=error.limit, neededBytes=error.needed, availableBytes=error.available
        )
        return Reply(error.status, refusal)
    return transfer_service.as_owner_sees(call.platform, [transfer])[0]


def read(call: Call) -> Transfer:
    principal = call.principal
    transfer = transfer_service.read(
        call.platform, principal.user, call.params["transfer_id"], admin=principal.admin
    )
    return transfer_service.as_owner_sees(call.platform, [transfer])[0]


def verify(call: Call) -> ReceiptCheck | Reply:
    principal = call.principal
    found = verifications.start(
        call.platform, principal.user, call.params["transfer_id"], admin=principal.admin
    )
    if isinstance(found, TransferCheck):
        return Reply(202, found)  # asked of the user's shovel: GET follows it
    return found


def latest_check(call: Call) -> TransferCheck:
    principal = call.principal
    return verifications.latest(
        call.platform, principal.user, call.params["transfer_id"], admin=principal.admin
    )


json_errors()


@functions_framework.http
def transfers(request: Request) -> Response:
    return serve(
        "transfers",
        request,
        {
            "list": list_transfers,
            "create": create,
            "read": read,
            "verify": verify,
            "check": latest_check,
        },
    )
