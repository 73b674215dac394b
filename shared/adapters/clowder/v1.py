"""Clowder 1.x: its paths under ``/api``, the ``X-API-Key`` header, and its answers read into the client's records."""

from __future__ import annotations

from typing import Any

from shared.adapters.clowder.records import ClowderDataset, ClowderFile, FolderIndex, digest_in
from shared.adapters.clowder.transport import Transport, segment, size, string
from shared.core.errors import Unavailable

KEY_HEADER = "X-API-Key"
KEY_OWNER_PATH = "/api/me"
UPLOAD_FIELD = "File"
METADATA_CONTEXT = "https://clowderframework.org/contexts/metadata.jsonld"
"""The JSON-LD context every Clowder 1 metadata document names first."""


def dataset_path(dataset_id: str) -> str:
    return f"/api/datasets/{segment(dataset_id, 'dataset_id')}"


def file_path(file_id: str) -> str:
    """Where the file's bytes are."""
    return f"/api/files/{segment(file_id, 'file_id')}/blob"


def upload_path(dataset_id: str) -> str:
    return f"/api/uploadToDataset/{segment(dataset_id, 'dataset_id')}"


def files(transport: Transport, dataset_id: str) -> list[ClowderFile]:
    """Every file of the dataset with its folder path."""
    # Clowder 1 lists every file without saying where it is; /listFiles gives those at the top, and
    # only /files/{id}/paths tells the folders of the others, one file at a time.
    subject = ("Clowder dataset", dataset_id)
    base = dataset_path(dataset_id)
    listed = transport.as_list(
        transport.get_json(f"{base}/files", operation="list the dataset's files", subject=subject)
    )
    items = [item for item in listed if isinstance(item, dict) and item.get("id") is not None]
    if not items:
        return []
    top = transport.as_list(
        transport.get_json(f"{base}/listFiles", operation="list the dataset's files", subject=subject)
    )
    top_ids = {string(item.get("id")) for item in top if isinstance(item, dict)}
    dataset_name = ""
    if any(string(item["id"]) not in top_ids for item in items):
        dataset_name = read_dataset(transport, dataset_id).name
    result: list[ClowderFile] = []
    for item in items:
        file_id = string(item["id"])
        name = string(item.get("filename"))
        folders: tuple[str, ...] = ()
        if file_id not in top_ids:
            folders = _folders_of(transport, file_id, dataset_name)
        content_type = item.get("contentType", item.get("content-type"))
        result.append(
            ClowderFile(
                id=file_id,
                name=name,
                path="/".join((*folders, name)),
                size=size(item.get("size")),
                content_type=None if content_type is None else string(content_type),
                digest=digest_in(item),
            )
        )
    return result


def read_dataset(transport: Transport, dataset_id: str) -> ClowderDataset:
    return dataset_from(
        transport.get_json(
            dataset_path(dataset_id), operation="read the dataset", subject=("Clowder dataset", dataset_id)
        ),
        dataset_id,
        transport,
    )


def dataset_from(answer: Any, dataset_id: str, transport: Transport) -> ClowderDataset:
    """A dataset as either version describes it (both name the same three fields)."""
    item = transport.as_object(answer)
    return ClowderDataset(
        id=string(item.get("id")) or dataset_id,
        name=string(item.get("name")),
        description=string(item.get("description")),
        version=_version(item),
    )


def _version(item: dict[str, Any]) -> str | None:
    """Clowder 2's released version of a frozen dataset (Clowder 1 has none)."""
    number = item.get("frozen_version_num")
    if item.get("frozen") is True and isinstance(number, int) and number > 0:
        return str(number)
    return None


def _folders_of(transport: Transport, file_id: str, dataset_name: str) -> tuple[str, ...]:
    """The folder names from the dataset down to the file's folder.

    ``/files/{id}/paths`` answers ``{"paths": [[dataset names], [dataset, folder, subfolder, ...]]}``;
    a file can sit in folders of several datasets, so the path that starts with this dataset's name wins."""
    answer = transport.get_json(
        f"/api/files/{segment(file_id, 'file_id')}/paths",
        operation="find the folder of a file",
        subject=("Clowder file", file_id),
    )
    paths = [
        [string(part) for part in path]
        for path in transport.as_list(transport.as_object(answer).get("paths", []))
        if isinstance(path, list) and len(path) >= 2
    ]
    chosen = next((path for path in paths if path[0] == dataset_name.strip()), paths[0] if paths else None)
    return tuple(chosen[1:]) if chosen else ()


def folder_index(transport: Transport, dataset_id: str) -> FolderIndex:
    """The dataset's folders; Clowder 1 names each by its path of display names, "/top/sub"."""
    index = FolderIndex()
    listed = transport.get_json(
        f"{dataset_path(dataset_id)}/folders",
        operation="list the dataset's folders",
        subject=("Clowder dataset", dataset_id),
    )
    for item in transport.as_list(listed):
        if isinstance(item, dict) and item.get("id"):
            index.add(tuple(string(item.get("name")).removeprefix("/").split("/")), string(item["id"]))
    return index


def create_dataset(transport: Transport, name: str, description: str, space_id: str | None) -> str:
    document: dict[str, Any] = {"name": name, "description": description}
    if space_id:
        document["space"] = [space_id]
    response = transport.call(
        "POST", "/api/datasets/createempty", json=document, operation="create a dataset"
    )
    return transport.new_id(response, "create a dataset")


def new_folder(transport: Transport, dataset_id: str, name: str, parent_folder_id: str | None) -> str:
    response = transport.call(
        "POST",
        f"{dataset_path(dataset_id)}/newFolder",
        json={
            "name": name,
            "parentId": parent_folder_id or dataset_id,
            "parentType": "folder" if parent_folder_id else "dataset",
        },
        operation="create a folder",
        subject=("Clowder dataset", dataset_id),
    )
    answer = transport.json(response, "create a folder")
    if isinstance(answer, dict) and answer.get("id"):
        return string(answer["id"])
    # Clowder releases before 1.9 answer only {"status": "success"}: find the new folder by its path.
    index = folder_index(transport, dataset_id)
    parent_path = () if parent_folder_id is None else index.by_id.get(parent_folder_id, ())
    found = index.by_path.get((*parent_path, name.strip()))
    if found is None:
        raise Unavailable(f"Clowder at {transport.where} created folder {name!r} but did not say its id")
    return found


def uploaded(answer: Any) -> Any:
    """The new file out of an upload's answer, ``{"ids": [{"id": ...}]}`` or ``{"ids": ["..."]}``
    (releases differ), or ``{"id": ...}``."""
    if isinstance(answer, dict) and isinstance(answer.get("ids"), list) and answer["ids"]:
        first = answer["ids"][0]
        return first if isinstance(first, dict) else {"id": first}
    return answer
