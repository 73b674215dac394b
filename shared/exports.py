"""Exports: a folder of a user's home uploaded by a shovel, then made into a new Clowder dataset."""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING

from shared.errors import Conflict, InvalidInput, NotFound, WorkbenchError
from shared.messages import ExportCommand, queue_for
from shared.models import Export, FileError
from shared.paths import safe_relative

if TYPE_CHECKING:
    from events.types import ExportUploaded
    from shared.bootstrap import Platform

log = logging.getLogger(__name__)

GRANT_SECONDS = 24 * 3600


def _now() -> int:
    return int(time.time())


def request(
    platform: Platform,
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
    from shared.transfers import paired_clowder

    if clowder_url is None:
        clowder_url = platform.settings.clowder.url or ""
    source = paired_clowder(platform, clowder_url)
    folder = safe_relative(folder, field="folder")
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
        createdTime=_now(),
        updateTime=_now(),
    )
    if not platform.store.insert_export(export):
        existing = platform.store.get_export(export.id)
        assert existing is not None
        return existing  # a redelivered event
    grant = platform.objects.upload_grant(f"exports/{export.id}/", GRANT_SECONDS)
    command = ExportCommand(
        export_id=export.id,
        user=user,
        folder=folder,
        upload_url=grant.url,
        upload_fields=grant.fields,
        key_prefix=grant.prefix,
    )
    platform.bus.publish(queue_for(user), command.model_dump_json().encode())

    def uploading(current: Export) -> Export:
        return current.model_copy(update={"state": "uploading", "updateTime": _now()})

    return platform.store.update_export(export.id, uploading)


def export_id_for(source: str, event_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"export:{source}#{event_id}"))


def record_uploaded(platform: Platform, uploaded: ExportUploaded) -> Export:
    """The shovel put the folder's files in staging: create the dataset and stream them into it."""
    from events import types
    from shared.eventing import emit

    export = platform.store.get_export(uploaded.export_id)
    if export is None or export.user != uploaded.user:
        raise NotFound("export", uploaded.export_id)
    if export.state in ("completed", "failed"):
        return export
    prefix = f"exports/{export.id}/"
    for file in uploaded.files:
        if not file.key.startswith(prefix):
            raise InvalidInput(f"{file.key!r} is not in this export's staging area", field="files")
        safe_relative(file.path, field="files.path")

    def creating(current: Export) -> Export:
        # One delivery of the report creates the dataset; a second one while it works changes nothing.
        if current.state != "uploading":
            raise Conflict(f"export '{current.id}' is already {current.state}")
        return current.model_copy(update={"state": "creating", "updateTime": _now()})

    try:
        platform.store.update_export(export.id, creating)
    except Conflict:
        found = platform.store.get_export(export.id)
        assert found is not None
        return found
    errors = [FileError(path=problem.path, error=problem.error) for problem in uploaded.errors]
    try:
        client = platform.clowder()
        dataset_id = export.datasetId or client.create_dataset(
            export.name, export.description, export.spaceId
        )

        def created(current: Export) -> Export:
            return current.model_copy(update={"datasetId": dataset_id, "updateTime": _now()})

        platform.store.update_export(export.id, created)
        for file in uploaded.files:
            client.upload(dataset_id, safe_relative(file.path), platform.objects.read(file.key), file.size)
    except WorkbenchError as error:
        message = f"Clowder could not take the export: {error.message}"

        def failed(current: Export) -> Export:
            return current.model_copy(
                update={"state": "failed", "message": message, "errors": errors, "updateTime": _now()}
            )

        final = platform.store.update_export(export.id, failed)
        _discard_staged(platform, uploaded)  # a failed export is final: nothing will read them again
        emit(
            platform,
            types.EXPORT_FAILED,
            types.ExportOutcome(
                export_id=final.id,
                user=final.user,
                dataset_id=final.datasetId or None,
                clowder_url=final.source,
                files=0,
                error=message,
            ),
            subject=final.id,
        )
        return final
    _discard_staged(platform, uploaded)

    def completed(current: Export) -> Export:
        return current.model_copy(
            update={
                "state": "failed" if errors else "completed",
                "files": len(uploaded.files),
                "bytes": sum(file.size for file in uploaded.files),
                "errors": errors,
                "updateTime": _now(),
            }
        )

    final = platform.store.update_export(export.id, completed)
    kind = types.EXPORT_FAILED if errors else types.EXPORT_COMPLETED
    emit(
        platform,
        kind,
        types.ExportOutcome(
            export_id=final.id,
            user=final.user,
            dataset_id=final.datasetId,
            clowder_url=final.source,
            files=final.files,
            error="; ".join(f"{e.path}: {e.error}" for e in errors) or None,
        ),
        subject=final.id,
    )
    return final


def _discard_staged(platform: Platform, uploaded: ExportUploaded) -> None:
    for file in uploaded.files:
        platform.objects.delete(file.key)


def read(platform: Platform, user: str, export_id: str) -> Export:
    export = platform.store.get_export(export_id, user)
    if export is None:
        raise NotFound("export", export_id)
    return export
