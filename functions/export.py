"""Function ``export``: a workbench folder to a new Clowder dataset, by CloudEvent or ``POST /api/exports``."""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from events import types
from shared.core.models import Export
from shared.domain import exports
from shared.domain.accounts import account_for_email
from shared.serving.api import Call, json_errors, serve
from shared.serving.eventing import EventCall, is_cloud_event, serve_event


def requested(call: EventCall) -> None:
    data = call.data
    exports.request(
        call.platform,
        account_for_email(call.platform, data.email),
        folder=data.folder,
        name=data.dataset_name,
        description=data.description,
        space_id=data.space_id,
        export_id=exports.export_id_for(call.event.source, call.event.id),
        clowder_url=data.clowder_url,
    )


def create(call: Call) -> Export:
    body = call.body
    return exports.request(
        call.platform,
        call.principal.user,
        folder=body.folder,
        name=body.name,
        description=body.description,
        space_id=body.spaceId,
    )


def list_exports(call: Call) -> list[Export]:
    return call.platform.store.list_exports(call.principal.user)


def read(call: Call) -> Export:
    return exports.read(call.platform, call.principal.user, call.params["export_id"])


json_errors()


@functions_framework.http
def export(request: Request) -> Response:
    if is_cloud_event(request):
        return serve_event("export", request, {types.EXPORT_REQUESTED: requested})
    return serve("export", request, {"create": create, "list": list_exports, "read": read})
