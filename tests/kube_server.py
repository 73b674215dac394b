"""A Kubernetes API stand-in: the API server's REST paths and JSON, and a small cluster behind them."""

# It serves what the Kubernetes runtime and ``workbench deploy`` use (core, apps, networking and RBAC
# kinds, and any other group as if its CRD were installed): create, get, list with label selectors,
# replace, merge and strategic-merge patches (both as JSON merge patches), server-side apply, delete,
# ``deployments/{name}/scale`` and ``pods/{name}/log``. Errors are Status objects shaped as the API
# server shapes them. A Deployment scaled up gets pods (its template's labels), which a test marks
# Ready or Terminated, or which go through a kubelet's steps by themselves (``progress_seconds``),
# recording core v1 Events (listed with field selectors); scaling down deletes them. Failures can be
# injected per verb and path.
#
# Server-side apply is that of a sole field manager: the applied object replaces the stored one's
# fields (server-set fields, status, a Service's cluster IP and unset replicas are kept). Field
# ownership conflicts between managers are not modelled.

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

Object = dict[str, Any]

KINDS = {
    ("v1", "namespaces"): "Namespace",
    ("v1", "pods"): "Pod",
    ("v1", "configmaps"): "ConfigMap",
    ("v1", "secrets"): "Secret",
    ("v1", "services"): "Service",
    ("v1", "serviceaccounts"): "ServiceAccount",
    ("v1", "persistentvolumeclaims"): "PersistentVolumeClaim",
    ("v1", "resourcequotas"): "ResourceQuota",
    ("v1", "limitranges"): "LimitRange",
    ("apps/v1", "deployments"): "Deployment",
    ("networking.k8s.io/v1", "ingresses"): "Ingress",
    ("networking.k8s.io/v1", "networkpolicies"): "NetworkPolicy",
    ("rbac.authorization.k8s.io/v1", "roles"): "Role",
    ("rbac.authorization.k8s.io/v1", "rolebindings"): "RoleBinding",
    ("rbac.authorization.k8s.io/v1", "clusterroles"): "ClusterRole",
    ("rbac.authorization.k8s.io/v1", "clusterrolebindings"): "ClusterRoleBinding",
    ("v1", "events"): "Event",
}
EVENT_FIELDS = frozenset(
    {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
        "metadata.name",
        "metadata.namespace",
    }
)
"""The fields the API server selects core v1 Events by."""
REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
# Whose names must be RFC 1123 labels rather than subdomains.
LABEL_NAMED = {"namespaces", "services"}


class QuietHandler(WSGIRequestHandler):
    """Requests are recorded in ``KubeServer.requests``; the access log would only clutter test output."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """Answered as a Status object."""

    def __init__(self, code: int, message: str, *, reason: str | None = None, details: Object | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> Object:
        body: Object = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


@dataclass
class Failure:
    """An injected failure: requests matching ``method`` and ``path`` (a regular expression, searched)
    are answered with ``status`` (after ``delay`` seconds), ``times`` times (None: always)."""

    status: int
    method: str | None = None
    path: str | None = None
    times: int | None = 1
    message: str | None = None
    delay: float = 0.0
    reason: str | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.path is None or re.search(self.path, path) is not None


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any
    authorization: str = field(repr=False, default="")


@dataclass(frozen=True)
class Target:
    """What a request path names."""

    group_version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None

    @property
    def group(self) -> str:
        return self.group_version.rpartition("/")[0]

    def resource_text(self) -> str:
        """How messages name the resource: ``configmaps``, ``deployments.apps``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


def parse_path(path: str) -> Target:
    parts = [part for part in path.split("/") if part]
    if parts[:2] == ["api", "v1"]:
        group_version, rest = "v1", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group_version, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        raise ApiError(404, f"the server could not find the requested resource ({path})")
    namespace = None
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        raise ApiError(404, f"the server could not find the requested resource ({path})")
    return Target(
        group_version,
        rest[0],
        namespace,
        rest[1] if len(rest) > 1 else None,
        rest[2] if len(rest) > 2 else None,
    )


def split_selector(text: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for character in text:
        if character == "(":
            depth += 1
        elif character == ")":
            depth -= 1
        if character == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += character
    if current.strip():
        terms.append(current.strip())
    return terms


def selector_matcher(text: str) -> Callable[[dict[str, str]], bool]:
    """A label selector (equality- and set-based) as a predicate over labels."""
    tests: list[Callable[[dict[str, str]], bool]] = []
    for term in split_selector(text or ""):
        if match := re.fullmatch(r"([^\s!=]+)\s+(in|notin)\s+\((.*)\)", term):
            key, operator, values = (
                match.group(1),
                match.group(2),
                {v.strip() for v in match.group(3).split(",")},
            )
            if operator == "in":
                tests.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                tests.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
        elif "!=" in term:
            key, value = (part.strip() for part in term.split("!=", 1))
            tests.append(lambda labels, k=key, v=value: labels.get(k) != v)
        elif "=" in term:
            key, value = (part.strip() for part in term.replace("==", "=").split("=", 1))
            tests.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif term.startswith("!"):
            absent = term[1:].strip()
            tests.append(lambda labels, k=absent: k not in labels)
        else:
            tests.append(lambda labels, k=term: k in labels)
    return lambda labels: all(test(labels) for test in tests)


def field_matcher(text: str, plural: str) -> Callable[[Object], bool]:
    """A field selector (``=``, ``==``, ``!=``) as a predicate over objects; every kind selects by
    ``metadata.name`` and ``metadata.namespace``, Events by the fields the API server indexes."""
    supported = EVENT_FIELDS if plural == "events" else {"metadata.name", "metadata.namespace"}
    tests: list[Callable[[Object], bool]] = []
    for term in (part.strip() for part in (text or "").split(",") if part.strip()):
        negated = "!=" in term
        key, value = (part.strip() for part in term.replace("==", "=").replace("!=", "=").split("=", 1))
        if key not in supported:
            raise ApiError(400, f"field label not supported: {key}")

        def test(item: Object, path: str = key, wanted: str = value, negated: bool = negated) -> bool:
            found: Any = item
            for part in path.split("."):
                found = found.get(part) if isinstance(found, dict) else None
            if path == "source" and isinstance(found, dict):
                found = found.get("component")
            return (str(found or "") == wanted) != negated

        tests.append(test)
    return lambda item: all(test(item) for test in tests)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


@dataclass
class Exec:
    namespace: str
    pod: str
    container: str
    command: list[str]
    tty: bool


def run_exec(socket: Any, command: list[str], tty: bool, home: Path) -> None:
    """Run ``command`` and carry its streams over the websocket in channels until it ends or the
    client goes; then send its outcome (channel 3) and close."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import termios

    import simple_websocket

    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    if tty:
        leader, follower = pty.openpty()
        process = subprocess.Popen(
            command,
            stdin=follower,
            stdout=follower,
            stderr=follower,
            cwd=home,
            env=environment,
            start_new_session=True,
        )
        os.close(follower)
        outputs = [(leader, 1)]
    else:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=home,
            env=environment,
            start_new_session=True,
        )
        assert process.stdout is not None and process.stderr is not None
        leader = -1
        outputs = [(process.stdout.fileno(), 1), (process.stderr.fileno(), 2)]

    def carry(descriptor: int, channel: int) -> None:
        while True:
            try:
                data = os.read(descriptor, 65536)
            except OSError:
                return
            if not data:
                return
            try:
                socket.send(bytes([channel]) + data)
            except (simple_websocket.ConnectionClosed, OSError):
                return

    readers = [threading.Thread(target=carry, args=output, daemon=True) for output in outputs]
    for reader in readers:
        reader.start()

    def take_input() -> None:
        while True:
            try:
                message = socket.receive()
            except simple_websocket.ConnectionClosed:
                return
            if message is None:
                return
            data = message.encode() if isinstance(message, str) else bytes(message)
            if data[:1] == b"\x00" and leader >= 0:
                os.write(leader, data[1:])
            elif data[:1] == b"\x04" and leader >= 0:
                size = json.loads(data[1:])
                fcntl.ioctl(
                    leader, termios.TIOCSWINSZ, struct.pack("HHHH", size["Height"], size["Width"], 0, 0)
                )

    taker = threading.Thread(target=take_input, daemon=True)
    taker.start()
    while process.poll() is None and socket.connected:
        time.sleep(0.05)
    # A client gone ends nothing by itself, as with a real container: the process runs on.
    if process.poll() is not None:
        for reader in readers:
            reader.join(2)
        code = process.returncode
        status: Object = (
            {"metadata": {}, "status": "Success"}
            if code == 0
            else {
                "metadata": {},
                "status": "Failure",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
            }
        )
        try:
            socket.send(bytes([3]) + json.dumps(status).encode())
            socket.close()
        except (simple_websocket.ConnectionClosed, OSError):
            pass
    if leader >= 0:
        threading.Thread(target=lambda: (process.wait(), os.close(leader)), daemon=True).start()


class KubeServer:
    """The stand-in, served on 127.0.0.1 at a free port from a thread."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token or secrets.token_urlsafe(24)
        self.requests: list[Recorded] = []
        self.failures: list[Failure] = []
        self.pod_events: list[tuple[str, Object]] = []
        """Every change of a pod as an ApiServerSource would send it: ("add"|"update"|"delete", pod)."""
        self.auto_ready: float | None = None
        """Seconds after which a new pod turns Ready by itself (None: only when a test says so)."""
        self.progress_seconds: float | None = None
        """Seconds between the steps a new pod goes through as a kubelet takes it on (None: it waits,
        PodInitializing, until a test marks it): scheduled with its containers being created, its
        images pulling, then pulled with its containers created and started (running, not ready), then
        ready; each step with the Events the scheduler and kubelet record."""
        self.unpullable: dict[str, str] = {}
        """Image → what its registry answers the kubelet: a pod of it stays at ErrImagePull, then
        ImagePullBackOff."""
        self.graceful_pod_deletion = False
        """Pods being deleted stay, terminating, until ``finish_terminating``."""
        self.refuse_pods: dict[str, str] = {}
        """Namespace → why its ReplicaSets cannot create pods (e.g. an exceeded quota)."""
        self.execs: list[Exec] = []
        """Every exec asked for, in order."""
        self.exec_home = Path("/tmp")
        """The working folder and HOME of the processes execs run."""
        self.claim_folders: dict[tuple[str, str], Path] = {}
        """(namespace, claim name) → the host folder that stands for the claim's volume."""
        self._store: dict[tuple[str, str, str | None], dict[str, Object]] = {}
        self._kinds: dict[tuple[str, str], str] = dict(KINDS)
        self._logs: dict[tuple[str, str, str], str] = {}
        self._version = 0
        self._lock = threading.RLock()
        self._timers: list[threading.Timer] = []
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=QuietHandler)
        self._thread = threading.Thread(
            # A short poll, so that stopping the server does not hold up every test.
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="kube stand-in",
            daemon=True,
        )

    # --- Running ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> KubeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> KubeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def configuration(self) -> Any:
        """A client configuration for this server, authenticated with its token."""
        from kubernetes.client.configuration import Configuration

        return Configuration(
            host=self.url, api_key={"BearerToken": self.token}, api_key_prefix={"BearerToken": "Bearer"}
        )

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig file for this server, as ``kubectl`` and the client read it."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "stand-in", "cluster": {"server": self.url}}],
            "users": [{"name": "platform", "user": {"token": self.token}}],
            "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "platform"}}],
            "current-context": "stand-in",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # --- What tests look at ----------------------------------------------------------------

    def get(
        self, plural: str, namespace: str | None, name: str, group_version: str | None = None
    ) -> Object | None:
        with self._lock:
            found = self._bucket(group_version or self._group_version_of(plural), plural, namespace).get(name)
            return copy.deepcopy(found) if found is not None else None

    def items(
        self, plural: str, namespace: str | None = None, group_version: str | None = None
    ) -> list[Object]:
        """Every stored object of a kind (in one namespace, or in all)."""
        group_version = group_version or self._group_version_of(plural)
        with self._lock:
            found = []
            for (stored_version, stored_plural, stored_namespace), bucket in self._store.items():
                if (stored_version, stored_plural) != (group_version, plural):
                    continue
                if namespace is not None and stored_namespace != namespace:
                    continue
                found += [copy.deepcopy(item) for item in bucket.values()]
            return sorted(found, key=lambda item: item["metadata"]["name"])

    def pods(self, namespace: str, selector: str = "") -> list[Object]:
        matches = selector_matcher(selector)
        return [pod for pod in self.items("pods", namespace) if matches(pod["metadata"].get("labels", {}))]

    def file_in_pod(self, pod: Object, container: str, path: str) -> Path:
        """The host file a container of the pod sees at ``path``, as the kubelet mounts it: the
        deepest volumeMount holding the path, its claim's folder (``claim_folders``), its subPath."""
        spec = pod["spec"]
        [found] = [item for item in spec["containers"] if item["name"] == container]
        holding = [
            mount
            for mount in found.get("volumeMounts") or []
            if path == mount["mountPath"] or path.startswith(mount["mountPath"].rstrip("/") + "/")
        ]
        if not holding:
            raise LookupError(f"no volume of container {container} holds {path}")
        mount = max(holding, key=lambda item: len(item["mountPath"]))
        [volume] = [item for item in spec.get("volumes") or [] if item["name"] == mount["name"]]
        claim = volume["persistentVolumeClaim"]["claimName"]
        folder = self.claim_folders[(pod["metadata"]["namespace"], claim)]
        rest = path[len(mount["mountPath"]) :].lstrip("/")
        return folder / str(mount.get("subPath", "")) / rest

    def fail(
        self,
        status: int,
        *,
        method: str | None = None,
        path: str | None = None,
        times: int | None = 1,
        message: str | None = None,
        delay: float = 0.0,
        reason: str | None = None,
    ) -> Failure:
        failure = Failure(status, method, path, times, message, delay, reason)
        with self._lock:
            self.failures.append(failure)
        return failure

    def write_log(self, namespace: str, pod: str, container: str, text: str) -> None:
        with self._lock:
            self._logs[(namespace, pod, container)] = self._logs.get((namespace, pod, container), "") + text

    def mark_ready(self, namespace: str, pod_name: str) -> None:
        """The pod's containers run and pass their probes."""
        with self._lock:
            pod = self._bucket("v1", "pods", namespace).get(pod_name)
            if pod is None or pod["metadata"].get("deletionTimestamp"):
                return
            started = now()
            status = pod["status"]
            status["phase"] = "Running"
            status["startTime"] = status.get("startTime") or started
            status["conditions"] = [
                {"type": kind, "status": "True", "lastTransitionTime": started}
                for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ]
            for key in ("initContainerStatuses", "containerStatuses"):
                for container in status.get(key, []):
                    container.update(ready=True, started=True, state={"running": {"startedAt": started}})
            self._touched_pod(pod)

    def ready_all(self, namespace: str, selector: str = "") -> list[str]:
        names = [pod["metadata"]["name"] for pod in self.pods(namespace, selector)]
        for name in names:
            self.mark_ready(namespace, name)
        return names

    def terminate(
        self,
        namespace: str,
        pod_name: str,
        *,
        reason: str = "Error",
        message: str = "",
        exit_code: int = 1,
        container: str | None = None,
        crash_loop: bool = True,
    ) -> None:
        """A container ended: restarting with back-off (``crash_loop``), or terminated for good."""
        with self._lock:
            pod = self._bucket("v1", "pods", namespace)[pod_name]
            status = pod["status"]
            target = next(
                item for item in status["containerStatuses"] if container is None or item["name"] == container
            )
            ended = {"reason": reason, "message": message, "exitCode": exit_code, "finishedAt": now()}
            if crash_loop:
                target["state"] = {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off 10s restarting failed container={target['name']} pod={pod_name}",
                    }
                }
                target["lastState"] = {"terminated": ended}
                target["restartCount"] = target.get("restartCount", 0) + 1
            else:
                target["state"] = {"terminated": ended}
                status["phase"] = "Failed"
            target["ready"] = False
            status["conditions"] = [
                condition for condition in status.get("conditions", []) if condition["type"] != "Ready"
            ] + [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}]
            self._touched_pod(pod)

    def finish_terminating(self) -> None:
        """Pods marked for deletion end now."""
        with self._lock:
            for (_, plural, namespace), bucket in list(self._store.items()):
                if plural != "pods":
                    continue
                for name, pod in list(bucket.items()):
                    if pod["metadata"].get("deletionTimestamp"):
                        self._remove_pod(namespace or "", name, graceful=False)

    # --- Serving ---------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        request = Request(environ)
        try:
            if request.path.endswith("/exec") and request.headers.get("Upgrade", "").lower() == "websocket":
                return self._exec(request, environ)
            response = self._handle(request)
        except ApiError as error:
            response = Response(json.dumps(error.status()), status=error.code, mimetype="application/json")
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        raw = request.get_data()
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        body: Any = None
        if raw:
            try:
                body = (
                    yaml.safe_load(raw) if content_type == "application/apply-patch+yaml" else json.loads(raw)
                )
            except (ValueError, yaml.YAMLError) as error:
                raise ApiError(400, f"the body of the request was in an unknown format: {error}") from None
        authorization = request.headers.get("Authorization", "")
        with self._lock:
            self.requests.append(
                Recorded(request.method, request.path, dict(request.args), content_type, body, authorization)
            )
        if authorization != f"Bearer {self.token}":
            raise ApiError(401, "Unauthorized")
        failure = self._injected(request.method, request.path)
        if failure is not None:
            if failure.delay:
                time.sleep(failure.delay)
            raise ApiError(
                failure.status,
                failure.message or f"injected failure ({failure.status})",
                reason=failure.reason,
            )
        target = parse_path(request.path)
        query = request.args
        dry_run = query.get("dryRun") == "All"
        with self._lock:
            if target.subresource == "scale" and target.plural == "deployments":
                return self._json(200, self._scale(request.method, target, content_type, body))
            if target.subresource == "log" and target.plural == "pods" and request.method == "GET":
                return Response(self._log(target, query), status=200, mimetype="text/plain")
            if target.subresource is not None:
                raise ApiError(404, f"the server could not find the requested resource ({request.path})")
            if request.method == "GET" and target.name is None:
                return self._json(
                    200,
                    self._list(
                        target,
                        query.get("labelSelector", ""),
                        query.get("fieldSelector", ""),
                        query.get("limit"),
                    ),
                )
            if request.method == "GET":
                return self._json(200, self._existing(target))
            if request.method == "POST" and target.name is None:
                return self._json(201, self._create(target, body, dry_run=dry_run))
            if request.method == "PUT" and target.name is not None:
                return self._json(200, self._replace(target, body, dry_run=dry_run))
            if request.method == "PATCH" and target.name is not None:
                manager = query.get("fieldManager")
                return self._json(*self._patch(target, content_type, body, manager, dry_run=dry_run))
            if request.method == "DELETE" and target.name is not None:
                return self._json(200, self._delete(target, dry_run=dry_run))
            if request.method == "DELETE":
                return self._json(200, self._delete_collection(target, query.get("labelSelector", "")))
        raise ApiError(
            405, f"the server does not allow this method on the requested resource ({request.method})"
        )

    def _exec(self, request: Request, environ: dict[str, Any]) -> Iterator[bytes]:
        """``pods/{name}/exec`` as the API server and kubelet serve it over a websocket (channel
        protocol v4.channel.k8s.io: each message's first byte is its channel, 0 stdin, 1 stdout,
        2 stderr, 3 the outcome as a Status, 4 the terminal's size as JSON). The command runs as a
        process here, on a terminal when ``tty`` is asked, in a session of its own, as in a container."""
        import simple_websocket

        authorization = request.headers.get("Authorization", "")
        with self._lock:
            self.requests.append(
                Recorded(request.method, request.path, dict(request.args), "", None, authorization)
            )
        if authorization != f"Bearer {self.token}":
            raise ApiError(401, "Unauthorized")
        target = parse_path(request.path)
        with self._lock:
            pod = self._existing(Target(target.group_version, "pods", target.namespace, target.name, None))
        containers = [item["name"] for item in pod["spec"].get("containers", [])]
        container = request.args.get("container") or containers[0]
        if container not in containers:
            raise ApiError(400, f"container {container} is not valid for pod {target.name}")
        command = request.args.getlist("command")
        tty = request.args.get("tty") in ("1", "true")
        with self._lock:
            self.execs.append(Exec(target.namespace or "", target.name or "", container, command, tty))

        class Socket(simple_websocket.Server):  # type: ignore[misc]
            def choose_subprotocol(self, offered: Any) -> str | None:
                return "v4.channel.k8s.io" if "v4.channel.k8s.io" in offered.subprotocols else None

        socket = Socket(environ)
        run_exec(socket, command, tty, self.exec_home)

        class Ended(Response):
            def __call__(self, *arguments: Any) -> Any:
                raise ConnectionError("the exec's websocket has ended")

        return Ended()(environ, lambda *arguments: None)  # type: ignore[no-any-return]

    def _injected(self, method: str, path: str) -> Failure | None:
        with self._lock:
            for failure in self.failures:
                if failure.matches(method, path) and (failure.times is None or failure.times > 0):
                    if failure.times is not None:
                        failure.times -= 1
                    return failure
        return None

    @staticmethod
    def _json(status: int, body: Object) -> Response:
        return Response(json.dumps(body), status=status, mimetype="application/json")

    # --- Storage ---------------------------------------------------------------------------

    def _group_version_of(self, plural: str) -> str:
        for version, known_plural in self._kinds:
            if known_plural == plural:
                return version
        raise KeyError(f"no kind is served as {plural!r}")

    def _bucket(self, group_version: str, plural: str, namespace: str | None) -> dict[str, Object]:
        return self._store.setdefault((group_version, plural, namespace), {})

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def _kind(self, target: Target, body: Object | None = None) -> str:
        kind = self._kinds.get((target.group_version, target.plural))
        if kind is None and body is not None and isinstance(body.get("kind"), str):
            kind = body["kind"]
            self._kinds[(target.group_version, target.plural)] = kind
        if kind is None:
            raise ApiError(
                404, f"the server could not find the requested resource ({target.resource_text()})"
            )
        return kind

    def _not_found(self, target: Target, name: str | None = None) -> ApiError:
        name = name if name is not None else target.name
        return ApiError(
            404,
            f'{target.resource_text()} "{name}" not found',
            details={"name": name, "group": target.group, "kind": target.plural},
        )

    def _existing(self, target: Target) -> Object:
        self._kind(target)
        found = self._bucket(target.group_version, target.plural, target.namespace).get(target.name or "")
        if found is None:
            raise self._not_found(target)
        return copy.deepcopy(found)

    def _list(self, target: Target, selector: str, fields: str = "", limit: str | None = None) -> Object:
        kind = self._kind(target)
        matches = selector_matcher(selector)
        selected = field_matcher(fields, target.plural)
        items = []
        for (version, plural, namespace), bucket in self._store.items():
            if (version, plural) != (target.group_version, target.plural):
                continue
            if target.namespace is not None and namespace != target.namespace:
                continue
            for item in bucket.values():
                if matches(item["metadata"].get("labels") or {}) and selected(item):
                    listed = copy.deepcopy(item)
                    # As the API server lists them: the list says the kind, the items do not.
                    listed.pop("kind", None)
                    listed.pop("apiVersion", None)
                    items.append(listed)
        items.sort(key=lambda item: (item["metadata"].get("namespace", ""), item["metadata"]["name"]))
        metadata: Object = {"resourceVersion": str(self._version)}
        if limit is not None:
            if not limit.isdigit():
                raise ApiError(400, f"invalid limit: {limit}")
            count = int(limit)
            if 0 < count < len(items):
                # The rest would follow with the continue token; a client that asked for a bound
                # takes none of it.
                metadata["continue"] = base64.b64encode(
                    items[count - 1]["metadata"]["name"].encode()
                ).decode()
                metadata["remainingItemCount"] = len(items) - count
                items = items[:count]
        return {
            "kind": f"{kind}List",
            "apiVersion": target.group_version,
            "metadata": metadata,
            "items": items,
        }

    # --- Checks ----------------------------------------------------------------------------

    def _check(self, target: Target, body: Any, kind: str) -> Object:
        if not isinstance(body, dict):
            raise ApiError(400, "the body of the request was not a JSON object")
        if body.get("apiVersion", target.group_version) != target.group_version:
            raise ApiError(
                400,
                f"the API version in the data ({body.get('apiVersion')}) does not match the expected API version "
                f"({target.group_version})",
            )
        if body.get("kind", kind) != kind:
            raise ApiError(
                400, f"the kind in the data ({body.get('kind')}) does not match the expected kind ({kind})"
            )
        metadata = body.setdefault("metadata", {})
        if target.namespace is not None and metadata.get("namespace", target.namespace) != target.namespace:
            raise ApiError(
                400, "the namespace of the provided object does not match the namespace sent on the request"
            )
        body["apiVersion"], body["kind"] = target.group_version, kind
        name = metadata.get("name", "")
        causes = self._invalid(target, body, kind)
        if causes:
            text = ", ".join(f"{cause['field']}: {cause['message']}" for cause in causes)
            kind_text = f"{kind}.{target.group}" if target.group else kind
            raise ApiError(
                422,
                f'{kind_text} "{name}" is invalid: {text}',
                details={"name": name, "group": target.group, "kind": kind, "causes": causes},
            )
        return body

    def _invalid(self, target: Target, body: Object, kind: str) -> list[Object]:
        causes: list[Object] = []
        builtin = (target.group_version, target.plural) in KINDS

        def invalid(path: str, value: Any, why: str) -> None:
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "message": f"Invalid value: {json.dumps(value)}: {why}",
                    "field": path,
                }
            )

        name = body["metadata"].get("name", "")
        pattern, limit = (LABEL, 63) if target.plural in LABEL_NAMED else (SUBDOMAIN, 253)
        if not name:
            causes.append(
                {
                    "reason": "FieldValueRequired",
                    "message": "Required value: name or generateName is required",
                    "field": "metadata.name",
                }
            )
        elif len(name) > limit or not pattern.match(name):
            invalid(
                "metadata.name",
                name,
                "a lowercase RFC 1123 name must consist of lower case alphanumeric characters, '-' or '.'",
            )
        for key in (body.get("data") or {}) if builtin and kind in ("ConfigMap", "Secret") else ():
            if not CONFIG_KEY.match(key):
                invalid(
                    f"data[{key}]",
                    key,
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                )
        if builtin and kind == "Deployment":
            spec = body.get("spec") or {}
            selector = (spec.get("selector") or {}).get("matchLabels") or {}
            labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
            if not selector or any(labels.get(key) != value for key, value in selector.items()):
                invalid(
                    "spec.template.metadata.labels", labels, "`selector` does not match template `labels`"
                )
            if isinstance(spec.get("replicas"), int) and spec["replicas"] < 0:
                invalid("spec.replicas", spec["replicas"], "must be greater than or equal to 0")
            causes += self._invalid_pod_spec(
                "spec.template.spec", (spec.get("template") or {}).get("spec") or {}
            )
        return causes

    @staticmethod
    def _invalid_pod_spec(path: str, spec: Object) -> list[Object]:
        causes = []
        volumes = {volume.get("name") for volume in spec.get("volumes") or []}
        for group in ("initContainers", "containers"):
            for index, container in enumerate(spec.get(group) or []):
                where = f"{path}.{group}[{index}]"
                causes += KubeServer._invalid_mounts(where, container.get("volumeMounts") or [], volumes)
                name = container.get("name", "")
                if not LABEL.match(name) or len(name) > 63:
                    causes.append(
                        {
                            "reason": "FieldValueInvalid",
                            "message": f"Invalid value: {json.dumps(name)}",
                            "field": f"{where}.name",
                        }
                    )
                if not container.get("image"):
                    causes.append(
                        {
                            "reason": "FieldValueRequired",
                            "message": "Required value",
                            "field": f"{where}.image",
                        }
                    )
                policy = container.get("restartPolicy")
                if policy is not None and (group == "containers" or policy != "Always"):
                    causes.append(
                        {
                            "reason": "FieldValueNotSupported",
                            "message": f"Unsupported value: {json.dumps(policy)}",
                            "field": f"{where}.restartPolicy",
                        }
                    )
                for port in container.get("ports") or []:
                    if "name" in port and (len(port["name"]) > 15 or not LABEL.match(port["name"])):
                        causes.append(
                            {
                                "reason": "FieldValueInvalid",
                                "message": f"Invalid value: {json.dumps(port['name'])}",
                                "field": f"{where}.ports.name",
                            }
                        )
        return causes

    @staticmethod
    def _invalid_mounts(where: str, mounts: list[Object], volumes: set[Any]) -> list[Object]:
        """As the API server's ValidateVolumeMounts: each mount names a volume of the pod, no two
        share a mountPath, and a subPath is relative without ``..``."""
        causes: list[Object] = []

        def cause(reason: str, index: int, leaf: str, message: str) -> None:
            field = f"{where}.volumeMounts[{index}].{leaf}"
            causes.append({"reason": reason, "message": message, "field": field})

        seen: set[str] = set()
        for index, mount in enumerate(mounts):
            name, mount_path, sub_path = (
                mount.get("name", ""),
                mount.get("mountPath", ""),
                mount.get("subPath"),
            )
            if name not in volumes:
                cause("FieldValueNotFound", index, "name", f"Not found: {json.dumps(name)}")
            if not mount_path:
                cause("FieldValueRequired", index, "mountPath", "Required value")
            elif mount_path in seen:
                cause(
                    "FieldValueInvalid",
                    index,
                    "mountPath",
                    f"Invalid value: {json.dumps(mount_path)}: must be unique",
                )
            seen.add(mount_path)
            if sub_path:
                if sub_path.startswith("/"):
                    cause(
                        "FieldValueInvalid",
                        index,
                        "subPath",
                        f"Invalid value: {json.dumps(sub_path)}: must be a relative path",
                    )
                elif ".." in sub_path.split("/"):
                    cause(
                        "FieldValueInvalid",
                        index,
                        "subPath",
                        f"Invalid value: {json.dumps(sub_path)}: must not contain '..'",
                    )
        return causes

    # --- Writing ---------------------------------------------------------------------------

    def _require_namespace(self, target: Target) -> None:
        if target.namespace is not None and target.namespace not in self._bucket("v1", "namespaces", None):
            raise ApiError(
                404,
                f'namespaces "{target.namespace}" not found',
                details={"name": target.namespace, "kind": "namespaces"},
            )

    def _stamp(
        self, target: Target, item: Object, previous: Object | None, manager: str | None, operation: str
    ) -> None:
        metadata = item["metadata"]
        if target.namespace is not None:
            metadata["namespace"] = target.namespace
        metadata["resourceVersion"] = self._next_version()
        if previous is None:
            metadata["uid"] = str(uuid.uuid4())
            metadata["creationTimestamp"] = now()
            metadata["generation"] = 1
            fields: list[Object] = []
        else:
            before = previous["metadata"]
            metadata["uid"] = before["uid"]
            metadata["creationTimestamp"] = before["creationTimestamp"]
            changed = item.get("spec") != previous.get("spec")
            metadata["generation"] = before.get("generation", 1) + (1 if changed else 0)
            fields = [
                entry
                for entry in before.get("managedFields", [])
                if (entry["manager"], entry["operation"]) != (manager, operation)
            ]
        if manager:
            fields.append(
                {
                    "manager": manager,
                    "operation": operation,
                    "apiVersion": target.group_version,
                    "time": now(),
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {},
                }
            )
        if fields:
            metadata["managedFields"] = fields
        self._defaults(target, item, previous)

    def _defaults(self, target: Target, item: Object, previous: Object | None) -> None:
        # What the API server fills in for its own kinds; a custom resource (a Knative Service, say)
        # is stored as it is sent.
        kind = item["kind"] if (target.group_version, target.plural) in KINDS else None
        if kind == "Secret" and "stringData" in item:
            data = item.setdefault("data", {})
            for key, value in item.pop("stringData").items():
                data[key] = base64.b64encode(str(value).encode()).decode()
        if kind == "Namespace":
            item["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = item["metadata"][
                "name"
            ]
            item["status"] = {"phase": "Active"}
        if kind == "Service":
            spec = item.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            old_ip = (previous or {}).get("spec", {}).get("clusterIP")
            spec["clusterIP"] = old_ip or f"10.96.{self._version // 250 % 250}.{self._version % 250 + 1}"
            spec["clusterIPs"] = [spec["clusterIP"]]
            for port in spec.get("ports", []):
                port.setdefault("protocol", "TCP")
        if kind == "PersistentVolumeClaim":
            item["status"] = {"phase": "Bound"}
        if kind == "Deployment":
            spec = item.setdefault("spec", {})
            spec.setdefault("replicas", 1)
            item.setdefault("status", (previous or {}).get("status", {}))

    def _create(
        self,
        target: Target,
        body: Any,
        *,
        dry_run: bool,
        manager: str | None = None,
        operation: str = "Update",
    ) -> Object:
        kind = self._kind(target, body if isinstance(body, dict) else None)
        item = self._check(target, copy.deepcopy(body), kind)
        self._require_namespace(target)
        name = item["metadata"]["name"]
        bucket = self._bucket(target.group_version, target.plural, target.namespace)
        if name in bucket:
            raise ApiError(
                409,
                f'{target.resource_text()} "{name}" already exists',
                reason="AlreadyExists",
                details={"name": name, "group": target.group, "kind": target.plural},
            )
        self._stamp(target, item, None, manager, operation)
        if dry_run:
            return item
        bucket[name] = item
        self._changed(target, item, None)
        return copy.deepcopy(item)

    def _store_update(
        self,
        target: Target,
        item: Object,
        previous: Object,
        manager: str | None,
        operation: str,
        *,
        dry_run: bool,
    ) -> Object:
        # What the server owns stays as it was.
        if "status" in previous and item["kind"] not in ("Namespace", "PersistentVolumeClaim"):
            item["status"] = copy.deepcopy(previous["status"])
        self._stamp(target, item, previous, manager, operation)
        if dry_run:
            return item
        self._bucket(target.group_version, target.plural, target.namespace)[item["metadata"]["name"]] = item
        self._changed(target, item, previous)
        return copy.deepcopy(item)

    def _replace(self, target: Target, body: Any, *, dry_run: bool) -> Object:
        previous = self._existing(target)
        item = self._check(target, copy.deepcopy(body), previous["kind"])
        if item["metadata"].get("name") != target.name:
            raise ApiError(400, "the name of the object does not match the name on the URL")
        sent = item["metadata"].get("resourceVersion")
        if sent and sent != previous["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                f'Operation cannot be fulfilled on {target.resource_text()} "{target.name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
                reason="Conflict",
                details={"name": target.name, "group": target.group, "kind": target.plural},
            )
        return self._store_update(target, item, previous, None, "Update", dry_run=dry_run)

    def _patch(
        self, target: Target, content_type: str, body: Any, manager: str | None, *, dry_run: bool
    ) -> tuple[int, Object]:
        if content_type == "application/apply-patch+yaml":
            if not manager:
                raise ApiError(
                    400, "PATCH /apply requires fieldManager: fieldManager is required for apply requests"
                )
            return self._apply(target, body, manager, dry_run=dry_run)
        if content_type not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            raise ApiError(
                415,
                f"the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (not {content_type})",
            )
        previous = self._existing(target)
        item = merge_patch(previous, body)
        item = self._check(target, item, previous["kind"])
        return 200, self._store_update(target, item, previous, manager, "Update", dry_run=dry_run)

    def _apply(self, target: Target, body: Any, manager: str, *, dry_run: bool) -> tuple[int, Object]:
        if not isinstance(body, dict):
            raise ApiError(400, "the body of an apply request must be an object")
        name = body.get("metadata", {}).get("name")
        if name != target.name:
            raise ApiError(400, "the name of the object does not match the name on the URL")
        previous = self._bucket(target.group_version, target.plural, target.namespace).get(target.name or "")
        if previous is None:
            return 201, self._create(target, body, dry_run=dry_run, manager=manager, operation="Apply")
        item = self._check(target, copy.deepcopy(body), previous["kind"])
        if target.plural == "deployments" and "replicas" not in item.get("spec", {}):
            item.setdefault("spec", {})["replicas"] = previous["spec"].get("replicas", 1)
        return 200, self._store_update(target, item, previous, manager, "Apply", dry_run=dry_run)

    def _delete(self, target: Target, *, dry_run: bool) -> Object:
        found = self._existing(target)
        if not dry_run:
            self._remove(target.group_version, target.plural, target.namespace, target.name or "")
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {
                "name": target.name,
                "group": target.group,
                "kind": target.plural,
                "uid": found["metadata"]["uid"],
            },
        }

    def _delete_collection(self, target: Target, selector: str) -> Object:
        listed = self._list(target, selector)
        for item in listed["items"]:
            self._remove(
                target.group_version,
                target.plural,
                item["metadata"].get("namespace"),
                item["metadata"]["name"],
            )
        return listed

    def _remove(self, group_version: str, plural: str, namespace: str | None, name: str) -> None:
        if plural == "pods" and namespace is not None:
            self._remove_pod(namespace, name, graceful=self.graceful_pod_deletion)
            return
        item = self._bucket(group_version, plural, namespace).pop(name, None)
        if item is None:
            return
        if plural == "namespaces":
            # Everything in it goes with it.
            for (version, stored_plural, stored_namespace), bucket in list(self._store.items()):
                if stored_namespace == name:
                    for member in list(bucket):
                        self._remove(version, stored_plural, stored_namespace, member)
        if plural == "deployments" and namespace is not None:
            for pod in self._pods_of(namespace, item):
                self._remove_pod(namespace, pod["metadata"]["name"], graceful=self.graceful_pod_deletion)

    # --- The cluster -----------------------------------------------------------------------

    def _changed(self, target: Target, item: Object, previous: Object | None) -> None:
        if (target.group_version, target.plural) == (
            "apps/v1",
            "deployments",
        ) and target.namespace is not None:
            self._sync_deployment(target.namespace, item)

    def _scale(self, method: str, target: Target, content_type: str, body: Any) -> Object:
        deployment_target = Target(target.group_version, target.plural, target.namespace, target.name, None)
        deployment = self._existing(deployment_target)
        if method in ("PATCH", "PUT"):
            if method == "PATCH" and content_type not in (
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
            ):
                raise ApiError(415, f"the body of the request was in an unknown format ({content_type})")
            scale = body if method == "PUT" else merge_patch(self._scale_of(deployment), body)
            replicas = (scale or {}).get("spec", {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise ApiError(
                    422,
                    f'Scale.autoscaling "{target.name}" is invalid: spec.replicas: Invalid value: {json.dumps(replicas)}',
                )
            if replicas != deployment["spec"].get("replicas"):
                updated = copy.deepcopy(deployment)
                updated["spec"]["replicas"] = replicas
                deployment = self._store_update(
                    deployment_target, updated, deployment, None, "Update", dry_run=False
                )
        elif method != "GET":
            raise ApiError(405, f"the server does not allow this method on the requested resource ({method})")
        return self._scale_of(deployment)

    @staticmethod
    def _scale_of(deployment: Object) -> Object:
        metadata = deployment["metadata"]
        selector = deployment["spec"].get("selector", {}).get("matchLabels", {})
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                key: metadata[key]
                for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            },
            "spec": {"replicas": deployment["spec"].get("replicas", 1)},
            "status": {
                "replicas": deployment.get("status", {}).get("replicas", 0),
                "selector": ",".join(f"{key}={value}" for key, value in sorted(selector.items())),
            },
        }

    def _pods_of(self, namespace: str, deployment: Object) -> list[Object]:
        uid = deployment["metadata"]["uid"]
        return [
            pod
            for pod in self._bucket("v1", "pods", namespace).values()
            if any(owner.get("uid") == uid for owner in pod["metadata"].get("ownerReferences", []))
        ]

    def _sync_deployment(self, namespace: str, deployment: Object) -> None:
        """What the Deployment and ReplicaSet controllers do: as many pods of the current template as
        wanted (a changed template replaces them all, as the Recreate strategy does)."""
        template = deployment["spec"].get("template", {})
        template_hash = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
        pods = [
            pod
            for pod in self._pods_of(namespace, deployment)
            if not pod["metadata"].get("deletionTimestamp")
        ]
        for pod in pods:
            if pod["metadata"]["labels"].get("pod-template-hash") != template_hash:
                self._remove_pod(namespace, pod["metadata"]["name"], graceful=self.graceful_pod_deletion)
        pods = [
            pod
            for pod in self._pods_of(namespace, deployment)
            if not pod["metadata"].get("deletionTimestamp")
        ]
        wanted = deployment["spec"].get("replicas", 1)
        for pod in pods[wanted:]:
            self._remove_pod(namespace, pod["metadata"]["name"], graceful=self.graceful_pod_deletion)
        conditions = [
            c for c in deployment.get("status", {}).get("conditions", []) if c["type"] != "ReplicaFailure"
        ]
        refusal = self.refuse_pods.get(namespace)
        for _ in range(wanted - len(pods)):
            if refusal is not None:
                conditions.append(
                    {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": refusal}
                )
                break
            self._create_pod(namespace, deployment, template, template_hash)
        deployment["status"] = self._deployment_status(namespace, deployment, conditions)

    def _deployment_status(self, namespace: str, deployment: Object, conditions: list[Object]) -> Object:
        pods = [
            pod
            for pod in self._pods_of(namespace, deployment)
            if not pod["metadata"].get("deletionTimestamp")
        ]
        ready = sum(
            1
            for pod in pods
            if any(
                c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])
            )
        )
        status: Object = {
            "observedGeneration": deployment["metadata"].get("generation", 1),
            "replicas": len(pods),
            "updatedReplicas": len(pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
        }
        if conditions:
            status["conditions"] = conditions
        return status

    def _create_pod(self, namespace: str, deployment: Object, template: Object, template_hash: str) -> None:
        name = f"{deployment['metadata']['name']}-{template_hash}-{secrets.token_hex(3)[:5]}"
        spec = copy.deepcopy(template.get("spec", {}))
        spec["nodeName"] = "stand-in-node"
        waiting = {"waiting": {"reason": "PodInitializing"}}
        pod: Object = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {
                    **template.get("metadata", {}).get("labels", {}),
                    "pod-template-hash": template_hash,
                },
                "uid": str(uuid.uuid4()),
                "creationTimestamp": now(),
                "resourceVersion": self._next_version(),
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": f"{deployment['metadata']['name']}-{template_hash}",
                        "uid": deployment["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": spec,
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now()}],
                "initContainerStatuses": [
                    {
                        "name": c["name"],
                        "image": c.get("image", ""),
                        "ready": False,
                        "started": False,
                        "restartCount": 0,
                        "state": copy.deepcopy(waiting),
                    }
                    for c in spec.get("initContainers", [])
                ],
                "containerStatuses": [
                    {
                        "name": c["name"],
                        "image": c.get("image", ""),
                        "ready": False,
                        "started": False,
                        "restartCount": 0,
                        "state": copy.deepcopy(waiting),
                    }
                    for c in spec.get("containers", [])
                ],
            },
        }
        self._bucket("v1", "pods", namespace)[name] = pod
        if self.progress_seconds is not None:
            self._scheduled(pod)
        self.pod_events.append(("add", copy.deepcopy(pod)))
        if self.auto_ready is not None:
            timer = threading.Timer(self.auto_ready, self.mark_ready, args=(namespace, name))
            timer.daemon = True
            self._timers.append(timer)
            timer.start()

    # --- A kubelet taking a pod on ----------------------------------------------------------

    def record_event(
        self, pod: Object, reason: str, message: str, *, container: str | None = None, warning: bool = False
    ) -> Object:
        """A core v1 Event about the pod (or one of its containers), as the scheduler or kubelet
        records it; named, as they are, by the pod and the time in nanoseconds, so names sort by time."""
        metadata = pod["metadata"]
        kinds = ("initContainers", "containers")
        field_path = next(
            (
                f"spec.{kind}{{{container}}}"
                for kind in kinds
                if any(item["name"] == container for item in pod["spec"].get(kind, []))
            ),
            "",
        )
        at = now()
        event: Object = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{metadata['name']}.{time.time_ns():x}",
                "namespace": metadata["namespace"],
                "uid": str(uuid.uuid4()),
                "resourceVersion": self._next_version(),
                "creationTimestamp": at,
            },
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "namespace": metadata["namespace"],
                "name": metadata["name"],
                "uid": metadata["uid"],
                "resourceVersion": metadata["resourceVersion"],
                **({"fieldPath": field_path} if field_path else {}),
            },
            "reason": reason,
            "message": message,
            "source": {"component": "default-scheduler"}
            if reason == "Scheduled"
            else {"component": "kubelet", "host": "stand-in-node"},
            "firstTimestamp": at,
            "lastTimestamp": at,
            "count": 1,
            "type": "Warning" if warning else "Normal",
            "reportingComponent": "default-scheduler" if reason == "Scheduled" else "kubelet",
            "reportingInstance": "" if reason == "Scheduled" else "stand-in-node",
        }
        with self._lock:
            self._bucket("v1", "events", metadata["namespace"])[event["metadata"]["name"]] = event
        return event

    @staticmethod
    def _containers(pod: Object) -> list[tuple[Object, Object]]:
        """Each container of the pod (init containers first) with its status."""
        pairs = []
        for spec_key, status_key in (
            ("initContainers", "initContainerStatuses"),
            ("containers", "containerStatuses"),
        ):
            statuses = {item["name"]: item for item in pod["status"].get(status_key, [])}
            pairs += [(item, statuses[item["name"]]) for item in pod["spec"].get(spec_key, [])]
        return pairs

    def _scheduled(self, pod: Object) -> None:
        """The scheduler placed the pod; the kubelet creates its containers (the sidecars first)."""
        metadata = pod["metadata"]
        has_sidecars = bool(pod["spec"].get("initContainers"))
        pod["status"]["conditions"].append(
            {"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized"}
        )
        for spec, status in self._containers(pod):
            waiting = (
                "PodInitializing"
                if has_sidecars and spec in pod["spec"].get("containers", [])
                else "ContainerCreating"
            )
            status["state"] = {"waiting": {"reason": waiting}}
        self.record_event(
            pod,
            "Scheduled",
            f"Successfully assigned {metadata['namespace']}/{metadata['name']} to stand-in-node",
        )
        self._next_step(metadata["namespace"], metadata["name"], self._pulling)

    def _next_step(self, namespace: str, name: str, step: Callable[[Object], Any]) -> None:
        def take() -> None:
            with self._lock:
                pod = self._bucket("v1", "pods", namespace).get(name)
                if pod is None or pod["metadata"].get("deletionTimestamp"):
                    return
                following = step(pod)
                self._touched_pod(pod)
            if callable(following):
                self._next_step(namespace, name, following)

        timer = threading.Timer(self.progress_seconds or 0.0, take)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _pulling(self, pod: Object) -> Callable[[Object], Any]:
        for spec, status in self._containers(pod):
            image = spec.get("image", "")
            self.record_event(pod, "Pulling", f'Pulling image "{image}"', container=spec["name"])
            refusal = self.unpullable.get(image)
            if refusal is not None:
                message = f'Failed to pull image "{image}": {refusal}'
                self.record_event(pod, "Failed", message, container=spec["name"], warning=True)
                self.record_event(pod, "Failed", "Error: ErrImagePull", container=spec["name"], warning=True)
                status["state"] = {"waiting": {"reason": "ErrImagePull", "message": message}}
                return self._backing_off
        return self._started

    def _backing_off(self, pod: Object) -> None:
        for spec, status in self._containers(pod):
            if (status["state"].get("waiting") or {}).get("reason") == "ErrImagePull":
                message = f'Back-off pulling image "{spec.get("image", "")}"'
                self.record_event(pod, "BackOff", message, container=spec["name"], warning=True)
                self.record_event(
                    pod, "Failed", "Error: ImagePullBackOff", container=spec["name"], warning=True
                )
                status["state"] = {"waiting": {"reason": "ImagePullBackOff", "message": message}}

    def _started(self, pod: Object) -> Callable[[Object], Any]:
        started = now()
        for spec, status in self._containers(pod):
            image = spec.get("image", "")
            self.record_event(
                pod,
                "Pulled",
                f'Successfully pulled image "{image}" in 1.204s (1.204s including waiting). Image size: 3791268 bytes.',
                container=spec["name"],
            )
            self.record_event(pod, "Created", f"Created container: {spec['name']}", container=spec["name"])
            self.record_event(pod, "Started", f"Started container {spec['name']}", container=spec["name"])
            # A sidecar (an init container that keeps running) is ready once started: it has no
            # readiness probe; the app's containers wait for theirs.
            sidecar = spec in pod["spec"].get("initContainers", [])
            status.update(started=True, ready=sidecar, state={"running": {"startedAt": started}})
        status = pod["status"]
        status["phase"] = "Running"
        status["startTime"] = status.get("startTime") or started
        status["conditions"] = [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
            {"type": "Initialized", "status": "True", "lastTransitionTime": started},
            {"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady"},
            {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
        ]
        return self._ready

    def _ready(self, pod: Object) -> None:
        self.mark_ready(pod["metadata"]["namespace"], pod["metadata"]["name"])

    def _remove_pod(self, namespace: str, name: str, *, graceful: bool) -> None:
        bucket = self._bucket("v1", "pods", namespace)
        pod = bucket.get(name)
        if pod is None:
            return
        if graceful and not pod["metadata"].get("deletionTimestamp"):
            pod["metadata"]["deletionTimestamp"] = now()
            pod["metadata"]["resourceVersion"] = self._next_version()
            self.pod_events.append(("update", copy.deepcopy(pod)))
            return
        del bucket[name]
        pod["metadata"].setdefault("deletionTimestamp", now())
        self.pod_events.append(("delete", copy.deepcopy(pod)))
        self._refresh_owner(namespace, pod)

    def _touched_pod(self, pod: Object) -> None:
        pod["metadata"]["resourceVersion"] = self._next_version()
        self.pod_events.append(("update", copy.deepcopy(pod)))
        self._refresh_owner(pod["metadata"]["namespace"], pod)

    def _refresh_owner(self, namespace: str, pod: Object) -> None:
        owners = {owner.get("uid") for owner in pod["metadata"].get("ownerReferences", [])}
        for deployment in self._bucket("apps/v1", "deployments", namespace).values():
            if deployment["metadata"]["uid"] in owners:
                conditions = deployment.get("status", {}).get("conditions", [])
                deployment["status"] = self._deployment_status(namespace, deployment, conditions)

    def _log(self, target: Target, query: Any) -> str:
        pod = self._existing(Target("v1", "pods", target.namespace, target.name, None))
        containers = [c["name"] for c in pod["spec"].get("containers", [])]
        init_containers = [c["name"] for c in pod["spec"].get("initContainers", [])]
        container = query.get("container")
        if not container:
            if len(containers) != 1:
                raise ApiError(
                    400,
                    f"a container name must be specified for pod {target.name}, choose one of: [{' '.join(containers)}]"
                    f" or one of the init containers: [{' '.join(init_containers)}]",
                )
            container = containers[0]
        if container not in containers + init_containers:
            raise ApiError(400, f"container {container} is not valid for pod {target.name}")
        statuses = pod["status"].get("containerStatuses", []) + pod["status"].get("initContainerStatuses", [])
        state = next((s.get("state", {}) for s in statuses if s["name"] == container), {})
        waiting = state.get("waiting")
        if waiting and waiting.get("reason") in ("PodInitializing", "ContainerCreating"):
            raise ApiError(
                400,
                f'container "{container}" in pod "{target.name}" is waiting to start: {waiting["reason"]}',
            )
        text = self._logs.get((target.namespace or "", target.name or "", container), "")
        tail = query.get("tailLines")
        if tail is not None:
            count = int(tail)
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-count:]) if count > 0 else ""
        limit = query.get("limitBytes")
        return text[: int(limit)] if limit is not None else text
