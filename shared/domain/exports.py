"""Exports: a folder of a user's home uploaded by a shovel, then made into a new Clowder dataset."""

from __future__ import annotations

import json
import logging
import uuid
from typing import TYPE_CHECKING

from shared.core import clock, datafolder
from shared.core.errors import Conflict, InvalidInput, NotFound, Unavailable, WorkbenchError
from shared.core.models import Export, FileError
from shared.core.paths import safe_relative
from shared.domain import lineage
from shared.domain.leases import lease_kept
from shared.domain.messages import ExportCommand, queue_for

if TYPE_CHECKING:
    from events.types import ExportUploaded
    from shared.adapters.clowder import ClowderClient

    # An export uses the adapters a transfer does, the other way round: the bus to the user's
    # shovels, the object store they upload into, Clowder to make the dataset in, the sink for its
    # outcome. (For the type checker only: the export function need not import the transfers.)
    from shared.domain.transfers import TransferPorts as ExportPorts

log = logging.getLogger(__name__)

GRANT_SECONDS = 24 * 3600
OWN_CRATE = (
    f"the folder has its own {lineage.CRATE_NAME}, which the dataset keeps: the export's lineage is "
    "set as the dataset's metadata only"
)


def request(
    ports: ExportPorts,
    user: str,
    *,
    folder: str,
    name: str,
    description: str = "",
    space_id: str | None = None,
    export_id: str | None = None,
    clowder_url: str | None = None,
) -> Export:
    """Record an export (once per id) and ask the user's shovels to upload the folder; an event names
    its Clowder (``clowder_url``), which must be the paired one."""
    from shared.domain.transfers import paired_clowder

    if clowder_url is None:
        clowder_url = ports.settings.clowder.url or ""
    source = paired_clowder(ports, clowder_url)
    folder = datafolder.folder_in_home(folder, app_mounts(ports, user))
    if not name.strip():
        raise InvalidInput("must not be empty", field="name")
    export = Export(
        id=export_id or str(uuid.uuid4()),
        user=user,
        folder=folder,
        name=name.strip(),
        description=description,
        spaceId=space_id,
        source=source,
        createdTime=clock.now(),
        updateTime=clock.now(),
    )
    if not ports.store.insert_export(export):
        existing = ports.store.get_export(export.id)
        assert existing is not None
        return existing  # a redelivered event
    return _ask_shovels(ports, export)


def app_mounts(ports: ExportPorts, user: str) -> list[tuple[str, str]]:
    """Each folder of the home an app of the user's stacks mounts, with where it mounts it: the
    service's own folders and the data folder beneath them."""
    from shared.domain.specs import lookup

    mounts: list[tuple[str, str]] = []
    for stack in ports.store.list_stacks(user):
        for service in stack.services:
            mounts.extend((service.volumeMounts or {}).items())
            spec = lookup(ports.store, user, service.service)
            if spec is not None:
                mounts.append((datafolder.DATA_FOLDER, datafolder.mount_path(spec)))
    return mounts


def _ask_shovels(ports: ExportPorts, export: Export) -> Export:
    """Send the user's shovels the command to upload the folder, with a grant of its own."""
    user = export.user
    grant = ports.objects.upload_grant(f"exports/{export.id}/", GRANT_SECONDS)
    command = ExportCommand(
        export_id=export.id,
        user=user,
        folder=export.folder,
        upload_url=grant.url,
        upload_fields=grant.fields,
        key_prefix=grant.prefix,
    )
    ports.bus.publish(queue_for(user), command.model_dump_json().encode())

    def uploading(current: Export) -> Export:
        return current.model_copy(update={"state": "uploading", "updateTime": clock.now()})

    return ports.store.update_export(export.id, uploading)


def export_id_for(source: str, event_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"export:{source}#{event_id}"))


def record_uploaded(ports: ExportPorts, uploaded: ExportUploaded) -> Export:
    """The shovel put the folder's files in staging: create the dataset and stream them into it."""
    export = ports.store.get_export(uploaded.export_id)
    if export is None or export.user != uploaded.user:
        raise NotFound("export", uploaded.export_id)
    prefix = f"exports/{export.id}/"
    for file in uploaded.files:
        if not file.key.startswith(prefix):
            raise InvalidInput(f"{file.key!r} is not in this export's staging area", field="files")
        safe_relative(file.path, field="files.path")
    if export.state == "failed":
        # A late or repeated report of an export already given up: what it staged has no use.
        _discard_staged(ports, uploaded)
        return export
    if export.state == "completed":
        return export

    def creating(current: Export) -> Export:
        # One delivery of the report creates the dataset; a second one while it works changes nothing.
        if current.state != "uploading":
            raise Conflict(f"export '{current.id}' is already {current.state}")
        return current.model_copy(update={"state": "creating", "updateTime": clock.now()})

    try:
        # The report is kept with the export: resuming its creation after a crash or an outage needs it.
        export = ports.store.update_export(export.id, creating, work=uploaded.model_dump_json())
    except Conflict:
        found = ports.store.get_export(export.id)
        assert found is not None
        return found
    return _create(ports, export, uploaded)


def _create(ports: ExportPorts, export: Export, uploaded: ExportUploaded) -> Export:
    """Create the dataset (unless an earlier attempt did) and upload the staged files into it. Clowder
    unavailable leaves the export ``creating``, to be resumed; any other refusal fails it, and the
    dataset it made is deleted, so that a failed export leaves no empty dataset behind."""
    errors = [FileError(path=problem.path, error=problem.error) for problem in uploaded.errors]
    if errors and not uploaded.files:
        return give_up(ports, export.id, "no file of the folder could be uploaded", uploaded)
    export_id = export.id
    try:
        with lease_kept(
            lambda: ports.store.update_export(export_id, _touch),
            ports.settings.recovery.resume_after / 4,
            what=f"export {export_id}",
        ):
            _fill_dataset(ports, export, uploaded)
    except Unavailable as error:
        message = f"Clowder could not take the export; retrying: {error.message}"
        log.warning("export %s: %s", export_id, message)

        def waiting(current: Export) -> Export:
            return current.model_copy(update={"message": message, "updateTime": clock.now()})

        return ports.store.update_export(export_id, waiting)
    except WorkbenchError as error:
        return give_up(ports, export_id, f"Clowder could not take the export: {error.message}", uploaded)
    _discard_staged(ports, uploaded)

    def completed(current: Export) -> Export:
        return current.model_copy(
            update={
                "state": "failed" if errors else "completed",
                "files": len(uploaded.files),
                "bytes": sum(file.size for file in uploaded.files),
                "errors": errors,
                "message": OWN_CRATE if _has_own_crate(uploaded) else "",
                "updateTime": clock.now(),
            }
        )

    final = ports.store.update_export(export_id, completed)
    _announce(ports, final, "; ".join(f"{e.path}: {e.error}" for e in errors) or None)
    return final


def _fill_dataset(ports: ExportPorts, export: Export, uploaded: ExportUploaded) -> None:
    """The dataset with every uploaded file; a file an earlier attempt put there is not sent again."""
    client = ports.clowder()
    present: set[tuple[str, int | None]] = set()
    if export.datasetId:
        dataset_id = export.datasetId
        present = {(file.path, file.size) for file in client.files(dataset_id)}
    else:
        dataset_id = client.create_dataset(export.name, export.description, export.spaceId)

        def created(current: Export) -> Export:
            return current.model_copy(update={"datasetId": dataset_id, "updateTime": clock.now()})

        ports.store.update_export(export.id, created)
    for file in uploaded.files:
        path = safe_relative(file.path)
        if (path, file.size) not in present:
            client.upload(dataset_id, path, ports.objects.read(file.key), file.size)
    if not any(path == lineage.CRATE_NAME for path, _ in present):
        _attach_lineage(ports, client, export, dataset_id, uploaded)


def _attach_lineage(
    ports: ExportPorts, client: ClowderClient, export: Export, dataset_id: str, uploaded: ExportUploaded
) -> None:
    """The dataset's RO-Crate: set as its metadata, then put in it as ``ro-crate-metadata.json``
    (last, so that a resumed export that finds the file knows both are there); where the folder has a
    crate of its own at the top, that one stays the dataset's file and this one is metadata only."""
    sources = lineage.sources_of(ports.store, export, uploaded.files)
    document = lineage.crate_document(
        export=export,
        dataset_url=f"{export.source.rstrip('/')}/datasets/{dataset_id}",
        files=uploaded.files,
        sources=sources,
        instruments=lineage.instruments_of(ports.store, export.user),
        licence=lineage.licence_for(client.version, client.license_id),
        author=lineage.author_of(ports.store, export.user),
        finished=clock.now(),
    )
    client.add_metadata(dataset_id, {"roCrate": document}, [{"roCrate": lineage.CRATE_CONTEXT}])
    if not _has_own_crate(uploaded):
        data = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
        client.upload(dataset_id, lineage.CRATE_NAME, [data], len(data), content_type="application/ld+json")

    def traced(current: Export) -> Export:
        return current.model_copy(
            update={"derivedFrom": lineage.references(sources), "updateTime": clock.now()}
        )

    ports.store.update_export(export.id, traced)


def _has_own_crate(uploaded: ExportUploaded) -> bool:
    return any(file.path == lineage.CRATE_NAME for file in uploaded.files)


def give_up(ports: ExportPorts, export_id: str, message: str, uploaded: ExportUploaded | None) -> Export:
    """Fail the export for good, saying why: the dataset it created is deleted (a failed export leaves
    no dataset behind), its staged files too, and the failure is announced."""
    export = ports.store.get_export(export_id)
    if export is None:
        raise NotFound("export", export_id)
    kept_dataset = export.datasetId
    if export.datasetId:
        try:
            ports.clowder().delete_dataset(export.datasetId)
        except WorkbenchError as error:
            message += f"; the dataset {export.datasetId} it created could not be deleted: {error.message}"
        else:
            message += f"; the dataset {export.datasetId} it created was deleted"
            kept_dataset = ""
    errors = [
        FileError(path=problem.path, error=problem.error) for problem in (uploaded.errors if uploaded else [])
    ]

    def failed(current: Export) -> Export:
        return current.model_copy(
            update={
                "state": "failed",
                "message": message,
                "errors": errors or current.errors,
                "datasetId": kept_dataset,
                "updateTime": clock.now(),
            }
        )

    final = ports.store.update_export(export_id, failed)
    if uploaded is not None:
        _discard_staged(ports, uploaded)
    else:
        for key, _ in ports.objects.list(f"exports/{export_id}/"):
            ports.objects.delete(key)  # what a shovel staged before the export was given up
    _announce(ports, final, message)
    return final


def _announce(ports: ExportPorts, export: Export, error: str | None) -> None:
    from events import types

    ports.sink.emit(
        types.EXPORT_FAILED if export.state == "failed" else types.EXPORT_COMPLETED,
        types.ExportOutcome(
            export_id=export.id,
            user=export.user,
            dataset_id=export.datasetId or None,
            clowder_url=export.source,
            files=export.files,
            error=error,
        ),
        subject=export.id,
    )


def _touch(current: Export) -> Export:
    return current.model_copy(update={"updateTime": clock.now()})


def resumed(current: Export, attempt: int, attempts: int) -> Export:
    """An export as a resumption claims it: failed once it was resumed ``attempts`` times."""
    if attempt > attempts:
        reason = current.message or f"its work stopped while it was {current.state}"
        return current.model_copy(
            update={
                "state": "failed",
                "message": f"gave up after {attempts} attempts to resume it: {reason}",
                "updateTime": clock.now(),
            }
        )
    return current.model_copy(update={"updateTime": clock.now()})


def resume(ports: ExportPorts, export: Export, work: str | None) -> Export:
    """Go on with an export whose work stopped: ask the shovels again for the upload whose command was
    lost, create the dataset from the kept report, or, given up, clean up after it."""
    from events.types import ExportUploaded

    uploaded = ExportUploaded.model_validate_json(work) if work else None
    if export.state == "failed":
        return give_up(ports, export.id, export.message, uploaded)
    if export.state in ("requested", "uploading"):
        return _ask_shovels(ports, export)
    if uploaded is None:
        return give_up(ports, export.id, "the shovel's report of the upload was lost", None)
    return _create(ports, export, uploaded)


def _discard_staged(ports: ExportPorts, uploaded: ExportUploaded) -> None:
    for file in uploaded.files:
        ports.objects.delete(file.key)


def read(ports: ExportPorts, user: str, export_id: str) -> Export:
    export = ports.store.get_export(export_id, user)
    if export is None:
        raise NotFound("export", export_id)
    return export
