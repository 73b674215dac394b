"""The Kubernetes runtime against the API stand-in, driven by the real client: what it creates, how a
start moves on, what the cluster reports back (pod events and reconciling reads), and its errors."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from events import codec
from shared.adapters.runtime import ServicePlan, StackPlan, StatusReport
from shared.adapters.runtime.kube_api import NAMESPACES, KubeApi
from shared.adapters.runtime.kube_objects import ShovelSidecar
from shared.adapters.runtime.kubernetes import KubernetesRuntime, ShovelSupply
from shared.bootstrap import Platform
from shared.core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unavailable,
    Unprocessable,
    WorkbenchError,
)
from shared.core.models import AccountResourceLimits, ServiceSpec, Stack
from shared.core.settings import KubernetesSettings, RuntimeSettings, Settings
from shared.domain import stacks
from tests.conftest import Api
from tests.kube_server import KubeServer
from tests.test_auth import error_of
from tests.test_stacks import add_spec, create, read, spec
from tests.users import Users

DOMAIN = "workbench.example.org"
SID = "s1abcd"
NAMESPACE = "workbench-alice"
LIMITS = AccountResourceLimits(cpuMax=2000, cpuDefault=500, memMax=4096, memDefault=256, storageQuota=20)
SHOVEL_SECRETS = {
    "amqp-url": "amqp://shovel:pw@rabbitmq:5672/",
    "signing-key": "ab" * 32,
}


# --- The stand-in and a runtime on it -----------------------------------------------------------


class Reports(list[StatusReport]):
    def of(self, ssid: str) -> list[tuple[str, str | None]]:
        return [(report.status, report.message) for report in self if report.ssid == ssid]


def make_runtime(
    kube: KubeServer,
    reports: list[StatusReport],
    *,
    timeout: float = 5.0,
    clock: Callable[[], float] = time.time,
    **kubernetes: Any,
) -> KubernetesRuntime:
    defaults: dict[str, Any] = {
        "storage_class": "nfs",
        "tls_secret": "wildcard-tls",
        "ingress_class": "nginx",
    }
    settings = RuntimeSettings(
        kind="kubernetes",
        domain=DOMAIN,
        ready_timeout=60,
        kubernetes=KubernetesSettings(
            **{**defaults, **kubernetes, "forward_auth_url": "https://workbench.example.org/api/check_token"}
        ),
    )
    shovel = ShovelSupply(
        ShovelSidecar(
            image="registry.example.org/shovel:1.0", events_url="http://broker/", api_url="https://wb/"
        ),
        secrets_for=lambda user: SHOVEL_SECRETS,
    )
    return KubernetesRuntime(
        settings,
        api=KubeApi(kube.configuration(), timeout=timeout),
        report=reports.append,
        shovel=shovel,
        remove_wait=2.0,
        clock=clock,
    )


def service_plan(
    key: str, *, sid: str = SID, env: dict[str, str] | None = None, **fields: Any
) -> ServicePlan:
    document = {
        "key": key,
        "image": {"registry": "docker.io", "name": f"example/{key}", "tags": ["1.0", "2.0"]},
        "access": "internal",
        "ports": [{"port": 7000, "protocol": "tcp"}],
    } | {
        name: value
        for name, value in fields.items()
        if name not in ("requires", "uses", "volumes", "image_tag", "data_mount")
    }
    return ServicePlan(
        ssid=f"{sid}-{key}",
        key=key,
        spec=ServiceSpec.model_validate(document),
        env={"NDSLABS_STACK": sid, "NDSLABS_SERVICE": f"{sid}-{key}", **(env or {})},
        volumes=fields.get("volumes", {}),
        requires=tuple(fields.get("requires", ())),
        uses=tuple(fields.get("uses", ())),
        image_tag=fields.get("image_tag", ""),
        data_mount=fields.get("data_mount", ""),
    )


def two_service_plan(*, secure: bool = True, sid: str = SID, owner: str = "alice") -> StackPlan:
    """A backend (internal, TCP) that a web frontend (external, secure) requires."""
    backend = service_plan("backend", sid=sid, env={"BACKEND_PASSWORD": "pw"})
    frontend = service_plan(
        "frontend",
        sid=sid,
        access="external",
        ports=[{"port": 8888, "protocol": "http", "contextPath": "/lab"}],
        readinessProbe={"type": "http", "path": "/api", "port": 8888, "initialDelay": 3, "timeout": 90},
        resourceLimits={"cpuMax": 1000, "cpuDefault": 250, "memMax": 2048, "memDefault": 512},
        volumes={"AppData/work": "/home/user/work", "Data": "/data"},
        data_mount="/home/user/work/clowder",
        requires=("backend",),
        uses=("backend",),
        image_tag="2.0",
        command=["start-notebook.sh"],
        args=["--port=8888"],
    )
    return StackPlan(
        owner=owner, sid=sid, services=(backend, frontend), secure=secure, email="a@x", limits=LIMITS
    )


def one_pod(kube: KubeServer, ssid: str, namespace: str = NAMESPACE) -> dict[str, Any]:
    pods = kube.pods(namespace, f"workbench/service={ssid}")
    assert len(pods) == 1, [pod["metadata"]["name"] for pod in pods]
    return pods[0]


def deployment(kube: KubeServer, name: str, namespace: str = NAMESPACE) -> dict[str, Any]:
    found = kube.get("deployments", namespace, name)
    assert found is not None, name
    return found


# --- The account ---------------------------------------------------------------------------------


def test_a_first_start_sets_up_the_account(kube: KubeServer, runtime: KubernetesRuntime) -> None:
    runtime.start(two_service_plan())

    namespace = kube.get("namespaces", None, NAMESPACE)
    assert namespace is not None
    assert namespace["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "workbench"
    assert namespace["metadata"]["labels"]["workbench/user"] == "alice"

    claim = kube.get("persistentvolumeclaims", NAMESPACE, "alice-home")
    assert claim is not None
    assert claim["spec"]["storageClassName"] == "nfs"
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"  # the account's storage quota
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]

    quota = kube.get("resourcequotas", NAMESPACE, "alice-quota")
    assert quota is not None
    assert quota["spec"]["hard"] == {
        "requests.cpu": "2000m",
        "limits.cpu": "2000m",
        "requests.memory": "4096Mi",
        "limits.memory": "4096Mi",
        "requests.storage": "20Gi",
    }
    limit_range = kube.get("limitranges", NAMESPACE, "alice-limits")
    assert limit_range is not None
    assert limit_range["spec"]["limits"] == [
        {
            "type": "Container",
            "default": {"cpu": "500m", "memory": "256Mi"},
            "defaultRequest": {"cpu": "500m", "memory": "256Mi"},
            "max": {"cpu": "2000m", "memory": "4096Mi"},
        }
    ]


def test_each_users_pods_accept_connections_only_from_their_own_and_the_ingress(
    kube: KubeServer, runtime: KubernetesRuntime
) -> None:
    runtime.start(two_service_plan())
    policy = kube.get("networkpolicies", NAMESPACE, "alice-isolation")
    assert policy is not None
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"workbench/user": "alice"}}
    assert spec["policyTypes"] == ["Ingress"]
    assert spec["ingress"] == [
        {
            "from": [
                {"podSelector": {"matchLabels": {"workbench/user": "alice"}}},
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
            ]
        }
    ]
    # Every pod of the stack is one the policy selects.
    for pod in kube.items("pods", NAMESPACE):
        assert pod["metadata"]["labels"]["workbench/user"] == "alice"


def test_the_shovel_identity_reaches_only_its_own_users_namespace(
    kube: KubeServer, runtime: KubernetesRuntime
) -> None:
    runtime.start(two_service_plan())
    account = kube.get("serviceaccounts", NAMESPACE, "alice-shovel")
    assert account is not None and account["automountServiceAccountToken"] is False
    role = kube.get("roles", NAMESPACE, "alice-shovel")
    assert role is not None
    verbs = {
        (resource, verb) for rule in role["rules"] for resource in rule["resources"] for verb in rule["verbs"]
    }
    assert not any(resource == "deployments/scale" for resource, _ in verbs)  # stacks: through the API only
    assert not any(verb in ("create", "delete", "patch", "update", "*") for _, verb in verbs)
    assert not any(resource in ("secrets", "roles", "rolebindings", "*") for resource, _ in verbs)
    binding = kube.get("rolebindings", NAMESPACE, "alice-shovel")
    assert binding is not None
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "alice-shovel",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "alice-shovel", "namespace": NAMESPACE}]
    # Nothing cluster-wide.
    assert kube.items("clusterroles") == [] and kube.items("clusterrolebindings") == []

    secret = kube.get("secrets", NAMESPACE, "alice-shovel")
    assert secret is not None
    assert {key: base64.b64decode(value).decode() for key, value in secret["data"].items()} == SHOVEL_SECRETS
    for config in kube.items("configmaps", NAMESPACE):
        assert not set(SHOVEL_SECRETS.values()) & set(config["data"].values())


def test_account_setup_is_idempotent_and_an_existing_namespace_or_home_is_kept(
    kube: KubeServer, reports: Reports
) -> None:
    first = make_runtime(kube, reports)
    first.start(two_service_plan())
    claim = kube.get("persistentvolumeclaims", NAMESPACE, "alice-home")
    first.stop(two_service_plan())
    requests_before = len(kube.requests)
    first.start(two_service_plan())
    # The same process sets the account up once.
    assert not any(request.path.endswith("/namespaces") for request in kube.requests[requests_before:])

    second = make_runtime(kube, reports, home_size="50Gi")  # another process, another size
    second.start(two_service_plan(sid="s2efgh"))
    created = [(r.method, r.path) for r in kube.requests if r.method == "POST"]
    assert created.count(("POST", "/api/v1/namespaces")) == 2  # the second answered 409: exists
    assert kube.get("persistentvolumeclaims", NAMESPACE, "alice-home") == claim  # a home is never changed


def test_a_shared_namespace_holds_every_user_apart_by_labels(kube: KubeServer, reports: Reports) -> None:
    runtime = make_runtime(kube, reports, namespace_mode="shared", namespace="stacks")
    # The shared namespace comes with the platform's manifests.
    KubeApi(kube.configuration()).create(
        NAMESPACES, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "stacks"}}
    )
    runtime.start(two_service_plan(owner="alice"))
    runtime.start(two_service_plan(owner="bob"))
    names = {item["metadata"]["name"] for item in kube.items("deployments", "stacks")}
    assert names == {
        "alice-s1abcd-backend",
        "alice-s1abcd-frontend",
        "bob-s1abcd-backend",
        "bob-s1abcd-frontend",
    }
    assert kube.items("resourcequotas", "stacks") == []  # a namespace-wide quota would be everyone's
    role = kube.get("roles", "stacks", "bob-shovel")
    assert role is not None and role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["bob-shovel"], "verbs": ["get"]}
    ]

    runtime.remove_account("alice")
    left = {
        item["metadata"]["name"]
        for plural in ("deployments", "configmaps", "services", "secrets")
        for item in kube.items(plural, "stacks")
    }
    assert left and all(name.startswith("bob-") for name in left)
    assert kube.get("namespaces", None, "stacks") is not None


# --- A stack's objects -----------------------------------------------------------------------------


def applied(kube: KubeServer, plural: str, name: str) -> list[Any]:
    """The bodies of the server-side applies of one object, in order."""
    return [
        request.body
        for request in kube.requests
        if request.method == "PATCH"
        and request.content_type == "application/apply-patch+yaml"
        and request.path.endswith(f"/{plural}/{name}")
    ]


def test_each_service_is_a_deployment_created_at_zero_replicas(
    kube: KubeServer, runtime: KubernetesRuntime
) -> None:
    runtime.start(two_service_plan())
    for name in ("s1abcd-backend", "s1abcd-frontend"):
        bodies = applied(kube, "deployments", name)
        assert [body["spec"]["replicas"] for body in bodies] == [0]
        assert all(r.query.get("fieldManager") == "workbench" for r in kube.requests if r.method == "PATCH")
        labels = deployment(kube, name)["metadata"]["labels"]
        assert labels == {
            "app.kubernetes.io/managed-by": "workbench",
            "workbench/user": "alice",
            "workbench/stack": SID,
            "workbench/service": name,
        }
    # The backend requires nothing and is scaled up at once; the frontend waits for it.
    assert deployment(kube, "s1abcd-backend")["spec"]["replicas"] == 1
    assert deployment(kube, "s1abcd-frontend")["spec"]["replicas"] == 0
    assert [r.path for r in kube.requests if r.path.endswith("/scale")] == [
        "/apis/apps/v1/namespaces/workbench-alice/deployments/s1abcd-backend/scale"
    ]


def test_config_maps_carry_the_config_the_ndslabs_variables_and_dependency_addresses(
    kube: KubeServer, runtime: KubernetesRuntime
) -> None:
    runtime.start(two_service_plan())
    frontend = kube.get("configmaps", NAMESPACE, "s1abcd-frontend")
    assert frontend is not None
    assert frontend["data"]["NDSLABS_STACK"] == SID
    assert frontend["data"]["NDSLABS_SERVICE"] == "s1abcd-frontend"
    assert frontend["data"]["BACKEND_PORT_7000_TCP_ADDR"] == "s1abcd-backend.workbench-alice.svc"
    assert frontend["data"]["BACKEND_PORT_7000_TCP_PORT"] == "7000"
    backend = kube.get("configmaps", NAMESPACE, "s1abcd-backend")
    assert backend is not None and backend["data"]["BACKEND_PASSWORD"] == "pw"
    pod_spec = deployment(kube, "s1abcd-frontend")["spec"]["template"]["spec"]
    assert pod_spec["containers"][0]["envFrom"] == [{"configMapRef": {"name": "s1abcd-frontend"}}]
    assert pod_spec["enableServiceLinks"] is False


def test_services_and_the_ingress_of_a_secure_external_service(
    kube: KubeServer, runtime: KubernetesRuntime
) -> None:
    runtime.start(two_service_plan(secure=True))
    backend = kube.get("services", NAMESPACE, "s1abcd-backend")
    assert backend is not None
    assert backend["spec"]["selector"] == {"workbench/user": "alice", "workbench/service": "s1abcd-backend"}
    assert backend["spec"]["ports"] == [
        {"name": "port-7000", "port": 7000, "targetPort": 7000, "protocol": "TCP"}
    ]
    assert kube.get("ingresses", NAMESPACE, "s1abcd-backend") is None  # internal

    ingress = kube.get("ingresses", NAMESPACE, "s1abcd-frontend")
    assert ingress is not None
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["rules"][0]["host"] == f"s1abcd-frontend.{DOMAIN}"
    assert spec["rules"][0]["http"]["paths"][0]["backend"] == {
        "service": {"name": "s1abcd-frontend", "port": {"number": 8888}}
    }
    assert spec["tls"] == [{"hosts": [f"s1abcd-frontend.{DOMAIN}"], "secretName": "wildcard-tls"}]
    assert ingress["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/auth-url": "https://workbench.example.org/api/check_token?host=$host"
    }


def test_an_insecure_stack_has_no_forward_authentication(
    kube: KubeServer, runtime: KubernetesRuntime
) -> None:
    runtime.start(two_service_plan(secure=False))
    ingress = kube.get("ingresses", NAMESPACE, "s1abcd-frontend")
    assert ingress is not None and not ingress["metadata"].get("annotations")


def test_mounts_probes_resources_and_image(kube: KubeServer, runtime: KubernetesRuntime) -> None:
    runtime.start(two_service_plan())
    pod_spec = deployment(kube, "s1abcd-frontend")["spec"]["template"]["spec"]
    app = pod_spec["containers"][0]
    assert app["name"] == "frontend"
    assert app["image"] == "docker.io/example/frontend:2.0"
    assert app["command"] == ["start-notebook.sh"] and app["args"] == ["--port=8888"]
    assert app["volumeMounts"] == [
        {"name": "home", "mountPath": "/home/user/work", "subPath": "AppData/work"},
        {"name": "home", "mountPath": "/data", "subPath": "Data"},
        # The data folder, nested in the app's own folder (the stand-in validates the pod spec).
        {"name": "home", "mountPath": "/home/user/work/clowder", "subPath": "Clowder"},
    ]
    assert pod_spec["volumes"][0] == {"name": "home", "persistentVolumeClaim": {"claimName": "alice-home"}}
    assert app["readinessProbe"] == {
        "httpGet": {"path": "/api", "port": 8888},
        "initialDelaySeconds": 3,
        "periodSeconds": 5,
    }
    assert app["livenessProbe"]["httpGet"] == {"path": "/api", "port": 8888}
    assert app["livenessProbe"]["initialDelaySeconds"] == 93  # after the 90 s it may take to be ready
    assert app["resources"] == {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"cpu": "1000m", "memory": "2048Mi"},
    }
    assert app["securityContext"] == {"privileged": False}
    backend = deployment(kube, "s1abcd-backend")["spec"]["template"]["spec"]["containers"][0]
    assert backend["image"] == "docker.io/example/backend:1.0"  # the spec's first tag
    assert backend["readinessProbe"]["tcpSocket"] == {"port": 7000}  # undeclared: its port accepts
    assert "livenessProbe" not in backend


def test_the_shovel_is_a_native_sidecar_of_the_main_service_on_the_same_home(
    kube: KubeServer, runtime: KubernetesRuntime
) -> None:
    runtime.start(two_service_plan())
    pod_spec = deployment(kube, "s1abcd-frontend")["spec"]["template"]["spec"]
    [shovel] = pod_spec["initContainers"]
    assert shovel["restartPolicy"] == "Always"
    assert shovel["image"] == "registry.example.org/shovel:1.0"
    assert shovel["startupProbe"]["httpGet"] == {"path": "/healthz", "port": 8081}
    mounts = {mount["name"]: mount for mount in shovel["volumeMounts"]}
    assert mounts["home"] == {
        "name": "home",
        "mountPath": "/home/workbench",
    }  # the whole home, the same claim
    environment = {item["name"]: item for item in shovel["env"]}
    assert environment["WORKBENCH_SHOVEL_USER"]["value"] == "alice"
    assert environment["WORKBENCH_SHOVEL_STACK_ID"]["value"] == SID
    assert environment["WORKBENCH_SHOVEL_HOME"]["value"] == "/home/workbench"
    assert environment["WORKBENCH_AMQP_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "alice-shovel", "key": "amqp-url"}
    }
    assert environment["WORKBENCH_SHOVEL_SIGNING_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "alice-shovel", "key": "signing-key"}
    }
    assert not any("value" in item and item["value"] in SHOVEL_SECRETS.values() for item in shovel["env"])
    # Its identity: the shovel's service account, whose token only the shovel's container mounts.
    assert pod_spec["serviceAccountName"] == "alice-shovel"
    assert pod_spec["automountServiceAccountToken"] is False
    assert mounts["shovel-identity"]["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount"
    assert not any(mount["name"] == "shovel-identity" for mount in pod_spec["containers"][0]["volumeMounts"])
    # One shovel per stack.
    assert "initContainers" not in deployment(kube, "s1abcd-backend")["spec"]["template"]["spec"]


def test_the_platform_gives_each_shovel_the_configured_attempts_and_no_token_of_its_user(
    kube: KubeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The composition root's sidecar: WORKBENCH_SHOVEL_ATTEMPTS reaches the shovel's environment, and the
    shovel's secret holds its AMQP URL and signing key only (a stack command brings its own token)."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    settings = Settings.from_env(
        {
            "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
            "WORKBENCH_DATA_DIR": str(tmp_path / "data"),
            "WORKBENCH_RUNTIME": "kubernetes",
            "WORKBENCH_DOMAIN": DOMAIN,
            "WORKBENCH_SHOVEL_ATTEMPTS": "3",
        }
    )
    platform = Platform(settings)
    try:
        platform.runtime.start(two_service_plan())
    finally:
        platform.close()
    [shovel] = deployment(kube, "s1abcd-frontend")["spec"]["template"]["spec"]["initContainers"]
    environment = {item["name"]: item.get("value") for item in shovel["env"]}
    assert environment["WORKBENCH_SHOVEL_ATTEMPTS"] == "3"
    secret = kube.get("secrets", NAMESPACE, "alice-shovel")
    assert secret is not None and set(secret["data"]) == {"amqp-url", "signing-key"}


def test_names_that_cannot_name_kubernetes_objects_are_refused_before_anything_is_sent(
    kube: KubeServer, runtime: KubernetesRuntime
) -> None:
    plan = StackPlan(owner="alice", sid=SID, services=(service_plan("Bad_Key"),))
    with pytest.raises(InvalidInput, match="cannot name a Kubernetes object"):
        runtime.start(plan)
    assert kube.requests == []


# --- Starting, stopping, status ----------------------------------------------------------------


def test_dependants_start_only_once_their_required_services_are_ready(
    kube: KubeServer, runtime: KubernetesRuntime, reports: Reports
) -> None:
    plan = two_service_plan()
    runtime.start(plan)
    assert reports.of("s1abcd-backend") == [("starting", "Starting")]
    assert reports.of("s1abcd-frontend") == []
    assert kube.pods(NAMESPACE, "workbench/service=s1abcd-frontend") == []

    # Nothing changes while the backend is not ready.
    assert [(r.ssid, r.status) for r in runtime.observe(plan)] == [("s1abcd-backend", "starting")]
    assert deployment(kube, "s1abcd-frontend")["spec"]["replicas"] == 0

    kube.mark_ready(NAMESPACE, one_pod(kube, "s1abcd-backend")["metadata"]["name"])
    observed = {report.ssid: report for report in runtime.observe(plan)}
    assert observed["s1abcd-backend"].status == "ready"
    backend_endpoint = observed["s1abcd-backend"].endpoints
    assert backend_endpoint is not None and backend_endpoint[0].host == "s1abcd-backend.workbench-alice.svc"
    assert observed["s1abcd-frontend"].status == "starting"
    assert deployment(kube, "s1abcd-frontend")["spec"]["replicas"] == 1

    kube.mark_ready(NAMESPACE, one_pod(kube, "s1abcd-frontend")["metadata"]["name"])
    frontend = {report.ssid: report for report in runtime.observe(plan)}["s1abcd-frontend"]
    assert frontend.status == "ready"
    assert frontend.endpoints is not None
    assert frontend.endpoints[0].url == f"https://s1abcd-frontend.{DOMAIN}/lab"


def test_a_failing_required_service_fails_its_dependants(
    kube: KubeServer, runtime: KubernetesRuntime, reports: Reports
) -> None:
    plan = two_service_plan()
    runtime.start(plan)
    pod = one_pod(kube, "s1abcd-backend")["metadata"]["name"]
    kube.terminate(NAMESPACE, pod, reason="Error", message="database is corrupt", exit_code=3)
    observed = {report.ssid: report for report in runtime.observe(plan)}
    assert observed["s1abcd-backend"].status == "error"
    message = observed["s1abcd-backend"].message or ""
    assert "CrashLoopBackOff" in message and "database is corrupt" in message and "exit code 3" in message
    assert observed["s1abcd-frontend"].status == "error"
    assert observed["s1abcd-frontend"].message == "Not started: required service 'backend' failed"
    assert deployment(kube, "s1abcd-frontend")["spec"]["replicas"] == 0


def test_a_container_that_terminated_for_good_is_an_error_with_its_reason(
    kube: KubeServer, runtime: KubernetesRuntime
) -> None:
    plan = two_service_plan()
    runtime.start(plan)
    pod = one_pod(kube, "s1abcd-backend")["metadata"]["name"]
    kube.terminate(NAMESPACE, pod, reason="OOMKilled", message="", exit_code=137, crash_loop=False)
    backend = {report.ssid: report for report in runtime.observe(plan)}["s1abcd-backend"]
    assert backend.status == "error"
    assert backend.message == "Container backend terminated with exit code 137: OOMKilled"


def test_pods_the_cluster_cannot_create_are_an_error(kube: KubeServer, runtime: KubernetesRuntime) -> None:
    kube.refuse_pods[NAMESPACE] = (
        'pods "x" is forbidden: exceeded quota: alice-quota, requested: limits.cpu=3'
    )
    runtime.start(two_service_plan())
    backend = {report.ssid: report for report in runtime.observe(two_service_plan())}["s1abcd-backend"]
    assert backend.status == "error"
    assert "exceeded quota" in (backend.message or "")


def test_a_service_not_ready_within_its_timeout_times_out(kube: KubeServer, reports: Reports) -> None:
    later = make_runtime(kube, reports, clock=lambda: time.time() + 120)
    plan = two_service_plan()
    later.start(plan)
    backend = {report.ssid: report for report in later.observe(plan)}["s1abcd-backend"]
    assert (backend.status, backend.message) == ("timeout", "Service timed out after 60 seconds")


def test_stop_scales_to_zero_dependants_first_and_reports_stopped(
    kube: KubeServer, runtime: KubernetesRuntime, reports: Reports
) -> None:
    plan = two_service_plan()
    runtime.start(plan)
    kube.ready_all(NAMESPACE)
    runtime.observe(plan)
    kube.ready_all(NAMESPACE)
    reports.clear()
    runtime.stop(plan)
    patched = [
        r.path
        for r in kube.requests
        if r.method == "PATCH"
        and r.body == {"metadata": {"annotations": {"workbench/replicas": "0"}}, "spec": {"replicas": 0}}
    ]
    assert patched == [
        "/apis/apps/v1/namespaces/workbench-alice/deployments/s1abcd-frontend",
        "/apis/apps/v1/namespaces/workbench-alice/deployments/s1abcd-backend",
    ]
    assert kube.items("pods", NAMESPACE) == []
    assert (
        sorted(reports.of("s1abcd-backend") + reports.of("s1abcd-frontend")) == [("stopped", "Stopped")] * 2
    )
    # Started again, it comes back in order.
    runtime.start(plan)
    assert deployment(kube, "s1abcd-backend")["spec"]["replicas"] == 1
    assert deployment(kube, "s1abcd-frontend")["spec"]["replicas"] == 0


def test_a_stop_is_reported_once_the_pods_have_ended(
    kube: KubeServer, runtime: KubernetesRuntime, reports: Reports
) -> None:
    kube.graceful_pod_deletion = True
    plan = two_service_plan()
    runtime.start(plan)
    reports.clear()
    runtime.stop(plan)
    assert reports.of("s1abcd-backend") == []  # its pod is still terminating
    assert reports.of("s1abcd-frontend") == [("stopped", "Stopped")]
    kube.finish_terminating()
    assert [(r.ssid, r.status) for r in runtime.observe(plan)] == [
        ("s1abcd-backend", "stopped"),
        ("s1abcd-frontend", "stopped"),
    ]


def test_a_start_after_a_restart_leaves_running_services_running(
    kube: KubeServer, runtime: KubernetesRuntime, reports: Reports
) -> None:
    plan = two_service_plan()
    runtime.start(plan)
    kube.ready_all(NAMESPACE)
    runtime.observe(plan)
    kube.ready_all(NAMESPACE)
    pods = {pod["metadata"]["name"] for pod in kube.items("pods", NAMESPACE)}
    again = make_runtime(kube, reports)
    again.start(plan)
    assert {pod["metadata"]["name"] for pod in kube.items("pods", NAMESPACE)} == pods
    assert {report.status for report in again.observe(plan)} == {"ready"}


def test_a_changed_stack_loses_the_objects_of_services_it_no_longer_has(
    kube: KubeServer, runtime: KubernetesRuntime
) -> None:
    runtime.start(two_service_plan())
    runtime.stop(two_service_plan())
    smaller = StackPlan(owner="alice", sid=SID, services=(service_plan("backend"),), limits=LIMITS)
    runtime.start(smaller)
    for plural in ("deployments", "configmaps", "services", "ingresses"):
        assert [item["metadata"]["name"] for item in kube.items(plural, NAMESPACE)] in (
            [],
            ["s1abcd-backend"],
        )


def test_logs_are_the_pod_log_tail(kube: KubeServer, runtime: KubernetesRuntime) -> None:
    plan = two_service_plan()
    assert runtime.logs("alice", "s1abcd-backend", 10) == ""  # no pod yet
    runtime.start(plan)
    pod = one_pod(kube, "s1abcd-backend")["metadata"]["name"]
    assert runtime.logs("alice", "s1abcd-backend", 10) == ""  # its container has not started
    kube.mark_ready(NAMESPACE, pod)
    kube.write_log(NAMESPACE, pod, "backend", "one\ntwo\nthree\n")
    assert runtime.logs("alice", "s1abcd-backend", 2) == "two\nthree\n"
    assert runtime.logs("alice", "s1abcd-backend", None) == "one\ntwo\nthree\n"
    log_request = [r for r in kube.requests if r.path.endswith("/log")][-2]
    assert log_request.query == {"container": "backend", "tailLines": "2", "limitBytes": str(4 * 1024 * 1024)}


def test_removing_a_stack_deletes_everything_it_created(kube: KubeServer, runtime: KubernetesRuntime) -> None:
    plan = two_service_plan()
    runtime.start(plan)
    runtime.start(two_service_plan(sid="s2other"))
    runtime.remove(plan)
    for plural in ("deployments", "configmaps", "services", "ingresses", "pods"):
        left = [item["metadata"]["name"] for item in kube.items(plural, NAMESPACE)]
        assert not [name for name in left if name.startswith(SID)], (plural, left)
        assert [name for name in left if name.startswith("s2other")], plural
    assert kube.get("persistentvolumeclaims", NAMESPACE, "alice-home") is not None  # the account's


def test_removing_an_account_deletes_its_namespace(kube: KubeServer, runtime: KubernetesRuntime) -> None:
    runtime.start(two_service_plan())
    runtime.start(two_service_plan(owner="bob"))
    runtime.remove_account("alice")
    assert kube.get("namespaces", None, NAMESPACE) is None
    assert kube.items("persistentvolumeclaims", NAMESPACE) == []
    assert kube.items("deployments", NAMESPACE) == []
    assert kube.items("deployments", "workbench-bob") != []
    # A later start sets the account up again.
    runtime.start(two_service_plan())
    assert kube.get("namespaces", None, NAMESPACE) is not None


# --- Errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message", "error", "says"),
    [
        (
            403,
            'deployments.apps "s1abcd-backend" is forbidden: User "system:serviceaccount:workbench:stacks" '
            'cannot patch resource "deployments" in API group "apps" in the namespace "workbench-alice"',
            Forbidden,
            "the cluster does not allow the platform to apply Deployment 's1abcd-backend' in namespace "
            "'workbench-alice'",
        ),
        (404, 'namespaces "workbench-alice" not found', NotFound, "Deployment 's1abcd-backend'"),
        (409, "the object has been modified", Conflict, "changed or exists already (Conflict)"),
        (422, 'Deployment.apps "s1abcd-backend" is invalid: spec.replicas', Unprocessable, "as invalid"),
        (503, "etcdserver: leader changed", Unavailable, "(HTTP 503): etcdserver: leader changed"),
        (500, "Internal error occurred", Unavailable, "(HTTP 500)"),
        (429, "too many requests", Unavailable, "throttling"),
    ],
)
def test_api_errors_become_the_projects_own(
    kube: KubeServer,
    runtime: KubernetesRuntime,
    status: int,
    message: str,
    error: type[WorkbenchError],
    says: str,
) -> None:
    kube.fail(status, method="PATCH", path="/deployments/s1abcd-backend$", message=message, times=2)
    with pytest.raises(error) as raised:
        runtime.start(two_service_plan())
    assert says in raised.value.message
    assert kube.token not in raised.value.message


@pytest.mark.parametrize(
    ("mounts", "field", "message"),
    [
        (
            [{"name": "home", "mountPath": "/work"}, {"name": "home", "mountPath": "/work", "subPath": "x"}],
            "volumeMounts[1].mountPath",
            'Invalid value: "/work": must be unique',
        ),
        ([{"name": "scratch", "mountPath": "/work"}], "volumeMounts[0].name", 'Not found: "scratch"'),
        (
            [{"name": "home", "mountPath": "/work", "subPath": "/etc"}],
            "volumeMounts[0].subPath",
            'Invalid value: "/etc": must be a relative path',
        ),
        (
            [{"name": "home", "mountPath": "/work", "subPath": "Clowder/../../other"}],
            "volumeMounts[0].subPath",
            "Invalid value: \"Clowder/../../other\": must not contain '..'",
        ),
    ],
)
def test_the_stand_in_refuses_volume_mounts_the_api_server_refuses(
    kube: KubeServer, mounts: list[dict[str, str]], field: str, message: str
) -> None:
    """So that a pod spec the stand-in takes is one a real cluster takes: 422 with a Status body."""
    import httpx

    headers = {"Authorization": f"Bearer {kube.token}"}
    created = httpx.post(
        f"{kube.url}/api/v1/namespaces",
        json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "checks"}},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    labels = {"app": "check"}
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "check"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "app", "image": "example/app:1.0", "volumeMounts": mounts}],
                    "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": "alice-home"}}],
                },
            },
        },
    }
    answer = httpx.post(f"{kube.url}/apis/apps/v1/namespaces/checks/deployments", json=body, headers=headers)
    assert answer.status_code == 422, answer.text
    status = answer.json()
    where = f"spec.template.spec.containers[0].{field}"
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "Invalid", 422)
    assert status["message"] == f'Deployment.apps "check" is invalid: {where}: {message}'
    assert [(cause["field"], cause["message"]) for cause in status["details"]["causes"]] == [(where, message)]
    assert kube.get("deployments", "checks", "check") is None
    # The same mounts, made valid, are taken.
    containers = body["spec"]["template"]["spec"]["containers"]  # type: ignore[index]
    containers[0]["volumeMounts"] = [{"name": "home", "mountPath": "/work", "subPath": "Clowder"}]
    answer = httpx.post(f"{kube.url}/apis/apps/v1/namespaces/checks/deployments", json=body, headers=headers)
    assert answer.status_code == 201, answer.text


def test_a_409_on_create_means_it_exists(kube: KubeServer, runtime: KubernetesRuntime) -> None:
    # Made meanwhile by another platform process, say.
    kube.fail(
        409,
        method="POST",
        path="/persistentvolumeclaims$",
        reason="AlreadyExists",
        message='persistentvolumeclaims "alice-home" already exists',
    )
    runtime.start(two_service_plan())
    assert deployment(kube, "s1abcd-backend")["spec"]["replicas"] == 1


def test_a_slow_api_is_unavailable_after_the_timeout(kube: KubeServer, reports: Reports) -> None:
    impatient = make_runtime(kube, reports, timeout=0.3)
    kube.fail(503, method="GET", path="/pods$", delay=1.5)
    started = time.monotonic()
    with pytest.raises(Unavailable, match=r"did not answer within 0\.3 seconds"):
        impatient.observe(two_service_plan())
    assert time.monotonic() - started < 1.4  # not retried


def test_refused_credentials_are_unavailable_and_never_shown(kube: KubeServer, reports: Reports) -> None:
    configuration = kube.configuration()
    configuration.api_key = {"BearerToken": "wrong-token-value"}
    runtime = KubernetesRuntime(
        RuntimeSettings(kind="kubernetes"), api=KubeApi(configuration), report=reports.append
    )
    with pytest.raises(Unavailable) as raised:
        runtime.start(two_service_plan())
    assert "did not accept the platform's credentials" in raised.value.message
    assert "wrong-token-value" not in raised.value.message and kube.token not in raised.value.message


def test_an_unreachable_api_is_unavailable(reports: Reports) -> None:
    with KubeServer() as gone:
        configuration = gone.configuration()
    runtime = KubernetesRuntime(
        RuntimeSettings(kind="kubernetes"), api=KubeApi(configuration, timeout=2), report=reports.append
    )
    with pytest.raises(Unavailable, match="cannot be reached"):
        runtime.observe(two_service_plan())


# --- Through the platform: functions, pod events, reconciling reads ------------------------------


@pytest.fixture
def environment(kube: KubeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The platform on the stand-in, found the way a platform outside a cluster finds one: a kubeconfig."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kube.write_kubeconfig(tmp_path / "kubeconfig")))
    return {
        "WORKBENCH_RUNTIME": "kubernetes",
        "WORKBENCH_DOMAIN": DOMAIN,
        "WORKBENCH_KUBE_TLS_SECRET": "wildcard-tls",
        "WORKBENCH_KUBE_STORAGE_CLASS": "nfs",
    }


@pytest.fixture
def alice(api: Api, platform: Platform) -> str:
    token = Users(api, platform).make("alice")
    add_spec(api, token, spec("backend", access="internal", ports=[{"port": 7000, "protocol": "tcp"}]))
    add_spec(api, token, spec("frontend", depends=[{"key": "backend", "required": True}]))
    return token


class Deliveries:
    """The ApiServerSource: each pod change the stand-in saw, sent to ``stack_status`` as its CloudEvent."""

    def __init__(self, kube: KubeServer, client: Callable[[str], Any]) -> None:
        self.kube = kube
        self.client = client
        self.sent = 0

    def event(self, change: str, pod: dict[str, Any]) -> codec.Event:
        metadata = pod["metadata"]
        attributes = {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "https://10.96.0.1:443",
            "type": f"dev.knative.apiserver.resource.{change}",
            "subject": f"/apis/v1/namespaces/{metadata['namespace']}/pods/{metadata['name']}",
            "datacontenttype": "application/json",
            "kind": "Pod",
            "name": metadata["name"],
            "namespace": metadata["namespace"],
        }
        return codec.Event(attributes, json.dumps(pod).encode())

    def send(self, event: codec.Event, mode: codec.Mode = "binary") -> Any:
        headers, body = codec.to_http(event, mode)
        return self.client("stack_status").post("/", headers=headers, data=body)

    def deliver(self) -> int:
        """Every change since the last delivery, alternating binary and structured mode."""
        changes = self.kube.pod_events[self.sent :]
        self.sent += len(changes)
        for index, (change, pod) in enumerate(changes):
            response = self.send(self.event(change, pod), "binary" if index % 2 == 0 else "structured")
            assert response.status_code == 202, response.get_data(as_text=True)
        return len(changes)

    def lose(self) -> None:
        """Changes that never arrive."""
        self.sent = len(self.kube.pod_events)


@pytest.fixture
def deliveries(kube: KubeServer, client: Callable[[str], Any]) -> Deliveries:
    return Deliveries(kube, client)


def stored(platform: Platform, sid: str) -> Any:
    stack = platform.store.get_stack("alice", sid)
    assert stack is not None
    return stack


def test_the_platform_builds_the_kubernetes_runtime_from_its_settings(platform: Platform) -> None:
    assert isinstance(platform.runtime, KubernetesRuntime)


def test_pod_events_carry_a_stack_from_starting_to_started_and_back_to_stopped(
    api: Api, platform: Platform, alice: str, kube: KubeServer, deliveries: Deliveries
) -> None:
    sid = create(api, alice, {"key": "frontend", "secure": True})["id"]
    assert api.call("GET", f"/api/start/{sid}", alice).status_code == 202
    assert deliveries.deliver() == 1  # the backend's pod was added
    assert stored(platform, sid).status == "starting"

    kube.ready_all(NAMESPACE, f"workbench/service={sid}-backend")
    deliveries.deliver()  # the backend is ready: the frontend is scaled up
    stack = stored(platform, sid)
    assert {service.service: service.status for service in stack.services} == {
        "backend": "ready",
        "frontend": "starting",
    }
    kube.ready_all(NAMESPACE, f"workbench/service={sid}-frontend")
    deliveries.deliver()
    stack = stored(platform, sid)
    assert stack.status == "started"
    frontend = next(service for service in stack.services if service.service == "frontend")
    assert frontend.endpoints is not None
    assert frontend.endpoints[0].url == f"https://{sid}-frontend.{DOMAIN}/"

    # A secure stack's endpoint is what check_token lets its owner (only) through to.
    host = f"{sid}-frontend.{DOMAIN}"
    assert api.call("GET", f"/api/check_token?host={host}", alice).status_code == 200

    kube.graceful_pod_deletion = True
    assert api.call("GET", f"/api/stop/{sid}", alice).status_code == 202
    assert stored(platform, sid).status == "stopping"
    kube.finish_terminating()
    deliveries.deliver()
    assert stored(platform, sid).status == "stopped"


def test_a_read_reconciles_what_lost_events_did_not_say(
    api: Api, platform: Platform, alice: str, kube: KubeServer, deliveries: Deliveries
) -> None:
    sid = create(api, alice, {"key": "frontend"})["id"]
    api.call("GET", f"/api/start/{sid}", alice)
    kube.ready_all(NAMESPACE)
    deliveries.lose()
    assert read(api, alice, sid)["status"] == "starting"  # the read scaled the frontend up
    kube.ready_all(NAMESPACE)
    deliveries.lose()
    listed = api.call("GET", "/api/stacks", alice).get_json()
    assert [stack["status"] for stack in listed] == ["started"]
    messages = [service["statusMessages"] for service in read(api, alice, sid)["services"]]
    assert all(len(set(kept)) == len(kept) for kept in messages), messages  # reads repeat nothing

    # A read still answers when the cluster does not: with the status last recorded.
    kube.fail(503, path="/pods$", times=None)
    api.call("GET", f"/api/stop/{sid}", alice)
    assert read(api, alice, sid)["status"] == "stopping"


def test_the_status_function_trusts_no_event(
    api: Api, platform: Platform, alice: str, kube: KubeServer, deliveries: Deliveries
) -> None:
    sid = create(api, alice, {"key": "frontend"})["id"]
    api.call("GET", f"/api/start/{sid}", alice)
    pod = one_pod(kube, f"{sid}-backend")
    # A forged "ready" pod changes nothing the cluster does not say.
    forged = json.loads(json.dumps(pod))
    forged["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert deliveries.send(deliveries.event("update", forged)).status_code == 202
    backend = next(service for service in stored(platform, sid).services if service.service == "backend")
    assert backend.status == "starting"
    # Another user's stack id, or an unknown one, reaches nothing.
    for labels in (
        {"workbench/user": "bob"},
        {"workbench/stack": "sgone0"},
        {"app.kubernetes.io/managed-by": "x"},
    ):
        other = json.loads(json.dumps(pod))
        other["metadata"]["labels"].update(labels)
        assert deliveries.send(deliveries.event("update", other), "structured").status_code == 202
    not_a_pod = deliveries.event("add", {"kind": "Deployment", "metadata": {"name": "x", "namespace": "y"}})
    assert deliveries.send(not_a_pod).status_code == 202
    foreign = codec.Event(
        {**deliveries.event("add", pod).attributes, "type": "dev.knative.apiserver.ref.add"}, b"{}"
    )
    response = deliveries.send(foreign)
    assert response.status_code == 400
    assert "does not handle events of type dev.knative.apiserver.ref.add" in error_of(response)


def test_the_status_function_asks_for_a_retry_while_the_cluster_is_down(
    api: Api, platform: Platform, alice: str, kube: KubeServer, deliveries: Deliveries
) -> None:
    sid = create(api, alice, {"key": "frontend"})["id"]
    api.call("GET", f"/api/start/{sid}", alice)
    kube.fail(503, path="/deployments$", times=None)
    response = deliveries.send(deliveries.event("update", one_pod(kube, f"{sid}-backend")))
    assert response.status_code == 503
    assert "HTTP 503" in error_of(response)


def test_logs_through_the_function_in_the_go_format(
    api: Api, platform: Platform, alice: str, kube: KubeServer
) -> None:
    sid = create(api, alice, {"key": "frontend"})["id"]
    api.call("GET", f"/api/start/{sid}", alice)
    pod = one_pod(kube, f"{sid}-backend")["metadata"]["name"]
    kube.mark_ready(NAMESPACE, pod)
    kube.write_log(NAMESPACE, pod, "backend", "booting\nlistening on 7000\n")
    response = api.call("GET", f"/api/logs/{sid}-backend?lines=1", alice)
    assert response.status_code == 200
    text = response.get_json()
    assert text.startswith("KUBERNETES LOG\n=====================\nStarting\n")
    assert text.endswith("\nSERVICE LOG\n=====================\nlistening on 7000\n")


def test_a_refused_start_fails_the_stack_with_the_clusters_reason(
    api: Api, platform: Platform, alice: str, kube: KubeServer
) -> None:
    sid = create(api, alice, {"key": "frontend"})["id"]
    kube.fail(
        403,
        method="POST",
        path="/persistentvolumeclaims$",
        message='persistentvolumeclaims "alice-home" is forbidden: exceeded quota',
    )
    response = api.call("GET", f"/api/start/{sid}", alice)
    assert response.status_code == 403
    assert "exceeded quota" in error_of(response)
    assert stored(platform, sid).status == "error"


def test_deleting_a_stack_and_an_account_removes_what_they_created(
    api: Api, platform: Platform, alice: str, kube: KubeServer, users: Users
) -> None:
    sid = create(api, alice, {"key": "frontend"})["id"]
    api.call("GET", f"/api/start/{sid}", alice)
    api.call("GET", f"/api/stop/{sid}", alice)
    assert stored(platform, sid).status == "stopped"
    assert api.call("DELETE", f"/api/stacks/{sid}", alice).status_code == 200
    for plural in ("deployments", "configmaps", "services", "ingresses", "pods"):
        assert kube.items(plural, NAMESPACE) == [], plural
    other = create(api, alice, {"key": "frontend"})["id"]
    api.call("GET", f"/api/start/{other}", alice)
    assert api.call("DELETE", "/api/accounts/alice", users.admin()).status_code == 200
    assert kube.get("namespaces", None, NAMESPACE) is None


# --- Settings ----------------------------------------------------------------------------------------


def test_the_kubernetes_settings_are_read_and_checked() -> None:
    settings = Settings.from_env(
        {
            "WORKBENCH_RUNTIME": "kubernetes",
            "WORKBENCH_ORIGIN": "https://wb.example.org",
            "WORKBENCH_KUBE_NAMESPACE_MODE": "shared",
            "WORKBENCH_KUBE_NAMESPACE": "stacks",
            "WORKBENCH_KUBE_HOME_SIZE": "5Gi",
            "WORKBENCH_SHOVEL_IMAGE": "shovel:2",
        }
    )
    kubernetes = settings.runtime.kubernetes
    assert settings.runtime.kind == "kubernetes"
    assert (kubernetes.namespace_mode, kubernetes.namespace, kubernetes.home_size) == (
        "shared",
        "stacks",
        "5Gi",
    )
    assert kubernetes.shovel_image == "shovel:2"
    assert kubernetes.forward_auth_url == "https://wb.example.org/api/check_token"
    with pytest.raises(InvalidInput, match="WORKBENCH_KUBE_NAMESPACE_MODE: must be one of per-user, shared"):
        Settings.from_env({"WORKBENCH_KUBE_NAMESPACE_MODE": "per-stack"})
    with pytest.raises(InvalidInput, match="known: local, kubernetes"):
        Settings.from_env({"WORKBENCH_RUNTIME": "nomad"})


def test_without_a_cluster_or_kubeconfig_the_runtime_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(Unavailable, match="no Kubernetes configuration"):
        KubeApi.from_environment(kubeconfig=str(tmp_path / "missing"))


def test_a_local_platform_does_not_reconcile(tmp_path: Path) -> None:
    """Reconciling is the Kubernetes runtime's: local supervisors report every change themselves."""
    local = Platform(Settings.from_env({"WORKBENCH_DATA_DIR": str(tmp_path / "local")}))
    try:
        stack = Stack(id="sabcde", status="starting")
        assert stacks.reconcile(local, "alice", stack) is stack
        assert not local.has("runtime")
    finally:
        local.close()


def test_the_pod_mounts_the_data_folder_where_a_transfer_says_its_files_are(
    api: Api, platform: Platform, alice: str, kube: KubeServer, deliveries: Deliveries, tmp_path: Path
) -> None:
    from shared.core.models import Transfer

    sid = create(api, alice, {"key": "frontend"})["id"]
    assert api.call("GET", f"/api/start/{sid}", alice).status_code == 202
    deliveries.deliver()
    kube.ready_all(NAMESPACE, f"workbench/service={sid}-backend")
    deliveries.deliver()
    kube.ready_all(NAMESPACE, f"workbench/service={sid}-frontend")
    deliveries.deliver()
    assert stored(platform, sid).status == "started"
    # What the shovel placed: the files of Clowder/Soil samples of alice's home volume, here a host
    # folder that stands for the claim.
    volume = tmp_path / "alice-home"
    kube.claim_folders[(NAMESPACE, "alice-home")] = volume
    (volume / "Clowder" / "Soil samples").mkdir(parents=True)
    (volume / "Clowder" / "Soil samples" / "cores.csv").write_bytes(b"depth,carbon\n10,1.2\n")
    (volume / "AppData").mkdir()
    transfer = Transfer(id="t-kube", user="alice", source="https://clowder.example.org", datasetId="d1")
    platform.store.insert_transfer(
        transfer.model_copy(update={"target": "Clowder/Soil samples", "state": "completed"})
    )

    read_back = api.call("GET", "/api/transfers/t-kube", alice).get_json()
    assert sorted(location["service"] for location in read_back["locations"]) == [
        f"{sid}-backend",
        f"{sid}-frontend",
    ]
    for location in read_back["locations"]:
        assert location["path"] == "/home/user/work/clowder/Soil samples"
        pod = one_pod(kube, location["service"])
        claims = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
        # The mount that holds the path (the deepest one), on the home claim, with the data folder's subPath.
        [app] = [container for container in pod["spec"]["containers"]]
        holding = max(
            (
                mount
                for mount in app["volumeMounts"]
                if location["path"] == mount["mountPath"]
                or location["path"].startswith(mount["mountPath"] + "/")
            ),
            key=lambda mount: len(mount["mountPath"]),
        )
        assert claims[holding["name"]]["persistentVolumeClaim"]["claimName"] == "alice-home"
        rest = location["path"][len(holding["mountPath"]) :].lstrip("/")
        assert f"{holding['subPath']}/{rest}" == read_back["target"] == "Clowder/Soil samples"
        # The placed file, read back through the pod's mounts at the path the transfer reports.
        seen = kube.file_in_pod(pod, app["name"], location["path"] + "/cores.csv")
        assert seen.resolve() == (volume / "Clowder" / "Soil samples" / "cores.csv").resolve()
        assert seen.read_bytes() == b"depth,carbon\n10,1.2\n"
