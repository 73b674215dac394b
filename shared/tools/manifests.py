"""The Knative deployment under ``knative/``, generated from the function registry by ``workbench manifests``."""

from __future__ import annotations

import hashlib
import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.core.durable import write_atomically
from shared.serving import metrics, registry
from shared.serving.registry import Function

Manifest = dict[str, Any]

STACK_LABELS: dict[str, str] = {"app.kubernetes.io/managed-by": "workbench"}
"""Labels the Kubernetes runtime puts on every namespace and pod it creates for stacks: the
ApiServerSource watches the pods carrying them, in the namespaces carrying them. Nothing of the
functions' own deployment carries them, so their pods are never taken for stacks."""

STACK_MANAGERS = frozenset({"accounts", "stacks", "start", "stop", "stack_action", "clowder_job"})
"""Functions that create, scale and delete what a user's account and stacks consist of."""
STACK_OBSERVERS = frozenset({"stack_status"})
"""Functions that read a stack's deployments and pods, and scale up the services whose required
services became ready (the runtime's observation moves a starting stack on)."""
LOG_READERS = frozenset({"logs"})
"""Functions that read the log tail of a stack's pods."""
CONSOLE_OPENERS = frozenset({"console"})
"""Functions that open a shell in a stack's pods (pods/exec), for the pod's owner only."""
STACK_FUNCTIONS = STACK_MANAGERS | STACK_OBSERVERS | LOG_READERS | CONSOLE_OPENERS
"""The only functions with any Kubernetes permission. ``containers`` and ``check_token`` read stacks'
status and endpoints from the store (kept current by ``stack_status`` and by reconciling reads)."""
EVENT_EMITTERS = STACK_MANAGERS | STACK_OBSERVERS | {"transfer", "transfers", "shovel_reports", "export"}
"""Functions that send events, so a SinkBinding gives them the Broker as ``K_SINK``: those whose
runtime reports announce stacks started, stopped or failed, and those that stage or settle transfers
and exports."""

NAMESPACE = "workbench"
IMAGE = "workbench-functions:latest"
BROKER = "workbench"
GATEWAY = "workbench"
RABBITMQ_CLUSTER = "rabbitmq"
SETTINGS_CONFIG_MAP = "workbench-settings"
CREDENTIALS = "workbench-secrets"
"""The name of the Secret holding the settings in SECRET_SETTINGS (created by the operator)."""
PORT = 8080
"""The port Knative gives the container in ``PORT``; functions-framework listens on it."""
CLUSTER_DOMAIN = "cluster.local"
STATUS_FUNCTION = "stack_status"
"""The function that follows stack pods: the ApiServerSource is generated once it is registered."""
POD_WATCHER = "workbench-stack-pods"
"""The ApiServerSource's name and its ServiceAccount's."""

SECRET_SETTINGS: dict[str, tuple[str, bool]] = {
    "WORKBENCH_DATABASE_URL": ("database-url", False),
    "WORKBENCH_JWT_SECRET": ("jwt-secret", False),
    "WORKBENCH_EVENT_SECRET": ("event-secret", False),
    "WORKBENCH_AMQP_URL": ("amqp-url", False),
    "WORKBENCH_S3_ACCESS_KEY": ("s3-access-key", True),
    "WORKBENCH_S3_SECRET_KEY": ("s3-secret-key", True),
    "WORKBENCH_CLOWDER_API_KEY": ("clowder-api-key", True),
    "WORKBENCH_CLOWDER_SERVICE_TOKEN": ("clowder-service-token", True),
    "WORKBENCH_CLOWDER_AMQP_URL": ("clowder-amqp-url", True),
}
"""Setting → (key in the Secret ``workbench-secrets``, optional). The S3 keys may come from the
cloud's workload identity instead, and the Clowder credentials are needed only once paired."""

SETTINGS: dict[str, str] = {
    "WORKBENCH_ORIGIN": "https://workbench.example.org",
    "WORKBENCH_DOMAIN": "workbench.example.org",
    "WORKBENCH_LOG_LEVEL": "INFO",
    "WORKBENCH_REQUIRE_APPROVAL": "true",
    "WORKBENCH_TRUSTED_PROXIES": "10.0.0.0/8",
    "WORKBENCH_SUPPORT_EMAIL": "support@workbench.example.org",
    "WORKBENCH_MAIL_FROM": "workbench@workbench.example.org",
    "WORKBENCH_SMTP_HOST": "smtp.example.org",
    "WORKBENCH_SMTP_PORT": "25",
    "WORKBENCH_RUNTIME": "kubernetes",
    "WORKBENCH_KUBE_NAMESPACE_MODE": "per-user",
    "WORKBENCH_KUBE_NAMESPACE_PREFIX": "workbench-",
    "WORKBENCH_KUBE_INGRESS_NAMESPACE": "ingress-nginx",
    "WORKBENCH_SHOVEL_IMAGE": "workbench-shovel:latest",
    "WORKBENCH_CLOWDER_URL": "https://clowder.example.org",
    "WORKBENCH_REQUIRE_SIGNATURES": "true",
    "WORKBENCH_S3_BUCKET": "workbench-staging",
}
"""The non-secret settings every function reads (the ConfigMap ``workbench-settings``); placeholders
for the operator to set (``WORKBENCH_TRUSTED_PROXIES``: the cluster's pod network, so that logins are
throttled by the client's address rather than the ingress's). ``WORKBENCH_EVENTS_URL`` is left out on
purpose: it would override the ``K_SINK`` the SinkBindings inject."""

RETRIES = 8
BACKOFF_DELAY = "PT1S"
"""Exponential: each wait doubles from about a second, so the retries span several minutes, long
enough to ride out a restart of the database or of RabbitMQ before an event is dead-lettered."""

SOURCE_HEADER = (
    "# Generated by `workbench manifests` from the function registry (shared/serving/registry.py)."
)
EDIT_HINT = "# Do not edit: change the registry or shared/tools/manifests.py and run `workbench manifests`."

APP_LABELS = {"app.kubernetes.io/part-of": "workbench-functions"}
METRICS_ANNOTATIONS = {
    "prometheus.io/scrape": "true",
    "prometheus.io/port": str(PORT),
    "prometheus.io/path": metrics.PATH,
}
"""Where a Prometheus that discovers pods by annotation (the usual kubernetes-pods job) scrapes each
function: the revision template's annotations are its pods', and Knative allows one container port."""

FILE_NOTES: dict[str, str] = {
    "config.yaml": (
        "The namespace and the non-secret settings (ConfigMap workbench-settings: placeholders to set). "
        "The Secret workbench-secrets is not generated: the operator creates it, so no secret value is "
        'ever in this folder (see the README, "Deploy on a cluster"). Its keys: {secret_keys}. The '
        "namespace label lets the SinkBindings inject K_SINK into the functions of this namespace. The "
        "Job workbench-init prepares the database; the CronJob workbench-sweep resumes (or fails, saying "
        "why) the accepted transfers and exports whose work stopped, every two minutes."
    ),
    "rbac.yaml": (
        "One ServiceAccount per function. Only the functions that manage stacks may touch workloads: the "
        "ones that set up accounts and start, stop and delete stacks (stack-manager), the one that "
        "follows stack pods (stack-observer, which may also scale up a service whose required services "
        "became ready), the one that reads logs (stack-logs) and the one that opens consoles in pods "
        "(stack-console: pods/exec, for the pod's owner only); the other functions have no rights and "
        "mount no token. The rights are cluster-wide (ClusterRoles) because each user's stacks live in "
        "a namespace of their own, created at account setup. stack-manager includes secrets (each "
        "user's shovel credentials) and roles (the shovel's, which may only grant what its creator "
        "holds). stack-manager and stack-observer list pods' Events, which tell a starting service's "
        "image pulls and container creations. The ApiServerSource has its own account that may only "
        "read pods and namespaces."
    ),
    "services.yaml": (
        "One Knative Service per function, all from one image; FUNCTION_TARGET and FUNCTION_SOURCE pick "
        "the function. containerConcurrency equals THREADS, the threads of functions-framework's gunicorn"
        " (one worker), so Knative never sends an instance more requests than it has threads; the "
        "autoscaler aims at 70 % of that. Probes are TCP on the serving port: every function routes by "
        "path and CloudEvent functions answer a plain GET with 400, so no single HTTP path is healthy on "
        "all of them; the port opens once the function module is loaded (functions-framework loads it "
        "before gunicorn binds), and readiness has no period so Knative's queue-proxy probes it as fast "
        "as it can at cold start. Liveness does not ask the database, so an outage does not restart every"
        " function. The Services are cluster-local: the public entry point is the Gateway route "
        "(routing.yaml). Every function answers Prometheus scrapes at /metrics on its serving port "
        "(Knative allows a container one port), which the revision's prometheus.io annotations point "
        "to and no Gateway route reaches; Knative's queue-proxy serves its own on port 9091."
    ),
    "eventing.yaml": (
        "A RabbitMQ-backed Broker and one Trigger per event type a function receives, filtered on the "
        "exact type (the only filter the RabbitMQ broker supports). Every Trigger and the Broker retry "
        "with exponential backoff and then hand the event to the deadletter function, which keeps it for "
        "the admin (GET /api/deadletters); without a delivery spec the RabbitMQ broker would drop it."
    ),
    "sources.yaml": (
        "The ApiServerSource sends changes of stack pods (labels {stack_labels}, in namespaces with the "
        "same labels) to the Broker, whose Triggers hand them to the stack_status function like any "
        "other event: so they are retried when the database is briefly away (stack_status answers 503), "
        "dead-lettered when they still fail, and wait in RabbitMQ while the function scales from zero "
        "(an ApiServerSource itself has no delivery spec). A stack read also reconciles with the "
        "cluster, so a lost event cannot leave a wrong status. SinkBindings give the functions that "
        "emit events the Broker's address as K_SINK. One RabbitmqSource per Clowder extractor queue "
        "({clowder_queues}) on Clowder's own RabbitMQ (the Secret {clowder_secret}, keys uri, username "
        "and password: Clowder's broker may be another server) turns each job into an event for the "
        "Broker, whose Trigger hands it to clowder_job; the queues are predeclared (the sweep CronJob "
        "declares them as it announces the extractors), and the statuses of their jobs go to "
        "WORKBENCH_CLOWDER_REPLY_QUEUE (config.yaml): such an event carries no reply_to."
    ),
    "routing.yaml": (
        'The one public entry point: HTTPRoutes on the Gateway "{gateway}" (not generated: it belongs to '
        "the cluster's Gateway API implementation, whose listener must admit routes from this namespace)."
        " One route per function (a route holds at most 16 rules), a PathPrefix per first segment of its "
        "paths. A Knative Service is reached through the Kubernetes Service of its name (an ExternalName "
        "for the Knative ingress), so the Host header is rewritten to the Service's cluster-local name, "
        "by which Knative routes; the Gateway implementation must accept ExternalName backends. /events "
        "goes to the Broker's ingress (the RabbitMQ broker serves it as the Service <broker>-broker-"
        "ingress in the Broker's namespace, at the path /): it is in this route's namespace, so no "
        "ReferenceGrant is needed."
    ),
}


@dataclass(frozen=True)
class Target:
    """Where the manifests deploy to; the defaults give the checked-in ``knative/``."""

    namespace: str = NAMESPACE
    image: str = IMAGE
    gateway: str = GATEWAY
    gateway_namespace: str | None = None
    """The Gateway's namespace; None: this namespace."""
    rabbitmq_cluster: str = RABBITMQ_CLUSTER
    rabbitmq_namespace: str | None = None
    """The RabbitmqCluster's namespace; None: this namespace."""
    extractor_prefix: str = "workbench"
    """``WORKBENCH_CLOWDER_EXTRACTOR_PREFIX``: the Clowder extractor queues the RabbitmqSources read, and
    the setting the functions get, so that both name the same queues."""


def split_image(image: str) -> tuple[str, str]:
    """``name:tag`` → (name, tag); a registry's port is no tag, and no tag means ``latest``."""
    name, colon, tag = image.rpartition(":")
    if not colon or "/" in tag:
        return image, "latest"
    return name, tag


def service_name(function: Function) -> str:
    """The Knative Service (and Kubernetes Service) name: a DNS label, so ``_`` becomes ``-``."""
    return function.name.replace("_", "-")


def account_name(function: Function) -> str:
    return f"workbench-{service_name(function)}"


def _metadata(name: str, target: Target, **labels: str) -> Manifest:
    return {"name": name, "namespace": target.namespace, "labels": {**APP_LABELS, **labels}}


def _cluster_name(target: Target, role: str) -> str:
    """Cluster-wide names carry the namespace, so two installations do not share one."""
    return f"{target.namespace}-{role}"


# --- config ------------------------------------------------------------------------------------


def config(target: Target) -> list[Manifest]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": target.namespace,
                "labels": {**APP_LABELS, "bindings.knative.dev/include": "true"},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _metadata(SETTINGS_CONFIG_MAP, target, **{"app.kubernetes.io/component": "settings"}),
            "data": dict(sorted({**SETTINGS, **clowder_job_settings(target)}.items())),
        },
    ]


# --- RBAC --------------------------------------------------------------------------------------

_READ = ["get", "list", "watch"]
_WRITE = ["get", "list", "watch", "create", "update", "patch", "delete"]


def manager_rules() -> list[Manifest]:
    """What the runtime creates for accounts and stacks: the namespace, home, quota, limits, isolation,
    the shovel's account, role and credentials, and each service's objects. The shovel's role lets it
    read its user's pods and logs and scale their deployments, and in a shared namespace read its own
    secret; a role can only grant what its creator holds, so those rights are here too."""
    return [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": _WRITE},
        {
            "apiGroups": [""],
            "resources": [
                "configmaps",
                "limitranges",
                "persistentvolumeclaims",
                "resourcequotas",
                "secrets",
                "serviceaccounts",
                "services",
            ],
            "verbs": _WRITE,
        },
        {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": _READ},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": _WRITE},
        {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get", "update", "patch"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "networkpolicies"], "verbs": _WRITE},
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings", "roles"], "verbs": _WRITE},
    ]


def observer_rules() -> list[Manifest]:
    return [
        {"apiGroups": [""], "resources": ["pods"], "verbs": _READ},
        # A pod's Events tell its image pulls and container creations as it starts.
        {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": _READ},
        {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get", "patch"]},
    ]


def log_rules() -> list[Manifest]:
    return [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    ]


def console_rules() -> list[Manifest]:
    # A websocket exec is a GET; API servers since 1.30 also ask for create on pods/exec.
    return [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
        {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]},
    ]


def pod_watcher_rules() -> list[Manifest]:
    return [{"apiGroups": [""], "resources": ["namespaces", "pods"], "verbs": _READ}]


FUNCTION_ROLES = (
    ("stack-manager", manager_rules, STACK_MANAGERS),
    ("stack-observer", observer_rules, STACK_OBSERVERS),
    ("stack-logs", log_rules, LOG_READERS),
    ("stack-console", console_rules, CONSOLE_OPENERS),
)
"""Each ClusterRole of the functions, its rules and the functions bound to it."""


def rbac(target: Target, functions: Iterable[Function]) -> list[Manifest]:
    functions = list(functions)
    accounts: list[Manifest] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _metadata(
                account_name(function), target, **{"app.kubernetes.io/name": service_name(function)}
            ),
            "automountServiceAccountToken": function.name in STACK_FUNCTIONS,
        }
        for function in functions
    ]
    if any(function.name == STATUS_FUNCTION for function in functions):
        accounts.append(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": _metadata(POD_WATCHER, target, **{"app.kubernetes.io/component": "eventing"}),
            }
        )
    roles: list[Manifest] = []
    for role, rules, members in FUNCTION_ROLES:
        subjects = [
            {"kind": "ServiceAccount", "name": account_name(function), "namespace": target.namespace}
            for function in functions
            if function.name in members
        ]
        roles.extend(_cluster_role(target, role, rules(), subjects))
    if any(function.name == STATUS_FUNCTION for function in functions):
        subjects = [{"kind": "ServiceAccount", "name": POD_WATCHER, "namespace": target.namespace}]
        roles.extend(_cluster_role(target, "stack-pods", pod_watcher_rules(), subjects))
    return accounts + roles


def _cluster_role(
    target: Target, role: str, rules: list[Manifest], subjects: list[Manifest]
) -> list[Manifest]:
    if not subjects:
        return []
    name = _cluster_name(target, role)
    labels = {**APP_LABELS, "app.kubernetes.io/component": "rbac"}
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name, "labels": labels},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": subjects,
        },
    ]


# --- Knative Services --------------------------------------------------------------------------


def _environment(function: Function) -> list[Manifest]:
    plain = {
        "FUNCTION_TARGET": function.target,
        "FUNCTION_SOURCE": function.source,
        "FUNCTION_SIGNATURE_TYPE": "http",
        # gunicorn's threads default to 4 per CPU; pinned so that they equal containerConcurrency.
        "THREADS": str(function.concurrency),
        "WORKERS": "1",
    }
    return [{"name": name, "value": value} for name, value in plain.items()] + _environment_of_settings()


def init_job(target: Target) -> Manifest:
    """``workbench init`` once per deployment: schema versions, the admin account, the system catalog.
    Safe to run again (each step is idempotent), e.g. after an upgrade: delete the Job and re-apply."""
    environment = _environment_of_settings()
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata("workbench-init", target, **{"app.kubernetes.io/component": "init"}),
        "spec": {
            "backoffLimit": 6,
            "template": {
                "metadata": {"labels": {**APP_LABELS, "app.kubernetes.io/component": "init"}},
                "spec": {
                    "restartPolicy": "OnFailure",
                    "automountServiceAccountToken": False,
                    "containers": [
                        {
                            "name": "init",
                            "image": target.image,
                            "command": ["workbench", "init"],
                            "env": environment,
                            "envFrom": [{"configMapRef": {"name": SETTINGS_CONFIG_MAP}}],
                            "securityContext": {
                                "runAsNonRoot": True,
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                        }
                    ],
                },
            },
        },
    }


SWEEP_SCHEDULE = "*/2 * * * *"
"""How often the cluster looks for abandoned transfers and exports (``workbench run`` does every minute)."""


def sweep_cron_job(target: Target) -> Manifest:
    """``workbench sweep`` on a schedule: accepted transfers and exports whose work stopped (a function
    instance ended mid-way, Clowder was away past the Broker's retries) are resumed, or failed saying
    why; events past their window are forgotten. Each item is claimed in the database first, so a run
    overlapping another (or a slow one) does no work twice. Its outcome events go to the Broker's ingress.
    It also stops the stacks of idle accounts, so it runs as the ``stop`` function's service account
    (bound to stack-manager)."""
    labels = {**APP_LABELS, "app.kubernetes.io/component": "sweep"}
    broker_ingress = f"http://{BROKER}-broker-ingress.{target.namespace}.svc.{CLUSTER_DOMAIN}/"
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _metadata("workbench-sweep", target, **{"app.kubernetes.io/component": "sweep"}),
        "spec": {
            "schedule": SWEEP_SCHEDULE,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 300,
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {
                    "backoffLimit": 0,
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "restartPolicy": "Never",
                            "serviceAccountName": account_name(registry.function("stop")),
                            "automountServiceAccountToken": True,
                            "containers": [
                                {
                                    "name": "sweep",
                                    "image": target.image,
                                    "command": ["workbench", "sweep"],
                                    "env": [
                                        {"name": "WORKBENCH_EVENTS_URL", "value": broker_ingress},
                                        *_environment_of_settings(),
                                    ],
                                    "envFrom": [{"configMapRef": {"name": SETTINGS_CONFIG_MAP}}],
                                    "resources": {
                                        "requests": {"cpu": "100m", "memory": "128Mi"},
                                        "limits": {"cpu": "1", "memory": "512Mi"},
                                    },
                                    "securityContext": {
                                        "runAsNonRoot": True,
                                        "allowPrivilegeEscalation": False,
                                        "capabilities": {"drop": ["ALL"]},
                                        "seccompProfile": {"type": "RuntimeDefault"},
                                    },
                                }
                            ],
                        },
                    },
                },
            },
        },
    }


def _environment_of_settings() -> list[Manifest]:
    """The Secret-backed settings, by reference (never their values)."""
    return [
        {
            "name": setting,
            "valueFrom": {
                "secretKeyRef": {"name": CREDENTIALS, "key": key, **({"optional": True} if optional else {})}
            },
        }
        for setting, (key, optional) in sorted(SECRET_SETTINGS.items())
    ]


def knative_service(function: Function, target: Target) -> Manifest:
    name = service_name(function)
    labels = {**APP_LABELS, "app.kubernetes.io/name": name, "app.kubernetes.io/component": "function"}
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": target.namespace,
            "labels": {**labels, "networking.knative.dev/visibility": "cluster-local"},
        },
        "spec": {
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "autoscaling.knative.dev/min-scale": str(function.min_scale),
                        "autoscaling.knative.dev/max-scale": str(function.max_scale),
                        "autoscaling.knative.dev/target": str(function.concurrency),
                        "autoscaling.knative.dev/target-utilization-percentage": "70",
                        **METRICS_ANNOTATIONS,
                    },
                },
                "spec": {
                    "serviceAccountName": account_name(function),
                    "automountServiceAccountToken": function.name in STACK_FUNCTIONS,
                    "containerConcurrency": function.concurrency,
                    "timeoutSeconds": function.timeout_seconds,
                    "containers": [
                        {
                            "name": "function",
                            "image": target.image,
                            "ports": [{"name": "http1", "containerPort": PORT}],
                            "env": _environment(function),
                            "envFrom": [{"configMapRef": {"name": SETTINGS_CONFIG_MAP}}],
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "128Mi"},
                                "limits": {"cpu": "1", "memory": "512Mi"},
                            },
                            "readinessProbe": {"tcpSocket": {"port": PORT}},
                            "livenessProbe": {
                                "tcpSocket": {"port": PORT},
                                "periodSeconds": 10,
                                "failureThreshold": 3,
                            },
                            "securityContext": {
                                "runAsNonRoot": True,
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                        }
                    ],
                },
            }
        },
    }


# --- eventing ----------------------------------------------------------------------------------


def _service_reference(name: str) -> Manifest:
    return {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": name}


def _broker_reference() -> Manifest:
    return {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": BROKER}


def delivery() -> Manifest:
    return {
        "retry": RETRIES,
        "backoffPolicy": "exponential",
        "backoffDelay": BACKOFF_DELAY,
        "deadLetterSink": {
            "ref": _service_reference(service_name(registry.function(registry.DEAD_LETTER_FUNCTION)))
        },
    }


def trigger_name(function: Function, event_type: str) -> str:
    """``<service>-<type with dashes>``, shortened with a digest to stay a DNS label."""
    name = f"{service_name(function)}-{re.sub(r'[^a-z0-9]+', '-', event_type.lower())}".strip("-")
    if len(name) > 63:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[:54].rstrip('-')}-{digest}"
    return name


def eventing(target: Target, functions: Iterable[Function]) -> list[Manifest]:
    labels = {"app.kubernetes.io/component": "eventing"}
    manifests: list[Manifest] = [
        {
            "apiVersion": "eventing.knative.dev/v1alpha1",
            "kind": "RabbitmqBrokerConfig",
            "metadata": _metadata(BROKER, target, **labels),
            "spec": {
                "rabbitmqClusterReference": {
                    "name": target.rabbitmq_cluster,
                    "namespace": target.rabbitmq_namespace or target.namespace,
                },
                "queueType": "quorum",
            },
        },
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "metadata": {
                **_metadata(BROKER, target, **labels),
                "annotations": {"eventing.knative.dev/broker.class": "RabbitMQBroker"},
            },
            "spec": {
                "config": {
                    "apiVersion": "eventing.knative.dev/v1alpha1",
                    "kind": "RabbitmqBrokerConfig",
                    "name": BROKER,
                },
                "delivery": delivery(),
            },
        },
    ]
    seen: dict[str, str] = {}
    triggers: list[Manifest] = []
    for function in functions:
        for event_type in function.routed_events:
            if event_type in seen:
                raise ValueError(
                    f"event type {event_type} is received by both {seen[event_type]} and {function.name}"
                )
            seen[event_type] = function.name
            triggers.append(
                {
                    "apiVersion": "eventing.knative.dev/v1",
                    "kind": "Trigger",
                    "metadata": _metadata(trigger_name(function, event_type), target, **labels),
                    "spec": {
                        "broker": BROKER,
                        "filter": {"attributes": {"type": event_type}},
                        "subscriber": {"ref": _service_reference(service_name(function))},
                        "delivery": delivery(),
                    },
                }
            )
    return manifests + sorted(triggers, key=lambda trigger: str(trigger["metadata"]["name"]))


CLOWDER_RABBITMQ_SECRET = "clowder-rabbitmq"  # noqa: S105 (a Secret's name, not its value)
"""The Secret (keys ``uri``, ``username``, ``password``) of Clowder's RabbitMQ, read by the RabbitmqSources."""
CLOWDER_JOB_FUNCTION = "clowder_job"
CLOWDER_REPLY_QUEUE = "clowder.INSTANCE_ID"
"""Placeholder of ``WORKBENCH_CLOWDER_REPLY_QUEUE``: a RabbitmqSource's event carries no ``reply_to``,
so the statuses of the jobs it delivers go there (Clowder 2's ``clowder.<instance id>``)."""


def clowder_job_settings(target: Target) -> dict[str, str]:
    """The ConfigMap's settings of Clowder's jobs: the queues' prefix, and where statuses go."""
    return {
        "WORKBENCH_CLOWDER_EXTRACTOR_PREFIX": target.extractor_prefix,
        "WORKBENCH_CLOWDER_REPLY_QUEUE": CLOWDER_REPLY_QUEUE,
    }


def clowder_job_sources(target: Target) -> list[Manifest]:
    """A RabbitmqSource per extractor queue of the platform's (``<prefix>.send``, ``.start``, ``.stop``,
    the target's ``WORKBENCH_CLOWDER_EXTRACTOR_PREFIX``): each job becomes an event of type
    ``dev.knative.rabbitmq.event`` whose source is ``/apis/v1/namespaces/<ns>/rabbitmqsources/<name>#<queue>``,
    sent to the Broker and retried from there like every other event."""
    from shared.domain import clowder_jobs

    labels = {"app.kubernetes.io/component": "eventing"}
    return [
        {
            "apiVersion": "sources.knative.dev/v1alpha1",
            "kind": "RabbitmqSource",
            "metadata": _metadata(clowder_jobs.source_name(extractor.action), target, **labels),
            "spec": {
                "rabbitmqClusterReference": {"connectionSecret": {"name": CLOWDER_RABBITMQ_SECRET}},
                "rabbitmqResourcesConfig": {
                    "predeclared": True,
                    "queueName": extractor.name,
                    "parallelism": 1,
                },
                "delivery": {"retry": RETRIES, "backoffPolicy": "exponential", "backoffDelay": "1s"},
                "sink": {"ref": _broker_reference()},
            },
        }
        for extractor in clowder_jobs.extractors(target.extractor_prefix)
    ]


def sources(target: Target, functions: Iterable[Function]) -> list[Manifest]:
    labels = {"app.kubernetes.io/component": "eventing"}
    functions = list(functions)
    manifests: list[Manifest] = []
    if any(function.name == CLOWDER_JOB_FUNCTION for function in functions):
        manifests.extend(clowder_job_sources(target))
    status = next((function for function in functions if function.name == STATUS_FUNCTION), None)
    if status is not None:
        manifests.append(
            {
                "apiVersion": "sources.knative.dev/v1",
                "kind": "ApiServerSource",
                "metadata": _metadata("workbench-stack-pods", target, **labels),
                "spec": {
                    "mode": "Resource",
                    "serviceAccountName": POD_WATCHER,
                    "resources": [
                        {"apiVersion": "v1", "kind": "Pod", "selector": {"matchLabels": dict(STACK_LABELS)}}
                    ],
                    "namespaceSelector": {"matchLabels": dict(STACK_LABELS)},
                    "sink": {"ref": _broker_reference()},
                },
            }
        )
    for function in functions:
        if function.name in EVENT_EMITTERS:
            manifests.append(
                {
                    "apiVersion": "sources.knative.dev/v1",
                    "kind": "SinkBinding",
                    "metadata": _metadata(f"{service_name(function)}-sink", target, **labels),
                    "spec": {
                        "subject": _service_reference(service_name(function)),
                        "sink": {"ref": _broker_reference()},
                    },
                }
            )
    return manifests


# --- routing -----------------------------------------------------------------------------------


def path_prefixes(function: Function) -> list[str]:
    """The distinct first segments of the function's paths, as ``/api/<segment>`` prefixes (or
    ``/<segment>`` for the paths outside the API, such as the management page's assets)."""
    prefixes = set()
    for route in function.routes:
        base = "/api/" if route.path.startswith("/api/") else "/"
        segment = route.path.removeprefix(base).split("/")[0]
        if segment and "<" not in segment:
            prefixes.add(f"{base}{segment}")
    return sorted(prefixes)


def _parent(target: Target) -> Manifest:
    parent: Manifest = {"name": target.gateway}
    if target.gateway_namespace:
        parent["namespace"] = target.gateway_namespace
    return parent


def routing(target: Target, functions: Iterable[Function]) -> list[Manifest]:
    labels = {"app.kubernetes.io/component": "routing"}
    owners: dict[str, str] = {}
    routes: list[Manifest] = []
    for function in functions:
        if not function.routes:
            continue
        matches = [{"path": {"type": "PathPrefix", "value": prefix}} for prefix in path_prefixes(function)]
        for exact in ("/api/", "/"):
            if any(route.path == exact for route in function.routes):
                matches.insert(0, {"path": {"type": "Exact", "value": exact}})
        for match in matches:
            value = match["path"]["value"]
            if value in owners:
                raise ValueError(f"path {value} is served by both {owners[value]} and {function.name}")
            owners[value] = function.name
        name = service_name(function)
        routes.append(
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": _metadata(f"api-{name}", target, **labels),
                "spec": {
                    "parentRefs": [_parent(target)],
                    "rules": [
                        {
                            "matches": matches,
                            "filters": [
                                {
                                    "type": "URLRewrite",
                                    "urlRewrite": {
                                        "hostname": f"{name}.{target.namespace}.svc.{CLUSTER_DOMAIN}"
                                    },
                                }
                            ],
                            "backendRefs": [{"name": name, "port": 80}],
                            "timeouts": {"request": f"{function.timeout_seconds}s"},
                        }
                    ],
                },
            }
        )
    routes.append(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": _metadata("events", target, **labels),
            "spec": {
                "parentRefs": [_parent(target)],
                "rules": [
                    {
                        "matches": [{"path": {"type": "Exact", "value": "/events"}}],
                        "filters": [
                            {
                                "type": "URLRewrite",
                                "urlRewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/"}},
                            }
                        ],
                        "backendRefs": [{"name": f"{BROKER}-broker-ingress", "port": 80}],
                    }
                ],
            },
        }
    )
    return routes


# --- files -------------------------------------------------------------------------------------


def documents(target: Target = Target()) -> dict[str, list[Manifest]]:
    """Each file's objects, in a stable order (functions by name)."""
    functions = sorted(registry.FUNCTIONS, key=lambda function: function.name)
    return {
        "config.yaml": [*config(target), init_job(target), sweep_cron_job(target)],
        "rbac.yaml": rbac(target, functions),
        "services.yaml": [knative_service(function, target) for function in functions],
        "eventing.yaml": eventing(target, functions),
        "sources.yaml": sources(target, functions),
        "routing.yaml": routing(target, functions),
    }


def _header(file_name: str, target: Target) -> str:
    note = FILE_NOTES[file_name].format(
        clowder_queues=", ".join(
            f"{target.extractor_prefix}.{action}" for action in ("send", "start", "stop")
        ),
        clowder_secret=CLOWDER_RABBITMQ_SECRET,
        secret_keys=", ".join(key for key, _ in sorted(SECRET_SETTINGS.values())),
        stack_labels=", ".join(f"{key}={value}" for key, value in STACK_LABELS.items()),
        gateway=target.gateway,
    )
    lines = [SOURCE_HEADER, EDIT_HINT, "#", *(f"# {line}" for line in textwrap.wrap(note, width=100))]
    return "\n".join(lines) + "\n"


def _yaml(manifests: list[Manifest]) -> str:
    import yaml

    return "---\n".join(yaml.safe_dump(manifest, sort_keys=False, width=120) for manifest in manifests)


def generate(target: Target = Target()) -> dict[str, str]:
    """File name → text of every file of ``knative/``, ``kustomization.yaml`` listing the others."""
    import yaml

    files = {name: _header(name, target) + _yaml(manifests) for name, manifests in documents(target).items()}
    image, tag = split_image(target.image)
    kustomization: Manifest = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(files),
        "images": [{"name": image, "newTag": tag}],
    }
    files["kustomization.yaml"] = (
        f"{SOURCE_HEADER}\n{EDIT_HINT}\n#\n"
        "# Apply with `kubectl apply -k knative/`. Every function runs the image below: point it at your\n"
        "# registry here or, better, in an overlay (images: newName/newTag), with your settings and scaling.\n"
        + yaml.safe_dump(kustomization, sort_keys=False, width=120)
    )
    return dict(sorted(files.items()))


def differences(directory: Path, files: dict[str, str]) -> list[str]:
    """The files of ``directory`` that are missing, stale, or generated once but no longer."""
    problems = []
    for name, text in files.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif path.read_text() != text:
            problems.append(f"{name} is stale")
    for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
        if path.name not in files and path.read_text().startswith(SOURCE_HEADER):
            problems.append(f"{path.name} is no longer generated")
    return problems


def write(directory: Path, files: dict[str, str]) -> list[str]:
    """Bring ``directory`` up to date (each file replaced atomically); the names of the files changed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in files.items():
        path = directory / name
        if path.is_file() and path.read_text() == text:
            continue
        write_atomically(path, text.encode(), mode=0o644)
        changed.append(name)
    for path in sorted(directory.glob("*.yaml")):
        # Only files this command wrote are removed: an operator's own files stay.
        if path.name not in files and path.read_text().startswith(SOURCE_HEADER):
            path.unlink()
            changed.append(path.name)
    return changed
