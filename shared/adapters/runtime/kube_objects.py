"""What a stack and its owner's account look like as Kubernetes objects, and what pods say of a service."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.adapters.runtime import ServicePlan, StackPlan

# The labels a stack's pod is known by, named where the domain reads them too (importable from here
# as before).
from shared.adapters.runtime.naming import DNS_LABEL as _DNS_LABEL
from shared.adapters.runtime.naming import MANAGED_BY as MANAGED_BY
from shared.adapters.runtime.naming import MANAGER as MANAGER
from shared.adapters.runtime.naming import STACK_LABEL as STACK_LABEL
from shared.adapters.runtime.naming import USER_LABEL as USER_LABEL
from shared.adapters.runtime.naming import stack_of_pod as stack_of_pod
from shared.core.datafolder import DATA_FOLDER
from shared.core.errors import InvalidInput
from shared.core.models import AccountResourceLimits, Endpoint, Port, ServiceStatus
from shared.core.paths import safe_relative
from shared.core.settings import KubernetesSettings

Manifest = dict[str, Any]

SERVICE_LABEL = "workbench/service"
REPLICAS_ANNOTATION = "workbench/replicas"
"""On a Deployment: the replicas the platform wants ("1" while its stack runs). A Deployment that is
wanted but still at 0 waits for its required services to be ready."""

HOME_VOLUME = "home"
SHOVEL_CONTAINER = "shovel"
SHOVEL_HOME = "/home/workbench"
SHOVEL_HEALTH_PORT = 8081
SHOVEL_IDENTITY_VOLUME = "shovel-identity"
SERVICE_ACCOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
SHOVEL_SECRET_KEYS = {
    "WORKBENCH_AMQP_URL": "amqp-url",
    "WORKBENCH_SHOVEL_SIGNING_KEY": "signing-key",
}
"""No API token: each stack command brings its own, for its one stack."""
PROBE_PERIOD_SECONDS = 5
LIVENESS_PERIOD_SECONDS = 20
AUTH_URL_ANNOTATION = "nginx.ingress.kubernetes.io/auth-url"

# What the kubelet says when a container cannot run: none of these goes away by waiting.
FAILING_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)

_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def dns_label(value: str, what: str) -> str:
    """``value`` when it can name a Kubernetes object (an RFC 1123 label), else a clear refusal."""
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise InvalidInput(
            f"{value!r} cannot name a Kubernetes object: use at most 63 lower-case letters, digits "
            "and '-', starting and ending with a letter or digit",
            field=what,
        )
    return value


@dataclass(frozen=True)
class Placement:
    """Where one user's objects live and what they are called."""

    owner: str
    namespace: str
    per_user: bool

    @classmethod
    def of(cls, settings: KubernetesSettings, owner: str) -> Placement:
        dns_label(owner, "owner")
        if settings.namespace_mode == "shared":
            return cls(owner, dns_label(settings.namespace, "WORKBENCH_KUBE_NAMESPACE"), per_user=False)
        return cls(owner, dns_label(settings.namespace_prefix + owner, "namespace"), per_user=True)

    def name(self, ssid: str) -> str:
        """The name of a stack service's objects; in a shared namespace two users may have equal ids."""
        return dns_label(ssid if self.per_user else f"{self.owner}-{ssid}", "ssid")

    @property
    def home_claim(self) -> str:
        return f"{self.owner}-home"

    @property
    def shovel(self) -> str:
        """The shovel's ServiceAccount, Role, RoleBinding and Secret."""
        return f"{self.owner}-shovel"

    @property
    def quota(self) -> str:
        return f"{self.owner}-quota"

    @property
    def limit_range(self) -> str:
        return f"{self.owner}-limits"

    @property
    def isolation(self) -> str:
        return f"{self.owner}-isolation"

    def account_labels(self) -> dict[str, str]:
        return {MANAGED_BY: MANAGER, USER_LABEL: self.owner}

    def stack_labels(self, sid: str) -> dict[str, str]:
        return {**self.account_labels(), STACK_LABEL: sid}

    def service_labels(self, sid: str, ssid: str) -> dict[str, str]:
        return {**self.stack_labels(sid), SERVICE_LABEL: ssid}

    def selector(self, ssid: str) -> dict[str, str]:
        """What selects one stack service's pods (ssids are unique per user)."""
        return {USER_LABEL: self.owner, SERVICE_LABEL: ssid}

    def metadata(self, name: str, labels: Mapping[str, str], **extra: Any) -> Manifest:
        return {"name": name, "namespace": self.namespace, "labels": dict(labels), **extra}

    def address(self, name: str) -> str:
        """The in-cluster DNS name of a Service."""
        return f"{name}.{self.namespace}.svc"


@dataclass(frozen=True)
class ShovelSidecar:
    """What the shovel beside a stack needs besides its user's secret."""

    image: str
    events_url: str
    api_url: str
    attempts: int = 5
    """How often the shovel tries one command before it gives up on it."""


# --- The account ---------------------------------------------------------------------------


def namespace(placement: Placement) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": placement.namespace, "labels": placement.account_labels()},
    }


def home_claim(placement: Placement, settings: KubernetesSettings, limits: AccountResourceLimits) -> Manifest:
    size = settings.home_size or f"{max(limits.storageQuota, 1)}Gi"
    spec: Manifest = {
        # Every stack of the user mounts the one home, from whichever node its pods run on.
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": size}},
    }
    if settings.storage_class:
        spec["storageClassName"] = settings.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": placement.metadata(placement.home_claim, placement.account_labels()),
        "spec": spec,
    }


def _quantities(cpu_millis: int, memory_megabytes: int) -> dict[str, str]:
    amounts = {}
    if cpu_millis > 0:
        amounts["cpu"] = f"{cpu_millis}m"
    if memory_megabytes > 0:
        amounts["memory"] = f"{memory_megabytes}Mi"
    return amounts


def resource_quota(placement: Placement, limits: AccountResourceLimits) -> Manifest | None:
    """The account's limits over all its pods and volumes; None when the account has none."""
    hard = {}
    for name, amount in _quantities(limits.cpuMax, limits.memMax).items():
        hard[f"requests.{name}"] = amount
        hard[f"limits.{name}"] = amount
    if limits.storageQuota > 0:
        hard["requests.storage"] = f"{limits.storageQuota}Gi"
    if not hard:
        return None
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": placement.metadata(placement.quota, placement.account_labels()),
        "spec": {"hard": hard},
    }


def limit_range(placement: Placement, limits: AccountResourceLimits) -> Manifest | None:
    """Defaults for containers that name no resources (a quota refuses pods without limits) and the
    most one container may have."""
    default = _quantities(limits.cpuDefault, limits.memDefault)
    maximum = _quantities(limits.cpuMax, limits.memMax)
    if not default and not maximum:
        return None
    item: Manifest = {"type": "Container"}
    if default:
        item["default"] = default
        item["defaultRequest"] = default
    if maximum:
        item["max"] = maximum
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": placement.metadata(placement.limit_range, placement.account_labels()),
        "spec": {"limits": [item]},
    }


def network_policy(placement: Placement, settings: KubernetesSettings) -> Manifest:
    """The user's pods accept connections only from the user's own pods and the ingress controller."""
    own = {USER_LABEL: placement.owner}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": placement.metadata(placement.isolation, placement.account_labels()),
        "spec": {
            "podSelector": {"matchLabels": own},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {"podSelector": {"matchLabels": own}},
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": settings.ingress_namespace}
                            }
                        },
                    ]
                }
            ],
        },
    }


def shovel_account(placement: Placement) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": placement.metadata(placement.shovel, placement.account_labels()),
        # The token is mounted into the shovel's container alone (see the pod), never the app's.
        "automountServiceAccountToken": False,
    }


def shovel_role(placement: Placement) -> Manifest:
    """What a shovel may do: see its user's pods and deployments. Starting or stopping a stack is not
    among them: a shovel does that through the API with a short-lived token of that one stack, which
    each stack command brings. Only a namespace of the user's own can be scoped so; in a shared one it
    may read nothing but its own secret."""
    rules: list[Manifest]
    if placement.per_user:
        rules = [
            {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]},
        ]
    else:
        rules = [
            {
                "apiGroups": [""],
                "resources": ["secrets"],
                "resourceNames": [placement.shovel],
                "verbs": ["get"],
            }
        ]
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": placement.metadata(placement.shovel, placement.account_labels()),
        "rules": rules,
    }


def shovel_binding(placement: Placement) -> Manifest:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": placement.metadata(placement.shovel, placement.account_labels()),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": placement.shovel},
        "subjects": [{"kind": "ServiceAccount", "name": placement.shovel, "namespace": placement.namespace}],
    }


def shovel_secret(placement: Placement, values: Mapping[str, str]) -> Manifest:
    """The shovel's credentials: the AMQP URL and its user's signing key."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": placement.metadata(placement.shovel, placement.account_labels()),
        "type": "Opaque",
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in sorted(values.items())},
    }


# --- A stack -------------------------------------------------------------------------------


def _protocol(port: Port) -> str:
    return "UDP" if port.protocol.lower() == "udp" else "TCP"


def _port_name(port: Port) -> str:
    return f"port-{port.port}"


def _is_http(port: Port) -> bool:
    return port.protocol.lower() in ("http", "https")


def _url_path(context_path: str) -> str:
    if not context_path:
        return "/"
    return context_path if context_path.startswith("/") else "/" + context_path


def image_of(service: ServicePlan) -> str:
    image = service.spec.image
    if not image.name:
        raise InvalidInput(f"the spec of {service.key!r} names no image", field="image.name")
    tag = service.image_tag or (image.tags[0] if image.tags else "") or "latest"
    name = f"{image.registry.rstrip('/')}/{image.name}" if image.registry else image.name
    return f"{name}:{tag}"


def dependency_addresses(
    placement: Placement, service: ServicePlan, by_key: Mapping[str, ServicePlan]
) -> dict[str, str]:
    """The names Docker links and Kubernetes give a linked service's address, for each dependency."""
    addresses = {}
    for key in service.uses:
        dependency = by_key.get(key)
        if dependency is None:
            continue
        prefix = key.upper().replace("-", "_")
        host = placement.address(placement.name(dependency.ssid))
        for port in dependency.spec.ports or ():
            addresses[f"{prefix}_PORT_{port.port}_TCP_ADDR"] = host
            addresses[f"{prefix}_PORT_{port.port}_TCP_PORT"] = str(port.port)
    return addresses


def config_map(placement: Placement, plan: StackPlan, service: ServicePlan) -> Manifest:
    by_key = {other.key: other for other in plan.services}
    data = {**service.env, **dependency_addresses(placement, service, by_key)}
    for key in data:
        if not _CONFIG_KEY.match(key):
            raise InvalidInput(
                f"{key!r} cannot be an environment variable of {service.key!r}: use letters, digits, '-', '_' "
                "and '.'",
                field=f"config.{key}",
            )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": placement.metadata(
            placement.name(service.ssid), placement.service_labels(plan.sid, service.ssid)
        ),
        "data": data,
    }


def service(placement: Placement, plan: StackPlan, stack_service: ServicePlan) -> Manifest | None:
    """The Service in front of a stack service's pod; None when it has no ports."""
    ports = stack_service.spec.ports or []
    if not ports:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": placement.metadata(
            placement.name(stack_service.ssid), placement.service_labels(plan.sid, stack_service.ssid)
        ),
        "spec": {
            "selector": placement.selector(stack_service.ssid),
            "ports": [
                {
                    "name": _port_name(port),
                    "port": port.port,
                    "targetPort": port.port,
                    "protocol": _protocol(port),
                }
                for port in ports
            ],
        },
    }


def _external_ports(stack_service: ServicePlan, domain: str | None) -> list[Port]:
    if stack_service.spec.access != "external" or not domain:
        return []
    return [port for port in stack_service.spec.ports or () if _is_http(port)]


def host_of(stack_service: ServicePlan, port: Port, domain: str) -> str:
    """``<sid>-<key>.<domain>`` for the first web port, ``<sid>-<key>-<port>.<domain>`` for others."""
    first = _external_ports(stack_service, domain)[0]
    if port.port == first.port:
        return f"{stack_service.ssid}.{domain}"
    return f"{stack_service.ssid}-{port.port}.{domain}"


def ingress(
    placement: Placement,
    plan: StackPlan,
    stack_service: ServicePlan,
    settings: KubernetesSettings,
    domain: str | None,
) -> Manifest | None:
    """The Ingress of a service with external web ports (None otherwise); a secure stack's visitors are
    checked by ``check_token`` before the ingress controller lets them through."""
    ports = _external_ports(stack_service, domain)
    if not ports or domain is None:
        return None
    name = placement.name(stack_service.ssid)
    hosts = [host_of(stack_service, port, domain) for port in ports]
    rules = [
        {
            "host": host,
            "http": {
                "paths": [
                    {
                        "path": "/",
                        "pathType": "Prefix",
                        "backend": {"service": {"name": name, "port": {"number": port.port}}},
                    }
                ]
            },
        }
        for host, port in zip(hosts, ports, strict=True)
    ]
    spec: Manifest = {"rules": rules}
    if settings.ingress_class:
        spec["ingressClassName"] = settings.ingress_class
    if settings.tls_secret:
        spec["tls"] = [{"hosts": hosts, "secretName": settings.tls_secret}]
    annotations = {}
    if plan.secure:
        joiner = "&" if "?" in settings.forward_auth_url else "?"
        annotations[AUTH_URL_ANNOTATION] = f"{settings.forward_auth_url}{joiner}host=$host"
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": placement.metadata(
            name, placement.service_labels(plan.sid, stack_service.ssid), annotations=annotations
        ),
        "spec": spec,
    }


def endpoints(
    placement: Placement, stack_service: ServicePlan, settings: KubernetesSettings, domain: str | None
) -> list[Endpoint]:
    """Where a ready service answers: its Ingress host for external web ports, else its Service."""
    external = {port.port for port in _external_ports(stack_service, domain)}
    scheme = "https" if settings.tls_secret else "http"
    found = []
    for port in stack_service.spec.ports or ():
        path = _url_path(port.contextPath)
        if port.port in external and domain:
            host = host_of(stack_service, port, domain)
            found.append(
                Endpoint(
                    host=host,
                    port=port.port,
                    protocol=port.protocol,
                    path=port.contextPath,
                    url=f"{scheme}://{host}{path}",
                )
            )
        else:
            host = placement.address(placement.name(stack_service.ssid))
            found.append(Endpoint(host=host, port=port.port, protocol=port.protocol, path=port.contextPath))
    return found


def _probe_handler(stack_service: ServicePlan) -> tuple[Manifest | None, bool]:
    """The readiness check of a service and whether its spec declared it (else: its first port accepts
    connections, as the local runtime checks)."""
    spec = stack_service.spec
    probe = spec.readinessProbe
    ports = spec.ports or []
    port = probe.port or (ports[0].port if ports else 0)
    if probe.type == "http" and port:
        return {"httpGet": {"path": _url_path(probe.path), "port": port}}, True
    if probe.type == "tcp" and port:
        return {"tcpSocket": {"port": port}}, True
    if ports:
        return {"tcpSocket": {"port": ports[0].port}}, False
    return None, False


def _resources(stack_service: ServicePlan) -> Manifest:
    limits = stack_service.spec.resourceLimits
    resources: Manifest = {}
    requests = _quantities(limits.cpuDefault, limits.memDefault)
    maximum = _quantities(limits.cpuMax, limits.memMax)
    if requests:
        resources["requests"] = requests
    if maximum:
        resources["limits"] = maximum
    return resources


def _mounts(stack_service: ServicePlan) -> list[Manifest]:
    mounts = []
    for relative, mount_path in sorted(stack_service.volumes.items()):
        try:
            normal = safe_relative(relative)
        except InvalidInput:
            raise InvalidInput(
                "must be a relative path inside the home folder", field=f"volumeMounts.{relative}"
            ) from None
        if not mount_path.startswith("/"):
            raise InvalidInput("must be an absolute path", field=f"volumeMounts.{relative}")
        mounts.append({"name": HOME_VOLUME, "mountPath": mount_path, "subPath": normal})
    data_mount = stack_service.data_mount
    if data_mount and data_mount not in {mount["mountPath"] for mount in mounts}:
        # The user's data folder, nested in the app's own folder; after it, so that the runtime
        # mounts the app's folder first and this one on top (a stack's own folder at the same path wins).
        mounts.append({"name": HOME_VOLUME, "mountPath": data_mount, "subPath": DATA_FOLDER})
    return mounts


def app_container(stack_service: ServicePlan, config_name: str, ready_timeout: int) -> Manifest:
    spec = stack_service.spec
    container: Manifest = {
        "name": dns_label(stack_service.key, "key"),
        "image": image_of(stack_service),
        "envFrom": [{"configMapRef": {"name": config_name}}],
        # A privileged container owns its node, and with it every other user's pods.
        "securityContext": {"privileged": False},
    }
    if spec.command:
        container["command"] = list(spec.command)
    if spec.args:
        container["args"] = list(spec.args)
    if spec.ports:
        container["ports"] = [
            {"name": _port_name(port), "containerPort": port.port, "protocol": _protocol(port)}
            for port in spec.ports
        ]
    handler, declared = _probe_handler(stack_service)
    delay = spec.readinessProbe.initialDelay
    if handler is not None:
        container["readinessProbe"] = {
            **handler,
            "initialDelaySeconds": delay,
            "periodSeconds": PROBE_PERIOD_SECONDS,
        }
    if handler is not None and declared:
        # Not before the service has had all the time it may take to become ready.
        timeout = spec.readinessProbe.timeout if spec.readinessProbe.timeout > 0 else ready_timeout
        container["livenessProbe"] = {
            **handler,
            "initialDelaySeconds": delay + timeout,
            "periodSeconds": LIVENESS_PERIOD_SECONDS,
            "failureThreshold": 3,
        }
    resources = _resources(stack_service)
    if resources:
        container["resources"] = resources
    mounts = _mounts(stack_service)
    if mounts:
        container["volumeMounts"] = mounts
    return container


def shovel_container(placement: Placement, plan: StackPlan, sidecar: ShovelSidecar) -> Manifest:
    """The shovel as a native sidecar: an init container that keeps running beside the app, started
    (and healthy) before it, with the whole home mounted where the app sees parts of it."""
    environment: list[Manifest] = [
        {"name": "WORKBENCH_SHOVEL_USER", "value": plan.owner},
        {"name": "WORKBENCH_SHOVEL_STACK_ID", "value": plan.sid},
        {"name": "WORKBENCH_SHOVEL_HOME", "value": SHOVEL_HOME},
        {"name": "WORKBENCH_SHOVEL_HEALTH_PORT", "value": str(SHOVEL_HEALTH_PORT)},
        {"name": "WORKBENCH_SHOVEL_API_URL", "value": sidecar.api_url},
        {"name": "WORKBENCH_SHOVEL_ATTEMPTS", "value": str(sidecar.attempts)},
        {"name": "WORKBENCH_EVENTS_URL", "value": sidecar.events_url},
    ]
    environment += [
        {"name": variable, "valueFrom": {"secretKeyRef": {"name": placement.shovel, "key": key}}}
        for variable, key in SHOVEL_SECRET_KEYS.items()
    ]
    return {
        "name": SHOVEL_CONTAINER,
        "image": sidecar.image,
        "restartPolicy": "Always",
        "env": environment,
        "ports": [{"name": "health", "containerPort": SHOVEL_HEALTH_PORT, "protocol": "TCP"}],
        "startupProbe": {
            "httpGet": {"path": "/healthz", "port": SHOVEL_HEALTH_PORT},
            "periodSeconds": 2,
            "failureThreshold": 30,
        },
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        },
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [
            {"name": HOME_VOLUME, "mountPath": SHOVEL_HOME},
            {"name": SHOVEL_IDENTITY_VOLUME, "mountPath": SERVICE_ACCOUNT_PATH, "readOnly": True},
        ],
    }


def _identity_volume() -> Manifest:
    """The shovel's service account credentials, as the kubelet would mount them into every container."""
    return {
        "name": SHOVEL_IDENTITY_VOLUME,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {
                    "downwardAPI": {
                        "items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]
                    }
                },
            ]
        },
    }


def deployment(
    placement: Placement,
    plan: StackPlan,
    stack_service: ServicePlan,
    *,
    replicas: int,
    ready_timeout: int,
    sidecar: ShovelSidecar | None,
) -> Manifest:
    """A stack service's Deployment, wanted running; ``replicas`` as it is now (0 when new)."""
    name = placement.name(stack_service.ssid)
    labels = placement.service_labels(plan.sid, stack_service.ssid)
    pod: Manifest = {
        # Kubernetes' own service variables would name every service of the namespace.
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "serviceAccountName": placement.shovel,
        "containers": [app_container(stack_service, name, ready_timeout)],
        "volumes": [{"name": HOME_VOLUME, "persistentVolumeClaim": {"claimName": placement.home_claim}}],
    }
    if sidecar is not None:
        pod["initContainers"] = [shovel_container(placement, plan, sidecar)]
        pod["volumes"].append(_identity_volume())
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": placement.metadata(name, labels, annotations={REPLICAS_ANNOTATION: "1"}),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 2,
            # One pod at a time: two copies of a service on one home would share its files and locks.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": placement.selector(stack_service.ssid)},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


# --- What the cluster says -----------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    status: ServiceStatus
    message: str
    steps: tuple[str, ...] = ()
    """What the service's pod went through so far, oldest first, ``message`` last (none when there
    is no pod)."""

    def after(self, earlier: Sequence[str]) -> Observation:
        """This observation with ``earlier`` steps before its own."""
        return Observation(self.status, self.message, (*earlier, *self.steps))


def replicas_of(deployment: Mapping[str, Any]) -> int:
    replicas = deployment.get("spec", {}).get("replicas", 1)
    return replicas if isinstance(replicas, int) else 1


def is_wanted(deployment: Mapping[str, Any]) -> bool:
    return bool(deployment.get("metadata", {}).get("annotations", {}).get(REPLICAS_ANNOTATION) == "1")


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _condition(conditions: Any, kind: str) -> Mapping[str, Any] | None:
    for condition in conditions or ():
        if isinstance(condition, Mapping) and condition.get("type") == kind:
            return condition
    return None


def _explained(reason: Any, message: Any) -> str:
    return f"{reason}: {message}" if message else str(reason)


def container_problem(status: Mapping[str, Any]) -> str | None:
    """Why a container cannot run, or None while it runs or may yet start."""
    state = status.get("state") or {}
    name = status.get("name", "container")
    waiting = state.get("waiting")
    if isinstance(waiting, Mapping) and waiting.get("reason") in FAILING_REASONS:
        problem = f"Container {name}: {_explained(waiting['reason'], waiting.get('message'))}"
        last = (status.get("lastState") or {}).get("terminated")
        if isinstance(last, Mapping):
            ended = _explained(last.get("reason", "Terminated"), last.get("message"))
            problem += f"; it last ended with exit code {last.get('exitCode', '?')}, {ended}"
        return problem
    terminated = state.get("terminated")
    if isinstance(terminated, Mapping):
        ended = _explained(terminated.get("reason", "Terminated"), terminated.get("message"))
        return f"Container {name} terminated with exit code {terminated.get('exitCode', '?')}: {ended}"
    return None


def current_pod(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The newest of a service's pods that is not being deleted."""
    live = [pod for pod in pods if not pod.get("metadata", {}).get("deletionTimestamp")]
    if not live:
        return None
    return max(live, key=lambda pod: pod.get("metadata", {}).get("creationTimestamp", ""))


def observe_service(
    deployment: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    *,
    now: float,
    ready_timeout: int,
) -> Observation | None:
    """A stack service's state as its Deployment and pods show it; None while nothing is settled (a pod
    still terminating, or a wanted service waiting for the services it requires)."""
    if deployment is None:
        return Observation("stopped", "Not deployed")
    if replicas_of(deployment) == 0:
        if pods or is_wanted(deployment):
            return None
        return Observation("stopped", "Stopped")
    failure = _condition(deployment.get("status", {}).get("conditions"), "ReplicaFailure")
    pod = current_pod(pods)
    if pod is None:
        if failure is not None and failure.get("status") == "True":
            return Observation("error", f"Its pod cannot be created: {failure.get('message', '')}")
        return Observation("starting", "Waiting for its pod")
    name = pod.get("metadata", {}).get("name", "")
    status = pod.get("status") or {}
    for container in _container_statuses(status):
        problem = container_problem(container)
        if problem is not None:
            return _stepped("error", problem)
    phase = status.get("phase", "Pending")
    if phase == "Failed":
        return _stepped(
            "error", f"Pod {name} failed: {_explained(status.get('reason', 'Failed'), status.get('message'))}"
        )
    ready = _condition(status.get("conditions"), "Ready")
    if ready is not None and ready.get("status") == "True":
        return _stepped("ready", f"Pod {name} is ready")
    created = _timestamp(pod.get("metadata", {}).get("creationTimestamp"))
    if created is not None and now - created > ready_timeout:
        return _stepped("timeout", f"Service timed out after {ready_timeout} seconds")
    scheduled = _condition(status.get("conditions"), "PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False":
        return _stepped("starting", f"Pod {name} waits to be scheduled: {scheduled.get('message', '')}")
    steps = pod_progress(pod)
    return Observation(
        "starting", steps[-1] if steps else f"Pod {name} is {phase}", steps or (f"Pod {name} is {phase}",)
    )


def _stepped(status: ServiceStatus, message: str) -> Observation:
    return Observation(status, message, (message,))


def _container_statuses(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The pod's init containers' statuses (the shovel sidecar among them), then its app's."""
    found = [*(status.get("initContainerStatuses") or ()), *(status.get("containerStatuses") or ())]
    return [item for item in found if isinstance(item, Mapping)]


def pod_progress(pod: Mapping[str, Any]) -> tuple[str, ...]:
    """What a starting pod's own status says of it: its sidecars started (the pod initialized), then
    each container not yet ready, by what it waits for or that it runs."""
    name = pod.get("metadata", {}).get("name", "")
    status = pod.get("status") or {}
    steps = []
    initialized = _condition(status.get("conditions"), "Initialized")
    if (
        status.get("initContainerStatuses")
        and initialized is not None
        and initialized.get("status") == "True"
    ):
        steps.append(f"Pod {name} is initialized: its sidecars have started")
    for container in _container_statuses(status):
        if container.get("ready") is True:
            continue
        container_name = inert(container.get("name", "container"))
        state = container.get("state") or {}
        waiting = state.get("waiting")
        if isinstance(waiting, Mapping):
            reason = waiting.get("reason")
            if reason == "ContainerCreating":
                steps.append(f"Creating container {container_name}")
            elif reason == "PodInitializing":
                steps.append(f"Container {container_name} waits for the pod's sidecars to start")
            else:
                steps.append(
                    f"Container {container_name} is waiting: {inert(_explained(reason, waiting.get('message')))}"
                )
        elif isinstance(state.get("running"), Mapping):
            steps.append(f"Container {container_name} is running, not yet ready")
    return tuple(steps)


# --- What the cluster's Events say of a pod --------------------------------------------------

EVENT_LIMIT = 100
"""The most Events one observation reads of a pod (the kubelet counts repeats in one Event)."""
EVENT_TEXT_LIMIT = 300
"""The most characters of a kubelet's message a progress step carries."""
_FIELD_PATH = re.compile(r"^spec\.(?:initContainers|containers)\{(.+)\}$")
_QUOTED_IMAGE = re.compile(r'image "([^"]+)"')


def inert(value: Any, limit: int = EVENT_TEXT_LIMIT) -> str:
    """Text from the cluster as one line of plain text, at most ``limit`` characters."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in str(value)).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _event_time(event: Mapping[str, Any]) -> float | None:
    for value in (
        event.get("firstTimestamp"),
        event.get("eventTime"),
        event.get("metadata", {}).get("creationTimestamp"),
    ):
        moment = _timestamp(value)
        if moment is not None:
            return moment
    return None


def _event_order(event: Mapping[str, Any]) -> tuple[float, int, str]:
    version = str(event.get("metadata", {}).get("resourceVersion", ""))
    return (
        _event_time(event) or 0.0,
        int(version) if version.isdigit() else 0,
        str(event.get("metadata", {}).get("name", "")),
    )


def _image_in(pod: Mapping[str, Any], container: str, message: str) -> str:
    spec = pod.get("spec") or {}
    for item in [*(spec.get("initContainers") or ()), *(spec.get("containers") or ())]:
        if isinstance(item, Mapping) and item.get("name") == container and item.get("image"):
            return str(item["image"])
    quoted = _QUOTED_IMAGE.search(message)
    return quoted.group(1) if quoted else "?"


def event_step(pod: Mapping[str, Any], event: Mapping[str, Any]) -> str | None:
    """One Event of a pod as a progress step; None for an Event of no interest to its owner."""
    involved = event.get("involvedObject") or {}
    field = _FIELD_PATH.match(str(involved.get("fieldPath", "")))
    container = field.group(1) if field else ""
    message = str(event.get("message") or "")
    named = inert(container, 63)
    reason = event.get("reason")
    if reason == "Scheduled":
        return f"Scheduled: {inert(message)}"
    if reason == "Pulling":
        return f"Pulling image {inert(_image_in(pod, container, message))}"
    if reason == "Pulled":
        return f"Pulled image {inert(_image_in(pod, container, message))} ({inert(message)})"
    if reason == "Created":
        return f"Container {named} created"
    if reason == "Started":
        return f"Container {named} started"
    if reason == "Failed":
        return f"Container {named} failed: {inert(message)}"
    if reason == "BackOff":
        return f"Container {named} is backing off: {inert(message)}"
    return None


EVENTS_AFTER_READY_SECONDS = 60
"""How long after its pod became ready a service's observation still reads the pod's Events, so that an
observation that first sees it ready still tells how it got there."""


def tells_events(observation: Observation, pod: Mapping[str, Any] | None, *, now: float) -> bool:
    """Whether an observation of a service is worth its pod's Events: while it starts or once it failed,
    and shortly after it became ready (later reads of a running service read none)."""
    if pod is None or observation.status == "stopped":
        return False
    if observation.status != "ready":
        return True
    ready = _condition((pod.get("status") or {}).get("conditions"), "Ready")
    since = _timestamp(ready.get("lastTransitionTime")) if ready is not None else None
    return since is None or now - since <= EVENTS_AFTER_READY_SECONDS


def event_steps(pod: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The steps the Events of this pod (not an earlier one of the same name) tell, oldest first."""
    metadata = pod.get("metadata", {})
    uid = metadata.get("uid")
    created = _timestamp(metadata.get("creationTimestamp"))
    steps: list[str] = []
    for event in sorted(events, key=_event_order):
        involved = event.get("involvedObject") or {}
        if involved.get("kind") != "Pod" or involved.get("name") != metadata.get("name"):
            continue
        if uid and involved.get("uid") and involved.get("uid") != uid:
            continue
        moment = _event_time(event)
        if created is not None and moment is not None and moment < created:
            continue
        step = event_step(pod, event)
        if step is not None and step not in steps:
            steps.append(step)
    return tuple(steps)
