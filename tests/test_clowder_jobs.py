"""Clowder's own extractor jobs on the real RabbitMQ: announced extractors, jobs refused with their error
in Clowder and a dead letter here, duplicates acknowledged without a second transfer."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from shared.adapters.runtime.processes import free_port
from shared.bootstrap import Platform
from shared.domain import clowder_jobs
from tests.clowder_pairing import Served
from tests.clowder_server import ClowderServer
from tests.conftest import Api, Client
from tests.support import wait_until
from tests.test_shovel import AMQP_URL, delete_queue, require_rabbitmq
from tests.users import Users

API_KEY = "platform-clowder-key"
PREFIX = f"wbtest{uuid.uuid4().hex[:8]}"
QUEUES = [f"{PREFIX}.{action}" for action in ("send", "start", "stop")]
SOURCE_OF_SEND = (
    f"/apis/v1/namespaces/workbench/rabbitmqsources/{clowder_jobs.source_name('send')}#{PREFIX}.send"
)
"""The ``source`` of the events eventing-rabbitmq's RabbitmqSource makes of the send queue's jobs."""


def delete_queues(prefix: str = PREFIX) -> None:
    """Remove the extractor queues of ``prefix`` and their error queues from the test RabbitMQ."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        for action in ("send", "start", "stop"):
            channel.queue_delete(f"{prefix}.{action}")
            channel.queue_delete(f"error.{prefix}.{action}")
    finally:
        connection.close()


def outcome_event(platform: Platform, transfer_id: str, dataset_id: str, *, target: str = "") -> Any:
    """The ``transfer.completed`` event of dana's one-file transfer, signed as the platform signs it."""
    from events import codec, types

    return codec.new_event(
        types.TRANSFER_COMPLETED,
        types.TransferOutcome(
            transfer_id=transfer_id,
            user="dana",
            dataset_id=dataset_id,
            files_done=1,
            files_total=1,
            bytes_done=4,
            bytes_total=4,
            target=target,
        ),
        source=platform.event_source,
        secret=platform.event_secret,
    )


def queue_bodies(queue: str) -> list[bytes]:
    """Every message now on ``queue`` (none where there is no such queue), taken off it."""
    import pika
    import pika.exceptions

    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    taken: list[bytes] = []
    try:
        channel = connection.channel()
        while True:
            method, _, body = channel.basic_get(queue, auto_ack=True)
            if method is None or body is None:
                return taken
            taken.append(body)
    except pika.exceptions.ChannelClosedByBroker:
        return taken
    finally:
        if connection.is_open:
            connection.close()


def unsettled(queue: str) -> int:
    """How many messages ``queue`` holds, ready or handed out and not yet acknowledged."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        ready = channel.queue_declare(queue, passive=True).method.message_count
        return int(ready)
    finally:
        connection.close()


@pytest.fixture
def clowder_amqp_url() -> str:
    """Clowder's RabbitMQ (parametrize to put it elsewhere than the platform's)."""
    return AMQP_URL


@pytest.fixture
def platform_amqp_url() -> str | None:
    """The platform's own RabbitMQ; None: the test RabbitMQ where shovels run, else in-process queues."""
    return None


@pytest.fixture(params=[1, 2], ids=["clowder1", "clowder2"])
def clowder(request: pytest.FixtureRequest, tmp_path: Path, clowder_amqp_url: str) -> Iterator[ClowderServer]:
    require_rabbitmq()
    try:
        with ClowderServer(tmp_path / "clowder", request.param, API_KEY, amqp_url=clowder_amqp_url) as server:
            yield server
    finally:
        if clowder_amqp_url == AMQP_URL:
            delete_queues()


@pytest.fixture
def stack_actions() -> str:
    """Who carries out the jobs' starts and stops (parametrize with "shovels" to hand them to shovels)."""
    return "platform"


@pytest.fixture
def environment(
    clowder: ClowderServer, stack_actions: str, clowder_amqp_url: str, platform_amqp_url: str | None
) -> dict[str, str]:
    through_shovels = stack_actions == "shovels"
    return {
        "WORKBENCH_CLOWDER_URL": clowder.url,
        "WORKBENCH_CLOWDER_API_KEY": API_KEY,
        "WORKBENCH_CLOWDER_AMQP_URL": clowder_amqp_url,
        "WORKBENCH_CLOWDER_EXTRACTOR_PREFIX": PREFIX,
        # A RabbitmqSource's event carries no reply_to: the function replies here.
        "WORKBENCH_CLOWDER_REPLY_QUEUE": clowder.reply_queue,
        "WORKBENCH_STACK_ACTIONS": stack_actions,
        # The shovels, processes of their own, reach the platform's queues and its API.
        "WORKBENCH_AMQP_URL": platform_amqp_url
        if platform_amqp_url is not None
        else (AMQP_URL if through_shovels else ""),
        "WORKBENCH_PORT": str(free_port()) if through_shovels else "",
    }


@pytest.fixture
def consumer(platform: Platform) -> Iterator[threading.Thread]:
    """The platform taking jobs from Clowder's queues, as ``workbench run`` does."""
    stop = threading.Event()
    thread = threading.Thread(target=clowder_jobs.run, args=(platform, stop), daemon=True)
    thread.start()
    yield thread
    stop.set()
    thread.join(10)
    assert not thread.is_alive()


def final_status(clowder: ClowderServer, job_id: str, seconds: float = 20) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        for status in clowder.statuses_of(job_id):
            if status["message_type"] in ("StatusMessage.done", "StatusMessage.error"):
                return status
        return None

    return wait_until(ended, f"the end of job {job_id}", seconds)


def submit(clowder: ClowderServer, key: str, dataset_id: str, queue: str, parameters: Any = None) -> str:
    """Submit a dataset to an extractor through Clowder's REST route, as its page does."""
    import httpx

    if clowder.version == 1:
        response = httpx.post(
            f"{clowder.url}/api/datasets/{dataset_id}/extractions",
            headers={"X-API-Key": key},
            json={"extractor": queue, **({"parameters": parameters} if parameters is not None else {})},
        )
        assert response.status_code == 200, response.text
        job_id: str = response.json()["job_id"]
        return job_id
    response = httpx.post(
        f"{clowder.url}/api/v2/datasets/{dataset_id}/extract",
        params={"extractorName": queue},
        headers={"X-API-KEY": key},
        json=parameters or {},
    )
    assert response.status_code == 200, response.text
    return str(response.json())


def test_the_platform_announces_its_three_actions_as_clowder_lists_them(
    clowder: ClowderServer, consumer: threading.Thread
) -> None:
    import httpx

    wait_until(lambda: all(queue in clowder.heartbeats for queue in QUEUES), "the three heartbeats")
    if clowder.version == 1:
        listed = httpx.get(f"{clowder.url}/api/extractors", headers={"X-API-Key": API_KEY}).json()
        names = {info["name"]: info for info in listed}
    else:
        page = httpx.get(f"{clowder.url}/api/v2/listeners", headers={"X-API-KEY": API_KEY}).json()
        names = {listener["name"]: listener["properties"] for listener in page["data"]}
    assert set(QUEUES) <= set(names)
    send = names[f"{PREFIX}.send"]
    assert send["description"].startswith("Send to Workbench")
    assert send["process"] == {"dataset": ["*"], "file": ["*"]}
    start = clowder.heartbeats[f"{PREFIX}.start"]["extractor_info"]
    assert start["description"] == "Start my Workbench stack"
    assert start["parameters"]["schema"]["required"] == ["stack"]
    # One announcement per platform: the same id on every beat, whatever process sends it.
    assert (
        clowder.heartbeats[f"{PREFIX}.send"]["id"]
        == json.loads(
            clowder_jobs.heartbeat(clowder_jobs.extractors(PREFIX)[0], "1", "http://127.0.0.1:8080")
        )["id"]
    )


def test_a_submitted_dataset_becomes_a_transfer_of_the_keys_user_and_a_duplicate_makes_none(
    clowder: ClowderServer, platform: Platform, api: Api, consumer: threading.Thread
) -> None:
    api.make_user("dana")
    key = clowder.add_user("dana@example.org")
    dataset_id = clowder.add_dataset("Soil samples")
    clowder.add_files(dataset_id, {"a.csv": b"1,2\n", "raw/b.bin": b"\0" * 1000})

    job_id = submit(clowder, key, dataset_id, f"{PREFIX}.send", {"target": "Soil"})
    processing = wait_until(
        lambda: [s for s in clowder.statuses_of(job_id) if s["message_type"] == "StatusMessage.processing"],
        "a processing status",
    )
    first = clowder.statuses_of(job_id)[0]
    (transfer,) = platform.store.list_transfers("dana")
    # Clowder 1 sends a dataset submission's parameters as JSON text, Clowder 2 as an object.
    sent = clowder.jobs[job_id]["body"]["parameters"]
    assert sent == ('{"target": "Soil"}' if clowder.version == 1 else {"target": "Soil"})
    assert transfer.target == "Clowder/Soil" and transfer.filesTotal == 2
    assert f"transfer {transfer.id}: 0 of 2 files" in processing[0]["message"]
    assert processing[0]["file_id"] == dataset_id and processing[0]["extractor_id"] == f"{PREFIX}.send"
    assert first["message_type"] == "StatusMessage.start"

    # The same job again (a redelivery, or Clowder sending it twice): acknowledged, nothing new.
    queue = f"{PREFIX}.send"
    body = {"host": clowder.url, "secretKey": key, "id": dataset_id, "datasetId": dataset_id}
    body |= {"jobid": job_id} if clowder.version == 1 else {"job_id": job_id, "resource_type": "dataset"}
    count = len(clowder.statuses_of(job_id))
    clowder.publish_job(queue, body)
    wait_until(lambda: unsettled(queue) == 0, "the duplicate taken")
    time.sleep(0.5)  # time enough for a second transfer or status, were one to come
    assert len(platform.store.list_transfers("dana")) == 1
    assert len(clowder.statuses_of(job_id)) == count
    assert queue_bodies(f"error.{queue}") == []


def test_a_submitted_file_sends_that_file_only(
    clowder: ClowderServer, platform: Platform, api: Api, consumer: threading.Thread
) -> None:
    import httpx

    api.make_user("erin")
    key = clowder.add_user("erin@example.org")
    dataset_id = clowder.add_dataset("Two files")
    ids = clowder.add_files(dataset_id, {"one.txt": b"1", "two.txt": b"22"})
    if clowder.version == 1:
        answer = httpx.post(
            f"{clowder.url}/api/files/{ids['two.txt']}/extractions",
            headers={"X-API-Key": key},
            json={"extractor": f"{PREFIX}.send"},
        ).json()["job_id"]
    else:
        answer = httpx.post(
            f"{clowder.url}/api/v2/files/{ids['two.txt']}/extract",
            params={"extractorName": f"{PREFIX}.send"},
            headers={"X-API-KEY": key},
            json={},
        ).json()
    wait_until(
        lambda: [s for s in clowder.statuses_of(str(answer)) if "processing" in s["message_type"]],
        "a processing status",
    )
    (transfer,) = platform.store.list_transfers("erin")
    files = platform.store.list_transfer_files(transfer.id)
    assert [(row.path, row.clowderId) for row in files] == [("two.txt", ids["two.txt"])]


BAD_JOBS = {
    "unknown user": "no Workbench account has the e-mail address 'nobody@example.org'",
    "refused key": "Clowder does not accept the job's key",
    "no such dataset": "Clowder has no dataset",
    "another clowder": "not the one this Workbench is paired with",
    "malformed body": "the job's body is not JSON",
    "no key": "the job carries no secretKey",
    "target outside the data folder": "target_folder",
}


@pytest.mark.parametrize("case", list(BAD_JOBS))
def test_a_bad_job_ends_with_its_error_in_clowder_a_dead_letter_and_no_crash(
    case: str,
    clowder: ClowderServer,
    platform: Platform,
    api: Api,
    consumer: threading.Thread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api.make_user("dana")
    dana = clowder.add_user("dana@example.org")
    dataset_id = clowder.add_dataset("Soil samples")
    clowder.add_files(dataset_id, {"a.csv": b"1"})
    job_id = uuid.uuid4().hex[:24]
    body: dict[str, Any] = {"host": clowder.url, "secretKey": dana, "id": dataset_id, "datasetId": dataset_id}
    body["jobid" if clowder.version == 1 else "job_id"] = job_id
    queue = f"{PREFIX}.send"
    if case == "unknown user":
        body["secretKey"] = clowder.add_user("nobody@example.org")
    elif case == "refused key":
        body["secretKey"] = "not-a-key-clowder-knows"
    elif case == "no such dataset":
        body["id"] = body["datasetId"] = "5f0000000000000000000000"
    elif case == "another clowder":
        body["host"] = "https://clowder.elsewhere.example.org/"
    elif case == "no key":
        del body["secretKey"]
    elif case == "target outside the data folder":
        body["parameters"] = {"target": "../../.ssh"}
    if case == "malformed body":
        clowder.publish_job(queue, b"{not json")
    else:
        clowder.publish_job(queue, body)

    if case == "malformed body":
        # As pyclowder: no job id could be read, so no status (Clowder has no job of an empty id).
        wait_until(lambda: platform.store.list_dead_letters(10), "the dead letter")
        time.sleep(0.3)
        assert clowder.statuses == []
    else:
        error = final_status(clowder, job_id)
        assert error["message_type"] == "StatusMessage.error"
        assert BAD_JOBS[case] in error["message"], error
        assert error["status"].startswith("StatusMessage.error: ")
    assert platform.store.list_transfers("dana") == []
    (letter,) = wait_until(lambda: platform.store.list_dead_letters(10), "the dead letter")
    assert letter.errorDestination == queue and BAD_JOBS[case] in letter.errorData
    assert "dana" not in letter.data.split("secretKey")[-1][:40] or case == "malformed body"
    assert dana not in letter.data  # the key is never kept, nor logged
    assert dana not in caplog.text and body.get("secretKey", dana) not in caplog.text
    # As pyclowder does, the job itself goes to error.<queue>, for Clowder's admins.
    assert len(wait_until(lambda: queue_bodies(f"error.{queue}"), "the job in the error queue")) == 1
    assert queue_bodies(queue) == []

    # The consumer goes on: a good job after the bad one is carried out.
    good = submit(clowder, dana, dataset_id, f"{PREFIX}.stop")
    assert final_status(clowder, good)["message"] == "none of your stacks was running"
    assert consumer.is_alive()


def test_start_and_stop_take_the_stack_from_the_parameters(
    clowder: ClowderServer, platform: Platform, api: Api, consumer: threading.Thread
) -> None:
    from shared.domain import stacks

    token = api.make_user("dana")
    key = clowder.add_user("dana@example.org")
    dataset_id = clowder.add_dataset("Any")
    from tests.test_e2e import STATIC_SPEC

    assert api.call("POST", "/api/services", token, json=STATIC_SPEC).status_code == 200
    sid = api.call("POST", "/api/stacks", token, json={"key": "notebook"}).get_json()["id"]
    started = submit(clowder, key, dataset_id, f"{PREFIX}.start", {"stack": sid})
    assert final_status(clowder, started)["message"] in (
        f"stack {sid} is starting",
        f"stack {sid} is started",
    )
    wait_until(lambda: stacks.get(platform, "dana", sid).status == "started", "the stack started", 30)
    stopped = submit(clowder, key, dataset_id, f"{PREFIX}.stop")  # no stack named: all of them
    assert final_status(clowder, stopped)["message"] == f"stopping {sid}"
    wait_until(lambda: stacks.get(platform, "dana", sid).status == "stopped", "the stack stopped", 30)
    missing = submit(clowder, key, dataset_id, f"{PREFIX}.start", {})
    assert "name the stack" in final_status(clowder, missing)["message"]
    foreign = submit(clowder, key, dataset_id, f"{PREFIX}.start", {"stack": "s9zzzz"})
    assert "'s9zzzz' is not one of dana's stacks" in final_status(clowder, foreign)["message"]
    assert [stack.status for stack in stacks.list_stacks(platform, "dana")] == ["stopped"]


@pytest.fixture
def user() -> Iterator[str]:
    """A user of this test alone, whose queue on the test RabbitMQ goes with it."""
    from shared.domain.messages import queue_for

    name = f"job{uuid.uuid4().hex[:10]}"
    yield name
    delete_queue(queue_for(name))


@pytest.mark.parametrize("stack_actions", ["shovels"])
def test_a_start_job_is_carried_out_by_a_shovel_of_the_user_on_rabbitmq(
    clowder: ClowderServer,
    platform: Platform,
    api: Api,
    users: Users,
    shovels: Served,
    consumer: threading.Thread,
    user: str,
) -> None:
    """Clowder's start button, as production carries it out with WORKBENCH_STACK_ACTIONS=shovels: the job
    becomes a command on the user's RabbitMQ queue, which the shovel of the user's running stack (a
    process of its own) carries out through the API with a token for that stack alone."""
    from shared.domain import stacks
    from tests.test_e2e import STATIC_SPEC
    from tests.test_transfers import new_stack

    token = users.make(user)
    key = clowder.add_user(f"{user}@example.org")
    dataset_id = clowder.add_dataset("Any")
    assert api.call("POST", "/api/services", token, json=STATIC_SPEC).status_code == 200
    running, stopped = new_stack(api, token), new_stack(api, token)
    assert api.call("GET", f"/api/start/{running}", token).status_code == 202
    wait_until(lambda: stacks.get(platform, user, running).status == "started", "the running stack", 30)

    job = submit(clowder, key, dataset_id, f"{PREFIX}.start", {"stack": stopped})
    message = final_status(clowder, job)["message"]
    assert message == f"stack {stopped}: the start is handed to the shovel of your running stack"
    wait_until(lambda: stacks.get(platform, user, stopped).status == "started", "the stack the job named", 30)
    log = platform.data_dir / "logs" / user / f"{running}-shovel.log"
    assert f"start of stack {stopped} accepted" in log.read_text()
    assert [stack.status for stack in stacks.list_stacks(platform, user)] == ["started", "started"]


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_the_function_carries_out_a_job_as_a_rabbitmq_source_delivers_it_and_tells_its_outcome(
    mode: Literal["binary", "structured"],
    clowder: ClowderServer,
    platform: Platform,
    api: Api,
    client: Callable[[str], Client],
) -> None:
    from events import codec

    api.make_user("dana")
    key = clowder.add_user("dana@example.org")
    dataset_id = clowder.add_dataset("Soil samples")
    clowder.add_files(dataset_id, {"a.csv": b"1,2\n"})
    job_id = uuid.uuid4().hex[:24]
    body = {
        "host": clowder.url,
        "secretKey": key,
        "id": dataset_id,
        "datasetId": dataset_id,
        "job_id": job_id,
    }
    # What a RabbitmqSource sends: its own type, its source (eventing-rabbitmq's RabbitmqEventSource:
    # /apis/v1/namespaces/<ns>/rabbitmqsources/<name>#<queue>), the job as data.
    event = codec.Event(
        {
            "specversion": "1.0",
            "type": clowder_jobs.JOB_EVENT,
            "source": SOURCE_OF_SEND,
            "id": uuid.uuid4().hex,
            "datacontenttype": "application/json",
        },
        json.dumps(body).encode(),
    )
    headers, data = codec.to_http(event, mode)
    answer = client("clowder_job").post("/", headers=headers, data=data)
    assert answer.status_code == 202, answer.get_data(as_text=True)
    (transfer,) = platform.store.list_transfers("dana")
    wait_until(
        lambda: any("processing" in s["message_type"] for s in clowder.statuses_of(job_id)), "progress"
    )

    # The transfer's outcome event (as the Broker delivers it) ends the job in Clowder.
    outcome = outcome_event(platform, transfer.id, dataset_id, target=transfer.target)
    headers, data = codec.to_http(outcome, mode)
    answer = client("clowder_job").post("/", headers=headers, data=data)
    assert answer.status_code == 202, answer.get_data(as_text=True)
    done = final_status(clowder, job_id)
    assert done["message_type"] == "StatusMessage.done"
    assert done["message"].startswith(
        f"transfer {transfer.id}: 1 of 1 files (4 bytes) in Clowder/Soil samples"
    )
    # Told once: the record of the job is gone, so a redelivered outcome tells nothing more.
    assert not platform.objects.list(clowder_jobs.RECORDS)


def test_the_function_refuses_what_is_no_cloud_event(
    clowder: ClowderServer, platform: Platform, client: Callable[[str], Client]
) -> None:
    answer = client("clowder_job").post("/", data=b"{}", headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and "not a valid CloudEvent" in answer.get_data(as_text=True)
    assert clowder.statuses == []


def test_the_sweep_announces_the_extractors_as_the_cluster_s_cron_job_does(
    clowder: ClowderServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.tools.cli import main

    for name, value in {
        "WORKBENCH_CLOWDER_URL": clowder.url,
        "WORKBENCH_CLOWDER_AMQP_URL": AMQP_URL,
        "WORKBENCH_CLOWDER_EXTRACTOR_PREFIX": PREFIX,
    }.items():
        monkeypatch.setenv(name, value)
    assert clowder.heartbeats == {}
    assert main(["sweep"]) == 0
    assert "abandoned transfers and exports taken up" in capsys.readouterr().out
    wait_until(lambda: set(QUEUES) <= set(clowder.heartbeats), "the heartbeats of one sweep")


@pytest.mark.parametrize("environment", [{"WORKBENCH_CLOWDER_AMQP_URL": ""}], ids=["no-clowder-rabbitmq"])
def test_a_transfer_no_job_asked_for_ends_quietly_where_no_clowder_rabbitmq_is_set(
    platform: Platform, client: Callable[[str], Client]
) -> None:
    """Every transfer's outcome reaches the function (its Trigger filters by type only); one that no
    Clowder job asked for is 202 without touching Clowder's RabbitMQ, also where none is set."""
    from events import codec

    headers, data = codec.to_http(outcome_event(platform, "t-not-a-job", "d1"), "binary")
    answer = client("clowder_job").post("/", headers=headers, data=data)
    assert answer.status_code == 202, answer.get_data(as_text=True)


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_the_function_answers_an_event_past_its_limit_or_of_another_type_as_every_event_function(
    mode: Literal["binary", "structured"],
    clowder: ClowderServer,
    platform: Platform,
    client: Callable[[str], Client],
) -> None:
    from events import codec

    def job(data: bytes, event_type: str = clowder_jobs.JOB_EVENT) -> codec.Event:
        attributes = {
            "specversion": "1.0",
            "type": event_type,
            "source": SOURCE_OF_SEND,
            "id": uuid.uuid4().hex,
            "datacontenttype": "application/json",
        }
        return codec.Event(attributes, data)

    headers, data = codec.to_http(job(b'"' + b"x" * (1 << 20) + b'"'), mode)
    answer = client("clowder_job").post("/", headers=headers, data=data)
    assert answer.status_code == 413 and "WORKBENCH_MAX_EVENT_BYTES" in answer.get_data(as_text=True)
    headers, data = codec.to_http(job(b"{}", "org.example.other"), mode)
    answer = client("clowder_job").post("/", headers=headers, data=data)
    assert answer.status_code == 400
    assert "does not handle events of type org.example.other" in answer.get_json()["Error"]
    assert clowder.statuses == [] and platform.store.list_dead_letters(10) == []


def test_announcing_alone_declares_the_queues_so_a_job_waits_for_the_rabbitmq_source(
    clowder: ClowderServer, platform: Platform
) -> None:
    """On a cluster nothing consumes before the RabbitmqSources, which read predeclared queues only:
    the sweep's announcement declares them (and ``error.<queue>``) as pyclowder does when it connects,
    so a job Clowder sends is kept, not dropped for want of a queue."""
    import pika
    import pika.exceptions

    delete_queues()
    clowder_jobs.announce(platform)
    wait_until(lambda: set(QUEUES) <= set(clowder.heartbeats), "the heartbeats")
    clowder.publish_job(f"{PREFIX}.send", {"job_id": "kept", "host": clowder.url})
    wait_until(lambda: unsettled(f"{PREFIX}.send") == 1, "the job kept on its queue")
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        for queue in QUEUES:
            channel = connection.channel()
            declared = channel.queue_declare(f"error.{queue}", passive=True)  # raises were it missing
            assert declared.method.message_count == 0
            # Durable, as pyclowder declares them: declaring it non-durable is refused.
            with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="durable"):
                connection.channel().queue_declare(queue, durable=False)
    finally:
        connection.close()


def test_a_job_delivered_again_while_an_earlier_delivery_still_holds_it_goes_back_on_the_queue(
    clowder: ClowderServer, platform: Platform, api: Api, consumer: threading.Thread
) -> None:
    """A delivery that died with the job claimed (its process killed) leaves no status but "started":
    a redelivery within the claim's lease is not acknowledged as a duplicate but put back, and carried
    out once the claim lapses; a job that did finish is acknowledged."""
    api.make_user("dana")
    key = clowder.add_user("dana@example.org")
    dataset_id = clowder.add_dataset("Soil samples")
    clowder.add_files(dataset_id, {"a.csv": b"1"})
    job_id = uuid.uuid4().hex[:24]
    queue = f"{PREFIX}.send"
    # The delivery that died: its claim is still held.
    assert platform.store.claim_event(
        clowder_jobs.JOB_SOURCE, job_id, queue, int(time.time()), platform.settings.recovery.resume_after
    )
    body = {"host": clowder.url, "secretKey": key, "id": dataset_id, "datasetId": dataset_id}
    body |= {"jobid": job_id} if clowder.version == 1 else {"job_id": job_id, "resource_type": "dataset"}
    clowder.publish_job(queue, body)
    time.sleep(1.5)
    assert clowder.statuses_of(job_id) == [] and platform.store.list_transfers("dana") == []
    assert queue_bodies(f"error.{queue}") == [] and platform.store.list_dead_letters(10) == []

    platform.store.release_event(clowder_jobs.JOB_SOURCE, job_id)  # as the lease lapsing does
    wait_until(
        lambda: any("processing" in s["message_type"] for s in clowder.statuses_of(job_id)),
        "the job carried out after all",
        20,
    )
    assert len(platform.store.list_transfers("dana")) == 1


def test_the_folder_parameter_sends_that_folder_of_the_dataset_only(
    clowder: ClowderServer, platform: Platform, api: Api, consumer: threading.Thread
) -> None:
    api.make_user("dana")
    key = clowder.add_user("dana@example.org")
    dataset_id = clowder.add_dataset("Field data")
    clowder.add_files(
        dataset_id, {"top.txt": b"1", "raw/a.csv": b"22", "raw/deep/b.csv": b"333", "other/c": b"4"}
    )
    job_id = submit(clowder, key, dataset_id, f"{PREFIX}.send", {"folder": "raw"})
    wait_until(
        lambda: [s for s in clowder.statuses_of(job_id) if "processing" in s["message_type"]], "progress"
    )
    (transfer,) = platform.store.list_transfers("dana")
    files = platform.store.list_transfer_files(transfer.id)
    assert sorted(row.path for row in files) == ["raw/a.csv", "raw/deep/b.csv"]


def test_statuses_name_done_only_when_done_and_heartbeats_name_the_repository_for_both_clowders() -> None:
    """Clowder 1 takes a status whose text holds DONE for the end of the job, so a dataset named so must
    not end it early; Clowder 2 reads the repository as repository_type/repository_url."""
    processing = json.loads(clowder_jobs.status("j1", "d1", "x.send", "processing", "placed in Clowder/DONE"))
    assert "DONE" not in processing["status"] and "DONE" not in processing["message"]
    assert processing["message"] == "placed in Clowder/Done"
    done = json.loads(clowder_jobs.status("j1", "d1", "x.send", "done", "in Clowder/DONE"))
    assert done["message"] == "in Clowder/DONE"
    beat = json.loads(clowder_jobs.heartbeat(clowder_jobs.extractors("x")[0], "1", "https://wb.example.org"))
    (repository,) = beat["extractor_info"]["repository"]
    assert repository["repository_type"] == repository["repType"] == "git"
    assert repository["repository_url"] == repository["repUrl"] == clowder_jobs.REPOSITORY_URL


def test_clowder_hears_the_counts_as_the_shovels_place_the_files_at_most_so_often(
    clowder: ClowderServer,
    platform: Platform,
    api: Api,
    consumer: threading.Thread,
    client: Callable[[str], Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from events import codec, types
    from events.signing import derive_key

    api.make_user("dana")
    key = clowder.add_user("dana@example.org")
    dataset_id = clowder.add_dataset("Soil samples")
    clowder.add_files(dataset_id, {"a.csv": b"1,2\n", "b.csv": b"3,4\n", "c.csv": b"5\n"})
    job_id = submit(clowder, key, dataset_id, f"{PREFIX}.send")

    def processing() -> list[str]:
        return [
            s["message"]
            for s in clowder.statuses_of(job_id)
            if s["message_type"] == "StatusMessage.processing"
        ]

    wait_until(processing, "the first processing status")
    (transfer,) = platform.store.list_transfers("dana")

    def placed(*paths: str) -> None:
        """A shovel of dana reporting ``paths`` placed, to shovel_reports as the Broker delivers it."""
        report = types.TransferProgress(
            transfer_id=transfer.id, user="dana", placed=list(paths), bytes_placed=4
        )
        event = codec.new_event(
            types.TRANSFER_PROGRESS,
            report,
            source="shovel-test",
            secret=derive_key(platform.event_secret, "shovel:dana"),
        )
        headers, body = codec.to_http(event, "binary")
        answer = client("shovel_reports").post("/", headers=headers, data=body)
        assert answer.status_code == 202, answer.get_data(as_text=True)

    placed("a.csv")  # within PROGRESS_SECONDS of the first status: not told
    time.sleep(0.5)
    assert len(processing()) == 1
    monkeypatch.setattr(clowder_jobs, "PROGRESS_SECONDS", 0.0)
    placed("b.csv")
    told = wait_until(lambda: processing()[1:], "a progress status")
    assert told[0].startswith(f"transfer {transfer.id}: 2 of 3 files (8 of ")
    monkeypatch.setattr(clowder_jobs, "PROGRESS_SECONDS", 3600.0)
    placed("c.csv")  # the last: the transfer's outcome tells it, not a progress status
    time.sleep(0.5)
    assert len(processing()) == 2


CLOWDER_VHOST, PLATFORM_VHOST = f"{PREFIX}-clowder", f"{PREFIX}-platform"


def vhost_url(vhost: str) -> str:
    from urllib.parse import quote

    return AMQP_URL.rsplit("/", 1)[0] + "/" + quote(vhost, safe="")


@pytest.fixture
def two_brokers() -> Iterator[None]:
    """Two virtual hosts of the test RabbitMQ standing for two servers: Clowder's and the platform's."""
    import shutil
    import subprocess

    require_rabbitmq()
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed")

    def control(*arguments: str) -> None:
        subprocess.run(["rabbitmqctl", *arguments], check=True, capture_output=True, timeout=60)

    try:
        for vhost in (CLOWDER_VHOST, PLATFORM_VHOST):
            control("add_vhost", vhost)
            control("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield
    finally:
        for vhost in (CLOWDER_VHOST, PLATFORM_VHOST):
            subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True, timeout=60)


def queue_exists(url: str, queue: str) -> bool:
    import pika
    import pika.exceptions

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        connection.channel().queue_declare(queue, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker:
        return False
    finally:
        if connection.is_open:
            connection.close()


@pytest.mark.parametrize(
    ("clowder_amqp_url", "platform_amqp_url"), [(vhost_url(CLOWDER_VHOST), vhost_url(PLATFORM_VHOST))]
)
def test_clowder_s_rabbitmq_and_the_platform_s_are_kept_apart(
    two_brokers: None, clowder: ClowderServer, platform: Platform, api: Api, consumer: threading.Thread
) -> None:
    """Jobs, heartbeats and statuses on Clowder's broker; the user's sync commands on the platform's;
    neither broker gets the other's queues."""
    from shared.domain.messages import queue_for

    api.make_user("dana")
    key = clowder.add_user("dana@example.org")
    dataset_id = clowder.add_dataset("Soil samples")
    clowder.add_files(dataset_id, {"a.csv": b"1,2\n"})
    wait_until(lambda: set(QUEUES) <= set(clowder.heartbeats), "the heartbeats on Clowder's broker")
    job_id = submit(clowder, key, dataset_id, f"{PREFIX}.send")
    wait_until(
        lambda: [s for s in clowder.statuses_of(job_id) if "processing" in s["message_type"]], "progress"
    )
    clowder_side, platform_side = vhost_url(CLOWDER_VHOST), vhost_url(PLATFORM_VHOST)
    assert all(queue_exists(clowder_side, queue) for queue in QUEUES)
    assert not any(queue_exists(platform_side, queue) for queue in QUEUES)
    assert queue_exists(platform_side, queue_for("dana"))
    assert not queue_exists(clowder_side, queue_for("dana"))
