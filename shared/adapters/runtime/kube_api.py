"""The Kubernetes API through the official client: plain JSON objects in and out, errors as the project's own."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from shared.core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unavailable,
    Unprocessable,
    WorkbenchError,
)

log = logging.getLogger(__name__)

Manifest = dict[str, Any]
FIELD_MANAGER = "workbench"
REQUEST_TIMEOUT_SECONDS = 10.0
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
DETAIL_LIMIT = 300
LOG_LIMIT_BYTES = 4 * 1024 * 1024
"""The most of a log one read brings into memory, however long the log or large the tail asked for."""


@dataclass(frozen=True)
class Resource:
    """One kind of object and where the API serves it."""

    api_version: str
    plural: str
    kind: str
    namespaced: bool = True

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced:
            if not namespace:
                raise InvalidInput(f"a {self.kind} needs a namespace", field="metadata.namespace")
            base += f"/namespaces/{quote(namespace, safe='')}"
        path = f"{base}/{self.plural}"
        if name is not None:
            path += f"/{quote(name, safe='')}"
        if subresource is not None:
            path += f"/{subresource}"
        return path


NAMESPACES = Resource("v1", "namespaces", "Namespace", namespaced=False)
PODS = Resource("v1", "pods", "Pod")
CONFIG_MAPS = Resource("v1", "configmaps", "ConfigMap")
SECRETS = Resource("v1", "secrets", "Secret")
SERVICES = Resource("v1", "services", "Service")
SERVICE_ACCOUNTS = Resource("v1", "serviceaccounts", "ServiceAccount")
CLAIMS = Resource("v1", "persistentvolumeclaims", "PersistentVolumeClaim")
QUOTAS = Resource("v1", "resourcequotas", "ResourceQuota")
LIMIT_RANGES = Resource("v1", "limitranges", "LimitRange")
DEPLOYMENTS = Resource("apps/v1", "deployments", "Deployment")
INGRESSES = Resource("networking.k8s.io/v1", "ingresses", "Ingress")
NETWORK_POLICIES = Resource("networking.k8s.io/v1", "networkpolicies", "NetworkPolicy")
ROLES = Resource("rbac.authorization.k8s.io/v1", "roles", "Role")
ROLE_BINDINGS = Resource("rbac.authorization.k8s.io/v1", "rolebindings", "RoleBinding")
EVENTS = Resource("v1", "events", "Event")

KNOWN = {
    (resource.api_version, resource.kind): resource
    for resource in (
        NAMESPACES,
        PODS,
        CONFIG_MAPS,
        SECRETS,
        SERVICES,
        SERVICE_ACCOUNTS,
        CLAIMS,
        QUOTAS,
        LIMIT_RANGES,
        DEPLOYMENTS,
        INGRESSES,
        NETWORK_POLICIES,
        ROLES,
        ROLE_BINDINGS,
        EVENTS,
    )
}
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
        "IngressClass",
        "GatewayClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    }
)


def resource_for(api_version: str, kind: str) -> Resource:
    """The resource of an object's ``apiVersion`` and ``kind``; a kind not known here takes the API's own
    naming convention (lower case, plural), which every kind the manifests use follows."""
    known = KNOWN.get((api_version, kind))
    if known is not None:
        return known
    lower = kind.lower()
    if lower.endswith("s"):
        plural = lower + "es"
    elif lower.endswith("y") and lower[-2:-1] not in ("a", "e", "i", "o", "u"):
        plural = lower[:-1] + "ies"
    else:
        plural = lower + "s"
    return Resource(api_version, plural, kind, namespaced=kind not in CLUSTER_SCOPED_KINDS)


def selector(labels: Mapping[str, str]) -> str:
    """A label selector matching every one of ``labels``."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


class ClusterConflict(Conflict):
    """A 409 from the API; ``reason`` tells an object that exists already from one changed meanwhile."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


Verb = Literal["get", "list", "create", "apply", "patch", "delete", "read the log of", "exec in"]


class KubeApi:
    """Calls the Kubernetes API with the official client's configuration, authentication and transport."""

    def __init__(self, configuration: Any, *, timeout: float = REQUEST_TIMEOUT_SECONDS) -> None:
        from kubernetes.client.api_client import ApiClient
        from urllib3.util.retry import Retry

        if configuration.retries is None:
            # A lost connection is tried again once; a slow answer is not, or every timeout would
            # take several times as long as it says.
            configuration.retries = Retry(total=1, connect=1, read=0, status=0, redirect=0)
        self.host: str = configuration.host
        self.timeout = timeout
        self._client = ApiClient(configuration)

    @classmethod
    def from_environment(
        cls, *, kubeconfig: str | None = None, timeout: float = REQUEST_TIMEOUT_SECONDS
    ) -> KubeApi:
        """The in-cluster service account when running in a pod, else the kubeconfig (``~/.kube/config``
        unless named; the client reads ``$KUBECONFIG`` only when it is first imported)."""
        from kubernetes import config
        from kubernetes.client.configuration import Configuration
        from kubernetes.config.config_exception import ConfigException

        configuration = Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException:
            try:
                config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
            except (ConfigException, OSError) as error:
                raise Unavailable(
                    f"no Kubernetes configuration: not running in a cluster, and no usable kubeconfig ({error})"
                ) from error
        return cls(configuration, timeout=timeout)

    def close(self) -> None:
        self._client.close()

    # --- Reading ---------------------------------------------------------------------------

    def get(self, resource: Resource, namespace: str | None, name: str) -> Manifest | None:
        """The object, or None when there is none."""
        try:
            return self._call("get", resource, namespace, name, "GET", resource.path(namespace, name))
        except NotFound:
            return None

    def select(self, resource: Resource, namespace: str | None, labels: Mapping[str, str]) -> list[Manifest]:
        """The objects of the namespace that carry every one of ``labels``."""
        answer = self._call(
            "list",
            resource,
            namespace,
            None,
            "GET",
            resource.path(namespace),
            query=[("labelSelector", selector(labels))],
        )
        items = answer.get("items") or []
        return [item for item in items if isinstance(item, dict)]

    def events_of(self, namespace: str, kind: str, name: str, *, limit: int) -> list[Manifest]:
        """At most ``limit`` of the Events the cluster recorded about one object (core v1 Events, as
        ``kubectl describe`` shows them)."""
        answer = self._call(
            "list",
            EVENTS,
            namespace,
            None,
            "GET",
            EVENTS.path(namespace),
            query=[
                ("fieldSelector", f"involvedObject.kind={kind},involvedObject.name={name}"),
                ("limit", str(limit)),
            ],
        )
        items = answer.get("items") or []
        return [item for item in items if isinstance(item, dict)]

    def pod_log(self, namespace: str, pod: str, container: str, lines: int | None) -> str:
        """The tail of a container's log (all of it when ``lines`` is None)."""
        from kubernetes.client.api.core_v1_api import CoreV1Api
        from kubernetes.client.exceptions import ApiException

        api = CoreV1Api(self._client)
        try:
            text = api.read_namespaced_pod_log(
                name=pod,
                namespace=namespace,
                container=container,
                tail_lines=lines,
                limit_bytes=LOG_LIMIT_BYTES,
                _request_timeout=self.timeout,
            )
        except ApiException as error:
            raise self._error("read the log of", PODS, namespace, pod, error.status, error.body) from error
        except Exception as error:
            if _is_transport_error(error):
                raise self._unreachable(error) from error
            raise
        return text if isinstance(text, str) else ""

    def exec(self, namespace: str, pod: str, container: str, command: list[str], *, tty: bool) -> Any:
        """A command in a pod's container over the API's exec websocket (channel protocol v4/v5): the
        official client's ``WSClient``, in bytes, open (its owner closes it). Its own ApiClient, as the client's ``stream`` swaps
        the transport of the one it is given while it connects."""
        from kubernetes.client.api.core_v1_api import CoreV1Api
        from kubernetes.client.api_client import ApiClient
        from kubernetes.client.exceptions import ApiException
        from kubernetes.stream import stream

        api = CoreV1Api(ApiClient(self._client.configuration))
        try:
            return stream(
                api.connect_get_namespaced_pod_exec,
                pod,
                namespace,
                container=container,
                command=command,
                stdin=tty,
                stdout=True,
                stderr=True,
                tty=tty,
                binary=True,
                _preload_content=False,
                _request_timeout=self.timeout,
            )
        except ApiException as error:
            # A refused upgrade comes as status 0, the websocket client's error (with the status) inside.
            refused = error.__context__
            status = getattr(refused, "status_code", None) or error.status
            body = getattr(refused, "resp_body", None) or error.body
            if not status:
                raise self._unreachable(error) from error
            raise self._error("exec in", PODS, namespace, pod, status, body) from error

    # --- Writing ---------------------------------------------------------------------------

    def create(self, resource: Resource, namespace: str | None, body: Manifest) -> Manifest | None:
        """Create the object; None when one of that name exists already (it is left as it is)."""
        name = str(body.get("metadata", {}).get("name", ""))
        try:
            return self._call(
                "create", resource, namespace, name, "POST", resource.path(namespace), body=body
            )
        except ClusterConflict as error:
            if error.reason == "AlreadyExists":
                return None
            raise

    def apply(
        self, resource: Resource, namespace: str | None, body: Manifest, *, dry_run: bool = False
    ) -> Manifest:
        """Server-side apply: create the object or bring the fields this platform manages to ``body``."""
        name = str(body.get("metadata", {}).get("name", ""))
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        if dry_run:
            query.append(("dryRun", "All"))
        return self._call(
            "apply",
            resource,
            namespace,
            name,
            "PATCH",
            resource.path(namespace, name),
            query=query,
            body=body,
            content_type=APPLY_PATCH,
        )

    def patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        patch: Manifest,
        *,
        subresource: str | None = None,
    ) -> Manifest | None:
        """A JSON merge patch; None when there is no such object."""
        try:
            return self._call(
                "patch",
                resource,
                namespace,
                name,
                "PATCH",
                resource.path(namespace, name, subresource),
                query=[("fieldManager", FIELD_MANAGER)],
                body=patch,
                content_type=MERGE_PATCH,
            )
        except NotFound:
            return None

    def delete(self, resource: Resource, namespace: str | None, name: str) -> bool:
        """Delete the object (its dependants in the background); False when there was none."""
        try:
            self._call(
                "delete",
                resource,
                namespace,
                name,
                "DELETE",
                resource.path(namespace, name),
                query=[("propagationPolicy", "Background")],
            )
        except NotFound:
            return False
        return True

    # --- The transport ---------------------------------------------------------------------

    def _call(
        self,
        verb: Verb,
        resource: Resource,
        namespace: str | None,
        name: str | None,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Manifest | None = None,
        content_type: str = "application/json",
    ) -> Manifest:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        request = self._client.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self._client.call_api(*request, _request_timeout=self.timeout)
            data = response.read()
        except Exception as error:
            if _is_transport_error(error):
                raise self._unreachable(error) from error
            raise
        if not 200 <= response.status <= 299:
            raise self._error(verb, resource, namespace, name, response.status, data)
        try:
            answer = json.loads(data) if data else {}
        except ValueError as error:
            raise Unavailable(
                f"the Kubernetes API answered {method} {path} with something that is not JSON"
            ) from error
        return answer if isinstance(answer, dict) else {}

    def _unreachable(self, error: Exception) -> Unavailable:
        reason = type(error).__name__
        if "Timeout" in reason or "timed out" in str(error):
            return Unavailable(
                f"the Kubernetes API at {self.host} did not answer within {self.timeout:g} seconds"
            )
        return Unavailable(f"the Kubernetes API at {self.host} cannot be reached ({reason})")

    def _error(
        self,
        verb: Verb,
        resource: Resource,
        namespace: str | None,
        name: str | None,
        status: int,
        body: bytes | str | None,
    ) -> WorkbenchError:
        """The project's error for an API refusal, with the API's own explanation (never a credential:
        only the Status message the server wrote goes into it)."""
        reason, detail = _status_of(body)
        what = f"{resource.kind} '{name}'" if name else f"{resource.kind} objects"
        where = f" in namespace '{namespace}'" if namespace and resource.namespaced else ""
        explained = f": {detail}" if detail else ""
        if status == 404:
            return NotFound(resource.kind, name, message=f"{what}{where} not found{explained}")
        if status == 409:
            return ClusterConflict(
                f"{what}{where} changed or exists already ({reason or 'Conflict'}){explained}", reason=reason
            )
        if status == 422:
            return Unprocessable(f"the cluster refused {what}{where} as invalid{explained}")
        if status == 403:
            return Forbidden(f"the cluster does not allow the platform to {verb} {what}{where}{explained}")
        if status == 401:
            return Unavailable(f"the Kubernetes API at {self.host} did not accept the platform's credentials")
        if status == 400:
            return InvalidInput(f"the cluster could not {verb} {what}{where}{explained}")
        if status == 429:
            return Unavailable(f"the Kubernetes API is throttling requests; try again later{explained}")
        return Unavailable(f"the Kubernetes API failed to {verb} {what}{where} (HTTP {status}){explained}")


def _status_of(body: bytes | str | None) -> tuple[str, str]:
    """The reason and message of a Status object (or the start of whatever else the server sent)."""
    if not body:
        return "", ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        status = json.loads(text)
    except ValueError:
        return "", " ".join(text.split())[:DETAIL_LIMIT]
    if not isinstance(status, dict):
        return "", ""
    return str(status.get("reason") or ""), str(status.get("message") or "")[:DETAIL_LIMIT]


def _is_transport_error(error: Exception) -> bool:
    """Whether the request never got an answer: refused, reset, timed out, TLS failed."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(error, ApiException):
        return error.status in (0, None)
    return isinstance(error, HTTPError | OSError)
