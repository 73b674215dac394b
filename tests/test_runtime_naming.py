"""Which stack a pod is of, read from the labels the Kubernetes runtime gives a stack's objects."""

from __future__ import annotations

from typing import Any

import pytest

from shared.adapters.runtime import kube_objects
from shared.adapters.runtime.naming import stack_of_pod


def pod(labels: Any) -> dict[str, Any]:
    return {"metadata": {"name": "s1-web-abc", "labels": labels}}


def test_a_stack_pod_names_its_owner_and_stack() -> None:
    placement = kube_objects.Placement(owner="alice", namespace="workbench-alice", per_user=True)
    labels = placement.service_labels("s1abc", "s1abc-web")
    assert stack_of_pod(pod(labels)) == ("alice", "s1abc")


@pytest.mark.parametrize(
    "manifest",
    [
        {},
        {"metadata": None},
        {"metadata": {"labels": None}},
        pod({"workbench/user": "alice", "workbench/stack": "s1"}),
        pod({"app.kubernetes.io/managed-by": "helm", "workbench/user": "alice", "workbench/stack": "s1"}),
        pod({"app.kubernetes.io/managed-by": "workbench", "workbench/user": "alice"}),
        pod({"app.kubernetes.io/managed-by": "workbench", "workbench/user": 7, "workbench/stack": "s1"}),
        pod(
            {"app.kubernetes.io/managed-by": "workbench", "workbench/user": "Alice", "workbench/stack": "s1"}
        ),
        pod(
            {"app.kubernetes.io/managed-by": "workbench", "workbench/user": "alice", "workbench/stack": "-s1"}
        ),
    ],
)
def test_any_other_pod_names_no_stack(manifest: dict[str, Any]) -> None:
    assert stack_of_pod(manifest) is None


def test_the_kubernetes_objects_read_pods_by_the_same_labels() -> None:
    assert kube_objects.stack_of_pod is stack_of_pod
    assert (kube_objects.MANAGED_BY, kube_objects.USER_LABEL, kube_objects.STACK_LABEL) == (
        "app.kubernetes.io/managed-by",
        "workbench/user",
        "workbench/stack",
    )
