"""CloudEvent function ``stack_status``: a stack's pod changed in the cluster, so the stack is reconciled."""

# The events come from the cluster's ApiServerSource, which cannot sign them, so none is trusted: the
# pod in an event only names a stack (by its labels), whose status is then read from the cluster
# itself. A forged event can at most make a stack's reconciliation happen sooner; it sets no status.

from __future__ import annotations

from typing import TYPE_CHECKING

import functions_framework
from flask import Request, Response

from shared.domain import stacks
from shared.serving.eventing import adapt
from shared.serving.registry import APISERVER_EVENTS

if TYPE_CHECKING:
    from events.codec import Event


def reconcile(event: Event) -> None:
    from shared.bootstrap import platform

    pod = event.json() if event.data else None
    if not isinstance(pod, dict) or pod.get("kind", "Pod") != "Pod":
        return  # not a pod: nothing of a stack to reconcile
    stacks.reconcile_pod(platform(), pod)


@functions_framework.http
def stack_status(request: Request) -> Response:
    return adapt("stack_status", request, reconcile, handles=APISERVER_EVENTS)
