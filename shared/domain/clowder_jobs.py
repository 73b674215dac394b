"""Clowder's own extractor jobs: the platform's actions announced as Clowder extractors, each job carried
out as the signed event would be, its status sent back to Clowder as its extractors send theirs.

Formats, as the real Clowder and pyclowder have them: a job comes on the extractor's queue (default
exchange, routing key = the queue) with ``reply_to`` (and, from Clowder 1, ``correlation_id``); its body
holds ``id``, ``datasetId``, ``secretKey``, ``host``, ``jobid`` (1.x) or ``job_id`` (2.x),
``parameters`` and, from Clowder 2, ``resource_type``. A status goes to ``reply_to`` as pyclowder's
``RabbitMQHandler.status_update`` writes it: ``file_id``, ``extractor_id``, ``job_id``, ``status``
(``"StatusMessage.<kind>: <message>"``), ``start``, ``message_type``, ``message``. The key a job carries
is a credential of the Clowder user who submitted it: it serves only to ask Clowder whose it is and
whether that user may read the dataset; it is never stored or logged."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from events.ids import CLOWDER_ID_PATTERN
from shared.core.errors import Forbidden, InvalidInput, NotFound, Unavailable, WorkbenchError

if TYPE_CHECKING:
    from events.types import TransferOutcome
    from shared.core.models import Transfer

log = logging.getLogger(__name__)


class Delivered(Protocol):
    """One job as it came off Clowder's queue (or out of a RabbitmqSource's event)."""

    @property
    def queue(self) -> str: ...
    @property
    def body(self) -> bytes: ...
    @property
    def reply_to(self) -> str | None: ...
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def message_id(self) -> str | None: ...


DeliveredT = TypeVar("DeliveredT", bound=Delivered)
"""What the queues hand out, and take back when a job is refused."""


class JobQueues(Protocol[DeliveredT]):
    """Clowder's RabbitMQ as the jobs use it: its extractors announced, jobs taken, statuses sent,
    refused jobs kept in ``error.<queue>``."""

    def announce(self, heartbeats: Iterable[bytes], queues: Iterable[str] = ()) -> None: ...
    def reply(self, queue: str, correlation_id: str | None, body: bytes) -> None: ...
    def reject(self, queue: str, received: DeliveredT) -> None: ...
    def consume(
        self, queues: Iterable[str], handler: Callable[[DeliveredT], None], *, stop: threading.Event
    ) -> None: ...


if TYPE_CHECKING:
    from shared.domain.stack_actions import StackActionPorts
    from shared.domain.stacks import StackPorts
    from shared.domain.transfers import TransferPorts

    class ClowderJobPorts(TransferPorts, StackPorts, StackActionPorts, Protocol):
        """What carrying out a job takes: what a transfer, a stack and a stack action handed to a
        shovel take. (Declared for the type checker only: those services are imported when a job
        asks for them.)"""

    class JobQueuePorts(ClowderJobPorts, Protocol[DeliveredT]):
        """Besides, Clowder's queues, to take jobs from and answer them on."""

        def clowder_queues(self) -> JobQueues[DeliveredT]:
            """Clowder's RabbitMQ (Unavailable when none is set)."""
            ...


Action = Literal["send", "start", "stop"]
Kind = Literal["start", "processing", "done", "error"]

JOB_SOURCE = "clowder-job"
"""The ``source`` under which a job is claimed once (with its Clowder job id)."""
RECORDS = "clowder-jobs/"
"""Where the reply address of a job whose transfer is under way waits for its outcome (object store)."""
MAX_BODY_BYTES = 64 * 1024
PROGRESS_SECONDS = 10.0
"""At most one progress status per job this often: a transfer of many small files reports many times."""
REPOSITORY_URL = "https://github.com/nds-org/ndslabs"


@dataclass(frozen=True)
class Extractor:
    """One action of the platform as Clowder lists it."""

    action: Action
    name: str
    """The extractor's name, which is also its queue."""
    description: str
    process: dict[str, list[str]]
    parameters: dict[str, Any]
    """A JSON Schema of what the submission's ``parameters`` may say (Clowder 2 shows it as a form)."""


_TARGET = {"type": "string", "title": "Folder in your data folder (default: the dataset's name)"}
_STACK = {"type": "string", "title": "Stack id, e.g. s1abcd"}


def extractors(prefix: str) -> tuple[Extractor, ...]:
    """The platform's three actions, named ``<prefix>.send``, ``<prefix>.start`` and ``<prefix>.stop``."""
    return (
        Extractor(
            "send",
            f"{prefix}.send",
            "Send to Workbench: copy this dataset (or file) into your Labs Workbench data folder",
            {"dataset": ["*"], "file": ["*"]},
            {
                "type": "object",
                "properties": {
                    "target": _TARGET,
                    "folder": {"type": "string", "title": "Only this folder of the dataset"},
                    "stack": _STACK,
                },
            },
        ),
        Extractor(
            "start",
            f"{prefix}.start",
            "Start my Workbench stack",
            {"dataset": ["*"]},
            {"type": "object", "properties": {"stack": _STACK}, "required": ["stack"]},
        ),
        Extractor(
            "stop",
            f"{prefix}.stop",
            "Stop my Workbench stacks (one, or all of them when no stack is named)",
            {"dataset": ["*"]},
            {"type": "object", "properties": {"stack": _STACK}},
        ),
    )


def heartbeat(extractor: Extractor, version: str, platform_id: str) -> bytes:
    """The announcement pyclowder's ``RabbitMQBroadcast`` sends, with an ``extractor_info`` that both
    Clowder 1 (its ``ExtractorInfo`` fields) and Clowder 2 (``parameters.schema``) read."""
    identity = str(uuid.uuid5(uuid.NAMESPACE_URL, f"workbench:{platform_id}:{extractor.name}"))
    info = {
        "@context": "http://clowder.ncsa.illinois.edu/contexts/extractors.jsonld",
        "name": extractor.name,
        "version": version,
        "description": extractor.description,
        "author": "Labs Workbench",
        "contributors": [],
        "contexts": [],
        # Clowder 1 reads repType/repUrl, Clowder 2's Repository model repository_type/repository_url.
        "repository": [
            {
                "repType": "git",
                "repUrl": REPOSITORY_URL,
                "repository_type": "git",
                "repository_url": REPOSITORY_URL,
            }
        ],
        "external_services": [],
        "libraries": [],
        "bibtex": [],
        "maturity": "Production",
        "process": extractor.process,
        "categories": ["WORKFLOW"],
        "labels": [],
        "parameters": {"schema": extractor.parameters},
    }
    return json.dumps({"id": identity, "queue": extractor.name, "extractor_info": info}).encode()


def action_of(prefix: str, queue: str) -> Action | None:
    for extractor in extractors(prefix):
        if extractor.name == queue:
            return extractor.action
    return None


# ---------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class Job:
    """What a job asks, read from its body; ``secret_key`` is left out of its text form."""

    job_id: str
    host: str
    dataset_id: str
    resource_id: str
    resource: Literal["dataset", "file"]
    parameters: dict[str, Any]
    secret_key: str = field(repr=False)


def parse(body: bytes) -> Job:
    """A job's body as Clowder 1 or 2 sends it; what is missing or malformed is named."""
    import re

    if len(body) > MAX_BODY_BYTES:
        raise InvalidInput(f"the job's body has {len(body)} bytes; at most {MAX_BODY_BYTES} are read")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the job's body is not JSON") from None
    if not isinstance(document, dict):
        raise InvalidInput("the job's body is not a JSON object")

    def text(name: str) -> str:
        value = document.get(name)
        return value.strip() if isinstance(value, str) else ""

    job_id = text("jobid") or text("job_id") or text("msgid")
    if not job_id:
        raise InvalidInput("the job names no job id (jobid or job_id)", field="job_id")
    host = text("host")
    if not host:
        raise InvalidInput("the job names no Clowder host", field="host")
    secret_key = text("secretKey")
    if not secret_key:
        raise InvalidInput("the job carries no secretKey", field="secretKey")
    dataset_id = text("datasetId")
    resource_id = text("id") or dataset_id
    for name, value in (("datasetId", dataset_id), ("id", resource_id)):
        if not re.fullmatch(CLOWDER_ID_PATTERN, value):
            raise InvalidInput(f"{name} {value[:40]!r} is not a Clowder id", field=name)
    kind = text("resource_type")
    resource: Literal["dataset", "file"]
    if kind in ("dataset", "file"):
        resource = "dataset" if kind == "dataset" else "file"
    else:  # Clowder 1 (and pyclowder) take a job whose id is its dataset's for the dataset's
        resource = "dataset" if resource_id == dataset_id else "file"
    parameters = document.get("parameters") or {}
    if isinstance(parameters, str):  # Clowder 1 passes on the submission's parameters as they came
        try:
            parameters = json.loads(parameters) if parameters.strip() else {}
        except ValueError:
            raise InvalidInput("the job's parameters are not a JSON object", field="parameters") from None
    if not isinstance(parameters, dict):
        raise InvalidInput("the job's parameters are not a JSON object", field="parameters")
    for name in ("target", "folder", "stack"):
        if name in parameters and not isinstance(parameters[name], str):
            raise InvalidInput(f"the parameter {name!r} must be text", field=name)
    return Job(job_id, host, dataset_id, resource_id, resource, parameters, secret_key)


def status(job_id: str, resource_id: str, extractor: str, kind: Kind, message: str) -> bytes:
    """A status message as pyclowder's ``status_update`` writes it (its ``status`` is the enum
    member's text, which Clowder 1 searches for ``DONE``: so no other status carries that word, were
    it in a dataset's or folder's name)."""
    if kind != "done":
        message = message.replace("DONE", "Done")
    return json.dumps(
        {
            "file_id": resource_id,
            "extractor_id": extractor,
            "job_id": job_id,
            "status": f"StatusMessage.{kind}: {message}",
            "start": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime()),
            "message_type": f"StatusMessage.{kind}",
            "message": message,
        }
    ).encode()


Reply = Callable[[str, str | None, bytes], None]
"""Sends a status: (queue, correlation id, body)."""


@dataclass(frozen=True)
class Address:
    """Where a job's statuses go."""

    queue: str | None
    correlation_id: str | None
    job_id: str
    resource_id: str
    extractor: str


def carry_out(ports: ClowderJobPorts, received: Delivered, reply: Reply, reject: Callable[[], None]) -> None:
    """Carry out one job and tell Clowder how it went; a bad job ends with its error in Clowder, a dead
    letter here and ``reject`` (to Clowder's ``error.<queue>``). Raises only ``Unavailable``, for a
    job to be delivered again."""
    settings = ports.settings.clowder
    reply_to = received.reply_to or settings.reply_queue
    address = Address(reply_to, received.correlation_id, "", "", received.queue)
    try:
        action = action_of(settings.extractor_prefix, received.queue)
        if action is None:
            raise InvalidInput(f"no action of this Workbench listens on the queue {received.queue!r}")
        job = parse(received.body)
        address = Address(reply_to, received.correlation_id, job.job_id, job.resource_id, received.queue)
        if not ports.store.claim_event(
            JOB_SOURCE, job.job_id, received.queue, int(time.time()), ports.settings.recovery.resume_after
        ):
            if ports.store.event_finished(JOB_SOURCE, job.job_id):
                log.info("Clowder job %s was carried out before; acknowledged again", job.job_id)
                return
            # The delivery that claimed it may have died with the claim: acknowledged now, the job
            # would stay "started" in Clowder for good. Back on the queue until the claim lapses.
            raise Unavailable(f"Clowder job {job.job_id} is still being carried out; it comes back later")
        try:
            _tell(reply, address, "start", "Started processing.")
            message = _act(ports, action, job, address, reply)
        except Unavailable:
            ports.store.release_event(JOB_SOURCE, job.job_id)
            raise
        except BaseException:
            ports.store.finish_event(JOB_SOURCE, job.job_id)
            raise
        ports.store.finish_event(JOB_SOURCE, job.job_id)
        if message is not None:
            _tell(reply, address, "done", message)
    except Unavailable:
        raise
    except WorkbenchError as error:
        _refuse(ports, received, address, error.message, reply, reject)
    except Exception:
        # Never a crash loop: the job ends, saying so, and the consumer goes on with the next one.
        log.exception("Clowder job %s on %s failed", address.job_id or "?", received.queue)
        _refuse(ports, received, address, "internal error; the server log has the details", reply, reject)


def _refuse(
    ports: ClowderJobPorts,
    received: Delivered,
    address: Address,
    reason: str,
    reply: Reply,
    reject: Callable[[], None],
) -> None:
    if not address.job_id:  # refused before it was read: what of its ids can be told still is
        job_id, resource_id = _ids_of(received.body)
        address = Address(address.queue, address.correlation_id, job_id, resource_id, received.queue)
    log.warning("refused Clowder job %s on %s: %s", address.job_id or "?", received.queue, reason)
    if address.job_id:  # as pyclowder, no status for a job whose id could not be read: Clowder has none such
        _tell(reply, address, "error", reason)
    _dead_letter(ports, received, address, reason)
    reject()


def _ids_of(body: bytes) -> tuple[str, str]:
    """The job id and resource id of a body that is no valid job, where it has them."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "", ""
    if not isinstance(document, dict):
        return "", ""
    import re

    found = [document.get(name) for name in ("jobid", "job_id", "id")]
    texts = [value if isinstance(value, str) and re.fullmatch(_ID, value) else "" for value in found]
    return texts[0] or texts[1], texts[2]


_ID = r"[A-Za-z0-9_-]{1,100}"
"""What a job id (Clowder 1's UUID, Clowder 2's object id) read from a body that is no valid job may be."""


def _tell(reply: Reply, address: Address, kind: Kind, message: str) -> None:
    if address.queue is None:
        log.warning("Clowder job %s has no reply queue; its status was: %s", address.job_id, message)
        return
    try:
        reply(
            address.queue,
            address.correlation_id,
            status(address.job_id, address.resource_id, address.extractor, kind, message),
        )
    except Unavailable as error:
        log.warning("could not tell Clowder job %s: %s (%s)", address.job_id, message, error.message)


def _dead_letter(ports: ClowderJobPorts, received: Delivered, address: Address, reason: str) -> None:
    """Keep the refused job for the admin, its key cut out."""
    from shared.core.models import DeadLetter
    from shared.domain.deadletters import dead_letter_id, excerpt

    data = received.body
    try:
        document = json.loads(data)
        if isinstance(document, dict) and "secretKey" in document:
            document["secretKey"] = "[key not kept]"
            data = json.dumps(document).encode()
    except (ValueError, UnicodeDecodeError):
        pass
    event_id = address.job_id or received.message_id or str(uuid.uuid4())
    ports.store.insert_dead_letter(
        DeadLetter(
            id=dead_letter_id(JOB_SOURCE, event_id, received.queue),
            type="clowder.extractor.job",
            eventId=event_id[:1024],
            source=f"clowder queue {received.queue}",
            errorCode="refused",
            errorData=reason[:1024],
            errorDestination=received.queue,
            data=excerpt(data),
            receivedTime=int(time.time()),
        )
    )


def _act(ports: ClowderJobPorts, action: Action, job: Job, address: Address, reply: Reply) -> str | None:
    """Check the job and do what it asks; the final message, or None when it comes with the outcome."""
    from shared.domain.accounts import account_for_email
    from shared.domain.transfers import paired_clowder

    try:
        paired = paired_clowder(ports, job.host)
    except InvalidInput:
        raise InvalidInput(
            f"the job comes from the Clowder at {job.host!r}, not the one this Workbench is paired with"
        ) from None
    email = _key_owner(ports, paired, job)
    user = account_for_email(ports, email)
    if action == "send":
        _send(ports, paired, user, job, address, reply)
        return None
    return _stack_action(ports, user, action, job.parameters.get("stack"))


def _key_owner(ports: ClowderJobPorts, paired: str, job: Job) -> str:
    """The e-mail of the Clowder user the job's key belongs to, after making sure that user can read
    the dataset; the key is used for these two requests only."""
    from shared.adapters.clowder import ClowderClient

    with ClowderClient(paired, job.secret_key, retries=2) as client:
        try:
            owner = client.key_owner()
        except Forbidden:
            raise Forbidden("Clowder does not accept the job's key: it names no user") from None
        try:
            client.dataset(job.dataset_id)
        except NotFound:
            raise NotFound(
                "Clowder dataset", job.dataset_id, message=f"Clowder has no dataset '{job.dataset_id}'"
            ) from None
        except Forbidden:
            raise Forbidden(f"the job's user may not read the dataset '{job.dataset_id}'") from None
    return owner.email


def _send(ports: ClowderJobPorts, paired: str, user: str, job: Job, address: Address, reply: Reply) -> None:
    from pydantic import ValidationError

    from events.types import TransferRequested
    from shared.domain import transfers

    parameters = job.parameters
    folder = parameters.get("folder")
    try:
        request = TransferRequested(
            clowder_url=paired,
            dataset_id=job.dataset_id,
            email="",
            files=[job.resource_id] if job.resource == "file" else None,
            folders=[folder] if folder else None,
            stack_id=parameters.get("stack") or None,
            target_folder=parameters.get("target") or None,
        )
    except ValidationError as error:
        first = error.errors()[0]
        raise InvalidInput(f"the job's parameters: {first['msg']}", field=str(first["loc"][0])) from None
    transfer_id = transfers.transfer_id_for(JOB_SOURCE, job.job_id)
    # Kept before the transfer starts: its outcome may come before this call returns.
    record = {
        "queue": address.queue,
        "correlation_id": address.correlation_id,
        "job_id": address.job_id,
        "resource_id": address.resource_id,
        "extractor": address.extractor,
        "told_at": time.time(),  # the processing status below; progress statuses follow it
    }
    ports.objects.put(f"{RECORDS}{transfer_id}.json", [json.dumps(record).encode()])
    try:
        transfer = transfers.accept_for_user(ports, user, transfer_id, request)
    except WorkbenchError:
        ports.objects.delete(f"{RECORDS}{transfer_id}.json")
        raise
    if transfer.state not in ("completed", "failed"):
        _tell(reply, address, "processing", _progress(transfer))


def _progress(transfer: Transfer) -> str:
    counts = (
        f"transfer {transfer.id}: {transfer.filesDone} of {transfer.filesTotal} files "
        f"({transfer.bytesDone} of {transfer.bytesTotal} bytes) placed in {transfer.target}"
    )
    if transfer.filesDone:
        return counts
    return counts + "; they reach your data folder as soon as one of your stacks runs"


def progress(ports: ClowderJobPorts, transfer: Transfer, reply: Reply) -> bool:
    """Tell the Clowder job that asked for ``transfer`` how many of its files are placed now (at most
    once every ``PROGRESS_SECONDS``; the outcome tells the end); whether a status was sent."""
    key = f"{RECORDS}{transfer.id}.json"
    if transfer.state in ("completed", "failed") or not ports.objects.has(key):
        return False
    record = json.loads(b"".join(ports.objects.read(key)))
    now = time.time()
    if now - float(record.get("told_at", 0)) < PROGRESS_SECONDS:
        return False
    ports.objects.put(key, [json.dumps({**record, "told_at": now}).encode()])
    _tell(reply, _address(record), "processing", _progress(transfer))
    return True


def _address(record: dict[str, Any]) -> Address:
    return Address(
        record["queue"],
        record["correlation_id"],
        record["job_id"],
        record["resource_id"],
        record["extractor"],
    )


_DONE = {"start": ("starting", "started"), "stop": ("stopping", "stopped")}


def _stack_action(ports: ClowderJobPorts, user: str, action: Action, stack_id: Any) -> str:
    from shared.domain import stack_actions, stacks

    if action == "stop" and not stack_id:
        stopped = [stack.id for stack in stacks.stop_all(ports, user)]
        return f"stopping {', '.join(stopped)}" if stopped else "none of your stacks was running"
    if not isinstance(stack_id, str) or not stack_id:
        raise InvalidInput("name the stack in the job's parameters (stack)", field="stack")
    try:
        stack = stacks.get(ports, user, stack_id)
    except NotFound:
        raise Forbidden(f"stack '{stack_id}' is not one of {user}'s stacks") from None
    if stack.status in _DONE[action]:
        return f"stack {stack_id} is {stack.status}"
    if stack_actions.by_shovel(ports, user):
        stack_actions.send(ports, user, stack_id, "start" if action == "start" else "stop")
        return f"stack {stack_id}: the {action} is handed to the shovel of your running stack"
    stack = stacks.start(ports, user, stack_id) if action == "start" else stacks.stop(ports, user, stack_id)
    return f"stack {stack_id} is {stack.status}"


def outcome(ports: ClowderJobPorts, transfer: TransferOutcome, failed: bool, reply: Reply) -> bool:
    """Tell the Clowder job that asked for a transfer how it ended (done, with the transfer's id and where
    each running app sees the files; or the error); whether a job was waiting for it."""
    key = f"{RECORDS}{transfer.transfer_id}.json"
    if not ports.objects.has(key):
        return False
    address = _address(json.loads(b"".join(ports.objects.read(key))))
    where = "; ".join(f"{location.service}: {location.path}" for location in transfer.locations)
    summary = (
        f"transfer {transfer.transfer_id}: {transfer.files_done} of {transfer.files_total} files "
        f"({transfer.bytes_done} bytes) in {transfer.target}; "
        + (f"inside your apps: {where}" if where else "no stack of yours runs now to show them")
    )
    if failed:
        problems = "; ".join(f"{problem.path}: {problem.error}" for problem in transfer.errors[:5])
        _tell(
            reply, address, "error", f"{summary}; failed: {problems or _reason(ports, transfer.transfer_id)}"
        )
    else:
        _tell(reply, address, "done", summary)
    ports.objects.delete(key)
    return True


def _reason(ports: ClowderJobPorts, transfer_id: str) -> str:
    """Why a transfer failed as a whole (e.g. refused up front: it would not fit the home)."""
    found = ports.store.get_transfer(transfer_id)
    return (found.message if found is not None else "") or "see the transfer"


# ---------------------------------------------------------------------- where jobs come from

ANNOUNCE_SECONDS = 60.0
"""How often the platform announces its extractors (Clowder 2 takes a listener for gone after 5 minutes)."""
JOB_EVENT = "dev.knative.rabbitmq.event"
"""The type of the CloudEvent a RabbitmqSource makes of each job (its data: the job's body)."""


def source_name(action: Action) -> str:
    """The RabbitmqSource that reads the queue of ``action``; its name ends the events' ``source``."""
    return f"clowder-jobs-{action}"


def version() -> str:
    from importlib import metadata

    try:
        return metadata.version("workbench-functions")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def announce(ports: JobQueuePorts[DeliveredT]) -> None:
    """One heartbeat of each extractor, from the platform (not from each shovel), its queues declared
    first (a cluster's RabbitmqSources read them predeclared; the sweep CronJob runs this)."""
    settings = ports.settings
    announced = extractors(settings.clowder.extractor_prefix)
    ports.clowder_queues().announce(
        [heartbeat(extractor, version(), settings.server.origin) for extractor in announced],
        [extractor.name for extractor in announced],
    )


def queue_of(prefix: str, source: str) -> str:
    """The queue a RabbitmqSource read a job from: eventing-rabbitmq's ``source`` is
    ``/apis/v1/namespaces/<namespace>/rabbitmqsources/<name>#<queue>``; without the queue, the
    source's name (a source of no action of this Workbench: its last part, which the job is refused for)."""
    _, _, queue = source.partition("#")
    if queue:
        return queue
    for extractor in extractors(prefix):
        if source.endswith("/" + source_name(extractor.action)):
            return extractor.name
    return source.rsplit("/", 1)[-1]


def take(ports: JobQueuePorts[DeliveredT], received: DeliveredT) -> None:
    """Carry out a job taken from Clowder's queue, its statuses sent back and, refused, the job kept in
    ``error.<queue>``; raises only ``Unavailable``, for the job to be delivered again."""
    queues = ports.clowder_queues()
    carry_out(ports, received, queues.reply, lambda: queues.reject(received.queue, received))


def run(ports: JobQueuePorts[DeliveredT], stop: threading.Event) -> None:
    """``workbench run``'s own consumer of Clowder's queues (where no RabbitmqSource delivers them),
    announcing the extractors meanwhile; returns once ``stop`` is set."""
    queues = ports.clowder_queues()

    def announcing() -> None:
        while True:
            try:
                announce(ports)
            except Unavailable as error:
                log.warning("could not announce the extractors to Clowder: %s", error.message)
            if stop.wait(ANNOUNCE_SECONDS):
                return

    announcer = threading.Thread(target=announcing, name="clowder-announce", daemon=True)
    announcer.start()
    names = [extractor.name for extractor in extractors(ports.settings.clowder.extractor_prefix)]
    queues.consume(names, lambda received: take(ports, received), stop=stop)
    announcer.join(5)
