"""The Kubernetes stand-in of ``kube_server`` and a Kubernetes runtime on it, for the runtime's and the
console's tests (a plugin of conftest)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.adapters.runtime.kubernetes import KubernetesRuntime
from tests.kube_server import KubeServer
from tests.test_runtime_kubernetes import Reports, make_runtime


@pytest.fixture
def kube() -> Iterator[KubeServer]:
    with KubeServer() as server:
        yield server


@pytest.fixture
def reports() -> Reports:
    """What the runtime reported of the stacks it runs."""
    return Reports()


@pytest.fixture
def runtime(kube: KubeServer, reports: Reports) -> Iterator[KubernetesRuntime]:
    instance = make_runtime(kube, reports)
    yield instance
    instance.close()
