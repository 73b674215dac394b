"""Runs stacks on Kubernetes: a Deployment per service beside a shovel sidecar, in the user's namespace."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.adapters.runtime import (
    ConsoleSession,
    Reporter,
    ServicePlan,
    StackPlan,
    StatusReport,
    console_command,
    console_end_command,
)
from shared.adapters.runtime import kube_objects as objects
from shared.adapters.runtime.kube_api import (
    CLAIMS,
    CONFIG_MAPS,
    DEPLOYMENTS,
    INGRESSES,
    LIMIT_RANGES,
    NAMESPACES,
    NETWORK_POLICIES,
    PODS,
    QUOTAS,
    ROLE_BINDINGS,
    ROLES,
    SECRETS,
    SERVICE_ACCOUNTS,
    SERVICES,
    KubeApi,
    Manifest,
    Resource,
)
from shared.adapters.runtime.kube_objects import Observation, Placement, ShovelSidecar
from shared.core.errors import InvalidInput, NotFound, WorkbenchError
from shared.core.settings import RuntimeSettings

log = logging.getLogger(__name__)

REMOVE_WAIT_SECONDS = 30.0
POLL_SECONDS = 0.5
# What belongs to one stack, dependants' objects before what they use.
STACK_RESOURCES = (DEPLOYMENTS, INGRESSES, SERVICES, CONFIG_MAPS)
# What belongs to one user in a shared namespace, besides the stacks.
ACCOUNT_RESOURCES = (ROLE_BINDINGS, ROLES, SECRETS, SERVICE_ACCOUNTS, NETWORK_POLICIES, CLAIMS)


@dataclass(frozen=True)
class ShovelSupply:
    """The shovel sidecar of every stack, and the credentials of each user's shovels."""

    sidecar: ShovelSidecar
    secrets_for: Callable[[str], Mapping[str, str]]
    """The user's AMQP URL and signing key, by the keys of ``SHOVEL_SECRET_KEYS`` (others are left out)."""


class KubernetesRuntime:
    """Stacks as Deployments (0 replicas until wanted), ConfigMaps, Services and Ingresses.

    Nothing waits in a thread: ``start`` deploys everything and scales up the services that require
    none; whoever looks next (``observe``, prompted by a pod event or a stack read) scales up those
    whose required services have become ready. So a platform of short-lived functions drives a start
    to its end, and the cluster itself holds the state."""

    def __init__(
        self,
        settings: RuntimeSettings,
        *,
        api: KubeApi,
        report: Reporter,
        shovel: ShovelSupply | None = None,
        remove_wait: float = REMOVE_WAIT_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._kube = settings.kubernetes
        self._api = api
        self._report_to = report
        self._shovel = shovel
        self._remove_wait = remove_wait
        self._clock = clock
        self._lock = threading.Lock()
        self._accounts: dict[str, str] = {}
        """Users whose account objects this process has set up, with the limits they were set up for."""

    # --- The port --------------------------------------------------------------------------

    def start(self, plan: StackPlan) -> None:
        placement = self._placement(plan.owner)
        manifests = self._stack_manifests(placement, plan)
        self._ensure_account(placement, plan)
        try:
            self._apply_stack(placement, plan, manifests)
        except NotFound:
            # The namespace went away behind this process's back: set the account up again, once.
            with self._lock:
                self._accounts.pop(plan.owner, None)
            self._ensure_account(placement, plan)
            self._apply_stack(placement, plan, manifests)
        self._deliver_all(self._observe(placement, plan))

    def stop(self, plan: StackPlan) -> None:
        placement = self._placement(plan.owner)
        # Dependants first, so nothing is left talking to a service that has gone.
        for service in reversed(plan.services):
            self._api.patch(
                DEPLOYMENTS,
                placement.namespace,
                placement.name(service.ssid),
                {"metadata": {"annotations": {objects.REPLICAS_ANNOTATION: "0"}}, "spec": {"replicas": 0}},
            )
        try:
            observed = self._observe(placement, plan)
        except WorkbenchError as error:
            # The stop is under way; the pods' deletion events or the next read report its end.
            log.warning("stopping stack %s of %s: %s", plan.sid, plan.owner, error.message)
            return
        self._deliver_all(observed)

    def remove(self, plan: StackPlan) -> None:
        """Delete everything of the stack, then wait (a bounded time) for its pods to end."""
        placement = self._placement(plan.owner)
        labels = placement.stack_labels(plan.sid)
        self._delete_labelled(placement, STACK_RESOURCES, labels)
        deadline = time.monotonic() + self._remove_wait
        while self._api.select(PODS, placement.namespace, labels):
            if time.monotonic() >= deadline:
                log.warning("pods of stack %s of %s are still ending", plan.sid, plan.owner)
                return
            time.sleep(POLL_SECONDS)

    def observe(self, plan: StackPlan) -> list[StatusReport]:
        return self._observe(self._placement(plan.owner), plan)

    def logs(self, owner: str, ssid: str, lines: int | None) -> str:
        placement = self._placement(owner)
        pods = self._api.select(PODS, placement.namespace, placement.selector(ssid))
        if not pods:
            return ""
        pod = _newest(pods)
        containers = pod.get("spec", {}).get("containers") or [{}]
        try:
            return self._api.pod_log(
                placement.namespace, pod["metadata"]["name"], str(containers[0].get("name", "")), lines
            )
        except (NotFound, InvalidInput):
            return ""  # gone meanwhile, or its container has not started: no log yet

    consoles = True

    def console(self, owner: str, ssid: str, columns: int, rows: int) -> ConsoleSession:
        placement = self._placement(owner)
        pods = [
            pod
            for pod in self._api.select(PODS, placement.namespace, placement.selector(ssid))
            if pod.get("status", {}).get("phase") == "Running"
            and not pod.get("metadata", {}).get("deletionTimestamp")
        ]
        if not pods:
            raise NotFound("running pod of stack service", ssid)
        pod = _newest(pods)
        # The app's container comes first; the shovel is a sidecar among the init containers.
        container = str((pod.get("spec", {}).get("containers") or [{}])[0].get("name", ""))
        return PodConsole(self._api, placement.namespace, pod["metadata"]["name"], container, columns, rows)

    def remove_account(self, owner: str) -> None:
        placement = self._placement(owner)
        with self._lock:
            self._accounts.pop(owner, None)
        if placement.per_user:
            self._api.delete(NAMESPACES, None, placement.namespace)  # and everything in it
            return
        labels = placement.account_labels()
        self._delete_labelled(placement, STACK_RESOURCES + ACCOUNT_RESOURCES, labels)

    def close(self) -> None:
        self._api.close()

    # --- The account -----------------------------------------------------------------------

    def _ensure_account(self, placement: Placement, plan: StackPlan) -> None:
        """The user's namespace, home, quota, limits, isolation and shovel identity; set up once per
        process and limits (every step is idempotent, so two processes doing it at once is harmless)."""
        fingerprint = plan.limits.model_dump_json()
        with self._lock:
            if self._accounts.get(plan.owner) == fingerprint:
                return
        namespace = placement.namespace
        if placement.per_user:
            self._api.create(NAMESPACES, None, objects.namespace(placement))
        # A home is made once and never changed: its class is fixed, and it holds the user's files.
        self._api.create(CLAIMS, namespace, objects.home_claim(placement, self._kube, plan.limits))
        if placement.per_user:
            # A namespace-wide quota is a per-user quota only in a namespace of the user's own.
            quota = objects.resource_quota(placement, plan.limits)
            if quota is not None:
                self._api.apply(QUOTAS, namespace, quota)
            limit_range = objects.limit_range(placement, plan.limits)
            if limit_range is not None:
                self._api.apply(LIMIT_RANGES, namespace, limit_range)
        self._api.apply(NETWORK_POLICIES, namespace, objects.network_policy(placement, self._kube))
        self._api.apply(SERVICE_ACCOUNTS, namespace, objects.shovel_account(placement))
        self._api.apply(ROLES, namespace, objects.shovel_role(placement))
        self._api.apply(ROLE_BINDINGS, namespace, objects.shovel_binding(placement))
        if self._shovel is not None:
            values = self._shovel.secrets_for(plan.owner)
            secret = {key: values.get(key, "") for key in objects.SHOVEL_SECRET_KEYS.values()}
            self._api.apply(SECRETS, namespace, objects.shovel_secret(placement, secret))
        with self._lock:
            self._accounts[plan.owner] = fingerprint

    # --- A stack ---------------------------------------------------------------------------

    def _stack_manifests(self, placement: Placement, plan: StackPlan) -> list[tuple[Resource, Manifest]]:
        """Every object of the stack but its Deployments, built (and so checked) before anything is sent."""
        domain = self._settings.domain
        built: list[tuple[Resource, Manifest]] = []
        for service in plan.services:
            self._check_service(placement, service)
            built.append((CONFIG_MAPS, objects.config_map(placement, plan, service)))
            front = objects.service(placement, plan, service)
            if front is not None:
                built.append((SERVICES, front))
            entry = objects.ingress(placement, plan, service, self._kube, domain)
            if entry is not None:
                built.append((INGRESSES, entry))
            # Checked now; built again once the current replicas are known.
            self._deployment(placement, plan, service, replicas=0)
        return built

    def _deployment(
        self, placement: Placement, plan: StackPlan, service: ServicePlan, *, replicas: int
    ) -> Manifest:
        # One shovel per stack, beside its main service: the last in dependency order.
        sidecar = self._shovel.sidecar if self._shovel is not None and service is plan.services[-1] else None
        return objects.deployment(
            placement,
            plan,
            service,
            replicas=replicas,
            ready_timeout=self._ready_timeout(service),
            sidecar=sidecar,
        )

    def _apply_stack(
        self, placement: Placement, plan: StackPlan, manifests: list[tuple[Resource, Manifest]]
    ) -> None:
        namespace = placement.namespace
        labels = placement.stack_labels(plan.sid)
        current = {
            item["metadata"]["name"]: item for item in self._api.select(DEPLOYMENTS, namespace, labels)
        }
        wanted: dict[Resource, set[str]] = {resource: set() for resource in STACK_RESOURCES}
        # What the pods read comes first, so no pod starts without its configuration.
        for resource, manifest in manifests:
            self._api.apply(resource, namespace, manifest)
            wanted[resource].add(manifest["metadata"]["name"])
        for service in plan.services:
            name = placement.name(service.ssid)
            # A running service keeps running (a start after a platform restart changes nothing);
            # a new one is created at 0 and scaled up once what it requires is ready.
            replicas = objects.replicas_of(current[name]) if name in current else 0
            self._api.apply(
                DEPLOYMENTS, namespace, self._deployment(placement, plan, service, replicas=replicas)
            )
            wanted[DEPLOYMENTS].add(name)
        # Objects of services the stack no longer has, or that a changed spec no longer needs.
        for resource in STACK_RESOURCES:
            found = (
                current.values() if resource is DEPLOYMENTS else self._api.select(resource, namespace, labels)
            )
            for item in found:
                name = item["metadata"]["name"]
                if name not in wanted[resource]:
                    self._api.delete(resource, namespace, name)

    def _observe(self, placement: Placement, plan: StackPlan) -> list[StatusReport]:
        """Each service's state as the cluster shows it, after scaling up the wanted services whose
        required services are ready."""
        namespace = placement.namespace
        labels = placement.stack_labels(plan.sid)
        deployments = {
            item["metadata"]["name"]: item for item in self._api.select(DEPLOYMENTS, namespace, labels)
        }
        pods: dict[str, list[Manifest]] = {}
        for pod in self._api.select(PODS, namespace, labels):
            ssid = pod.get("metadata", {}).get("labels", {}).get(objects.SERVICE_LABEL, "")
            pods.setdefault(ssid, []).append(pod)
        now = self._clock()
        observed: dict[str, Observation | None] = {
            service.key: self._with_events(
                namespace,
                objects.observe_service(
                    deployments.get(placement.name(service.ssid)),
                    pods.get(service.ssid, []),
                    now=now,
                    ready_timeout=self._ready_timeout(service),
                ),
                objects.current_pod(pods.get(service.ssid, [])),
                now,
            )
            for service in plan.services
        }
        reports = []
        for service in plan.services:
            name = placement.name(service.ssid)
            deployment = deployments.get(name)
            observation = observed[service.key]
            if (
                deployment is not None
                and objects.is_wanted(deployment)
                and objects.replicas_of(deployment) == 0
                and not pods.get(service.ssid)
            ):
                observation = self._move_on(namespace, name, service, observed)
                observed[service.key] = observation
            if observation is None:
                continue
            endpoints = (
                objects.endpoints(placement, service, self._kube, self._settings.domain)
                if observation.status == "ready"
                else None
            )
            reports.append(
                StatusReport(
                    plan.owner,
                    plan.sid,
                    service.ssid,
                    observation.status,
                    observation.message,
                    endpoints or None,
                    observation.steps,
                )
            )
        return reports

    def _with_events(
        self, namespace: str, observation: Observation | None, pod: Mapping[str, Any] | None, now: float
    ) -> Observation | None:
        """The observation with the steps its pod's Events tell (image pulls, containers created and
        started) before its own."""
        if observation is None or pod is None or not objects.tells_events(observation, pod, now=now):
            return observation
        name = str(pod.get("metadata", {}).get("name", ""))
        events = self._api.events_of(namespace, "Pod", name, limit=objects.EVENT_LIMIT)
        return observation.after(objects.event_steps(pod, events))

    def _move_on(
        self, namespace: str, name: str, service: ServicePlan, observed: Mapping[str, Observation | None]
    ) -> Observation | None:
        """Scale up a wanted service once every service it requires is ready; None while it waits."""
        states = {key: observed.get(key) for key in service.requires}
        failed = [
            key for key, state in states.items() if state is not None and state.status in ("error", "timeout")
        ]
        if failed:
            return Observation("error", f"Not started: required service {failed[0]!r} failed")
        if not all(state is not None and state.status == "ready" for state in states.values()):
            return None
        self._api.patch(DEPLOYMENTS, namespace, name, {"spec": {"replicas": 1}}, subresource="scale")
        if service.requires:
            return Observation("starting", "Starting: the services it requires are ready")
        return Observation("starting", "Starting")

    # --- Helpers ---------------------------------------------------------------------------

    def _placement(self, owner: str) -> Placement:
        return Placement.of(self._kube, owner)

    @staticmethod
    def _check_service(placement: Placement, service: ServicePlan) -> None:
        placement.name(service.ssid)
        objects.dns_label(service.key, "key")

    def _ready_timeout(self, service: ServicePlan) -> int:
        timeout = service.spec.readinessProbe.timeout
        return timeout if timeout > 0 else self._settings.ready_timeout

    def _delete_labelled(
        self, placement: Placement, resources: tuple[Resource, ...], labels: Mapping[str, str]
    ) -> None:
        for resource in resources:
            for item in self._api.select(resource, placement.namespace, labels):
                self._api.delete(resource, placement.namespace, item["metadata"]["name"])

    def _deliver_all(self, reports: list[StatusReport]) -> None:
        for status_report in reports:
            try:
                self._report_to(status_report)
            except Exception:
                # A failing reporter must not undo a start or stop the cluster has taken on.
                log.exception("reporting %s of %s failed", status_report.status, status_report.ssid)


class PodConsole:
    """A shell in a pod's container over the API's exec websocket: stdin on channel 0, the terminal's
    output on 1, its size as JSON on 4."""

    def __init__(
        self, api: KubeApi, namespace: str, pod: str, container: str, columns: int, rows: int
    ) -> None:
        self._api = api
        self._where = (namespace, pod, container)
        self._session = secrets.token_hex(12)
        self._closed = threading.Event()
        self._socket = api.exec(namespace, pod, container, console_command(self._session), tty=True)
        self.resize(columns, rows)

    def read(self) -> bytes:
        while not self._closed.is_set():
            try:
                if not self._socket.is_open():
                    return b""
                self._socket.update(timeout=CONSOLE_POLL_SECONDS)
                # All output in arrival order, taken whole, so the client keeps no copy of it.
                output = self._socket.read_all()
            except Exception as error:
                if not self._closed.is_set():
                    log.debug("console of %s ended: %s", self._where[1], error)
                return b""
            if output:
                return bytes(output)
        return b""

    def write(self, data: bytes) -> None:
        self._send(STDIN_CHANNEL, data)

    def resize(self, columns: int, rows: int) -> None:
        self._send(RESIZE_CHANNEL, json.dumps({"Width": columns, "Height": rows}).encode())

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self._socket.close()
        except Exception as error:
            log.debug("closing the console of %s: %s", self._where[1], error)
        finally:
            # A close that raced the reader leaves the connection itself open.
            self._socket.sock.shutdown()
        try:
            ending = self._api.exec(*self._where, console_end_command(self._session), tty=False)
            try:
                ending.run_forever(timeout=CONSOLE_END_SECONDS)
            finally:
                ending.close()
        except WorkbenchError as error:
            if not isinstance(error, NotFound):  # the pod itself has gone: so have they
                log.warning("ending the console's processes in %s: %s", self._where[1], error.message)

    def _send(self, channel: int, data: bytes) -> None:
        if self._closed.is_set():
            return
        try:
            self._socket.write_channel(channel, data)
        except Exception as error:
            log.debug("console input to %s not sent: %s", self._where[1], error)


STDIN_CHANNEL = 0
RESIZE_CHANNEL = 4
CONSOLE_POLL_SECONDS = 1.0
CONSOLE_END_SECONDS = 30.0


def _newest(items: list[Manifest]) -> Manifest:
    def created(item: Manifest) -> Any:
        return item.get("metadata", {}).get("creationTimestamp", "")

    return max(items, key=created)
