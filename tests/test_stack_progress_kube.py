"""A start's progress on Kubernetes: what a pod's own status and its Events (image pulls, containers
created and started) tell, streamed as server-sent events, against the API stand-in through the real
client; the platform's right to read those Events."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.adapters.runtime import kube_objects as objects
from shared.adapters.runtime.kube_api import EVENTS, KubeApi
from shared.bootstrap import Platform
from shared.core.errors import InvalidInput
from tests.conftest import Api
from tests.kube_server import KubeServer
from tests.test_runtime_kubernetes import DOMAIN, NAMESPACE, one_pod
from tests.test_stack_progress import parse, stream
from tests.test_stacks import add_spec, create, spec, start
from tests.users import Users

REFUSAL = 'rpc error: code = NotFound desc = failed to pull and unpack image "docker.io/example/pages:2.0": not found'


@pytest.fixture
def environment(kube: KubeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The platform on the stand-in, whose pods go through a kubelet's steps a second apart."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kube.write_kubeconfig(tmp_path / "kubeconfig")))
    kube.progress_seconds = 1.0
    return {"WORKBENCH_RUNTIME": "kubernetes", "WORKBENCH_DOMAIN": DOMAIN}


@pytest.fixture
def alice(api: Api, platform: Platform) -> str:
    token = Users(api, platform).make("alice")
    add_spec(
        api, token, spec("pages", image={"registry": "docker.io", "name": "example/pages", "tags": ["2.0"]})
    )
    return token


def told(events: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["message"] for e in events if e["event"] == "service" and e["data"]["message"]]


def in_order(messages: list[str], *expected: str) -> list[int]:
    """Where each expected message (or the start of one, ending in '…') first comes."""
    places = []
    for wanted in expected:
        prefix = wanted.removesuffix("…")
        found = [
            i
            for i, message in enumerate(messages)
            if message == wanted or (wanted != prefix and message.startswith(prefix))
        ]
        assert found, (wanted, messages)
        places.append(found[0])
    return places


def test_a_start_streams_the_image_pull_the_containers_creation_and_readiness(
    api: Api, platform: Platform, alice: str, kube: KubeServer
) -> None:
    sid = create(api, alice, {"key": "pages"})["id"]
    start(api, alice, sid)
    events = parse(stream(api, alice, sid).get_data(as_text=True))  # ends once the stack started

    pod = one_pod(kube, f"{sid}-pages")
    name = pod["metadata"]["name"]
    [app] = pod["spec"]["containers"]
    image = app["image"]
    assert image == "docker.io/example/pages:2.0"
    messages = told(events)
    places = in_order(
        messages,
        f"Scheduled: Successfully assigned {NAMESPACE}/{name} to stand-in-node",
        f"Pulling image {image}",
        f'Pulled image {image} (Successfully pulled image "{image}" in 1.204s…',
        f"Container {app['name']} created",
        f"Container {app['name']} started",
        f"Pod {name} is ready",
    )
    assert places == sorted(places), messages
    assert len(messages) == len(set(messages)), messages  # each step once, however often it was read
    ready = [e["data"] for e in events if e["event"] == "service" and e["data"]["status"] == "ready"]
    assert ready and ready[0]["message"] == f"Pod {name} is ready"
    assert events[-1]["event"] == "end" and events[-1]["data"] == {"id": sid, "status": "started"}

    # Only this pod's Events were asked for, and at most a bounded number of them.
    asked = [request for request in kube.requests if request.path.endswith("/events")]
    assert asked
    assert {(request.path, tuple(sorted(request.query.items()))) for request in asked} == {
        (
            f"/api/v1/namespaces/{NAMESPACE}/events",
            (
                ("fieldSelector", f"involvedObject.kind=Pod,involvedObject.name={name}"),
                ("limit", str(objects.EVENT_LIMIT)),
            ),
        )
    }


def test_an_image_that_cannot_be_pulled_streams_the_kubelets_refusal_and_fails_the_start(
    api: Api, platform: Platform, alice: str, kube: KubeServer
) -> None:
    kube.unpullable["docker.io/example/pages:2.0"] = REFUSAL
    sid = create(api, alice, {"key": "pages"})["id"]
    start(api, alice, sid)
    events = parse(stream(api, alice, sid).get_data(as_text=True))

    messages = told(events)
    image = "docker.io/example/pages:2.0"
    refused = f'Failed to pull image "{image}": {REFUSAL}'
    places = in_order(messages, f"Pulling image {image}", f"Container pages failed: {refused}")
    assert places == sorted(places), messages
    failed = [e["data"] for e in events if e["event"] == "service" and e["data"]["status"] == "error"]
    assert failed, messages
    assert failed[-1]["message"].startswith("Container pages: ErrImagePull") or failed[-1][
        "message"
    ].startswith("Container pages: ImagePullBackOff")
    assert REFUSAL in failed[-1]["message"] or f'Back-off pulling image "{image}"' in failed[-1]["message"]
    assert events[-1]["data"] == {"id": sid, "status": "error"}
    stored = api.call("GET", f"/api/stacks/{sid}", alice).get_json()
    assert stored["status"] == "error"


# --- What a pod's status and Events say, step by step ---------------------------------------------


def pod_of(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web-1", "uid": "u-1", "creationTimestamp": "2026-12-03T20:00:00Z"},
        "spec": {"containers": [{"name": "web", "image": "docker.io/example/web:1"}]},
        "status": status,
    }


CREATED = datetime(2026, 12, 3, 20, 0, 0, tzinfo=UTC).timestamp()


def observed(pod: dict[str, Any]) -> objects.Observation | None:
    deployment = {"spec": {"replicas": 1}, "metadata": {"annotations": {objects.REPLICAS_ANNOTATION: "1"}}}
    return objects.observe_service(deployment, [pod], now=CREATED + 5, ready_timeout=600)


def test_a_pods_status_tells_what_its_containers_wait_for_run_or_fail_on() -> None:
    creating = pod_of(
        phase="Pending",
        conditions=[{"type": "PodScheduled", "status": "True"}],
        containerStatuses=[
            {"name": "web", "ready": False, "state": {"waiting": {"reason": "ContainerCreating"}}}
        ],
    )
    assert observed(creating) == objects.Observation(
        "starting", "Creating container web", ("Creating container web",)
    )
    running = pod_of(
        phase="Running",
        conditions=[{"type": "Ready", "status": "False"}, {"type": "ContainersReady", "status": "False"}],
        containerStatuses=[{"name": "web", "ready": False, "state": {"running": {"startedAt": "x"}}}],
    )
    assert observed(running) == objects.Observation(
        "starting", "Container web is running, not yet ready", ("Container web is running, not yet ready",)
    )
    backing_off = pod_of(
        phase="Pending",
        containerStatuses=[
            {
                "name": "web",
                "ready": False,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x"'}},
            }
        ],
    )
    result = observed(backing_off)
    assert result is not None and result.status == "error"
    assert result.message == 'Container web: ImagePullBackOff: Back-off pulling image "x"'


def event(
    reason: str, message: str, *, at: str = "2026-12-03T20:00:01Z", uid: str = "u-1", version: int = 1
) -> dict[str, Any]:
    return {
        "metadata": {"name": f"web-1.{version:x}", "resourceVersion": str(version)},
        "involvedObject": {"kind": "Pod", "name": "web-1", "uid": uid, "fieldPath": "spec.containers{web}"},
        "reason": reason,
        "message": message,
        "firstTimestamp": at,
    }


def test_a_pods_events_become_steps_in_their_order_of_this_pod_only_as_one_line_of_bounded_text() -> None:
    pod = pod_of()
    events = [
        event("Started", "Started container web", version=5),
        event("Pulled", 'Container image "docker.io/example/web:1" already present on machine', version=3),
        event("Created", "Created container: web", version=4),
        event("Pulling", 'Pulling image "docker.io/example/web:1"', version=2),
        event("Pulling", "of the pod of that name before", uid="u-0", version=1),
        event("Killing", "Stopping container web", at="2026-12-03T19:59:00Z", version=6),
        event("Failed", "line one\nline two\x1b[31m <b>bold</b> " + "x" * 400, version=7),
    ]
    steps = objects.event_steps(pod, events)
    assert steps[:4] == (
        "Pulling image docker.io/example/web:1",
        'Pulled image docker.io/example/web:1 (Container image "docker.io/example/web:1" already present on machine)',
        "Container web created",
        "Container web started",
    )
    [failed] = steps[4:]
    assert failed.startswith("Container web failed: line one line two [31m <b>bold</b> xxx")
    assert "\n" not in failed and "\x1b" not in failed
    assert len(failed) <= len("Container web failed: ") + objects.EVENT_TEXT_LIMIT


def test_events_are_read_while_a_service_starts_or_failed_and_for_a_minute_after_it_became_ready() -> None:
    ready = pod_of(
        phase="Running",
        conditions=[{"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-03T20:00:05Z"}],
    )
    observation = observed(ready)
    assert observation is not None and observation.status == "ready"
    assert objects.tells_events(observation, ready, now=CREATED + 5 + objects.EVENTS_AFTER_READY_SECONDS)
    assert not objects.tells_events(observation, ready, now=CREATED + 6 + objects.EVENTS_AFTER_READY_SECONDS)
    starting = objects.Observation("starting", "Creating container web")
    assert objects.tells_events(starting, pod_of(), now=CREATED + 3600)
    assert not objects.tells_events(starting, None, now=CREATED)


# --- The stand-in and the platform's rights ------------------------------------------------------


def test_events_are_listed_by_the_fields_the_api_server_selects_them_by(kube: KubeServer) -> None:
    pod = {
        "metadata": {"name": "web-1", "namespace": "ns", "uid": "u-1", "resourceVersion": "1"},
        "spec": {"containers": [{"name": "web", "image": "x:1"}]},
    }
    other = {**pod, "metadata": {**pod["metadata"], "name": "web-2", "uid": "u-2"}}
    for count in range(3):
        kube.record_event(pod, "Pulling", f"Pulling image {count}", container="web")
    kube.record_event(other, "Pulling", "not this pod's", container="web")
    api = KubeApi(kube.configuration())
    try:
        found = api.events_of("ns", "Pod", "web-1", limit=2)
        assert [item["message"] for item in found] == ["Pulling image 0", "Pulling image 1"]
        assert {item["involvedObject"]["fieldPath"] for item in found} == {"spec.containers{web}"}
        assert api.events_of("ns", "Deployment", "web-1", limit=10) == []
        with pytest.raises(InvalidInput, match=r"field label not supported: spec\.nodeName"):
            api._call(
                "list",
                EVENTS,
                "ns",
                None,
                "GET",
                "/api/v1/namespaces/ns/events",
                query=[("fieldSelector", "spec.nodeName=x")],
            )
    finally:
        api.close()


def test_the_functions_that_observe_stacks_may_list_events_and_nothing_more_of_them() -> None:
    documents = list(yaml.safe_load_all((Path(__file__).parent.parent / "knative" / "rbac.yaml").read_text()))
    roles = {doc["metadata"]["name"]: doc for doc in documents if doc and doc.get("kind") == "ClusterRole"}
    granted = {
        name: [
            verb for rule in role["rules"] if "events" in rule.get("resources", []) for verb in rule["verbs"]
        ]
        for name, role in roles.items()
    }
    assert granted["workbench-stack-manager"] == ["list"]
    assert granted["workbench-stack-observer"] == ["list"]
    assert all(
        not verbs
        for name, verbs in granted.items()
        if name not in ("workbench-stack-manager", "workbench-stack-observer")
    ), granted
