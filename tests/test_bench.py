"""The benchmarks' own logic, without timing anything: figures, the results file, percentiles, probes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from bench import api_throughput, cold_start
from bench.report import Figure, load, percentile, table, write
from bench.rounds import alternate, ratio_spread, round_ratios, spread
from bench.support import image_environment
from shared.serving import registry
from tests.support import wait_until

# --- figures -----------------------------------------------------------------------------------


def test_a_ratio_is_value_over_baseline_and_met_follows_the_side_of_the_target() -> None:
    slower = Figure("a", "a cold start", value=0.3, unit="s", baseline=0.2, target=1.5)
    assert slower.ratio == pytest.approx(1.5)
    assert slower.met is True  # at the limit is within it
    too_slow = Figure("b", "a cold start", value=0.31, unit="s", baseline=0.2, target=1.5)
    assert too_slow.met is False
    throughput = Figure(
        "c", "requests", value=400, unit="req/s", baseline=1000, higher_is_better=True, target=0.5
    )
    assert throughput.ratio == pytest.approx(0.4)
    assert throughput.met is False
    assert throughput.target_text == "≥ 0.5"
    assert too_slow.target_text == "≤ 1.5"


def test_without_a_baseline_the_value_itself_is_judged() -> None:
    limit = Figure("memory", "peak memory", value=80, unit="MB", target=100)
    assert limit.ratio is None
    assert limit.judged == 80
    assert limit.met is True
    assert Figure("zero", "x", value=1, unit="s", baseline=0, target=2).ratio is None
    reported = Figure("r", "reported only", value=3, unit="s", baseline=1)
    assert reported.met is None
    assert reported.target_text == "reported"


def test_the_table_shows_every_figure_and_whether_it_is_met() -> None:
    figures = [
        Figure("cold_start_ratio", "x", value=0.3, unit="s", baseline=0.2, target=1.5),
        Figure(
            "api_throughput_ratio",
            "y",
            value=300,
            unit="req/s",
            baseline=1000,
            higher_is_better=True,
            target=0.5,
        ),
        Figure("reported", "z", value=1, unit="s"),
    ]
    text = table(figures)
    lines = text.splitlines()
    assert lines[0].split() == ["figure", "value", "baseline", "ratio", "target", "met"]
    assert lines[1].startswith("cold_start_ratio") and lines[1].rstrip().endswith("yes")
    assert lines[2].startswith("api_throughput_ratio") and lines[2].rstrip().endswith("NO")
    assert lines[3].rstrip().endswith("—")
    markdown = table(figures, style="markdown")
    assert markdown.splitlines()[0] == "| figure | value | baseline | ratio | target | met |"
    assert "| `cold_start_ratio` | 0.3 s | 0.2 s | 1.5 | ≤ 1.5 | yes |" in markdown


def test_writing_merges_into_the_results_file(tmp_path: Path) -> None:
    results = tmp_path / "bench" / "results.json"
    write([Figure("a", "first", value=1, unit="s", baseline=2, target=1)], results)
    write([Figure("b", "second", value=5, unit="s"), Figure("a", "again", value=3, unit="s")], results)
    document = json.loads(results.read_text())
    assert set(document) == {"a", "b", "_run"}
    assert document["a"]["what"] == "again"  # the newer figure of a key replaces the older
    assert document["a"]["ratio"] is None and document["a"]["met"] is None
    assert {"finished", "machine", "python"} <= set(document["_run"])
    assert not list(results.parent.glob("*.partial"))
    loaded = load(results)
    assert [figure.key for figure in loaded] == ["a", "b"]
    assert loaded[0] == Figure("a", "again", value=3, unit="s")


def test_loading_a_missing_results_file_gives_nothing(tmp_path: Path) -> None:
    assert load(tmp_path / "absent.json") == []


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [(0.0, 1), (0.1, 1), (0.5, 5), (0.9, 9), (0.95, 10), (0.99, 10), (1.0, 10)],
)
def test_percentile_is_the_nearest_rank(fraction: float, expected: int) -> None:
    assert percentile([7, 3, 1, 10, 2, 9, 4, 8, 6, 5], fraction) == expected


def test_the_percentile_of_one_sample_is_that_sample() -> None:
    assert percentile([0.25], 0.99) == 0.25


# --- alternating rounds and their spread --------------------------------------------------------


def test_rounds_alternate_the_measured_side_and_its_baseline() -> None:
    calls: list[str] = []
    told: list[tuple[int, str, str]] = []

    def side(name: str) -> Callable[[], str]:
        def run() -> str:
            calls.append(name)
            return f"{name}{sum(1 for call in calls if call == name)}"

        return run

    done = alternate(
        3,
        side("pipeline"),
        side("curl"),
        after_round=lambda number, measured, baseline: told.append((number, measured, baseline)),
    )
    assert calls == ["pipeline", "curl"] * 3
    assert done.measured == ["pipeline1", "pipeline2", "pipeline3"]
    assert done.baseline == ["curl1", "curl2", "curl3"]
    assert told == [(1, "pipeline1", "curl1"), (2, "pipeline2", "curl2"), (3, "pipeline3", "curl3")]


def test_no_round_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one round"):
        alternate(0, lambda: 1, lambda: 2)


def test_the_spread_keeps_every_round_and_the_median_ignores_one_noisy_round() -> None:
    rates = [100.0, 104.0, 20.0, 98.0, 101.0]  # round 3 landed in someone else's burst
    assert spread(rates) == {"median": 100.0, "min": 20.0, "max": 104.0, "each": rates}
    assert spread([1 / 3, 2 / 3], digits=2)["each"] == [0.33, 0.67]
    with pytest.raises(ValueError, match="no samples"):
        spread([])


def test_each_round_is_judged_against_the_baseline_measured_beside_it() -> None:
    assert round_ratios([80, 90, 45], [100, 100, 50]) == [0.8, 0.9, 0.9]
    assert ratio_spread([80, 90, 45], [100, 100, 50]) == {
        "median": 0.9,
        "min": 0.8,
        "max": 0.9,
        "each": [0.8, 0.9, 0.9],
    }
    with pytest.raises(ValueError, match="2 measured rounds against 3"):
        round_ratios([1, 2], [1, 2, 3])


def test_the_transfer_ratios_are_the_medians_of_alternating_rounds_with_their_spread() -> None:
    from bench.transfer import CurlRun, Dataset, Measured, PipelineRun, figures

    large = Dataset("large", Path("/large"), {f"f{n}": (100_000_000, "x") for n in range(10)})  # 1 GB
    medium = Dataset("medium", Path("/medium"), {"f": (250_000_000, "x")})
    small = Dataset("small", Path("/small"), {f"f{n}": (1_000, "x") for n in range(1000)})  # 1 MB
    cpu = {"platform": 1.0, "shovel": 1.0, "clowder": 1.0}

    def piped(seconds: float) -> PipelineRun:
        return PipelineRun(seconds, 100, 50, cpu)

    def curled(seconds: float) -> CurlRun:
        return CurlRun(seconds, seconds, {"curl": 1.0, "clowder": 1.0})

    measured = Measured(
        large=[piped(s) for s in (2.0, 2.5, 10.0, 2.0, 2.0)],  # 500, 400, 100 (noise), 500, 500 MB/s
        curl_large=[curled(s) for s in (1.6, 2.0, 1.6, 1.6, 1.25)],  # 625, 500, 625, 625, 800 MB/s
        medium=[piped(1.0)] * 3,
        small=[piped(s) for s in (1.0, 1.0, 0.5, 1.0, 2.0)],
        curl_small=[curled(s) for s in (0.5, 0.5, 0.5, 0.5, 0.5)],
    )
    by_key = {figure.key: figure for figure in figures(16, large, medium, small, measured)}
    large_ratio = by_key["transfer_large_ratio"]
    assert large_ratio.value == pytest.approx(500) and large_ratio.baseline == pytest.approx(625)
    assert large_ratio.ratio == pytest.approx(0.8) and large_ratio.met is True
    assert large_ratio.target == 0.8 and large_ratio.details["rounds"] == 5
    assert large_ratio.details["ratio_per_round"] == {
        "median": 0.8,
        "min": 0.16,
        "max": 0.8,
        "each": [0.8, 0.8, 0.16, 0.8, 0.625],
    }
    assert large_ratio.details["pipeline_mb_s"]["each"] == [500, 400, 100, 500, 500]
    small_ratio = by_key["transfer_small_ratio"]
    assert small_ratio.ratio == pytest.approx(0.5) and small_ratio.met is False
    assert small_ratio.details["pipeline_files_s"] == {
        "median": 1000,
        "min": 500,
        "max": 2000,
        "each": [1000, 1000, 2000, 1000, 500],
    }


# --- the profile ---------------------------------------------------------------------------------

RAW_PROFILE = """\
_worker (concurrent/futures/thread.py:69);_stage_file (/work/main/shared/domain/transfers.py:457) 30
_worker (concurrent/futures/thread.py:69);_stage_file (/work/main/shared/domain/transfers.py:457);finish (/v/lib/python3.11/site-packages/x/durable.py:131) 50
_worker (concurrent/futures/thread.py:69) 5
walk (a.py:1);walk (a.py:1);walk (a.py:1) 15
not a sample line
"""


def test_the_profile_counts_own_and_cumulative_samples_of_each_function() -> None:
    from bench.profile import ROOT, Entry, entries

    found, total = entries(RAW_PROFILE.replace("/work/main", str(ROOT)))
    assert total == 100
    by_name = {entry.function: entry for entry in found}
    assert by_name["_worker (concurrent/futures/thread.py:69)"] == Entry(
        "_worker (concurrent/futures/thread.py:69)", own=5, cumulative=85
    )
    # Paths are cut to the project's or the installed package's own.
    assert by_name["_stage_file (shared/domain/transfers.py:457)"].cumulative == 80
    assert by_name["finish (x/durable.py:131)"].own == 50
    # A recursive function counts once a sample in its cumulative time.
    assert by_name["walk (a.py:1)"] == Entry("walk (a.py:1)", own=15, cumulative=15)


def test_the_profile_tables_order_by_cumulative_or_by_own_time() -> None:
    from bench.profile import entries, report, top_table

    found, total = entries(RAW_PROFILE)
    by_cumulative = top_table(found, total, by="cumulative", rate=100, count=2).splitlines()
    assert len(by_cumulative) == 3
    assert by_cumulative[1].endswith("_worker (concurrent/futures/thread.py:69)")
    assert by_cumulative[1].split()[:4] == ["0.05", "5.0", "0.85", "85.0"]
    by_own = top_table(found, total, by="own", rate=100, count=2).splitlines()
    assert "durable.py:131" in by_own[1] and "_stage_file" in by_own[2]
    text = report("platform", RAW_PROFILE, 100)
    assert text.startswith("== platform: 100 samples at 100/s (1.00 s of busy threads)")
    assert "-- top 25 by cumulative time" in text and "-- top 25 by total time" in text


# --- the cold start's poll -------------------------------------------------------------------


class Answers:
    """A server stand-in: answers each request with the next of ``replies`` (a status, or an error)."""

    def __init__(self, *replies: int | Exception) -> None:
        self.replies: Iterator[int | Exception] = iter(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = next(self.replies)
        if isinstance(reply, Exception):
            raise reply
        return httpx.Response(reply, json={"Error": "not yet"} if reply >= 400 else [])


PROBE = cold_start.Probe("GET /api/stacks", "GET", "/api/stacks", {"Authorization": "Bearer t"})


def test_only_a_2xx_answer_ends_the_poll() -> None:
    answers = Answers(httpx.ConnectError("refused"), 401, 503, 500, 404, 200, 200)
    with httpx.Client(transport=httpx.MockTransport(answers)) as client:
        cold_start.first_success(client, PROBE, "http://function", interval=0)
    assert len(answers.requests) == 6
    assert all(request.headers["Authorization"] == "Bearer t" for request in answers.requests)
    assert str(answers.requests[0].url) == "http://function/api/stacks"


def test_a_poll_that_never_succeeds_names_the_last_answer() -> None:
    answers = Answers(*[401] * 1000)
    with (
        httpx.Client(transport=httpx.MockTransport(answers)) as client,
        pytest.raises(TimeoutError, match="401"),
    ):
        cold_start.first_success(client, PROBE, "http://function", seconds=0, interval=0)


class Ended:
    """A process that has already ended."""

    returncode = 3

    def poll(self) -> int:
        return self.returncode


def test_a_server_that_ends_fails_the_poll_at_once() -> None:
    answers = Answers(httpx.ConnectError("refused"))
    with (
        httpx.Client(transport=httpx.MockTransport(answers)) as client,
        pytest.raises(RuntimeError, match="ended with 3"),
    ):
        cold_start.first_success(client, PROBE, "http://function", process=Ended(), interval=0)  # type: ignore[arg-type]


# --- probes ------------------------------------------------------------------------------------


SETUP = cold_start.Installation(
    settings={},
    user_token="user-token",
    admin_token="admin-token",
    running_stack="srun1",
    stopped_stack="sstop",
    service="srun1-cloudcmd",
    transfer_event="event-1",
    event_secret=b"s" * 48,
)


@pytest.mark.parametrize("function", registry.FUNCTIONS, ids=lambda function: function.name)
def test_every_function_has_a_probe(function: registry.Function) -> None:
    probe = cold_start.probe_for(function, SETUP)
    assert probe.method in {"GET", "POST", "PUT", "DELETE"}
    assert probe.path.startswith("/")
    if function.name in cold_start.PROBES and function.kind == "cloudevent" and probe.method == "POST":
        assert probe.headers.get("ce-specversion") == "1.0"


def test_probes_cover_exactly_the_functions_of_the_registry() -> None:
    functions = {function.name for function in registry.FUNCTIONS}
    without_probe = sorted(functions - set(cold_start.PROBES))
    assert not without_probe, f"functions without a probe in bench/cold_start.py PROBES: {without_probe}"
    stale = sorted(set(cold_start.PROBES) - functions)
    assert not stale, f"probes of functions the registry no longer has: {stale}"


def test_a_function_without_a_probe_is_named_rather_than_guessed() -> None:
    # Even one with a plain GET route: a guessed request may never be answered 2xx.
    unlisted = registry.Function(
        "gallery", "A gallery", routes=(registry.Route("GET", "/api/gallery", "list", "Every item"),)
    )
    with pytest.raises(LookupError, match="gallery"):
        cold_start.probe_for(unlisted, SETUP)


def test_the_probes_of_the_console_and_the_page_ask_what_answers_2xx() -> None:
    console = cold_start.probe_for(registry.function("console"), SETUP)
    assert (console.method, console.path) == ("GET", "/api/check_console?ssid=srun1-cloudcmd")
    assert console.headers == {"Authorization": "Bearer user-token"}
    page = cold_start.probe_for(registry.function("ui"), SETUP)
    assert (page.method, page.path, dict(page.headers)) == ("GET", "/", {})


def test_the_signed_events_verify_with_the_pairing_secret() -> None:
    from events import codec, signing

    for name in ("transfer", "export", "stack_action"):
        probe = cold_start.probe_for(registry.function(name), SETUP)
        event = codec.from_http(dict(probe.headers), probe.body)
        signing.verify(event.attributes, event.data, SETUP.event_secret)
    heartbeat = cold_start.probe_for(registry.function("shovel_reports"), SETUP)
    event = codec.from_http(dict(heartbeat.headers), heartbeat.body)
    signing.verify(event.attributes, event.data, signing.derive_key(SETUP.event_secret, "shovel:bench"))


# --- the image's environment -------------------------------------------------------------------


def test_the_image_environment_is_read_from_env_instructions(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM python:3.11-slim\n"
        "# ENV COMMENTED=out\n"
        "ENV A=1 \\\n"
        "    B='two words' \\\n"
        "    C=\n"
        "RUN echo ENV=not-this\n"
        "ENV D=4\n"
    )
    assert image_environment(dockerfile) == {"A": "1", "B": "two words", "C": "", "D": "4"}


def test_an_env_instruction_in_the_legacy_form_is_refused(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("ENV A 1\n")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        image_environment(dockerfile)


def test_a_function_server_gets_the_image_environment_and_its_manifest_settings() -> None:
    environment = cold_start.server_environment({"WORKBENCH_DATA_DIR": "/data"}, registry.function("stacks"))
    assert environment["WORKBENCH_DATA_DIR"] == "/data"  # the platform's settings win over the image's
    assert environment["THREADS"] == str(registry.function("stacks").concurrency)
    assert environment["WORKERS"] == "1"
    assert environment["PYDANTIC_DISABLE_PLUGINS"] == image_environment()["PYDANTIC_DISABLE_PLUGINS"]


# --- wrk's output ------------------------------------------------------------------------------

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:8080/api/stacks
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    21.52ms    9.10ms 141.32ms   88.00%
    Req/Sec   758.00     60.00     0.90k    70.00%
  Latency Distribution
     50%   19.64ms
     75%   24.00ms
     90%   30.00ms
     99%    1.20s
  7563 requests in 10.01s, 181.43MB read
Requests/sec:    755.63
Transfer/sec:     18.12MB
"""


def test_wrk_output_gives_the_rate_and_the_latencies_in_milliseconds() -> None:
    load = api_throughput.parse_wrk(WRK_OUTPUT)
    assert load.requests_per_second == pytest.approx(755.63)
    assert load.requests == 7563
    assert load.p50_ms == pytest.approx(19.64)
    assert load.p99_ms == pytest.approx(1200)
    assert load.errors == 0


def test_failed_requests_in_wrk_output_are_counted() -> None:
    failing = WRK_OUTPUT.replace(
        "Requests/sec:",
        "  Socket errors: connect 0, read 2, write 0, timeout 1\n  Non-2xx or 3xx responses: 40\nRequests/sec:",
    ).replace("     50%   19.64ms", "     50%  812.00us")
    load = api_throughput.parse_wrk(failing)
    assert load.errors == 43
    assert load.p50_ms == pytest.approx(0.812)


def test_output_that_is_not_wrk_s_is_refused() -> None:
    with pytest.raises(ValueError, match="wrk"):
        api_throughput.parse_wrk("wrk: command failed\n")


# --- the cold start's figures ------------------------------------------------------------------


def test_each_function_is_judged_against_the_hello_world_starts_beside_its_own() -> None:
    samples = cold_start.Samples(
        pairs={
            # Started while the machine was busy: slow, and so was hello-world beside it.
            "busy": cold_start.Pairs(
                wall=[0.6, 0.62, 0.64], hello_wall=[0.5, 0.5, 0.52], cpu=[3, 3, 3], hello_cpu=[2, 2, 2]
            ),
            "quiet": cold_start.Pairs(
                wall=[0.3, 0.32, 0.31], hello_wall=[0.2, 0.2, 0.21], cpu=[3, 3, 3], hello_cpu=[2, 2, 2]
            ),
        },
        probes={"busy": "GET /busy", "quiet": "GET /quiet"},
    )
    (headline,) = cold_start.figures(samples, key="cold_start_ratio", database="SQLite", runs=3)
    assert headline.details["worst"] == "quiet"  # 0.31 / 0.2 is worse than 0.62 / 0.5
    assert headline.value == pytest.approx(0.31)
    assert headline.baseline == pytest.approx(0.2)
    assert headline.details["ratios"] == {"busy": pytest.approx(1.24), "quiet": pytest.approx(1.55)}
    assert headline.details["cpu_ratios"] == {"busy": 1.5, "quiet": 1.5}
    assert headline.met is False
    per_function = {
        figure.key: figure for figure in cold_start.per_function(samples, key="k", database="SQLite")
    }
    assert per_function["k.busy"].ratio == pytest.approx(1.24)
    assert per_function["k.busy"].met is True
    assert "GET /busy" in per_function["k.busy"].what


def test_the_pydantic_reference_is_reported_beside_the_functions_not_judged() -> None:
    pairs = cold_start.Pairs(
        wall=[0.25, 0.24, 0.26], hello_wall=[0.2, 0.2, 0.19], cpu=[3, 3], hello_cpu=[2, 2]
    )
    figure = cold_start.reference_figure(pairs)
    assert figure.key == "cold_start_pydantic_reference"
    assert figure.ratio == pytest.approx(1.25)
    assert figure.target is None and figure.met is None
    assert figure.details["cpu_ratio"] == 1.5


def test_the_pydantic_reference_validates_its_request() -> None:
    from flask import Flask

    from bench.hello_pydantic import hello_pydantic

    app = Flask("reference")
    with app.test_request_context("/?name=bench"):
        from flask import request

        assert hello_pydantic(request) == "hello bench"
    with app.test_request_context("/?name="):
        from flask import request

        assert hello_pydantic(request) == "hello "


# --- CPU accounting -------------------------------------------------------------------------------


def test_cpu_use_counts_named_processes_and_waited_for_children() -> None:
    import subprocess
    import sys
    import time

    from bench.support import CpuUse, own_cpu_seconds

    spin = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
    busy = subprocess.Popen([sys.executable, "-c", spin + "time.sleep(30)"])
    try:
        with CpuUse({"busy": busy.pid}) as used:
            subprocess.run([sys.executable, "-c", spin], check=True)
            time.sleep(0.6)  # the busy process spins meanwhile
        assert used.seconds["children"] >= 0.25  # the child run in the block, waited for
        assert 0.2 <= used.seconds["busy"] <= 0.6
    finally:
        busy.kill()
        busy.wait()
    assert own_cpu_seconds(busy.pid) == 0.0  # gone


def test_cpu_details_compare_the_medians_of_each_side() -> None:
    from bench.transfer import CurlRun, PipelineRun, cpu_details

    pipeline = [
        PipelineRun(1.0, 100, 50, {"platform": 2.0, "shovel": 1.0, "clowder": 1.0}),
        PipelineRun(1.2, 100, 50, {"platform": 3.0, "shovel": 2.0, "clowder": 1.0}),
        PipelineRun(1.1, 100, 50, {"platform": 2.5, "shovel": 1.5, "clowder": 1.0}),
    ]
    curl = [
        CurlRun(0.5, 0.6, {"curl": 1.0, "clowder": 1.0}),
        CurlRun(0.5, 0.6, {"curl": 1.0, "clowder": 1.0}),
    ]
    details = cpu_details(pipeline, curl)
    assert details["pipeline"] == {"platform": 2.5, "shovel": 1.5, "clowder": 1.0}
    assert details["curl"] == {"curl": 1.0, "clowder": 1.0}
    assert details["pipeline_over_curl"] == 2.5


# --- many users at once ----------------------------------------------------------------------------


def test_arrivals_record_when_each_user_has_every_file(tmp_path: Path) -> None:
    from bench.transfer_concurrent import Arrivals

    first = [(tmp_path / "a" / name, 3) for name in ("1", "2")]
    second = [(tmp_path / "b" / "1", 5)]
    for path, _ in first + second:
        path.parent.mkdir(exist_ok=True)
    arrivals = Arrivals([first, second])
    assert arrivals.look(1.0) is False
    (tmp_path / "a" / "2").write_bytes(b"abc")  # placed out of order: the user is not done yet
    (tmp_path / "b" / "1").write_bytes(b"ab")  # still being written: not its size
    assert arrivals.look(2.0) is False
    assert arrivals.done_at == [None, None]
    (tmp_path / "a" / "1").write_bytes(b"abc")
    assert arrivals.look(3.0) is False
    assert arrivals.done_at == [3.0, None]
    (tmp_path / "b" / "1").write_bytes(b"abcde")
    assert arrivals.look(4.0) is True
    assert arrivals.done_at == [3.0, 4.0]  # a user's time is kept once done


def test_the_concurrent_ratio_is_the_median_round_with_every_users_time() -> None:
    from bench.transfer import MIB, Dataset
    from bench.transfer_concurrent import ConcurrentRun, figure

    datasets = [Dataset(f"d{n}", Path("/d"), {"f": (100 * MIB, "x")}) for n in range(2)]
    size_mb = 2 * 100 * MIB / 1e6
    cpu = {"platform": 1.0, "shovels": 2.0, "clowder": 1.0}
    pipeline = [
        ConcurrentRun(10.0, [4.0, 10.0], cpu),
        ConcurrentRun(40.0, [39.0, 40.0], cpu),  # a noisy round
        ConcurrentRun(8.0, [8.0, 2.0], cpu),
    ]
    curl = [
        ConcurrentRun(seconds, [seconds, seconds], {"curl": 1.0, "clowder": 1.0})
        for seconds in (8.0, 8.0, 4.0)
    ]
    result = figure(datasets, 4, pipeline, curl)
    assert result.key == "transfer_concurrent_ratio"
    assert result.value == pytest.approx(size_mb / 10) and result.baseline == pytest.approx(size_mb / 8)
    assert result.ratio == pytest.approx(0.8) and result.met is True and result.higher_is_better
    assert result.details["ratio_per_round"]["each"] == [0.8, 0.2, 0.5]
    users = result.details["pipeline_user_seconds"]
    assert users["median_round"] == {"median": 7.0, "min": 4.0, "max": 10.0, "each": [4.0, 10.0]}
    assert users["each_round"][2] == {"min": 2.0, "median": 5.0, "max": 8.0}
    assert users["slowest_over_fastest"] == 2.5
    assert result.details["cpu_seconds"]["pipeline"] == {"platform": 1.0, "shovels": 2.0, "clowder": 1.0}


def test_every_user_sends_one_hundred_mib_of_mixed_sizes(tmp_path: Path) -> None:
    from bench.transfer import MIB, make_mixed_dataset
    from bench.transfer_concurrent import GROUPS, dataset_size

    assert dataset_size() == 100 * MIB
    assert len({size for _, size in GROUPS}) == len(GROUPS) > 3
    dataset = make_mixed_dataset(tmp_path, "mixed", [(2, 10), (1, 1000)])
    assert sorted(dataset.files) == [
        "10-bytes/part-00000.bin",
        "10-bytes/part-00001.bin",
        "1000-bytes/part-00000.bin",
    ]
    assert dataset.size == 1020
    assert (tmp_path / "1000-bytes" / "part-00000.bin").stat().st_size == 1000


# --- stack start --------------------------------------------------------------------------------------


def test_podman_run_starts_the_same_image_command_and_port_as_the_stack(tmp_path: Path) -> None:
    from bench.stack_start import Engine, app_spec, podman_run_command

    spec = app_spec()
    engine = Engine("unix:///e.sock", ["podman", "--root", "/r"], {})
    command = podman_run_command(engine, spec, "bench-start-1", 20123, tmp_path)
    assert command[:4] == ["podman", "--root", "/r", "run"]
    image = f"{spec['image']['name']}:{spec['image']['tags'][0]}"
    after_image = command[command.index(image) + 1 :]
    assert after_image == [*spec["command"], *spec["args"]]
    assert command[command.index("--publish") + 1] == f"127.0.0.1:20123:{spec['ports'][0]['port']}"
    assert command[command.index("--volume") + 1] == f"{tmp_path}:{spec['volumeMounts'][0]['mountPath']}"


def test_the_stack_start_ratio_is_held_to_its_target_with_its_spread() -> None:
    from bench.stack_start import figure

    result = figure([1.2, 1.3, 4.0, 1.25, 1.3], [1.0, 1.0, 1.0, 1.1, 0.9])
    assert result.key == "stack_start_ratio"
    assert result.value == pytest.approx(1.3) and result.baseline == pytest.approx(1.0)
    assert result.target == 1.3 and result.met is True and not result.higher_is_better
    assert result.details["ratio_per_round"]["max"] == 4.0
    assert result.details["platform_s"]["each"] == [1.2, 1.3, 4.0, 1.25, 1.3]
    assert figure([1.4] * 5, [1.0] * 5).met is False


# --- processes a benchmark started -------------------------------------------------------------------


def test_processes_left_in_sessions_of_their_own_end_with_the_block(tmp_path: Path) -> None:
    import os
    import sys
    import time

    from bench.support import running, started_at

    # A parent that starts a child in a session of its own (as a platform starts a stack), tells
    # its id, and then ends on SIGTERM without ending the child.
    parent = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    log = tmp_path / "parent.log"
    with running([sys.executable, "-c", parent], environment=dict(os.environ), log=log):
        child = int(wait_until(lambda: log.read_text().strip(), "the parent to print its child's pid", 10))
        assert started_at(child) is not None
    deadline = time.monotonic() + 5
    while started_at(child) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started_at(child) is None or Path(f"/proc/{child}/stat").read_text().split()[2] == "Z"
