"""Prometheus metrics: requests counted where they are served, the rest read from the store at scrape.

Recording a request costs a dictionary update under a lock: prometheus_client (tens of milliseconds
to import) is imported only when ``/metrics`` is asked for, so no function's first request pays for
it. What the store holds (stack starts, transfers, shovels, dead letters) is read at scrape time, in
aggregate, so that every replica of every function reports the same figures.
"""

from __future__ import annotations

import bisect
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from typing import TYPE_CHECKING, Any

from shared.core.errors import WorkbenchError

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from shared.adapters.store import OperationsFigures, Store

log = logging.getLogger(__name__)

PATH = "/metrics"
"""Where every HTTP function, and ``workbench run`` once for the whole process, answers a scrape:
outside ``/api/``, so that it can never be taken for a route."""

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
"""prometheus_client's default buckets (seconds), which suit an API's answers."""
START_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0)
"""JupyterHub's for ``jupyterhub_server_spawn_duration_seconds``, so that the two compare."""

UNMATCHED = "unmatched"
"""The route label of a request that matched no route: its raw path could hold anything."""
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@cache
def route_label(path: str) -> str:
    """A route's path as its label: ``/api/stacks/<sid>`` → ``/api/stacks/{sid}`` (never the ids)."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", path)  # compiled on first use, not at import


class _Series:
    __slots__ = ("buckets", "count", "seconds")

    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # per bucket, not yet cumulative; the last: +Inf
        self.count = 0
        self.seconds = 0.0


class Requests:
    """The requests this process answered: how many by (function, route, method, status), and how long
    they took by (function, route, method). One per process, since the process is what is scraped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str, str], int] = {}
        self._latencies: dict[tuple[str, str, str], _Series] = {}

    def record(self, function: str, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        bucket = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        with self._lock:
            key = (function, route, method, str(status))
            self._counts[key] = self._counts.get(key, 0) + 1
            series = self._latencies.get((function, route, method))
            if series is None:
                series = self._latencies[(function, route, method)] = _Series()
            series.buckets[bucket] += 1
            series.count += 1
            series.seconds += seconds

    def families(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        with self._lock:
            counts = sorted(self._counts.items())
            latencies = [
                (key, list(series.buckets), series.seconds) for key, series in sorted(self._latencies.items())
            ]
        total = CounterMetricFamily(
            "workbench_http_requests",
            "HTTP requests answered, by function, route template, method and status",
            labels=("function", "route", "method", "status"),
        )
        for counted, count in counts:
            total.add_metric(counted, count)
        yield total
        duration = HistogramMetricFamily(
            "workbench_http_request_duration_seconds",
            "Time to answer an HTTP request, by function, route template and method",
            labels=("function", "route", "method"),
        )
        for labels, buckets, seconds in latencies:
            duration.add_metric(labels, _cumulative(LATENCY_BUCKETS, buckets), seconds)
        yield duration


def _cumulative(bounds: Iterable[float], counts: list[int]) -> list[tuple[str, float]]:
    """Per-bucket counts (the last past every bound) as Prometheus's cumulative ``le`` buckets."""
    running = 0
    buckets: list[tuple[str, float]] = []
    for bound, count in zip([*bounds, float("inf")], counts, strict=True):
        running += count
        buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
    return buckets


REQUESTS = Requests()


def operations_families(figures: OperationsFigures, now: float) -> Iterator[Metric]:
    """The store's figures as metric families: start durations, transfers, shovels, dead letters."""
    from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

    starts = HistogramMetricFamily(
        "workbench_stack_start_duration_seconds",
        "Time from a stack's start request to every service ready (success) or to its failure",
        labels=("status",),
    )
    for tally in figures.starts:
        counts = [*tally.under, tally.finished]
        buckets = [
            ("+Inf" if bound == float("inf") else repr(float(bound)), count)
            for bound, count in zip([*START_BUCKETS, float("inf")], counts, strict=True)
        ]
        starts.add_metric(["success" if tally.succeeded else "failure"], buckets, tally.seconds)
    yield starts
    transfers = GaugeMetricFamily("workbench_transfers", "Transfers by state", labels=("state",))
    transfer_bytes = GaugeMetricFamily(
        "workbench_transfer_bytes",
        "Bytes of the transfers' files, by the transfer's state",
        labels=("state",),
    )
    for state, (count, size) in sorted(figures.transfers.items()):
        transfers.add_metric([state], count)
        transfer_bytes.add_metric([state], size)
    yield transfers
    yield transfer_bytes
    yield GaugeMetricFamily("workbench_shovels", "Shovels that have sent a heartbeat", value=figures.shovels)
    ages = GaugeMetricFamily(
        "workbench_shovel_heartbeat_age_seconds",
        "Seconds since a shovel's last heartbeat: of the shovel heard from longest ago, and most recently",
        labels=("shovel",),
    )
    for which, seen in (("oldest", figures.oldest_heartbeat), ("newest", figures.newest_heartbeat)):
        if seen is not None:
            ages.add_metric([which], max(0.0, now - seen))
    yield ages
    yield GaugeMetricFamily(
        "workbench_dead_letters",
        "Events kept because no function could take them",
        value=figures.dead_letters,
    )


class _Collector:
    """A collector of prometheus_client's registry, built per scrape (it needs no ``describe``)."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self.collect = collect


def exposition(store: Store, accept: str | None) -> tuple[bytes, str]:
    """The body and media type of a scrape: this process's requests, then the store's figures (left
    out, with ``workbench_store_up`` 0, when the store does not answer; the requests still count)."""
    from prometheus_client import CollectorRegistry, ProcessCollector
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.exposition import choose_encoder

    def operations() -> Iterator[Metric]:
        try:
            figures = store.operations_figures(START_BUCKETS)
        except WorkbenchError as error:
            log.warning("metrics leave out the store's figures: %s", error.message)
            yield GaugeMetricFamily("workbench_store_up", "Whether the store answered the scrape", value=0)
            return
        yield GaugeMetricFamily("workbench_store_up", "Whether the store answered the scrape", value=1)
        yield from operations_families(figures, time.time())

    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    registry.register(_Collector(REQUESTS.families))
    registry.register(_Collector(operations))
    encode, media_type = choose_encoder(accept or "")
    return encode(registry), media_type


def scrape(accept: str | None) -> tuple[int, bytes, str]:
    """Status, body and media type of ``GET /metrics`` on the current platform."""
    from shared.bootstrap import platform

    body, media_type = exposition(platform().store, accept)
    return 200, body, media_type


def wsgi(app: Any) -> Any:
    """``app`` with ``GET /metrics`` answered in front of it (``workbench run``: one for the process)."""

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH:
            return app(environ, start_response)  # type: ignore[no-any-return]
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Length", "0")])
            return [b""]
        status, body, media_type = scrape(environ.get("HTTP_ACCEPT"))
        start_response(
            f"{status} OK",
            [("Content-Type", media_type), ("Content-Length", str(len(body))), ("Cache-Control", "no-cache")],
        )
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]

    return serve
