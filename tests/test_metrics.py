"""Prometheus metrics: /metrics on every function and on ``workbench run``, requests counted by route
template, stack start durations from the store in JupyterHub's buckets, the store's counts, and no
user's name anywhere in them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.adapters.store import AccountRecord
from shared.adapters.store.sql import SqlStore, open_store
from shared.bootstrap import Platform
from shared.core.errors import Unavailable
from shared.core.models import Account, DeadLetter, Transfer, TransferFile
from shared.serving import metrics, registry
from tests.conftest import ROOT, Api, Client
from tests.support import remove_stacks
from tests.test_e2e import Platform as Running
from tests.test_stacks import LOCAL_COMMANDS, NOTEBOOK, add_spec, create, spec, start, wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and labels (parsed by prometheus_client)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def requests_counted(samples: Samples, function: str, route: str, method: str, status: str) -> float:
    """The request counter of one function, route template, method and status."""
    return value(
        samples, "workbench_http_requests_total", function=function, route=route, method=method, status=status
    )


def scrape(client: Client) -> tuple[str, Samples]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text: str = response.get_data(as_text=True)
    return text, parse(text)


@pytest.fixture
def environment() -> dict[str, str]:
    return {"WORKBENCH_LOCAL_COMMANDS": json.dumps(LOCAL_COMMANDS)}


@pytest.fixture
def stacks_ended(platform: Platform) -> Iterator[None]:
    yield
    remove_stacks(platform)


# --- the store's figures, on both backends -----------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store' / 'workbench.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    opened = open_store(url)
    assert isinstance(opened, SqlStore)
    yield opened
    opened.close()


def test_each_start_counts_once_in_the_buckets_of_its_duration_by_outcome(store: SqlStore) -> None:
    store.begin_stack_start("s1", 1000.0)
    assert store.finish_stack_start("s1", True, 1007.3)
    assert not store.finish_stack_start("s1", False, 1009.0)  # already finished: counted once
    store.begin_stack_start("s2", 1000.0)
    assert store.finish_stack_start("s2", False, 1000.4)
    store.begin_stack_start("s3", 1000.0)  # stopped while starting, then started again
    store.begin_stack_start("s3", 2000.0)
    assert store.finish_stack_start("s3", True, 2000.5)
    store.begin_stack_start("s4", 1000.0)  # still starting: not counted yet

    figures = store.operations_figures(metrics.START_BUCKETS)

    success, failure = figures.starts
    assert (success.succeeded, success.finished, failure.succeeded, failure.finished) == (True, 2, False, 1)
    assert success.seconds == pytest.approx(7.8)
    under = dict(zip(metrics.START_BUCKETS, success.under, strict=True))
    assert (under[0.5], under[5.0], under[10.0], under[600.0]) == (1, 1, 2, 2)
    assert dict(zip(metrics.START_BUCKETS, failure.under, strict=True))[0.5] == 1


def test_the_figures_count_transfers_and_bytes_by_state_shovels_and_dead_letters(store: SqlStore) -> None:
    store.insert_account(
        AccountRecord(
            Account(id="alice", namespace="alice", name="Alice", email="a@example.org"), password_hash="x"
        )
    )
    for transfer_id, state, sizes in (
        ("t1", "completed", [10, 20]),
        ("t2", "completed", [5]),
        ("t3", "failed", []),
    ):
        store.insert_transfer(Transfer(id=transfer_id, user="alice", state=state, source="c", datasetId="d"))
        store.put_transfer_files(
            transfer_id,
            [TransferFile(path=f"f{n}", size=size, clowderId=f"c{n}") for n, size in enumerate(sizes)],
        )
    store.record_heartbeat("alice", "s1", {"at": 1})
    store.record_heartbeat("alice", "s2", {"at": 2})
    store.insert_dead_letter(DeadLetter(id="d1", type="t", eventId="e", source="s", receivedTime=1))

    figures = store.operations_figures(metrics.START_BUCKETS)

    assert figures.transfers == {"completed": (2, 35), "failed": (1, 0)}
    assert figures.shovels == 2
    assert figures.oldest_heartbeat is not None and figures.newest_heartbeat is not None
    assert figures.oldest_heartbeat <= figures.newest_heartbeat <= time.time() + 1
    assert figures.dead_letters == 1
    assert figures.starts == []


# --- /metrics on the functions -----------------------------------------------------------------


@pytest.mark.parametrize("name", [function.name for function in registry.FUNCTIONS])
def test_every_function_answers_metrics_without_a_token(client: Callable[[str], Client], name: str) -> None:
    text, samples = scrape(client(name))
    assert value(samples, "workbench_store_up") == 1
    assert "# TYPE workbench_stack_start_duration_seconds histogram" in text
    assert "# TYPE workbench_http_requests_total counter" in text


def test_a_request_counts_under_its_route_template_never_its_path(api: Api, alice: str) -> None:
    stacks = api.client("stacks")
    _, before = scrape(stacks)
    template = {"function": "stacks", "route": "/api/stacks/{sid}", "method": "GET"}

    assert api.call("GET", "/api/stacks/s1nosuchstack", alice).status_code == 404
    unrouted = stacks.get("/api/stacks/s1nosuchstack/and/more", headers={"Authorization": f"Bearer {alice}"})
    assert unrouted.status_code == 404

    text, after = scrape(stacks)
    counted = "workbench_http_requests_total"
    assert (
        value(after, counted, **template, status="404")
        == value(before, counted, **template, status="404") + 1
    )
    unmatched = {"function": "stacks", "route": "unmatched", "method": "GET", "status": "404"}
    assert value(after, counted, **unmatched) == value(before, counted, **unmatched) + 1
    took = "workbench_http_request_duration_seconds_count"
    assert value(after, took, **template) == value(before, took, **template) + 1
    assert value(after, "workbench_http_request_duration_seconds_bucket", **template, le="+Inf") >= 1
    assert "s1nosuchstack" not in text
    assert "alice" not in text.lower()


def test_an_event_counts_under_its_type_and_the_page_under_its_route(
    client: Callable[[str], Client], platform: Platform
) -> None:
    from events import types
    from events.codec import new_event, to_http

    transfer = client("transfer")
    _, before = scrape(transfer)
    # A well-formed event the function handles (refused: unsigned), one it does not, and no event at all.
    asked = {"clowder_url": "https://x.example", "email": "a@example.org"}
    unsigned = new_event(types.TRANSFER_REQUESTED, {**asked, "dataset_id": "d1"}, source="https://x.example")
    foreign = new_event(
        types.EXPORT_REQUESTED, {**asked, "folder": "f", "dataset_name": "n"}, source="https://x.example"
    )
    for event in (unsigned, foreign):
        headers, body = to_http(event)
        assert transfer.post("/", headers=headers, data=body).status_code == 400
    assert transfer.post("/", data=b"not an event").status_code == 400
    _, after = scrape(transfer)
    for route, count in ((types.TRANSFER_REQUESTED, 1), ("unmatched", 2)):
        labels = ("transfer", route, "POST", "400")
        assert requests_counted(after, *labels) == requests_counted(before, *labels) + count, route

    page = client("ui")
    _, before = scrape(page)
    assert page.get("/").status_code == 200
    assert page.get("/ui/no-such-asset.js").status_code == 404
    assert page.get("/nowhere").status_code == 404
    text, after = scrape(page)
    for route, status in (("/", "200"), ("/ui/{asset}", "404"), ("unmatched", "404")):
        labels = ("ui", route, "GET", status)
        assert requests_counted(after, *labels) == requests_counted(before, *labels) + 1, route
    assert "no-such-asset" not in text


def test_a_store_that_does_not_answer_leaves_its_figures_out_not_the_requests(
    client: Callable[[str], Client], platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*args: Any) -> None:
        raise Unavailable("the database is down")

    monkeypatch.setattr(platform.store, "operations_figures", down)
    text, samples = scrape(client("system"))
    assert value(samples, "workbench_store_up") == 0
    assert "workbench_transfers" not in text
    assert "# TYPE workbench_http_requests_total counter" in text


# --- stack starts, transfers, shovels and dead letters -----------------------------------------


def test_a_local_start_and_a_failed_one_fall_in_the_buckets_of_their_durations(
    api: Api, platform: Platform, alice: str, stacks_ended: None
) -> None:
    add_spec(api, alice, NOTEBOOK)
    sid = create(api, alice, {"key": "notebook"})["id"]
    asked = time.monotonic()
    start(api, alice, sid)
    wait_for(api, alice, sid, "started", passing=("starting",))
    longest = time.monotonic() - asked

    admin = api.admin()
    add_spec(api, admin, spec("crasher", ports=None, volumeMounts=None), catalog="system")
    crashing = create(api, alice, {"key": "crasher"})["id"]
    start(api, alice, crashing)
    wait_for(api, alice, crashing, "error", passing=("starting",))

    text, samples = scrape(api.client("system"))
    histogram = "workbench_stack_start_duration_seconds"
    assert value(samples, f"{histogram}_count", status="success") == 1
    assert value(samples, f"{histogram}_count", status="failure") == 1
    assert 0 < value(samples, f"{histogram}_sum", status="success") <= longest
    reached = min(bound for bound in metrics.START_BUCKETS if bound >= longest)
    assert value(samples, f"{histogram}_bucket", status="success", le=str(reached)) == 1
    assert value(samples, f"{histogram}_bucket", status="success", le="+Inf") == 1
    below = [
        bound
        for bound in metrics.START_BUCKETS
        if bound < value(samples, f"{histogram}_sum", status="success")
    ]
    for bound in below:
        assert value(samples, f"{histogram}_bucket", status="success", le=str(bound)) == 0
    for private in ("alice", "example.org", sid, crashing, "notebook"):
        assert private not in text.lower()


def test_transfers_shovels_and_dead_letters_are_read_from_the_store_at_scrape(
    client: Callable[[str], Client], platform: Platform, alice: str
) -> None:
    store = platform.store
    store.insert_transfer(Transfer(id="t1", user="alice", state="completed", source="c", datasetId="d"))
    store.put_transfer_files("t1", [TransferFile(path="secret-name.csv", size=123, clowderId="c1")])
    store.record_heartbeat("alice", "s1", {})
    store.insert_dead_letter(DeadLetter(id="d1", type="t", eventId="e", source="s", receivedTime=1))

    text, samples = scrape(client("transfers"))

    assert value(samples, "workbench_transfers", state="completed") == 1
    assert value(samples, "workbench_transfer_bytes", state="completed") == 123
    assert value(samples, "workbench_shovels") == 1
    assert 0 <= value(samples, "workbench_shovel_heartbeat_age_seconds", shovel="oldest") < 60
    assert value(samples, "workbench_dead_letters") == 1
    for private in ("alice", "example.org", "secret-name", "s1"):
        assert private not in text.lower().replace("workbench_shovels", "")


# --- the cold path and the local platform ------------------------------------------------------


def test_no_function_imports_prometheus_client_before_metrics_are_asked_for(tmp_path: Path) -> None:
    """Cold start: recording a request costs no import; only a scrape imports prometheus_client."""
    script = (
        "import json, sys\n"
        "import functions_framework\n"
        "from shared.serving import registry\n"
        "seen = []\n"
        "for function in registry.FUNCTIONS:\n"
        "    app = functions_framework.create_app(function.target, function.source, 'http')\n"
        "    app.test_client().get('/api/version')\n"
        "    seen.append('prometheus_client' in sys.modules)\n"
        "app.test_client().get('/metrics')\n"
        "print(json.dumps([any(seen), 'prometheus_client' in sys.modules]))\n"
    )
    environment = {
        **os.environ,
        "WORKBENCH_DATA_DIR": str(tmp_path / "data"),
        "WORKBENCH_JWT_SECRET": "x" * 48,
    }
    output = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(output.splitlines()[-1]) == [False, True]


def test_the_local_gateway_answers_one_metrics_for_every_function(platform: Platform, api: Api) -> None:
    from werkzeug.test import Client as WsgiClient

    from shared.tools.gateway import Gateway

    gateway = WsgiClient(metrics.wsgi(Gateway(data_dir=platform.data_dir)))
    assert gateway.get("/api/version").status_code == 200
    assert gateway.get("/api/services").status_code == 401  # passed on to the function
    response = gateway.get("/metrics")
    assert response.status_code == 200
    samples = parse(response.get_data(as_text=True))
    assert requests_counted(samples, "system", "/api/version", "GET", "200") >= 1
    assert requests_counted(samples, "services", "/api/services", "GET", "401") >= 1
    assert gateway.post("/metrics").status_code == 405


@pytest.mark.e2e
def test_workbench_run_serves_metrics(workbench: Running) -> None:
    assert httpx.get(f"{workbench.url}/api/version", timeout=5).status_code == 200
    response = httpx.get(f"{workbench.url}/metrics", timeout=5)
    assert response.status_code == 200
    samples = parse(response.text)
    assert value(samples, "workbench_store_up") == 1
    assert requests_counted(samples, "system", "/api/version", "GET", "200") >= 1
