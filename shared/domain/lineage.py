"""Lineage on export: an RO-Crate naming where the data of an exported folder came from.

A dataset made from a folder of a user's home carries ``ro-crate-metadata.json`` (the RO-Crate 1.1
profile): the Clowder datasets the home received (their versions, and the digests of the received files
the export carries unchanged), the stacks and images that ran, and every exported file with its sha256.
The sources come from the platform's own records of completed transfers, never from the receipts in the
home, which the user can edit; a user's program cannot make a dataset claim a source it never received.
"""

from __future__ import annotations

import mimetypes
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from shared.core.models import LineageSource, Transfer, TransferFile

if TYPE_CHECKING:
    from events.types import UploadedFile
    from shared.adapters.store import Store
    from shared.core.models import Export

CRATE_NAME = "ro-crate-metadata.json"
"""The crate's metadata file, at the top of the dataset (RO-Crate's fixed name)."""
PROFILE = "1.1"
CRATE_CONTEXT = f"https://w3id.org/ro/crate/{PROFILE}/context"
EXTRA_TERMS = {
    # Schema.org's term, newer than the schema.org release the RO-Crate 1.1 context names.
    "sha256": "https://schema.org/sha256",
    "wasDerivedFrom": "http://www.w3.org/ns/prov#wasDerivedFrom",
}
"""Terms the crate uses beyond the RO-Crate 1.1 context, defined in its ``@context`` as RO-Crate asks."""
CC_BY = "https://creativecommons.org/licenses/by/4.0/"
SOURCE_FILES_LISTED = 10_000
"""The received files a source dataset lists in the crate, each with its digest, at most: a dataset of
a million files would otherwise make a crate of hundreds of megabytes."""

Why = Literal["folder", "content", "home"]
"""Why a dataset is a source: its copy is in (or holds) the exported folder; the export carries some of
its files unchanged; or neither, and it is one the same home received, which the work may have used."""


@dataclass(frozen=True)
class Source:
    """A completed transfer the export derives from, with the files it placed."""

    transfer: Transfer
    files: list[TransferFile]
    why: Why


@dataclass(frozen=True)
class Instrument:
    """An app that ran in the user's stacks: a service of a stack and the image it ran."""

    stack_id: str
    stack_name: str
    service_id: str
    label: str
    image: str
    tag: str


@dataclass(frozen=True)
class Author:
    """Who exported: the account's name and, where it names one, organisation."""

    user: str
    name: str = ""
    organization: str = ""


def author_of(store: Store, user: str) -> Author:
    record = store.get_account(user)
    if record is None:
        return Author(user)
    return Author(user, record.account.name, record.account.organization)


@dataclass(frozen=True)
class Licence:
    """The licence a new dataset gets in Clowder: a URL where it has one, else a name."""

    name: str
    url: str | None = None


def licence_for(clowder_version: int, license_id: str) -> Licence:
    """What Clowder gives a dataset the platform creates: Clowder 2 the licence id the client sends,
    Clowder 1 its default, "All Rights Reserved" (the owner may change either in Clowder)."""
    if clowder_version == 1:
        return Licence("All Rights Reserved")
    return Licence(license_id, CC_BY if license_id == "CC BY" else None)


def sources_of(store: Store, export: Export, files: Sequence[UploadedFile]) -> list[Source]:
    """The datasets the export derives from, oldest copy first: the user's completed transfers whose
    folder is in the exported one or holds it, and those whose received files the export carries
    unchanged; where there are none, every dataset the home received."""
    transfers = sorted(
        (transfer for transfer in store.list_transfers(export.user) if transfer.state == "completed"),
        key=lambda transfer: (transfer.updateTime, transfer.id),
    )
    digests = {file.sha256 for file in files}
    found: list[Source] = []
    received: list[Source] = []
    for transfer in transfers:
        placed = [file for file in store.list_transfer_files(transfer.id) if file.state == "placed"]
        if _overlaps(transfer.target, export.folder):
            found.append(Source(transfer, placed, "folder"))
        elif any(file.sha256 in digests for file in placed):
            found.append(Source(transfer, placed, "content"))
        else:
            received.append(Source(transfer, placed, "home"))
    return found or received


def _overlaps(target: str, folder: str) -> bool:
    """Whether a transfer's folder is the exported folder, inside it, or holds it (paths in the home)."""
    target, folder = target.strip("/"), folder.strip("/")
    return (
        target == folder
        or not folder
        or target.startswith(folder + "/")
        or (bool(target) and folder.startswith(target + "/"))
    )


RAN = ("starting", "started")
"""The states of a stack whose apps run (and whose shovel uploaded the export's files)."""


def instruments_of(store: Store, user: str) -> list[Instrument]:
    """The apps of the user's running stacks, each with the image it runs."""
    from shared.domain.specs import lookup

    found = []
    for stack in store.list_stacks(user):
        if stack.status not in RAN:
            continue
        for service in stack.services:
            spec = lookup(store, user, service.service)
            if spec is None or not spec.image.name:
                continue
            registry = spec.image.registry.rstrip("/")
            image = f"{registry}/{spec.image.name}" if registry else spec.image.name
            tag = service.imageTag or (spec.image.tags[0] if spec.image.tags else "")
            found.append(
                Instrument(
                    stack_id=stack.id,
                    stack_name=stack.name,
                    service_id=service.id,
                    label=spec.label or spec.key,
                    image=image,
                    tag=tag,
                )
            )
    return found


def references(sources: Iterable[Source]) -> list[LineageSource]:
    """The sources as the export's record shows them."""
    return [
        LineageSource(
            source=source.transfer.source,
            datasetId=source.transfer.datasetId,
            datasetName=source.transfer.datasetName,
            datasetVersion=source.transfer.datasetVersion,
            transferId=source.transfer.id,
            why=source.why,
        )
        for source in sources
    ]


def crate_document(
    *,
    export: Export,
    dataset_url: str,
    files: Sequence[UploadedFile],
    sources: Sequence[Source],
    instruments: Sequence[Instrument],
    licence: Licence,
    author: Author,
    finished: int,
) -> dict[str, Any]:
    """The export's ``ro-crate-metadata.json`` as a JSON-LD document (RO-Crate 1.1)."""
    from rocrate.model.contextentity import ContextEntity
    from rocrate.model.person import Person
    from rocrate.model.softwareapplication import SoftwareApplication
    from rocrate.rocrate import ROCrate

    crate = ROCrate(version=PROFILE)
    crate.metadata.extra_terms.update(EXTRA_TERMS)
    root = crate.root_dataset
    root["name"] = export.name
    root["description"] = (
        export.description or f"Exported from the folder '{export.folder}' of a Workbench home"
    )
    root["datePublished"] = _moment(finished)
    root["url"] = dataset_url
    licence_id = licence.url or "#licence"
    root["license"] = crate.add(
        ContextEntity(crate, licence_id, properties={"@type": "CreativeWork", "name": licence.name})
    )

    datasets = []
    received: dict[str, ContextEntity] = {}
    exported = {file.sha256 for file in files}
    for source in sources:
        dataset = crate.add(ContextEntity(crate, _dataset_url(source.transfer), properties=_dataset(source)))
        datasets.append(dataset)
        listed, left = _listed(source.files, exported)
        parts = []
        for kept in listed:
            entity = crate.add(
                ContextEntity(crate, _file_url(source.transfer, kept), properties=_received(kept))
            )
            entity["isPartOf"] = dataset
            parts.append(entity)
            if kept.sha256 in exported:
                received.setdefault(kept.sha256, entity)
        if parts:
            dataset["hasPart"] = _one_or_many(parts)
        if left:
            dataset["description"] += f"; {left} more of its files are not listed here"
    if datasets:
        root["wasDerivedFrom"] = _one_or_many(datasets)
        root["isBasedOn"] = _one_or_many(datasets)

    for file in sorted(files, key=lambda file: file.path):
        entity = crate.add_file(
            dest_path=file.path,  # as it is in the dataset: the library writes it as a URI reference
            properties={
                "name": file.path.rpartition("/")[2],
                "contentSize": str(file.size),
                "encodingFormat": mimetypes.guess_type(file.path)[0] or "application/octet-stream",
                "sha256": file.sha256,
            },
        )
        origin = received.get(file.sha256)
        if origin is not None:
            entity["isBasedOn"] = origin
            entity["wasDerivedFrom"] = origin

    apps = [crate.add(_application(crate, SoftwareApplication, app)) for app in instruments]
    agent = crate.add(
        Person(crate, f"#workbench-user-{export.user}", properties={"name": author.name or export.user})
    )
    if author.organization:
        agent["affiliation"] = crate.add(
            ContextEntity(
                crate,
                f"#organization-{urllib.parse.quote(author.organization, safe='')}",
                properties={"@type": "Organization", "name": author.organization},
            )
        )
    root["author"] = agent
    clowder = export.source.rstrip("/")
    root["publisher"] = crate.add(
        ContextEntity(
            crate,
            clowder,
            properties={"@type": "Organization", "name": f"Clowder at {clowder}", "url": clowder},
        )
    )
    crate.add_action(
        _one_or_many(apps) if apps else None,
        identifier=f"#export-{export.id}",
        object=_one_or_many(datasets) if datasets else None,
        result=root,
        properties={
            "@type": "CreateAction",
            "name": f"Export of '{export.folder}' from the Workbench",
            "agent": {"@id": agent.id},
            "startTime": _moment(export.createdTime),
            "endTime": _moment(finished),
        },
    )
    document: dict[str, Any] = crate.metadata.generate()
    return document


def _listed(placed: list[TransferFile], exported: set[str]) -> tuple[list[TransferFile], int]:
    """The received files a source lists (the ones the export carries unchanged, then the rest by
    path, at most ``SOURCE_FILES_LISTED`` in all) and how many are left out."""
    ordered = sorted(placed, key=lambda file: (file.sha256 not in exported, file.path))
    return ordered[:SOURCE_FILES_LISTED], max(0, len(ordered) - SOURCE_FILES_LISTED)


def _file_url(transfer: Transfer, file: TransferFile) -> str:
    return f"{transfer.source.rstrip('/')}/files/{urllib.parse.quote(file.clowderId, safe='')}"


def _received(file: TransferFile) -> dict[str, Any]:
    properties: dict[str, Any] = {"@type": "CreativeWork", "name": file.path, "contentSize": str(file.size)}
    if file.sha256:
        properties["sha256"] = file.sha256
    return properties


def _one_or_many(entities: list[Any]) -> Any:
    """A property's value as RO-Crate 1.1 writes it: a single entity alone, never a list of one."""
    return entities[0] if len(entities) == 1 else entities


def _dataset(source: Source) -> dict[str, Any]:
    transfer = source.transfer
    properties: dict[str, Any] = {
        # A Clowder dataset is not part of this crate: a contextual entity, which RO-Crate 1.1 types
        # as a CreativeWork (a "Dataset" there would be one of the crate's own folders).
        "@type": "CreativeWork",
        "additionalType": "Dataset",
        "name": transfer.datasetName or transfer.datasetId,
        "identifier": transfer.datasetId,
        "url": _dataset_url(transfer),
        "description": {
            "folder": "Its copy is in the exported folder or holds it",
            "content": "The export carries files of it unchanged",
            "home": "Received into the same home as the exported folder",
        }[source.why],
    }
    if transfer.datasetVersion:
        properties["version"] = transfer.datasetVersion
    return properties


def _dataset_url(transfer: Transfer) -> str:
    return f"{transfer.source.rstrip('/')}/datasets/{urllib.parse.quote(transfer.datasetId, safe='')}"


def _application(crate: Any, kind: Any, app: Instrument) -> Any:
    image = f"{app.image}:{app.tag}" if app.tag else app.image
    return kind(
        crate,
        f"#stack-{app.stack_id}-{app.service_id}",
        properties={
            "name": f"{app.label} in stack '{app.stack_name}'",
            "softwareVersion": app.tag or "latest",
            "identifier": image,
        },
    )


def _moment(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
