"""The Clowder client: one object per Clowder instance, speaking version 1.x or 2.x (``v1``, ``v2``) over
``transport``, with downloads (``download``) and uploads (``multipart``) streamed."""

from __future__ import annotations

import mimetypes
import re
import threading
from collections.abc import Generator
from typing import Any, Literal, TypeAlias

from shared.adapters.clowder import v1, v2
from shared.adapters.clowder.download import Downloads
from shared.adapters.clowder.multipart import MultipartBody, Source, SourceSizeMismatch
from shared.adapters.clowder.records import ClowderDataset, ClowderFile, ClowderUser, FolderIndex
from shared.adapters.clowder.transport import Transport, string
from shared.core import retry
from shared.core.errors import InvalidInput, NotFound, Unavailable

Version: TypeAlias = Literal[1, 2]

#: The longest wait between attempts; read when a client is made, so tests can shorten it here.
MAX_BACKOFF_SECONDS = retry.MAX_BACKOFF_SECONDS
#: Clowder 2 refuses to create a dataset without a licence; this is one of its standard licence ids.
DEFAULT_LICENSE_ID = "CC BY"


class ClowderClient:
    """One Clowder instance, version 1.x (``/api``, header ``X-API-Key``) or 2.x (``/api/v2``, ``X-API-KEY``).

    Idempotent calls are retried with exponential backoff and jitter on 5xx, 429, timeouts and connection
    errors; calls that create something are repeated only when the server cannot have acted on them.
    Every failure is one of the project's own errors: 401/403 ``Forbidden``, 404 ``NotFound``, 400/422
    ``InvalidInput``, the rest ``Unavailable``. The API key travels in a header only and appears in no
    message or log line."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        version: Version | None = None,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.5,
        page_size: int = 100,
        license_id: str = DEFAULT_LICENSE_ID,
    ) -> None:
        self._transport = Transport(
            base_url,
            api_key,
            lambda: self._header,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            max_backoff=MAX_BACKOFF_SECONDS,
        )
        self.base_url = self._transport.base_url
        self._where = self._transport.where
        self._version = version
        self.page_size = max(1, page_size)
        self.license_id = license_id
        self._lock = threading.RLock()
        self._folder_indexes: dict[str, FolderIndex] = {}
        self._downloads = Downloads(self._transport)

    @property
    def retries(self) -> int:
        return self._transport.policy.retries

    @property
    def backoff(self) -> float:
        return self._transport.policy.backoff

    def close(self) -> None:
        self._transport.close()
        self._downloads.close()

    def __enter__(self) -> ClowderClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ClowderClient({self._where!r}, version={self._version})"

    # ------------------------------------------------------------------ version

    @property
    def version(self) -> Version:
        """The Clowder major version: as configured, or found by asking for Clowder 2's status."""
        if self._version is None:
            with self._lock:
                if self._version is None:
                    self._version = self._detect_version()
        return self._version

    def _detect_version(self) -> Version:
        # Clowder 2's status needs no key, and which header would carry it is what we do not know yet.
        response = self._transport.call(
            "GET",
            "/api/v2/status",
            operation="find the Clowder version",
            accept_statuses=range(400, 500),
            authenticate=False,
        )
        if response.status_code == 200:
            try:
                status = response.json()
            except ValueError:
                status = None
            if isinstance(status, dict) and "version" in status:
                return 2
        # Clowder 1 has no /api/v2 (404), and some proxies answer unknown paths with an HTML page.
        return 1

    @property
    def _header(self) -> str:
        return v1.KEY_HEADER if self.version == 1 else v2.KEY_HEADER

    # ------------------------------------------------------------------ reading

    def dataset(self, dataset_id: str) -> ClowderDataset:
        if self.version == 1:
            return v1.read_dataset(self._transport, dataset_id)
        answer = self._transport.get_json(
            v2.dataset_path(dataset_id), operation="read the dataset", subject=("Clowder dataset", dataset_id)
        )
        return v1.dataset_from(answer, dataset_id, self._transport)

    def key_owner(self) -> ClowderUser:
        """Whom Clowder knows by this client's API key: ``GET /api/me`` (1.x), ``GET /api/v2/users/profile``
        (2.x, the profile of the key's user); a key Clowder refuses is ``Forbidden``."""
        path = v1.KEY_OWNER_PATH if self.version == 1 else v2.KEY_OWNER_PATH
        item = self._transport.as_object(
            self._transport.get_json(path, operation="tell whose API key this is")
        )
        email = string(item.get("email"))
        if not email:
            raise Unavailable(f"Clowder at {self._where} named no e-mail address for the API key's user")
        return ClowderUser(id=string(item.get("id")), email=email)

    def files(self, dataset_id: str) -> list[ClowderFile]:
        """Every file of the dataset, in every folder, with its path inside the dataset."""
        if self.version == 1:
            return v1.files(self._transport, dataset_id)
        return v2.files(self._transport, dataset_id, self.page_size)

    # ------------------------------------------------------------------ downloading

    def download(
        self, file_id: str, *, offset: int = 0, size: int | None = None
    ) -> Generator[bytes, None, None]:
        """The file's bytes from ``offset`` on, in chunks, never the whole file in memory.

        When the body breaks off (truncated, connection dropped, read timeout) and Clowder offered
        ``Accept-Ranges: bytes``, the rest is asked for with ``Range: bytes=N-`` and the answer's
        ``Content-Range`` checked, so the chunks simply continue. Without ranges it raises
        ``RestartRequired``: the consumer must drop what it got and start again from byte 0. With ``size`` (as listed) a body of any other length is refused."""
        path = v1.file_path(file_id) if self.version == 1 else v2.file_path(file_id)
        return self._downloads.download(path, file_id, offset=offset, size=size)

    # ------------------------------------------------------------------ writing

    def create_dataset(self, name: str, description: str = "", space_id: str | None = None) -> str:
        """A new empty dataset; returns its id. ``space_id``: the Clowder 1 space to put it in
        (Clowder 2 has no spaces and ignores it)."""
        if self.version == 1:
            return v1.create_dataset(self._transport, name, description, space_id)
        return v2.create_dataset(self._transport, name, description, self.license_id)

    def add_metadata(self, dataset_id: str, content: dict[str, Any], context: list[Any]) -> None:
        """Attach JSON-LD metadata to the dataset: ``POST /api/datasets/{id}/metadata.jsonld`` (1.x,
        with this key's user as its agent) or ``POST /api/v2/datasets/{id}/metadata`` (2.x)."""
        subject = ("Clowder dataset", dataset_id)
        if self.version == 1:
            owner = self.key_owner()
            document: dict[str, Any] = {
                "@context": [v1.METADATA_CONTEXT, *context],
                "agent": {"@type": "cat:user", "user_id": f"{self.base_url}/api/users/{owner.id}"},
                "content": content,
            }
            path = f"{v1.dataset_path(dataset_id)}/metadata.jsonld"
        else:
            document = {"@context": context, "content": content}
            path = f"{v2.dataset_path(dataset_id)}/metadata"
        self._transport.call(
            "POST", path, json=document, operation="add metadata to the dataset", subject=subject
        )

    def delete_dataset(self, dataset_id: str) -> None:
        """Delete a dataset with its folders and files; one Clowder no longer has is gone already."""
        self._transport.call(
            "DELETE",
            v1.dataset_path(dataset_id) if self.version == 1 else v2.dataset_path(dataset_id),
            operation="delete the dataset",
            subject=("Clowder dataset", dataset_id),
            accept_statuses=(404,),
        )
        with self._lock:
            self._folder_indexes.pop(dataset_id, None)

    def _new_folder(self, dataset_id: str, name: str, parent_folder_id: str | None) -> str:
        if self.version == 2:
            return v2.new_folder(self._transport, dataset_id, name, parent_folder_id)
        return v1.new_folder(self._transport, dataset_id, name, parent_folder_id)

    def upload(
        self,
        dataset_id: str,
        relative_path: str,
        source: Source,
        size: int | None = None,
        folder_id: str | None = None,
        *,
        content_type: str | None = None,
    ) -> str:
        """Upload one file into the dataset (below ``folder_id`` if given); returns the new file's id.

        The folders of ``relative_path`` are created on the way, each once (the dataset's existing
        folders are read first, so a repeated export reuses them). ``source`` is a binary file or an
        iterable of chunks and is streamed, never held whole; with ``size`` the request has an exact
        Content-Length and a source of another length is refused. An upload is repeated only when
        Clowder cannot have stored it and the source can be read again (a seekable file, or nothing
        read yet)."""
        parts = relative_path.split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise InvalidInput(f"{relative_path!r} is not a relative file path", field="relative_path")
        if content_type is not None and not re.fullmatch(r"[\w.+-]+/[\w.+-]+(;[ \w.+=\"-]*)*", content_type):
            raise InvalidInput(f"{content_type!r} is not a media type", field="content_type")
        parent = self._ensure_folders(dataset_id, tuple(parts[:-1]), folder_id)
        name = parts[-1]
        body = MultipartBody(
            v1.UPLOAD_FIELD if self.version == 1 else v2.UPLOAD_FIELD,
            name,
            content_type or mimetypes.guess_type(name)[0] or "application/octet-stream",
            source,
            size,
        )
        params = {"folder_id": parent} if parent else {}
        path = v1.upload_path(dataset_id) if self.version == 1 else v2.upload_path(dataset_id)
        operation = f"upload {relative_path!r}"
        try:
            response = self._transport.call(
                "POST",
                path,
                params=params,
                body=body,
                operation=operation,
                subject=("Clowder dataset", dataset_id),
            )
        except SourceSizeMismatch as mismatch:
            raise InvalidInput(
                f"the source of {relative_path!r} gave {mismatch.sent} bytes or more where {size} were announced",
                field="size",
            ) from None
        answer = self._transport.json(response, operation)
        if self.version == 1:
            answer = v1.uploaded(answer)
        return self._transport.new_id_from(answer, operation)

    def _ensure_folders(
        self, dataset_id: str, parts: tuple[str, ...], base_folder_id: str | None
    ) -> str | None:
        if not parts:
            return base_folder_id
        with self._lock:
            index = self._folder_index(dataset_id)
            base: tuple[str, ...] = ()
            if base_folder_id is not None:
                known = index.by_id.get(base_folder_id)
                if known is None:
                    index = self._folder_index(dataset_id, refresh=True)
                    known = index.by_id.get(base_folder_id)
                if known is None:
                    raise NotFound("Clowder folder", base_folder_id)
                base = known
            parent = base_folder_id
            for depth in range(1, len(parts) + 1):
                path = base + parts[:depth]
                folder_id = index.by_path.get(path)
                if folder_id is None:
                    folder_id = self._new_folder(dataset_id, parts[depth - 1], parent)
                    index.add(path, folder_id)
                parent = folder_id
            return parent

    def _folder_index(self, dataset_id: str, *, refresh: bool = False) -> FolderIndex:
        index = self._folder_indexes.get(dataset_id)
        if index is None or refresh:
            index = self._folder_indexes[dataset_id] = self._load_folder_index(dataset_id)
        return index

    def _load_folder_index(self, dataset_id: str) -> FolderIndex:
        if self.version == 2:
            return v2.folder_index(self._transport, dataset_id, self.page_size)
        return v1.folder_index(self._transport, dataset_id)
