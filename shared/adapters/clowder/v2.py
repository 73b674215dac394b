"""Clowder 2.x: its paths under ``/api/v2``, the ``X-API-KEY`` header, paged lists, folders listed one
parent at a time, and its answers read into the client's records."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

from shared.adapters.clowder.records import ClowderFile, FolderIndex, digest_in
from shared.adapters.clowder.transport import Transport, segment, size, string
from shared.core.errors import Unavailable

KEY_HEADER = "X-API-KEY"
KEY_OWNER_PATH = "/api/v2/users/profile"
UPLOAD_FIELD = "file"

FolderTree = dict[str, tuple[str, str | None]]
"""Folders by id: (name, parent folder id)."""


def dataset_path(dataset_id: str) -> str:
    return f"/api/v2/datasets/{segment(dataset_id, 'dataset_id')}"


def file_path(file_id: str) -> str:
    """Where the file's bytes are."""
    return f"/api/v2/files/{segment(file_id, 'file_id')}"


def upload_path(dataset_id: str) -> str:
    return f"{dataset_path(dataset_id)}/files"


def files(transport: Transport, dataset_id: str, page_size: int) -> list[ClowderFile]:
    """Every file of the dataset with its folder path."""
    subject = ("Clowder dataset", dataset_id)
    items = list(
        pages(
            transport,
            f"{dataset_path(dataset_id)}/files",
            page_size,
            operation="list the dataset's files",
            subject=subject,
        )
    )
    tree: FolderTree = {}
    if any(item.get("folder_id") for item in items):
        tree = folder_tree(transport, dataset_id, page_size)
    result: list[ClowderFile] = []
    for item in items:
        name = string(item.get("name"))
        folder_id = item.get("folder_id")
        folders = folder_path(transport, dataset_id, string(folder_id), tree) if folder_id else ()
        content_type = item.get("content_type")
        if isinstance(content_type, dict):
            content_type = content_type.get("content_type")
        result.append(
            ClowderFile(
                id=string(item.get("id")),
                name=name,
                path="/".join((*folders, name)),
                size=size(item.get("bytes")),
                content_type=None if content_type is None else string(content_type),
                storage_path=string(item.get("storage_path"))
                if item.get("storage_type") == "local" and item.get("storage_path")
                else None,
                digest=digest_in(item),
            )
        )
    return result


def folder_tree(transport: Transport, dataset_id: str, page_size: int) -> FolderTree:
    """Every folder of the dataset.

    Clowder 2 lists only the children of one parent at a time (no parent: the top level), so the
    tree is walked breadth first."""
    tree: FolderTree = {}
    waiting: deque[str | None] = deque([None])
    expanded: set[str | None] = set()
    while waiting:
        parent = waiting.popleft()
        if parent in expanded:
            continue
        expanded.add(parent)
        for item in pages(
            transport,
            f"{dataset_path(dataset_id)}/folders",
            page_size,
            params={} if parent is None else {"parent_folder": parent},
            operation="list the dataset's folders",
            subject=("Clowder dataset", dataset_id),
        ):
            folder_id = string(item.get("id"))
            if not folder_id:
                continue
            parent_id = item.get("parent_folder")
            tree[folder_id] = (string(item.get("name")), string(parent_id) if parent_id else None)
            waiting.append(folder_id)
    return tree


def folder_path(transport: Transport, dataset_id: str, folder_id: str, tree: FolderTree) -> tuple[str, ...]:
    """The folder names from the dataset down to ``folder_id``."""
    names: list[str] = []
    current: str | None = folder_id
    seen: set[str] = set()
    while current is not None:
        if current in seen:
            raise Unavailable(f"Clowder at {transport.where} has a folder cycle in dataset '{dataset_id}'")
        seen.add(current)
        if current not in tree:
            # Created after the tree was listed: ask for that one folder.
            item = transport.as_object(
                transport.get_json(
                    f"{dataset_path(dataset_id)}/folders/{segment(current, 'folder_id')}",
                    operation="read a folder",
                    subject=("Clowder folder", current),
                )
            )
            parent_id = item.get("parent_folder")
            tree[current] = (string(item.get("name")), string(parent_id) if parent_id else None)
        name, current = tree[current]
        names.append(name)
    return tuple(reversed(names))


def folder_index(transport: Transport, dataset_id: str, page_size: int) -> FolderIndex:
    index = FolderIndex()
    tree = folder_tree(transport, dataset_id, page_size)
    for folder_id in tree:
        index.add(folder_path(transport, dataset_id, folder_id, tree), folder_id)
    return index


def create_dataset(transport: Transport, name: str, description: str, license_id: str) -> str:
    response = transport.call(
        "POST",
        "/api/v2/datasets",
        params={"license_id": license_id},
        json={"name": name, "description": description},
        operation="create a dataset",
    )
    return transport.new_id(response, "create a dataset")


def new_folder(transport: Transport, dataset_id: str, name: str, parent_folder_id: str | None) -> str:
    document: dict[str, Any] = {"name": name}
    if parent_folder_id is not None:
        document["parent_folder"] = parent_folder_id
    response = transport.call(
        "POST",
        f"{dataset_path(dataset_id)}/folders",
        json=document,
        operation="create a folder",
        subject=("Clowder dataset", dataset_id),
    )
    return transport.new_id(response, "create a folder")


def pages(
    transport: Transport,
    path: str,
    page_size: int,
    *,
    operation: str,
    subject: tuple[str, str] | None = None,
    params: dict[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every item of a paged list ``{metadata: {total_count, skip, limit}, data: [...]}``."""
    skip = 0
    seen: set[str] = set()
    while True:
        page = transport.as_object(
            transport.get_json(
                path,
                params={**(params or {}), "skip": skip, "limit": page_size},
                operation=operation,
                subject=subject,
            )
        )
        data = page.get("data")
        items = [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []
        for item in items:
            # Pages are sorted newest first, so an item added meanwhile shifts the next page by one.
            key = string(item.get("id"))
            if key in seen:
                continue
            seen.add(key)
            yield item
        skip += len(items)
        metadata = page.get("metadata")
        total = metadata.get("total_count") if isinstance(metadata, dict) else None
        if not items:
            return
        if isinstance(total, int):
            # A server may cap the page size below ours, so the total decides, not a short page.
            if skip >= total:
                return
        elif len(items) < page_size:
            return
