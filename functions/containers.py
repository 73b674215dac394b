"""HTTP function ``containers``: a user's stacks with status and connect URLs, and the shovels' health."""

from __future__ import annotations

import secrets
import time

import functions_framework
from flask import Request, Response

from shared.core.errors import Forbidden, NotFound, Unauthorized
from shared.core.models import Container, ContainerService, DatasetCopy, ShovelHealth, Stack, StackService
from shared.domain import transfers
from shared.serving.api import Call, json_errors, serve

STALE_SECONDS = 90


def _is_clowder(call: Call) -> bool:
    """Whether the caller holds Clowder's service token (Unauthorized without any bearer token)."""
    token = call.bearer_token()
    if token is None:
        raise Unauthorized("missing bearer token")
    service_token = call.platform.settings.clowder.service_token
    return service_token is not None and secrets.compare_digest(token.encode(), service_token.encode())


def list_containers(call: Call) -> list[Container]:
    user = call.params["user"]
    if not _is_clowder(call):
        principal = call.principal
        if not principal.admin and principal.user != user:
            raise Forbidden("you may only list your own containers")
    if call.platform.store.get_account(user) is None:
        raise NotFound("account", user)
    return [_container(stack) for stack in call.platform.store.list_stacks(user)]


def dataset_copies(call: Call) -> list[DatasetCopy]:
    """For the admin and Clowder only: the copies name every user who holds the dataset."""
    if not _is_clowder(call) and not call.principal.admin:
        raise Forbidden("only the admin or Clowder may see where a dataset's copies went")
    version = call.query("version")
    return transfers.copies(call.platform, call.params["dataset_id"], version or None)


def _container(stack: Stack) -> Container:
    """Names, status and connect URLs only, whoever asks: a service's config may hold passwords."""
    services = [_service(service) for service in stack.services]
    return Container(
        id=stack.id,
        key=stack.key,
        name=stack.name,
        status=stack.status,
        endpoints=[url for service in services for url in service.endpoints],
        services=services,
    )


def _service(service: StackService) -> ContainerService:
    return ContainerService(
        id=service.id,
        service=service.service,
        status=service.status,
        endpoints=[endpoint.url for endpoint in service.endpoints or () if endpoint.url],
    )


def shovels(call: Call) -> list[ShovelHealth]:
    """Heartbeats come every 30 s or so; three missed ones make a shovel stale."""
    now = int(time.time())
    return [
        ShovelHealth(
            user=user,
            stackId=stack_id,
            version=str(beat.get("version", "")),
            status=str(beat.get("status", "")),
            freeBytes=int(beat.get("free_bytes", 0)),
            lastSync=beat.get("last_sync"),
            seenTime=seen,
            stale=now - seen > STALE_SECONDS,
        )
        for user, stack_id, beat, seen in call.platform.store.list_heartbeats()
    ]


json_errors()


@functions_framework.http
def containers(request: Request) -> Response:
    return serve(
        "containers", request, {"list": list_containers, "shovels": shovels, "copies": dataset_copies}
    )
