"""The local runtime says what it runs: a file preview where no command runs a spec, no Connect link
for internal services, and a service's Connect port kept across restarts while it is free."""

from __future__ import annotations

import socket
from pathlib import Path

from shared.adapters.runtime import ServicePlan
from shared.core.models import ServiceSpec
from tests.test_runtime_local import LISTEN, Harness, service, stack


def internal(plan: ServicePlan) -> ServicePlan:
    spec = ServiceSpec.model_validate({**plan.spec.model_dump(), "access": "internal"})
    return ServicePlan(
        ssid=plan.ssid,
        key=plan.key,
        spec=spec,
        env=plan.env,
        volumes=plan.volumes,
        system_spec=plan.system_spec,
    )


def test_a_service_without_a_command_is_a_file_preview_that_says_how_to_get_the_real_app(
    harness: Harness,
) -> None:
    runtime = harness.runtime({"app": LISTEN})
    plan = stack(
        "alice",
        "s1abcd",
        service("s1abcd", "app", ports=(8888,)),
        service("s1abcd", "notebook", ports=(8888,)),
        service("s1abcd", "own", ports=(80,), system_spec=False),
    )
    harness.start(runtime, plan)

    app = harness.reports.wait("s1abcd-app", "ready")
    assert app.message is not None and app.message.startswith("Serving on http://127.0.0.1:")
    assert all("File preview" not in (report.message or "") for report in harness.reports.of("s1abcd-app"))

    notebook = harness.reports.wait("s1abcd-notebook", "ready")
    starting = harness.reports.of("s1abcd-notebook")[0]
    assert starting.message is not None and starting.message.startswith("File preview: starting (process ")
    assert notebook.endpoints is not None
    assert notebook.message == (
        f"File preview: serving the service's folder read-only on {notebook.endpoints[0].url}, not notebook "
        "itself. For the real app, run Docker or Podman so that `workbench run` starts the catalog's "
        "containers, or set WORKBENCH_LOCAL_COMMANDS."
    )
    # A spec of the user's own catalog never runs an admin's command: only a container is offered.
    own = harness.reports.wait("s1abcd-own", "ready")
    assert own.message is not None and own.message.startswith("File preview: ")
    assert own.message.endswith("starts its container.")
    assert "WORKBENCH_LOCAL_COMMANDS" not in own.message


def test_an_internal_service_lists_its_address_but_gets_no_connect_url(harness: Harness) -> None:
    runtime = harness.runtime({"db": LISTEN})
    plan = stack(
        "alice",
        "s2",
        internal(service("s2", "db", ports=(27017,))),
        internal(service("s2", "q", ports=(5672,))),
    )
    harness.start(runtime, plan)

    database = harness.reports.wait("s2-db", "ready")
    assert database.endpoints is not None
    (endpoint,) = database.endpoints
    assert (endpoint.host, endpoint.port, endpoint.url) == ("127.0.0.1", 27017, "")
    assert endpoint.nodePort not in (0, 27017)
    assert database.message == (
        f"Listening on 127.0.0.1:{endpoint.nodePort} for the stack's own services (internal: no Connect link)"
    )
    queue = harness.reports.wait("s2-q", "ready")
    assert queue.endpoints is not None and queue.endpoints[0].url == ""
    assert queue.message is not None and queue.message.startswith("File preview: serving")


def connect_port(harness: Harness, ssid: str, count: int) -> int:
    report = harness.reports.wait(ssid, "ready", count=count)
    assert report.endpoints is not None
    return report.endpoints[0].nodePort


def test_a_service_keeps_its_connect_port_across_restarts_while_the_port_is_free(
    harness: Harness, tmp_path: Path
) -> None:
    runtime = harness.runtime(stop_grace=2.0)
    plan = stack("alice", "s3", service("s3", "web", ports=(80,)), service("s3", "files", ports=(8080,)))
    harness.start(runtime, plan)
    first = connect_port(harness, "s3-web", 1)
    files = connect_port(harness, "s3-files", 1)
    assert first != files

    runtime.stop(plan)
    harness.reports.wait("s3-web", "stopped")
    runtime.start(plan)
    assert connect_port(harness, "s3-web", 2) == first
    assert connect_port(harness, "s3-files", 2) == files

    # Another platform (after a restart of `make run`) finds the remembered port too.
    runtime.stop(plan)
    harness.reports.wait("s3-web", "stopped", count=2)
    later = harness.runtime(stop_grace=2.0)
    later.start(plan)
    assert connect_port(harness, "s3-web", 3) == first
    assert connect_port(harness, "s3-files", 3) == files

    later.stop(plan)
    harness.reports.wait("s3-web", "stopped", count=3)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", first))
        squatter.listen()
        later.start(plan)
        moved = connect_port(harness, "s3-web", 4)
        assert moved != first
        assert connect_port(harness, "s3-files", 4) == files
