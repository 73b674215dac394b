"""Transfers: a Clowder dataset staged into the object store and handed to the user's shovels."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import statistics
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from queue import SimpleQueue
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

from pydantic import Field

from events.ids import CLOWDER_ID_PATTERN
from shared.adapters.objectstore import Blob, blob_key
from shared.core import clock, datafolder
from shared.core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    NotSupported,
    Unavailable,
    WorkbenchError,
)
from shared.core.models import (
    AccountResourceLimits,
    DatasetCopy,
    FileError,
    FileLocation,
    Model,
    ReceiptCheck,
    ServiceSpec,
    Transfer,
    TransferFile,
    TransferPlan,
    TransferState,
)
from shared.core.names import first_free
from shared.core.paths import safe_name, safe_relative
from shared.core.retry import Again, Attempt, Policy
from shared.domain.accounts import account_for_email
from shared.domain.leases import lease_kept
from shared.domain.messages import ReceiptCommand, ReceiptFile, SyncCommand, SyncFile, queue_for

if TYPE_CHECKING:
    from events.types import TransferProgress, TransferRequested
    from shared.adapters.bus import Bus
    from shared.adapters.clowder import ClowderClient, ClowderDataset, ClowderFile
    from shared.adapters.homespace import HomeSpacePort
    from shared.adapters.objectstore import HomeStagingPort, ObjectStore, StagingFolder
    from shared.adapters.sink import EventSink
    from shared.adapters.store import Store
    from shared.core.settings import Settings

log = logging.getLogger(__name__)
LinkKind = Literal["copy", "symlink"]

BATCH_FILES = 256
BATCH_BYTES = 64 * 1024 * 1024
"""A sync command goes out at this many files or bytes: a large file travels alone, so the shovel
places it while the next ones stage."""
BATCH_INLINE_BYTES = 2 * 1024 * 1024
"""At most this many bytes of small files travel inside one sync command."""
INLINE_BYTES = 64 * 1024
"""A staged file up to this size travels inside its sync command too: the shovel places it without a
request of its own (for many small files the requests, not the bytes, take the time)."""
STAGING_PARALLEL = 4
"""Large files downloaded from Clowder at once."""
SMALL_STAGING_PARALLEL = 8
"""Files downloaded from Clowder at once, small ones (up to ``INLINE_BYTES``) included."""
RESTARTS = 3
"""Downloads of one file from its start, at most (one after another, without a wait between them)."""
URL_SECONDS = 24 * 3600
"""How long a sync command's download URLs stay valid: a transfer may wait for a stack to start."""


class TransferPorts(Protocol):
    """The adapters a transfer uses: Clowder to read from, the object store to stage into, the
    bus to the user's shovels, the sink for its outcome."""

    @property
    def settings(self) -> Settings: ...
    @property
    def store(self) -> Store: ...
    @property
    def objects(self) -> ObjectStore: ...
    @property
    def bus(self) -> Bus: ...
    @property
    def sink(self) -> EventSink: ...
    @property
    def home_staging(self) -> HomeStagingPort | None:
        """Staging into the users' homes, where the platform reaches them (the shovels then place each
        file with a rename); None where it does not (a cluster: staged in the object store)."""
        ...

    @property
    def home_space(self) -> HomeSpacePort | None:
        """The room in the users' homes, where the platform reaches them (None on a cluster)."""
        ...

    def clowder(self) -> ClowderClient:
        """The client of the paired Clowder (Unavailable when none is paired)."""
        ...


def transfer_id_for(source: str, event_id: str) -> str:
    """The same event (CloudEvents identify one by source and id) always names the same transfer."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{source}#{event_id}"))


def paired_clowder(ports: TransferPorts, url: str) -> str:
    """The event's Clowder must be the one this Workbench is paired with."""
    paired = ports.settings.clowder.url
    if paired is None:
        raise InvalidInput("this Workbench is not paired with a Clowder instance (WORKBENCH_CLOWDER_URL)")
    if url.rstrip("/") != paired:
        raise InvalidInput(f"{url!r} is not the paired Clowder instance", field="clowder_url")
    return paired


def printable(path: str) -> str:
    """A refused name as it can be stored and shown: control characters (NUL above all, which
    PostgreSQL text refuses) as ``\\xNN`` escapes."""
    return "".join(
        f"\\x{ord(character):02x}" if ord(character) < 32 or ord(character) == 127 else character
        for character in path
    )


ClowderId = Annotated[str, Field(pattern=CLOWDER_ID_PATTERN, description="A Clowder id")]


class TransferRequest(Model):
    """``POST /api/transfers``: send a Clowder dataset (or part of it) into the caller's home."""

    datasetId: ClowderId
    clowderUrl: str | None = Field(default=None, description="Default: the paired Clowder instance")
    target: str | None = Field(
        default=None,
        description="Folder inside the data folder (Clowder/ of the home), e.g. `Soil samples` or "
        "`Clowder/Soil samples`; default Clowder/<dataset name>. A folder outside it is refused",
    )
    files: list[ClowderId] | None = Field(default=None, description="Only these Clowder file ids")
    folders: list[str] | None = Field(default=None, description="Only files below these dataset folders")


def accept(ports: TransferPorts, event_source: str, event_id: str, request: TransferRequested) -> Transfer:
    """Record the transfer an event asks for (once, whatever the redeliveries) and stage it."""
    user = account_for_email(ports, request.email)
    return _accept(ports, user, transfer_id_for(event_source, event_id), request)


def accept_for_user(
    ports: TransferPorts, user: str, transfer_id: str, request: TransferRequested
) -> Transfer:
    """Record and stage the transfer of a user known otherwise than by the request's e-mail (a Clowder
    extractor job's, by whose key it carries); the same ``transfer_id`` names one transfer."""
    return _accept(ports, user, transfer_id, request)


def request_for(ports: TransferPorts, user: str, body: TransferRequest) -> Transfer:
    """Record and stage a transfer the user asked for over HTTP (a new one each time); one that would
    not fit is refused (``DoesNotFit``) before anything is recorded."""
    request = _request_of(ports, user, body)
    listing = _listing(ports, request)
    check_fits(plan(ports, user, request, *listing, room_only=True))
    return _accept(ports, user, str(uuid.uuid4()), request, listing)


def plan_for(ports: TransferPorts, user: str, body: TransferRequest) -> TransferPlan:
    """What the transfer ``body`` asks for would move, and whether it fits; nothing is recorded,
    staged or sent."""
    request = _request_of(ports, user, body)
    return plan(ports, user, request, *_listing(ports, request))


def _request_of(ports: TransferPorts, user: str, body: TransferRequest) -> TransferRequested:
    from events.types import TransferRequested

    record = ports.store.get_account(user)
    return TransferRequested(
        clowder_url=body.clowderUrl or ports.settings.clowder.url or "",
        dataset_id=body.datasetId,
        email=record.account.email if record is not None else "",
        target_folder=datafolder.target_in_home(body.target) if body.target else None,
        files=body.files,
        folders=body.folders,
    )


def _listing(ports: TransferPorts, request: TransferRequested) -> tuple[ClowderDataset, list[ClowderFile]]:
    """The dataset and the files of it the request wants, from the paired Clowder (no transfer yet)."""
    paired_clowder(ports, request.clowder_url)
    client = ports.clowder()
    try:
        return client.dataset(request.dataset_id), _wanted(client.files(request.dataset_id), request)
    except Unavailable:
        raise
    except NotFound as error:
        raise InvalidInput(
            f"Clowder has no dataset {request.dataset_id!r}: {error.message}", field="datasetId"
        ) from None
    except WorkbenchError as error:
        raise InvalidInput(f"Clowder refused to list the dataset: {error.message}") from None


def _accept(
    ports: TransferPorts,
    user: str,
    transfer_id: str,
    request: TransferRequested,
    listing: tuple[ClowderDataset, list[ClowderFile]] | None = None,
) -> Transfer:
    """Record the transfer of ``user`` (once per id) and stage it; ``listing``: the dataset and its
    wanted files, read (and found to fit) already. Without it, a transfer that would not fit ends
    failed, saying why, before anything is staged."""
    source = paired_clowder(ports, request.clowder_url)
    if request.stack_id and ports.store.get_stack(user, request.stack_id) is None:
        raise Forbidden(f"stack '{request.stack_id}' is not one of {user}'s stacks")
    target = ""
    if request.target_folder:
        target = datafolder.target_in_home(request.target_folder, field="target_folder")
    if request.mode == "link" and not ports.settings.clowder.link_roots:
        raise InvalidInput("link mode needs Clowder's storage mounted (WORKBENCH_LINK_ROOTS)", field="mode")
    transfer = Transfer(
        id=transfer_id,
        user=user,
        source=source,
        datasetId=request.dataset_id,
        target=target,
        mode=request.mode,
        stackId=request.stack_id or "",
        createdTime=clock.now(),
        updateTime=clock.now(),
    )
    # The request is kept with the transfer: what resuming it after a crash or an outage needs.
    ports.store.insert_transfer(transfer, work=request.model_dump_json())
    lease = ports.settings.recovery.resume_after

    def claim(current: Transfer) -> Transfer:
        """Only one delivery stages at a time: a redelivery while another stages leaves it be,
        unless that one has gone quiet for a lease's length (it crashed; this one resumes)."""
        if current.stagingDone or current.state in ("completed", "failed"):
            raise Conflict("staging already finished")
        if current.state == "staging" and clock.now() - current.updateTime < lease:
            raise Conflict("another delivery is staging this transfer")
        return current.model_copy(update={"state": "staging", "updateTime": clock.now()})

    try:
        current = ports.store.update_transfer(transfer.id, claim)
    except Conflict:
        found = ports.store.get_transfer(transfer.id)
        assert found is not None
        return found  # a redelivered event: done, or in the hands of another delivery
    try:
        return stage(ports, current, request, listing=listing, check=listing is None)
    except DoesNotFit:
        failed = ports.store.get_transfer(transfer.id)
        assert failed is not None
        return failed  # ended failed and announced: a redelivery cannot make it fit


def _wanted(files: list[ClowderFile], request: TransferRequested) -> list[ClowderFile]:
    if request.files is not None:
        ids = set(request.files)
        files = [file for file in files if file.id in ids]
    if request.folders is not None:
        prefixes = [folder.strip("/") + "/" for folder in request.folders]
        files = [file for file in files if any(file.path.startswith(prefix) for prefix in prefixes)]
    return files


def _folder_name(dataset: ClowderDataset) -> str:
    """The folder a dataset goes to by default: its name, or its id where the name is refused."""
    try:
        return safe_name(dataset.name or dataset.id)
    except InvalidInput:
        return safe_name(dataset.id)


def _paths(listed: list[ClowderFile]) -> Iterator[tuple[ClowderFile, str, str | None]]:
    """Each file with the path it goes to, or the refusal of its name (and the name, printable).

    Clowder lets two files of one folder share a name; the home cannot, so every file after the
    first gets ``name (1).ext``, ``name (2).ext``, …; ordered by path and id, a redelivered event
    gives each file the same path again."""
    checked: list[tuple[ClowderFile, str, str | None]] = []
    for file in sorted(listed, key=lambda file: (file.path, file.id)):
        try:
            checked.append((file, safe_relative(file.path, field="path"), None))
        except InvalidInput as error:
            checked.append((file, printable(file.path)[:300], error.message))
    originals = {path for _, path, _ in checked}
    assigned: set[str] = set()
    for file, path, refusal in checked:
        if path in assigned:
            path = first_free(path, originals | assigned)
        assigned.add(path)
        yield file, path, refusal


def stage(
    ports: TransferPorts,
    transfer: Transfer,
    request: TransferRequested,
    *,
    listing: tuple[ClowderDataset, list[ClowderFile]] | None = None,
    check: bool = False,
) -> Transfer:
    """Stream every wanted file from Clowder into the object store and send sync commands in batches,
    so that the first files are placed while later ones still stage. The claim on the staging is
    renewed meanwhile (however long one file takes), so that no sweep takes it for abandoned.

    ``listing``: the dataset and its wanted files, read already; ``check``: first make sure the
    transfer fits (else it ends failed with the reason, and ``DoesNotFit`` is raised)."""
    transfer_id = transfer.id
    with lease_kept(
        lambda: ports.store.update_transfer(transfer_id, _touch),
        ports.settings.recovery.resume_after / 4,
        what=f"transfer {transfer_id}",
    ):
        return _stage(ports, transfer, request, listing, check)


def _stage(
    ports: TransferPorts,
    transfer: Transfer,
    request: TransferRequested,
    listing: tuple[ClowderDataset, list[ClowderFile]] | None,
    check: bool,
) -> Transfer:
    dataset, listed = listing or _list_dataset(ports, transfer, request)
    target = transfer.target or f"{datafolder.DATA_FOLDER}/{_folder_name(dataset)}"
    if check:
        try:
            check_fits(plan(ports, transfer.user, request, dataset, listed, room_only=True))
        except DoesNotFit as error:
            _fail(ports, transfer.id, error.message)
            raise
    sources = _record_files(ports.store, transfer.id, listed)
    transfer = _begin_staging(ports.store, transfer.id, dataset, target, listed)
    _stage_listed(ports, transfer, target, request, sources)
    _finish_staging(ports.store, transfer.id)
    return _announce_staged(ports, transfer.id)


def _list_dataset(
    ports: TransferPorts, transfer: Transfer, request: TransferRequested
) -> tuple[ClowderDataset, list[ClowderFile]]:
    """The dataset and its files the request wants, from Clowder; where Clowder cannot say, the
    transfer is released for a redelivery (Clowder unavailable) or failed (no such dataset, or the
    platform refused)."""
    client = ports.clowder()
    try:
        return client.dataset(transfer.datasetId), _wanted(client.files(transfer.datasetId), request)
    except Unavailable as error:
        # Let go of the claim, so that the redelivery this 503 asks for can stage at once.
        _note(ports, transfer.id, f"Clowder could not be read; retrying: {error.message}", state="requested")
        raise
    except NotFound as error:
        # Delivering it again cannot help: the transfer ends here, saying why, instead of waiting for ever.
        message = f"Clowder has no dataset {transfer.datasetId!r}: {error.message}"
        _fail(ports, transfer.id, message)
        raise InvalidInput(message, field="dataset_id") from None
    except WorkbenchError as error:
        # Clowder refused the platform (e.g. its API key): no redelivery helps either.
        message = f"Clowder refused to list the dataset: {error.message}"
        _fail(ports, transfer.id, message)
        raise InvalidInput(message) from None


def _record_files(store: Store, transfer_id: str, listed: list[ClowderFile]) -> dict[str, ClowderFile]:
    """A row for each listed file the transfer does not know yet (failed at once where its name is
    refused); the files to stage, by the path each goes to."""
    known = {file.path for file in store.list_transfer_files(transfer_id)}
    rows: list[TransferFile] = []
    sources: dict[str, ClowderFile] = {}
    for file, path, refusal in _paths(listed):
        if refusal is not None:
            rows.append(
                TransferFile(
                    path=path,
                    size=file.size or 0,
                    clowderId=file.id,
                    state="failed",
                    error=f"refused name: {refusal}",
                )
            )
            continue
        sources[path] = file
        if path not in known:
            rows.append(TransferFile(path=path, size=file.size or 0, clowderId=file.id))
    store.put_transfer_files(transfer_id, [row for row in rows if row.path not in known])
    return sources


def _begin_staging(
    store: Store, transfer_id: str, dataset: ClowderDataset, target: str, listed: list[ClowderFile]
) -> Transfer:
    """The transfer as staging, with its dataset's name, its folder and the totals of its files."""

    def begin(current: Transfer) -> Transfer:
        return current.model_copy(
            update={
                "state": "staging",
                "datasetName": dataset.name,
                "datasetVersion": dataset.version or "",
                "target": target,
                "filesTotal": len(listed),
                "bytesTotal": sum(file.size or 0 for file in listed),
                "message": "",
                "updateTime": clock.now(),
            }
        )

    return store.update_transfer(transfer_id, begin)


def _finish_staging(store: Store, transfer_id: str) -> None:
    """Every file staged (or failed): what is left is the shovels' syncing."""

    def finish(current: Transfer) -> Transfer:
        return current.model_copy(update={"stagingDone": True, "state": "syncing", "updateTime": clock.now()})

    store.update_transfer(transfer_id, finish)


def _announce_staged(ports: TransferPorts, transfer_id: str) -> Transfer:
    """The transfer, counted again from its files, announced as staged."""
    from events import types

    final = refresh(ports, transfer_id)
    ports.sink.emit(
        types.TRANSFER_STAGED,
        types.TransferStaged(
            transfer_id=final.id,
            user=final.user,
            files_total=final.filesTotal,
            bytes_total=final.bytesTotal,
        ),
        subject=final.id,
    )
    return final


def _stage_listed(
    ports: TransferPorts,
    transfer: Transfer,
    target: str,
    request: TransferRequested,
    sources: dict[str, ClowderFile],
) -> None:
    """Stage the files listed and not yet placed or failed, sending their sync commands as batches fill."""
    with ExitStack() as stack:
        folder = _staging_folder(ports, transfer, stack)
        _stage_into(ports, transfer, target, request, sources, folder)
    _write_manifest(ports, transfer.id)


def _staging_folder(ports: TransferPorts, transfer: Transfer, stack: ExitStack) -> StagingFolder | None:
    """The transfer's staging folder in the user's home, where the platform reaches it; None where it
    does not, or the folder cannot be opened (the files are then staged in the object store)."""
    if ports.home_staging is None:
        return None
    try:
        return stack.enter_context(ports.home_staging.folder(transfer.user, transfer.id))
    except WorkbenchError as error:
        log.warning("transfer %s: staging in the object store instead: %s", transfer.id, error.message)
        return None


def _stage_into(
    ports: TransferPorts,
    transfer: Transfer,
    target: str,
    request: TransferRequested,
    sources: dict[str, ClowderFile],
    folder: StagingFolder | None,
) -> None:
    store = ports.store
    batch = _Batch(ports, transfer, target, request.link, folder)
    downloads: list[tuple[TransferFile, ClowderFile]] = []
    for row in store.list_transfer_files(transfer.id):
        if row.state in ("placed", "failed") or row.path not in sources:
            continue
        file = sources[row.path]
        if transfer.mode == "link" and _on_link_root(ports, file):
            sync_file = _link_file(ports, transfer, row, file)
            if sync_file is not None:
                batch.add(None, sync_file)
        else:
            downloads.append((row, file))
    staged_before = store.find_blobs(
        transfer.source, [(file.id, row.size) for row, file in downloads if row.sha256 is None]
    )
    for outcome in _stage_files(ports, transfer, downloads, staged_before, folder):
        if outcome.error is not None:
            batch.fail(outcome.row.path, outcome.error)
            continue
        assert outcome.sync_file is not None
        batch.add(outcome.row, outcome.sync_file, new_blob=outcome.downloaded, unsynced=outcome.unsynced)
    batch.send()


class _Batch:
    """Staged files gathered into sync commands: their rows are written, then the command is sent, so
    that a shovel's report never reaches a file the store does not yet know as staged."""

    def __init__(
        self,
        ports: TransferPorts,
        transfer: Transfer,
        target: str,
        link: LinkKind,
        folder: StagingFolder | None = None,
    ) -> None:
        self.ports, self.transfer, self.target, self.link, self.folder = ports, transfer, target, link, folder
        self.unsynced: list[str] = []
        """Paths of the files written into the home's staging folder and not yet durable."""
        self.rows: list[TransferFile] = []
        self.files: list[SyncFile] = []
        self.failed: list[tuple[str, str]] = []
        self.blobs: list[tuple[str, int, str]] = []
        self.size = 0
        self.inline = 0

    def add(
        self, row: TransferFile | None, sync_file: SyncFile, *, new_blob: bool = False, unsynced: bool = False
    ) -> None:
        """One staged file (``row`` None where its row is written already); ``new_blob``: it was
        fetched from Clowder now, and the store is to remember its blob for later transfers;
        ``unsynced``: written into the home's staging folder, durable only after the batch's barrier."""
        if unsynced:
            self.unsynced.append(sync_file.path)
        if row is not None:
            self.rows.append(row)
            if new_blob and row.sha256 is not None:
                self.blobs.append((row.clowderId, row.size, row.sha256))
        self.files.append(sync_file)
        self.size += sync_file.size
        self.inline += len(sync_file.content or b"")
        if len(self.files) >= BATCH_FILES or self.size >= BATCH_BYTES or self.inline >= BATCH_INLINE_BYTES:
            self.send()

    def fail(self, path: str, error: str) -> None:
        self.failed.append((path, error))
        if len(self.failed) >= BATCH_FILES:
            self.send()

    def send(self) -> None:
        self._barrier()
        store = self.ports.store
        if self.blobs:
            store.remember_blobs(self.transfer.source, self.blobs)
        if self.rows:
            store.put_transfer_files(self.transfer.id, self.rows)
        if self.failed:
            store.settle_transfer_files(self.transfer.id, [], self.failed)
        if self.files:
            _send(self.ports, self.transfer, self.target, self.files, self.link)
        self.rows, self.files, self.failed, self.blobs, self.size, self.inline = [], [], [], [], 0, 0
        self.unsynced = []

    def _barrier(self) -> None:
        """The batch's files written into the home made durable, all at once, before the command that
        has them placed goes out; a file that cannot be is failed instead."""
        if not self.unsynced:
            return
        assert self.folder is not None
        names = {datafolder.staged_name(path): path for path in self.unsynced}
        failed = {names[name]: error for name, error in self.folder.barrier(list(names)).items()}
        if failed:
            self.rows = [row for row in self.rows if row.path not in failed]
            self.files = [file for file in self.files if file.path not in failed]
            for path, error in failed.items():
                self.folder.discard(datafolder.staged_name(path))
                self.failed.append((path, f"could not stage it in the home: {error.strerror or error}"))


@dataclass(frozen=True)
class _Staged:
    """What staging one file came to: its staged row and sync entry, or why it failed."""

    row: TransferFile
    sync_file: SyncFile | None = None
    error: str | None = None
    downloaded: bool = False
    """Fetched from Clowder now into the object store: the store is to remember its blob."""
    unsynced: bool = False
    """Written into the home's staging folder, not yet durable (``_Batch`` makes it so)."""


def _stage_files(
    ports: TransferPorts,
    transfer: Transfer,
    files: list[tuple[TransferFile, ClowderFile]],
    staged_before: dict[tuple[str, int], str],
    folder: StagingFolder | None,
) -> Iterator[_Staged]:
    """Stage the files several at a time; each outcome as soon as it is known (so not in order).

    Up to ``STAGING_PARALLEL`` large files at once, and more small ones (``SMALL_STAGING_PARALLEL``
    in all): a small file's time goes in waiting for Clowder's answer and for its fsync, which
    overlap. Workers take the files in order from one queue and hand back outcomes on another (a
    file costs two queue operations, not a future and a wait over every running one); what the
    caller does with an outcome stays on its thread."""
    if not files:
        return
    staging = _Staging(files)
    results: SimpleQueue[_Staged | BaseException | None] = SimpleQueue()

    def work() -> None:
        try:
            while (item := staging.take()) is not None:
                row, file = item
                try:
                    known = row.sha256 or staged_before.get((file.id, row.size))
                    results.put(_stage_file(ports, row, file, known, folder))
                finally:
                    staging.done(file)
        except BaseException as error:  # handed to the caller's thread, which raises it
            staging.stop()
            results.put(error)
        finally:
            results.put(None)

    workers = [
        threading.Thread(target=work, name=f"staging-{number}", daemon=True)
        for number in range(min(SMALL_STAGING_PARALLEL, len(files)))
    ]
    for worker in workers:
        worker.start()
    try:
        running = len(workers)
        while running:
            outcome = results.get()
            if outcome is None:
                running -= 1
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                yield outcome
    finally:
        staging.stop()
        for worker in workers:
            worker.join()


class _Staging:
    """The files waiting to be staged, taken in order; a large file waits for a large one to finish
    while ``STAGING_PARALLEL`` are staged, and the files behind it wait with it."""

    def __init__(self, files: list[tuple[TransferFile, ClowderFile]]) -> None:
        self._waiting = deque(files)
        self._changed = threading.Condition()
        self._large = 0
        self._stopped = False

    def take(self) -> tuple[TransferFile, ClowderFile] | None:
        with self._changed:
            while self._waiting and not self._stopped:
                _, file = self._waiting[0]
                if _large(file):
                    if self._large >= STAGING_PARALLEL:
                        self._changed.wait()
                        continue
                    self._large += 1
                return self._waiting.popleft()
            return None

    def done(self, file: ClowderFile) -> None:
        if _large(file):
            with self._changed:
                self._large -= 1
                self._changed.notify_all()

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()


def _large(file: ClowderFile) -> bool:
    return file.size is None or file.size > INLINE_BYTES


def _stage_file(
    ports: TransferPorts,
    row: TransferFile,
    file: ClowderFile,
    sha256: str | None,
    folder: StagingFolder | None,
) -> _Staged:
    """One file into the object store, or found there already (``sha256``: its blob staged before);
    into the home's staging folder instead where there is one (``folder``) and it is not."""
    objects = ports.objects
    staged_before = sha256 is not None and objects.has(blob_key(sha256))
    if folder is not None and not staged_before:
        return _stage_in_home(ports, row, file, folder)
    content: bytes | None = None
    size = row.size
    downloaded = False
    if not staged_before:
        try:
            blob, content = _download_blob(
                ports, file, lambda chunks, size: objects.put_blob(chunks, size=size)
            )
        except WorkbenchError as error:
            return _Staged(row, error=f"could not stage from Clowder: {error.message}")
        if file.size is not None and blob.size != file.size:
            return _Staged(row, error=f"Clowder sent {blob.size} bytes where it listed {file.size}")
        sha256, size = blob.sha256, blob.size
        downloaded = True
    assert sha256 is not None
    staged = row.model_copy(
        update={"sha256": sha256, "state": "staged", "size": size or objects.size(blob_key(sha256)) or 0}
    )
    sync_file = SyncFile(
        path=row.path,
        size=staged.size,
        sha256=sha256,
        clowder_id=file.id,
        url=objects.presign_get(blob_key(sha256), URL_SECONDS),
        content=content,
    )
    return _Staged(staged, sync_file, downloaded=downloaded)


def _stage_in_home(
    ports: TransferPorts, row: TransferFile, file: ClowderFile, folder: StagingFolder
) -> _Staged:
    """One file into the home's staging folder, where the shovel checks it and gives it its name: a
    small one is written from memory and made durable with its batch, a large one as it arrives."""
    name = datafolder.staged_name(row.path)
    small = file.size is not None and file.size <= INLINE_BYTES
    try:
        if small:
            blob, content = _download_blob(ports, file, _measured)
            if content is not None:  # else Clowder sent more than it listed: refused below
                folder.write(name, content)
        else:

            def stream(chunks: Iterable[bytes], size: int | None) -> Blob:
                return folder.stream(name, chunks, size=size)

            blob, _ = _download_blob(ports, file, stream)
    except WorkbenchError as error:
        folder.discard(name)
        return _Staged(row, error=f"could not stage from Clowder: {error.message}")
    except OSError as error:
        folder.discard(name)
        return _Staged(row, error=f"could not stage it in the home: {error.strerror or error}")
    if file.size is not None and blob.size != file.size:
        folder.discard(name)
        return _Staged(row, error=f"Clowder sent {blob.size} bytes where it listed {file.size}")
    staged = row.model_copy(update={"sha256": blob.sha256, "state": "staged", "size": blob.size})
    sync_file = SyncFile(path=row.path, size=blob.size, sha256=blob.sha256, clowder_id=file.id, staged=name)
    return _Staged(staged, sync_file, unsynced=small)


def _measured(chunks: Iterable[bytes], size: int | None) -> Blob:
    """A body read through for its size and sha256 only (its bytes are kept by ``_keeping``)."""
    digest = hashlib.sha256()
    total = 0
    for chunk in chunks:
        digest.update(chunk)
        total += len(chunk)
    return Blob(key="", sha256=digest.hexdigest(), size=total)


def _download_blob(
    ports: TransferPorts, file: ClowderFile, put: Callable[[Iterable[bytes], int | None], Blob]
) -> tuple[Blob, bytes | None]:
    """Stream one Clowder file into ``put`` (the object store's, or a staging folder's); a small one's
    bytes are kept as well, to travel in the sync command. A body cut short where Clowder offers no
    ranges can only be fetched again from the start (the hash covers every byte), a few times at most."""
    from shared.adapters.clowder import RestartRequired

    keep = file.size is not None and file.size <= INLINE_BYTES

    def download(attempt: Attempt) -> tuple[Blob, bytes | None]:
        kept: list[bytes] = []
        chunks: Iterable[bytes] = ports.clowder().download(file.id, size=file.size)
        check = None if file.digest is None else hashlib.new(file.digest[0])
        if check is not None:
            chunks = _digesting(chunks, check)
        try:
            blob = put(_keeping(chunks, kept) if keep else chunks, file.size)
        except RestartRequired as error:
            if attempt.last:
                raise
            raise Again(error.message) from error
        if file.digest is not None and check is not None and check.hexdigest() != file.digest[1]:
            raise DigestMismatch(file.digest[0], file.digest[1], check.hexdigest())
        content = b"".join(kept) if keep and blob.size <= INLINE_BYTES else None
        return blob, content

    def again(number: int, reason: Again) -> None:
        log.info("download of Clowder file %s broke off; fetching it again from the start", file.id)

    # No wait before a restart: a body cut short is no sign of a busy server.
    return Policy(retries=RESTARTS - 1, backoff=0).run(download, on_retry=again)


class DigestMismatch(WorkbenchError):
    """The bytes Clowder sent do not hash to the digest Clowder keeps of the file."""

    status = 502

    def __init__(self, algorithm: str, expected: str, received: str) -> None:
        super().__init__(
            f"checksum mismatch: Clowder's {algorithm} of the file is {expected}, the bytes received "
            f"hash to {received}"
        )


def _digesting(chunks: Iterable[bytes], digest: Any) -> Iterator[bytes]:
    """``chunks`` passed on, each added to ``digest`` (a hashlib object) on the way."""
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


def _keeping(chunks: Iterable[bytes], kept: list[bytes]) -> Iterator[bytes]:
    """``chunks`` passed on, and kept in ``kept`` while they add up to no more than ``INLINE_BYTES``."""
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total <= INLINE_BYTES:
            kept.append(chunk)
        yield chunk


def _touch(current: Transfer) -> Transfer:
    return current.model_copy(update={"updateTime": clock.now()})


def _on_link_root(ports: TransferPorts, file: ClowderFile) -> bool:
    """Whether Clowder keeps the file on its own disk, below a folder mounted here; the others are
    staged as in stage mode (Clowder 1.x never says where a file lies on disk)."""
    if not file.storage_path:
        return False
    path = os.path.normpath(file.storage_path)
    return any(Path(path).is_relative_to(root) for root in ports.settings.clowder.link_roots)


def _link_file(
    ports: TransferPorts, transfer: Transfer, row: TransferFile, file: ClowderFile
) -> SyncFile | None:
    """A file the shovel takes straight from Clowder's mounted storage; a path that leads out of its
    link root (through a symlink) is refused, and nothing is read from it."""
    assert file.storage_path is not None
    resolved = Path(file.storage_path).resolve()
    roots = ports.settings.clowder.link_roots
    if not any(resolved.is_relative_to(root) for root in roots):
        ports.store.settle_transfer_files(
            transfer.id, [], [(row.path, f"refused link: {file.storage_path!r} leads out of the link roots")]
        )
        return None
    try:
        size = resolved.stat().st_size
    except OSError as error:
        ports.store.settle_transfer_files(
            transfer.id,
            [],
            [
                (
                    row.path,
                    f"cannot read {file.storage_path!r} on the mounted Clowder storage: {error.strerror}",
                )
            ],
        )
        return None
    ports.store.put_transfer_files(transfer.id, [row.model_copy(update={"state": "staged", "size": size})])
    return SyncFile(path=row.path, size=size, source=str(resolved), clowder_id=file.id)


def _send(
    ports: TransferPorts, transfer: Transfer, target: str, files: list[SyncFile], link: LinkKind = "copy"
) -> None:
    command = SyncCommand(transfer_id=transfer.id, user=transfer.user, target=target, files=files, link=link)
    ports.bus.publish(queue_for(transfer.user), command.model_dump_json().encode())


def _write_manifest(ports: TransferPorts, transfer_id: str) -> None:
    """``manifests/<id>.json``: relative path, size, sha256 and Clowder id of every file."""

    def lines() -> Iterator[bytes]:
        for row in ports.store.list_transfer_files(transfer_id):
            yield (
                json.dumps(
                    {"path": row.path, "size": row.size, "sha256": row.sha256, "clowder_id": row.clowderId}
                )
                + "\n"
            ).encode()

    ports.objects.put(f"manifests/{transfer_id}.json", lines())


def _fail(ports: TransferPorts, transfer_id: str, message: str) -> None:
    def change(current: Transfer) -> Transfer:
        return current.model_copy(update={"state": "failed", "message": message, "updateTime": clock.now()})

    _announce(ports, ports.store.update_transfer(transfer_id, change))


def _note(
    ports: TransferPorts, transfer_id: str, message: str, *, state: TransferState | None = None
) -> None:
    def change(current: Transfer) -> Transfer:
        return current.model_copy(
            update={"message": message, "updateTime": clock.now(), "state": state or current.state}
        )

    ports.store.update_transfer(transfer_id, change)


def refresh(ports: TransferPorts, transfer_id: str) -> Transfer:
    """Recount a transfer from its files and settle its state; the outcome event goes out once.

    The files are counted before the transfer is locked, so a shovel's report may settle some in
    between and a concurrent recount may already have written newer counts: recount until the
    count read is still the count after writing, so the last write always counts every settled file."""
    store = ports.store
    tally = store.tally_transfer_files(transfer_id)
    while True:
        transfer, finished = _recount(ports, transfer_id, tally)
        if finished:
            if transfer.state == "completed":
                measure_throughput(ports, transfer)
                _send_receipt(ports, transfer)
            _announce(ports, transfer)
        latest = store.tally_transfer_files(transfer_id)
        if latest == tally:
            return transfer
        tally = latest


def _send_receipt(ports: TransferPorts, transfer: Transfer) -> None:
    """Have a shovel of the user write the completed transfer's receipt next to its files: only a
    shovel reaches the home on every runtime. A receipt that cannot be sent is logged, not fatal:
    the files are placed and the transfer stays completed."""
    from datetime import UTC, datetime

    files = [
        ReceiptFile(path=row.path, size=row.size, sha256=row.sha256)
        for row in ports.store.list_transfer_files(transfer.id)
        if row.state == "placed" and row.sha256 is not None
    ]
    completed = datetime.fromtimestamp(transfer.updateTime, UTC).isoformat().replace("+00:00", "Z")
    command = ReceiptCommand(
        transfer_id=transfer.id,
        user=transfer.user,
        target=transfer.target,
        clowder_url=transfer.source,
        dataset_id=transfer.datasetId,
        dataset_name=transfer.datasetName,
        version=transfer.datasetVersion or None,
        completed=completed,
        files=files,
    )
    try:
        ports.bus.publish(queue_for(transfer.user), command.model_dump_json().encode())
    except WorkbenchError as error:
        log.warning("transfer %s: its receipt could not be sent: %s", transfer.id, error.message)


def _recount(
    ports: TransferPorts, transfer_id: str, tally: tuple[int, int, int, list[tuple[str, str]]]
) -> tuple[Transfer, bool]:
    """Write the counts of ``tally``; whether this write finished the transfer."""
    files, placed, placed_bytes, failed = tally
    finished: list[str] = []

    def change(current: Transfer) -> Transfer:
        state = current.state
        if current.stagingDone and placed + len(failed) == files and state not in ("completed", "failed"):
            state = "failed" if failed else "completed"
            finished.append(state)
        return current.model_copy(
            update={
                "filesDone": placed,
                "bytesDone": placed_bytes,
                "errors": [FileError(path=path, error=error) for path, error in failed],
                "state": state,
                "updateTime": clock.now(),
            }
        )

    transfer = ports.store.update_transfer(transfer_id, change)
    return transfer, bool(finished)


def _announce(ports: TransferPorts, transfer: Transfer) -> None:
    """The transfer's outcome event; what is left of its staging folder in the home goes (the files of
    it that failed: the shovel has placed every other)."""
    from events import types

    if ports.home_staging is not None:
        ports.home_staging.remove(transfer.user, transfer.id)

    outcome = types.TransferOutcome(
        transfer_id=transfer.id,
        user=transfer.user,
        dataset_id=transfer.datasetId,
        files_done=transfer.filesDone,
        files_total=transfer.filesTotal,
        bytes_done=transfer.bytesDone,
        bytes_total=transfer.bytesTotal,
        errors=[types.FileProblem(path=error.path, error=error.error) for error in transfer.errors],
        target=transfer.target,
        locations=[
            types.FileLocation(service=location.service, path=location.path)
            for location in locations(data_mounts(ports, transfer.user), transfer.target)
        ],
    )
    kind = types.TRANSFER_COMPLETED if transfer.state == "completed" else types.TRANSFER_FAILED
    ports.sink.emit(kind, outcome, subject=transfer.id)


def resumed(current: Transfer, attempt: int, attempts: int) -> Transfer:
    """A transfer as a resumption claims it: staging again (where its sync commands were lost too, all
    of it that is not placed), or failed once it was resumed ``attempts`` times."""
    if attempt > attempts:
        reason = current.message or f"its work stopped while it was {current.state}"
        return current.model_copy(
            update={
                "state": "failed",
                "message": f"gave up after {attempts} attempts to resume it: {reason}",
                "updateTime": clock.now(),
            }
        )
    return current.model_copy(update={"state": "staging", "stagingDone": False, "updateTime": clock.now()})


def resume(ports: TransferPorts, transfer: Transfer, work: str | None) -> Transfer:
    """Go on with a transfer whose work stopped: staging is idempotent (blobs are found by content,
    placed files are left alone), so it simply runs again; one given up is announced as failed."""
    from pydantic import ValidationError

    from events.types import TransferRequested

    if transfer.state == "failed":
        _announce(ports, transfer)
        return transfer
    try:
        if work:
            request = TransferRequested.model_validate_json(work)
        else:  # recorded before requests were kept with their transfers: what the transfer says
            request = TransferRequested(
                clowder_url=transfer.source,
                dataset_id=transfer.datasetId,
                email="",
                mode=transfer.mode,
                stack_id=transfer.stackId or None,
            )
    except ValidationError as error:
        _fail(ports, transfer.id, f"cannot be resumed: its request is not valid ({error.errors()[0]['msg']})")
        return refresh(ports, transfer.id)
    try:
        return stage(ports, transfer, request)
    except WorkbenchError as error:  # recorded on the transfer: failed, or waiting for Clowder
        log.warning("resuming transfer %s: %s", transfer.id, error.message)
        found = ports.store.get_transfer(transfer.id)
        assert found is not None
        return found


def record_progress(ports: TransferPorts, progress: TransferProgress) -> Transfer:
    """A shovel placed (or failed) some files of a transfer."""
    transfer = ports.store.get_transfer(progress.transfer_id)
    if transfer is None or transfer.user != progress.user:
        raise NotFound("transfer", progress.transfer_id)
    ports.store.settle_transfer_files(
        transfer.id, list(progress.placed), [(problem.path, problem.error) for problem in progress.errors]
    )
    return refresh(ports, transfer.id)


def read(ports: TransferPorts, user: str, transfer_id: str, *, admin: bool = False) -> Transfer:
    transfer = ports.store.get_transfer(transfer_id, None if admin else user)
    if transfer is None:
        raise NotFound("transfer", transfer_id)
    return transfer


PLACING = ("staging", "syncing")
"""The states in which a transfer's files go to the user's shovels, which only running stacks have."""
SHOVELLING = ("starting", "started")
"""The states of a stack whose shovel runs beside it (it starts with the stack)."""


SEEING = ("starting", "ready")
"""The states of a stack service whose container (or process) mounts the user's data folder."""


def data_mounts(ports: TransferPorts, user: str) -> list[tuple[str, ServiceSpec]]:
    """The id and spec of each of the user's stack services that runs now: each sees the data folder."""
    from shared.domain.specs import lookup

    found = []
    for stack in ports.store.list_stacks(user):
        if stack.status not in SHOVELLING:
            continue
        for service in stack.services:
            spec = lookup(ports.store, user, service.service) if service.status in SEEING else None
            if spec is not None:
                found.append((service.id, spec))
    return found


def locations(mounts: list[tuple[str, ServiceSpec]], target: str) -> list[FileLocation]:
    """Where each of ``mounts`` sees ``target``, a folder of the home inside the data folder."""
    seen = []
    for ssid, spec in mounts:
        path = datafolder.in_app(spec, target) if target else None
        if path is not None:
            seen.append(FileLocation(service=ssid, path=path))
    return seen


def copies(ports: TransferPorts, dataset_id: str, version: str | None = None) -> list[DatasetCopy]:
    """Where copies of a Clowder dataset (of ``version``, where given) went: each completed transfer
    of it, with the user, the folder, the running stack services that see it now, and whether Clowder
    has withdrawn it since."""
    found = [
        transfer
        for transfer in ports.store.dataset_transfers(dataset_id)
        if transfer.state == "completed" and (version is None or transfer.datasetVersion == version)
    ]
    seen = as_owner_sees(ports, sorted(found, key=lambda transfer: (transfer.updateTime, transfer.id)))
    return [
        DatasetCopy(
            transferId=transfer.id,
            user=transfer.user,
            datasetId=transfer.datasetId,
            datasetName=transfer.datasetName,
            datasetVersion=transfer.datasetVersion,
            target=transfer.target,
            filesDone=transfer.filesDone,
            bytesDone=transfer.bytesDone,
            completedTime=transfer.updateTime,
            locations=transfer.locations,
            withdrawn=transfer.withdrawn,
        )
        for transfer in seen
    ]


def verify_copy(ports: TransferPorts, user: str, transfer_id: str, *, admin: bool = False) -> ReceiptCheck:
    """Re-hash a completed transfer's folder against its receipts, where the platform reaches the
    homes (one machine); elsewhere only the shovel does, and ``workbench verify`` runs beside the data."""
    transfer = read(ports, user, transfer_id, admin=admin)
    if transfer.state != "completed":
        raise Conflict(f"transfer '{transfer_id}' is {transfer.state}: only a completed one has a receipt")
    if ports.home_space is None:
        raise NotSupported(
            "the platform does not reach the homes here: run `workbench verify <folder>` (or "
            "`python -m shared.core.receipts <folder>`) where the data is, e.g. in the stack's container"
        )
    found = ports.home_space.verify(transfer.user, transfer.target)
    if found is None:
        raise NotFound("folder", transfer.target)
    return ReceiptCheck(
        transferId=transfer.id,
        target=transfer.target,
        receipts=found.receipts,
        checked=found.checked,
        modified=found.modified,
        missing=found.missing,
        added=found.added,
        problems=found.problems,
        unchanged=found.unchanged,
    )


def as_owner_sees(ports: TransferPorts, transfers: list[Transfer]) -> list[Transfer]:
    """The transfers, each telling whether its files wait for one of its user's stacks to start: it
    is placing them and none of the user's stacks runs, so no shovel takes them yet (they stay queued);
    and where each running stack service sees its target folder."""
    running: dict[str, bool] = {}
    mounts: dict[str, list[tuple[str, ServiceSpec]]] = {}
    seen = []
    for transfer in transfers:
        if transfer.user not in mounts:
            mounts[transfer.user] = data_mounts(ports, transfer.user)
        waiting = False
        if transfer.state in PLACING:
            if transfer.user not in running:
                stacks = ports.store.list_stacks(transfer.user)
                running[transfer.user] = any(stack.status in SHOVELLING for stack in stacks)
            waiting = not running[transfer.user]
        where = locations(mounts[transfer.user], transfer.target)
        seen.append(transfer.model_copy(update={"waitingForStack": waiting, "locations": where}))
    return seen


# --- plans: what a transfer would move, and whether it fits -------------------------------------------

GIB = 1 << 30
"""An account's ``storageQuota`` counts GiB (as the home's claim on a cluster does)."""
THROUGHPUT_KEY = "transfer-throughput"
"""The meta entry of the platform's measured throughput: ``[bytes, seconds]`` of recent transfers."""
THROUGHPUT_SAMPLES = 20
"""Completed transfers the measure keeps (the newest)."""


class DoesNotFit(WorkbenchError):
    """A transfer that would not fit in the user's home, refused before anything moves: over the
    account's storage quota (409) or the free space of the home's volume (507)."""

    def __init__(self, limit: Literal["quota", "free space"], needed: int, available: int) -> None:
        what = "the storage quota" if limit == "quota" else "the free space of the home's volume"
        super().__init__(
            f"the transfer does not fit {what}: it needs {needed} bytes and {available} are available"
        )
        self.limit: Literal["quota", "free space"] = limit
        self.needed = needed
        self.available = available
        self.status = 409 if limit == "quota" else 507


def plan(
    ports: TransferPorts,
    user: str,
    request: TransferRequested,
    dataset: ClowderDataset,
    listed: list[ClowderFile],
    *,
    room_only: bool = False,
) -> TransferPlan:
    """What the transfer would move into ``user``'s home: its files and bytes, what of them is staged
    already or in place, the room it needs against the quota and the volume, and how long it may take.
    ``room_only``: only what the check of the room needs (nothing looked up in the object store)."""
    target = request.target_folder and datafolder.target_in_home(request.target_folder, field="target_folder")
    target = target or f"{datafolder.DATA_FOLDER}/{_folder_name(dataset)}"
    accepted = [(file, path) for file, path, refusal in _paths(listed) if refusal is None]
    total = sum(file.size or 0 for file, _ in accepted)
    notes: list[str] = []
    in_place: dict[str, int] = {}
    if ports.home_space is not None:
        sizes = ports.home_space.sizes(user, target, [path for _, path in accepted])
        in_place = {path: sizes[path] for file, path in accepted if sizes.get(path, -1) == file.size}
    fetched = [file for file, path in accepted if path not in in_place]
    staged = {} if room_only else _staged_before(ports, paired_clowder(ports, request.clowder_url), fetched)
    in_place_bytes = sum(in_place.values())
    needed = total - in_place_bytes
    fetch = needed - sum(size for size in staged.values())
    quota = _quota_bytes(ports, user)
    used, usage_from = _usage(ports, user) if quota is not None else (None, "")
    free = ports.home_space.free_bytes(user) if ports.home_space is not None else None
    if free is None:
        notes.append(
            "the free space of the home's volume is unknown here (the platform does not reach the homes)"
        )
    rate = throughput(ports)
    estimate = None
    if rate is None:
        notes.append("no estimate yet: no transfer has completed on this platform")
    else:
        estimate = math.ceil(fetch / rate)
    fits_quota = None if quota is None or used is None else needed <= quota - used
    fits_free = None if free is None else needed <= free
    return TransferPlan(
        datasetId=dataset.id or request.dataset_id,
        datasetName=dataset.name,
        target=target,
        files=len(accepted),
        bytes=total,
        refusedFiles=len(listed) - len(accepted),
        stagedFiles=len(staged),
        stagedBytes=sum(staged.values()),
        inPlaceFiles=len(in_place),
        inPlaceBytes=in_place_bytes,
        fetchBytes=fetch,
        neededBytes=needed,
        quotaBytes=quota,
        usedBytes=used,
        usageFrom=usage_from,
        fitsQuota=fits_quota,
        freeBytes=free,
        fitsFreeSpace=fits_free,
        fits=fits_quota is not False and fits_free is not False,
        throughput=rate,
        estimateSeconds=estimate,
        notes=notes,
    )


def check_fits(found: TransferPlan) -> None:
    """Refuse (``DoesNotFit``) a transfer whose plan finds it over the quota or the volume's free space."""
    if found.fitsQuota is False:
        assert found.quotaBytes is not None and found.usedBytes is not None
        raise DoesNotFit("quota", found.neededBytes, max(0, found.quotaBytes - found.usedBytes))
    if found.fitsFreeSpace is False:
        assert found.freeBytes is not None
        raise DoesNotFit("free space", found.neededBytes, found.freeBytes)


def _staged_before(ports: TransferPorts, source: str, files: list[ClowderFile]) -> dict[str, int]:
    """The size of each file (by Clowder id) whose content the object store holds from an earlier
    transfer: staging takes it from there instead of from Clowder."""
    known = ports.store.find_blobs(source, [(file.id, file.size or 0) for file in files])
    staged: dict[str, int] = {}
    for file in files:
        sha256 = known.get((file.id, file.size or 0))
        if sha256 is not None and ports.objects.has(blob_key(sha256)):
            staged[file.id] = file.size or 0
    return staged


def _quota_bytes(ports: TransferPorts, user: str) -> int | None:
    """The account's storage quota in bytes (the platform's default where it sets none); None: no quota."""
    record = ports.store.get_account(user)
    limits = record.account.resourceLimits if record is not None else AccountResourceLimits()
    quota = limits.storageQuota if limits != AccountResourceLimits() else ports.settings.limits.storage_quota
    return quota * GIB if quota > 0 else None


def _usage(ports: TransferPorts, user: str) -> tuple[int, str]:
    """The home's bytes now, and how they were found. The platform tracks no usage of its own: where it
    reaches the home it counts the home's files; elsewhere, the bytes its transfers placed there."""
    if ports.home_space is not None:
        usage = ports.home_space.usage(user)
        return usage.bytes, "home scan" if usage.complete else "home scan, cut short"
    return sum(transfer.bytesDone for transfer in ports.store.list_transfers(user)), "transfer records"


def _samples(ports: TransferPorts) -> list[tuple[int, int]]:
    try:
        found = json.loads(ports.store.get_meta(THROUGHPUT_KEY) or "[]")
        return [(int(size), int(seconds)) for size, seconds in found]
    except (ValueError, TypeError):
        return []  # not what this module writes: the measure starts again


def throughput(ports: TransferPorts) -> float | None:
    """Bytes per second of the recent completed transfers (the median of theirs: one that waited long
    for a stack to start does not sway it); None before any completed."""
    rates = [size / max(seconds, 1) for size, seconds in _samples(ports) if size > 0]
    return statistics.median(rates) if rates else None


def measure_throughput(ports: TransferPorts, transfer: Transfer) -> None:
    """Count a completed transfer into the measure: its bytes, and the seconds from request to end."""
    if transfer.bytesDone <= 0:
        return
    seconds = max(1, transfer.updateTime - transfer.createdTime)
    samples = [*_samples(ports), (transfer.bytesDone, seconds)][-THROUGHPUT_SAMPLES:]
    ports.store.set_meta(THROUGHPUT_KEY, json.dumps(samples))
