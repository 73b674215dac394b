"""Where a stack's services answer: the Connect URLs its owner sees, and the hosts of its endpoints."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from shared.adapters.runtime.grants import granted_url, service_key
from shared.core.models import Stack

if TYPE_CHECKING:
    from shared.domain.stacks.ports import StackPorts


def grants_access(ports: StackPorts) -> bool:
    """Whether secure stacks' Connect URLs carry access grants: on the local runtime, whose static
    sites check them (on a cluster the ingress checks the visitor's token instead)."""
    return ports.runtime_kind == "local"


def connectable(ports: StackPorts, owner: str, stack: Stack) -> Stack:
    """``stack`` as its owner sees it: a secure local stack's endpoint URLs carry a short-lived access
    grant for their service, which the owner's Connect link presents. Grants are never stored or
    announced; each read of the owner's makes fresh ones."""
    if not (stack.secure and grants_access(ports)):
        return stack
    site_key = ports.site_key
    services = []
    for service in stack.services:
        if service.endpoints:
            key = service_key(site_key, owner, service.id)
            endpoints = [
                endpoint.model_copy(update={"url": granted_url(endpoint.url, key)})
                if endpoint.url
                else endpoint
                for endpoint in service.endpoints
            ]
            service = service.model_copy(update={"endpoints": endpoints})
        services.append(service)
    return stack.model_copy(update={"services": services})


def endpoint_hosts(stacks: Iterable[Stack]) -> set[str]:
    """Every ``host[:port]`` at which the given stacks' services answer."""
    hosts: set[str] = set()
    for stack in stacks:
        for service in stack.services:
            for endpoint in service.endpoints or ():
                if endpoint.url:
                    hosts.add(urlsplit(endpoint.url).netloc.lower())
                if endpoint.host and endpoint.host not in ("127.0.0.1", "localhost"):
                    hosts.add(endpoint.host.lower())
    return hosts
