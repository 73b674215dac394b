"""The labels a stack's Kubernetes objects carry, and the stack a pod's labels name.

Pure functions of a pod's manifest (no Kubernetes client, no I/O): the domain reads a changed pod
through them without importing a concrete runtime. ``kube_objects`` writes the same labels."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "workbench"
USER_LABEL = "workbench/user"
STACK_LABEL = "workbench/stack"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
"""A name Kubernetes takes as a label of DNS (RFC 1123): lower-case letters, digits and inner dashes."""


def stack_of_pod(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """The owner and stack id a pod's labels name, when it is a stack's pod at all."""
    metadata = pod.get("metadata")
    labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
    if not isinstance(labels, Mapping) or labels.get(MANAGED_BY) != MANAGER:
        return None
    owner, sid = labels.get(USER_LABEL), labels.get(STACK_LABEL)
    if not isinstance(owner, str) or not isinstance(sid, str):
        return None
    if not (DNS_LABEL.match(owner) and DNS_LABEL.match(sid)):
        return None
    return owner, sid
