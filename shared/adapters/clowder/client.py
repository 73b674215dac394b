"""Clowder 1.x and 2.x REST client: datasets, files with their folder paths, resumable downloads, streaming uploads."""

from __future__ import annotations

import logging
import mimetypes
import random
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from http.client import HTTPException
from typing import IO, Any, Literal, Protocol, TypeAlias, TypeGuard
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from events.ids import CLOWDER_ID_PATTERN, CLOWDER_ID_RULE
from shared.core.errors import Forbidden, InvalidInput, NotFound, Unavailable, WorkbenchError
from shared.core.http import BodyBroken, ConnectionPool
from shared.core.http import Response as KeptResponse

log = logging.getLogger(__name__)

Version: TypeAlias = Literal[1, 2]
Source: TypeAlias = IO[bytes] | Iterable[bytes] | bytes

CHUNK_SIZE = 256 * 1024
DOWNLOAD_CHUNK_SIZE = 1 << 20
ERROR_BODY_BYTES = 64 * 1024
MAX_BACKOFF_SECONDS = 30.0
#: Clowder 2 refuses to create a dataset without a licence; this is one of its standard licence ids.
DEFAULT_LICENSE_ID = "CC BY"

_CLOWDER_ID = re.compile(CLOWDER_ID_PATTERN)
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
# Requests that cannot have reached the server's handler: repeating them cannot create anything twice.
_NEVER_ARRIVED = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
)
# Statuses with which a server refuses work before doing any of it.
_REFUSED_BEFORE_ACTING = frozenset({429, 503})
# The same escapes browsers (and httpx) use for a file name in a multipart header.
_FILENAME_ESCAPES = {'"': "%22", "\\": "\\\\"} | {
    chr(code): f"%{code:02X}" for code in range(0x20) if code != 0x1B
}
# The jitter only spreads retries out; it protects nothing, so it need not be unpredictable to an attacker.
_jitter = random.Random()  # noqa: S311


@dataclass(frozen=True)
class ClowderFile:
    """A file of a dataset; ``path`` is relative to the dataset, its folders joined with '/'.

    Names are exactly as Clowder gave them: callers normalise before using them as paths."""

    id: str
    name: str
    path: str
    size: int | None
    content_type: str | None
    storage_path: str | None = None
    """Where Clowder keeps the bytes on its own disk (Clowder 2's ``local`` storage), for link mode."""


@dataclass(frozen=True)
class ClowderDataset:
    id: str
    name: str
    description: str


@dataclass(frozen=True)
class ClowderUser:
    """The Clowder user an API key belongs to."""

    id: str
    email: str


class RestartRequired(Unavailable):
    """A download broke off and cannot continue where it stopped (Clowder offers no byte ranges).

    Whoever consumed the bytes so far (a hash, a partial file) must reset and download again from
    byte 0; ``received`` says how far the broken attempt got."""

    def __init__(self, message: str, *, received: int) -> None:
        super().__init__(message)
        self.received = received


@dataclass
class _FolderIndex:
    """The folders of one dataset by path (tuple of names) and by id, so uploads create each one once."""

    by_path: dict[tuple[str, ...], str] = field(default_factory=dict)
    by_id: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def add(self, path: tuple[str, ...], folder_id: str) -> None:
        self.by_path.setdefault(path, folder_id)
        self.by_id[folder_id] = path


class _SourceSizeMismatch(Exception):
    def __init__(self, sent: int) -> None:
        super().__init__(sent)
        self.sent = sent


class _MultipartBody:
    """One file as ``multipart/form-data``, produced chunk by chunk so memory stays bounded.

    Built by hand rather than with httpx's ``files=`` so the request carries an exact Content-Length
    (some servers refuse chunked uploads) and a source that gives the wrong number of bytes is caught."""

    def __init__(self, field_name: str, filename: str, content_type: str, source: Source, size: int | None):
        boundary = secrets.token_hex(16)
        escaped = "".join(_FILENAME_ESCAPES.get(character, character) for character in filename)
        self.content_type = f"multipart/form-data; boundary={boundary}"
        self._head = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{field_name}"; filename="{escaped}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        self._tail = f"\r\n--{boundary}--\r\n".encode()
        self._source = source
        self._size = size
        self._started = False
        self._start_offset: int | None = None
        if _is_file(source) and source.seekable():
            self._start_offset = source.tell()
        self._rereadable = isinstance(source, bytes) or self._start_offset is not None

    @property
    def length(self) -> int | None:
        return None if self._size is None else len(self._head) + self._size + len(self._tail)

    def can_resend(self) -> bool:
        """A body can go again if none of it was read yet, or if its file can be rewound."""
        return not self._started or self._rereadable

    def chunks(self) -> Iterator[bytes]:
        self._started = True
        if self._start_offset is not None and _is_file(self._source):
            self._source.seek(self._start_offset)
        yield self._head
        sent = 0
        for chunk in _read(self._source):
            sent += len(chunk)
            if self._size is not None and sent > self._size:
                raise _SourceSizeMismatch(sent)
            yield chunk
        if self._size is not None and sent != self._size:
            raise _SourceSizeMismatch(sent)
        yield self._tail


class _Streamed(Protocol):
    """A download's answer whose body is read as it comes: httpx's, or a ``_DirectResponse``."""

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> httpx.Headers: ...
    def iter_bytes(self) -> Iterator[bytes]: ...
    def close(self) -> None: ...


class _DirectResponse:
    """A download's answer over a kept-alive connection of ``shared.core.http``, read in large pieces."""

    def __init__(self, response: KeptResponse) -> None:
        self._response = response
        self.status_code = response.status
        self.headers = httpx.Headers(list(response.headers.items()))

    def iter_bytes(self) -> Iterator[bytes]:
        return self._response.iter_bytes(DOWNLOAD_CHUNK_SIZE)

    def head(self, limit: int) -> bytes:
        return self._response.head(limit)

    def close(self) -> None:
        self._response.close()


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
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        base = base_url.rstrip("/")
        # Accept the API root as well as the Clowder root: both are common in configuration.
        for suffix in ("/api/v2", "/api"):
            if base.endswith(suffix):
                base = base[: -len(suffix)]
                break
        self.base_url = base
        parts = urlsplit(base)
        # The URL shown in messages drops any user:password@ part.
        self._where = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
        self._api_key = api_key
        self._version = version
        self.retries = max(0, retries)
        self.backoff = max(0.0, backoff)
        self.page_size = max(1, page_size)
        self.license_id = license_id
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            transport=transport,
            headers={"Accept": "application/json"},
        )
        self._lock = threading.RLock()
        self._folder_indexes: dict[str, _FolderIndex] = {}
        self._base_path = parts.path
        # Downloads go over connections of their own unless the requests are to be handled otherwise:
        # by a given transport, through a proxy the environment names (as httpx would), or with
        # credentials in the URL.
        import urllib.request

        proxied = parts.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(
            parts.hostname or ""
        )
        self._direct: ConnectionPool | None = None
        if (
            transport is None
            and not proxied
            and "@" not in parts.netloc
            and parts.scheme in ("http", "https")
        ):
            self._direct = ConnectionPool(parts.scheme, parts.netloc, timeout=timeout)

    def close(self) -> None:
        self._http.close()
        if self._direct is not None:
            self._direct.close()

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
        response = self._call(
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
        return "X-API-Key" if self.version == 1 else "X-API-KEY"

    # ------------------------------------------------------------------ reading

    def dataset(self, dataset_id: str) -> ClowderDataset:
        subject = ("Clowder dataset", dataset_id)
        if self.version == 1:
            path = f"/api/datasets/{_segment(dataset_id, 'dataset_id')}"
        else:
            path = f"/api/v2/datasets/{_segment(dataset_id, 'dataset_id')}"
        item = _object(self._get_json(path, operation="read the dataset", subject=subject), self._where)
        return ClowderDataset(
            id=_string(item.get("id")) or dataset_id,
            name=_string(item.get("name")),
            description=_string(item.get("description")),
        )

    def key_owner(self) -> ClowderUser:
        """Whom Clowder knows by this client's API key: ``GET /api/me`` (1.x), ``GET /api/v2/users/profile``
        (2.x, the profile of the key's user); a key Clowder refuses is ``Forbidden``."""
        path = "/api/me" if self.version == 1 else "/api/v2/users/profile"
        item = _object(self._get_json(path, operation="tell whose API key this is"), self._where)
        email = _string(item.get("email"))
        if not email:
            raise Unavailable(f"Clowder at {self._where} named no e-mail address for the API key's user")
        return ClowderUser(id=_string(item.get("id")), email=email)

    def files(self, dataset_id: str) -> list[ClowderFile]:
        """Every file of the dataset, in every folder, with its path inside the dataset."""
        if self.version == 1:
            return self._v1_files(dataset_id)
        return self._v2_files(dataset_id)

    def _v1_files(self, dataset_id: str) -> list[ClowderFile]:
        # Clowder 1 lists every file without saying where it is; /listFiles gives those at the top, and
        # only /files/{id}/paths tells the folders of the others, one file at a time.
        subject = ("Clowder dataset", dataset_id)
        base = f"/api/datasets/{_segment(dataset_id, 'dataset_id')}"
        listed = _list(
            self._get_json(f"{base}/files", operation="list the dataset's files", subject=subject),
            self._where,
        )
        items = [item for item in listed if isinstance(item, dict) and item.get("id") is not None]
        if not items:
            return []
        top = _list(
            self._get_json(f"{base}/listFiles", operation="list the dataset's files", subject=subject),
            self._where,
        )
        top_ids = {_string(item.get("id")) for item in top if isinstance(item, dict)}
        dataset_name = ""
        if any(_string(item["id"]) not in top_ids for item in items):
            dataset_name = self.dataset(dataset_id).name
        result: list[ClowderFile] = []
        for item in items:
            file_id = _string(item["id"])
            name = _string(item.get("filename"))
            folders: tuple[str, ...] = ()
            if file_id not in top_ids:
                folders = self._v1_folders_of(file_id, dataset_name)
            content_type = item.get("contentType", item.get("content-type"))
            result.append(
                ClowderFile(
                    id=file_id,
                    name=name,
                    path="/".join((*folders, name)),
                    size=_size(item.get("size")),
                    content_type=None if content_type is None else _string(content_type),
                )
            )
        return result

    def _v1_folders_of(self, file_id: str, dataset_name: str) -> tuple[str, ...]:
        """The folder names from the dataset down to the file's folder.

        ``/files/{id}/paths`` answers ``{"paths": [[dataset names], [dataset, folder, subfolder, ...]]}``;
        a file can sit in folders of several datasets, so the path that starts with this dataset's name wins."""
        answer = self._get_json(
            f"/api/files/{_segment(file_id, 'file_id')}/paths",
            operation="find the folder of a file",
            subject=("Clowder file", file_id),
        )
        paths = [
            [_string(part) for part in path]
            for path in _list(_object(answer, self._where).get("paths", []), self._where)
            if isinstance(path, list) and len(path) >= 2
        ]
        chosen = next(
            (path for path in paths if path[0] == dataset_name.strip()), paths[0] if paths else None
        )
        return tuple(chosen[1:]) if chosen else ()

    def _v2_files(self, dataset_id: str) -> list[ClowderFile]:
        subject = ("Clowder dataset", dataset_id)
        items = list(
            self._pages(
                f"/api/v2/datasets/{_segment(dataset_id, 'dataset_id')}/files",
                operation="list the dataset's files",
                subject=subject,
            )
        )
        tree: dict[str, tuple[str, str | None]] = {}
        if any(item.get("folder_id") for item in items):
            tree = self._v2_folder_tree(dataset_id)
        result: list[ClowderFile] = []
        for item in items:
            name = _string(item.get("name"))
            folder_id = item.get("folder_id")
            folders = self._v2_folder_path(dataset_id, _string(folder_id), tree) if folder_id else ()
            content_type = item.get("content_type")
            if isinstance(content_type, dict):
                content_type = content_type.get("content_type")
            result.append(
                ClowderFile(
                    id=_string(item.get("id")),
                    name=name,
                    path="/".join((*folders, name)),
                    size=_size(item.get("bytes")),
                    content_type=None if content_type is None else _string(content_type),
                    storage_path=_string(item.get("storage_path"))
                    if item.get("storage_type") == "local" and item.get("storage_path")
                    else None,
                )
            )
        return result

    def _v2_folder_tree(self, dataset_id: str) -> dict[str, tuple[str, str | None]]:
        """Every folder of the dataset: id -> (name, parent folder id).

        Clowder 2 lists only the children of one parent at a time (no parent: the top level), so the
        tree is walked breadth first."""
        tree: dict[str, tuple[str, str | None]] = {}
        waiting: deque[str | None] = deque([None])
        expanded: set[str | None] = set()
        while waiting:
            parent = waiting.popleft()
            if parent in expanded:
                continue
            expanded.add(parent)
            for item in self._pages(
                f"/api/v2/datasets/{_segment(dataset_id, 'dataset_id')}/folders",
                params={} if parent is None else {"parent_folder": parent},
                operation="list the dataset's folders",
                subject=("Clowder dataset", dataset_id),
            ):
                folder_id = _string(item.get("id"))
                if not folder_id:
                    continue
                parent_id = item.get("parent_folder")
                tree[folder_id] = (_string(item.get("name")), _string(parent_id) if parent_id else None)
                waiting.append(folder_id)
        return tree

    def _v2_folder_path(
        self, dataset_id: str, folder_id: str, tree: dict[str, tuple[str, str | None]]
    ) -> tuple[str, ...]:
        names: list[str] = []
        current: str | None = folder_id
        seen: set[str] = set()
        while current is not None:
            if current in seen:
                raise Unavailable(f"Clowder at {self._where} has a folder cycle in dataset '{dataset_id}'")
            seen.add(current)
            if current not in tree:
                # Created after the tree was listed: ask for that one folder.
                folders = f"/api/v2/datasets/{_segment(dataset_id, 'dataset_id')}/folders"
                item = _object(
                    self._get_json(
                        f"{folders}/{_segment(current, 'folder_id')}",
                        operation="read a folder",
                        subject=("Clowder folder", current),
                    ),
                    self._where,
                )
                parent_id = item.get("parent_folder")
                tree[current] = (_string(item.get("name")), _string(parent_id) if parent_id else None)
            name, current = tree[current]
            names.append(name)
        return tuple(reversed(names))

    # ------------------------------------------------------------------ downloading

    def download(
        self, file_id: str, *, offset: int = 0, size: int | None = None
    ) -> Generator[bytes, None, None]:
        """The file's bytes from ``offset`` on, in chunks, never the whole file in memory.

        When the body breaks off (truncated, connection dropped, read timeout) and Clowder offered
        ``Accept-Ranges: bytes``, the rest is asked for with ``Range: bytes=N-`` and the answer's
        ``Content-Range`` checked, so the chunks simply continue. Without ranges it raises
        ``RestartRequired``: the consumer must drop what it got and start again from byte 0 (see
        ``download_to``). With ``size`` (as listed) a body of any other length is refused."""
        subject = ("Clowder file", file_id)
        if self.version == 1:
            path = f"/api/files/{_segment(file_id, 'file_id')}/blob"
        else:
            path = f"/api/v2/files/{_segment(file_id, 'file_id')}"
        operation = f"download file '{file_id}'"
        position = offset
        total: int | None = None
        breaks = 0
        while True:
            # Identity encoding keeps byte counts equal to Content-Length and to range offsets.
            headers = {"Accept": "*/*", "Accept-Encoding": "identity"}
            if position > 0:
                headers["Range"] = f"bytes={position}-"
            response = self._open_download(path, headers, operation, subject)
            try:
                body_total, resumable = self._check_body(response, position, file_id)
                if total is None:
                    total = body_total
                elif body_total is not None and body_total != total:
                    raise Unavailable(
                        f"Clowder at {self._where}: file '{file_id}' changed size from {total} to "
                        f"{body_total} bytes during the download"
                    )
                if size is not None and total is not None and total != size:
                    raise Unavailable(
                        f"Clowder at {self._where} sent file '{file_id}' with Content-Length for {total} bytes, "
                        f"but lists it with {size} bytes"
                    )
                try:
                    # Chunks as they arrive: a rechunking buffer would lose its bytes when the body breaks.
                    for chunk in response.iter_bytes():
                        if size is not None and position + len(chunk) > size:
                            raise Unavailable(
                                f"Clowder at {self._where} sent more than the {size} bytes "
                                f"it lists for file '{file_id}'"
                            )
                        position += len(chunk)
                        yield chunk
                    if total is None and size is not None and position < size:
                        raise BodyBroken(f"the body ended at byte {position} of {size}")
                except (httpx.TransportError, BodyBroken) as error:
                    breaks += 1
                    reason = _describe(error)
                    known = total if total is not None else size
                    of_total = f" of {known}" if known is not None else ""
                    if not resumable:
                        raise RestartRequired(
                            f"the download of file '{file_id}' from Clowder at {self._where} broke off after "
                            f"{position}{of_total} bytes ({reason}) and Clowder offers no byte ranges to "
                            "resume it: start again from byte 0",
                            received=position,
                        ) from None
                    if breaks > self.retries:
                        raise Unavailable(
                            f"the download of file '{file_id}' from Clowder at {self._where} broke off "
                            f"{breaks} times, last after {position}{of_total} bytes ({reason})"
                        ) from None
                    log.warning(
                        "Clowder at %s: download of file %s broke off after %d bytes (%s); resuming",
                        self._where,
                        file_id,
                        position,
                        reason,
                    )
                    self._pause(breaks)
                    continue
            finally:
                response.close()
            expected = total if total is not None else size
            if expected is not None and position != expected:
                raise Unavailable(
                    f"Clowder at {self._where} ended file '{file_id}' after {position} bytes, "
                    f"but announced {expected}: a wrong Content-Length or a truncated body"
                )
            return

    def _open_download(
        self, path: str, headers: dict[str, str], operation: str, subject: tuple[str, str]
    ) -> _Streamed:
        """A download's answer (2xx), its body still to be read; retried and refused as ``_call`` does."""
        if self._direct is None:
            return self._call("GET", path, headers=headers, stream=True, operation=operation, subject=subject)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = _DirectResponse(
                    self._direct.request(
                        "GET", self._base_path + path, {**headers, self._header: self._api_key}
                    )
                )
            except (OSError, HTTPException) as error:
                failure = _describe(error)
                if attempt > self.retries:
                    raise Unavailable(self._failed(operation, failure, attempt)) from None
                self._retrying("GET", path, failure, attempt)
                self._pause(attempt)
                continue
            status = response.status_code
            if 200 <= status < 300:
                return response
            if (status == 429 or status >= 500) and attempt <= self.retries:
                response.close()
                self._retrying("GET", path, f"HTTP {status}", attempt)
                self._pause(attempt, response.headers.get("Retry-After"))
                continue
            refusal = httpx.Response(
                status,
                headers=response.headers,
                content=response.head(ERROR_BODY_BYTES),
                request=httpx.Request("GET", self.base_url + path),
            )
            response.close()
            raise self._error(refusal, operation, subject, attempt) from None

    def _check_body(self, response: _Streamed, position: int, file_id: str) -> tuple[int | None, bool]:
        """The full size the response announces, and whether the server takes byte ranges."""
        resumable = "bytes" in response.headers.get("Accept-Ranges", "").lower()
        if position == 0 and response.status_code != 206:
            length = response.headers.get("Content-Length")
            return (int(length) if length and length.isdigit() else None), resumable
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if response.status_code != 206 or match is None or int(match.group(1)) != position:
            raise RestartRequired(
                f"Clowder at {self._where} did not answer the request for bytes {position}- of file "
                f"'{file_id}' with that range (HTTP {response.status_code}, Content-Range "
                f"{response.headers.get('Content-Range', 'missing')!r}): start again from byte 0",
                received=position,
            )
        return (None if match.group(3) == "*" else int(match.group(3))), True

    def download_to(
        self,
        file_id: str,
        sink: Callable[[bytes], None],
        *,
        size: int | None = None,
        reset: Callable[[], None] | None = None,
    ) -> int:
        """Stream the file into ``sink``; returns the number of bytes written.

        Broken bodies resume by byte range where Clowder allows it (see ``download``). Where it does not,
        the download starts again from byte 0 only if ``reset`` is given (it must return the sink to
        empty: a fresh hash, a truncated partial file); otherwise ``RestartRequired`` reaches the caller,
        whose sink then holds a prefix of the file that it must discard."""
        restarts = 0
        while True:
            written = 0
            try:
                with closing(self.download(file_id, size=size)) as chunks:
                    for chunk in chunks:
                        sink(chunk)
                        written += len(chunk)
                return written
            except RestartRequired as restart:
                if reset is None:
                    raise
                restarts += 1
                if restarts > self.retries:
                    raise Unavailable(
                        f"the download of file '{file_id}' from Clowder at {self._where} broke off "
                        f"{restarts} times and cannot be resumed; last: {restart.message}"
                    ) from None
                reset()
                self._pause(restarts)

    # ------------------------------------------------------------------ writing

    def create_dataset(self, name: str, description: str = "", space_id: str | None = None) -> str:
        """A new empty dataset; returns its id. ``space_id``: the Clowder 1 space to put it in
        (Clowder 2 has no spaces and ignores it)."""
        if self.version == 1:
            document: dict[str, Any] = {"name": name, "description": description}
            if space_id:
                document["space"] = [space_id]
            response = self._call(
                "POST", "/api/datasets/createempty", json=document, operation="create a dataset"
            )
        else:
            response = self._call(
                "POST",
                "/api/v2/datasets",
                params={"license_id": self.license_id},
                json={"name": name, "description": description},
                operation="create a dataset",
            )
        return self._new_id(response, "create a dataset")

    def delete_dataset(self, dataset_id: str) -> None:
        """Delete a dataset with its folders and files; one Clowder no longer has is gone already."""
        prefix = "/api" if self.version == 1 else "/api/v2"
        self._call(
            "DELETE",
            f"{prefix}/datasets/{_segment(dataset_id, 'dataset_id')}",
            operation="delete the dataset",
            subject=("Clowder dataset", dataset_id),
            accept_statuses=(404,),
        )
        with self._lock:
            self._folder_indexes.pop(dataset_id, None)

    def create_folder(self, dataset_id: str, name: str, parent_folder_id: str | None = None) -> str:
        """A new folder in the dataset (at its top, or in ``parent_folder_id``); returns its id."""
        with self._lock:
            folder_id = self._new_folder(dataset_id, name, parent_folder_id)
            index = self._folder_indexes.get(dataset_id)
            if index is not None:
                parent_path = () if parent_folder_id is None else index.by_id.get(parent_folder_id)
                if parent_path is not None:
                    index.add((*parent_path, name), folder_id)
            return folder_id

    def _new_folder(self, dataset_id: str, name: str, parent_folder_id: str | None) -> str:
        subject = ("Clowder dataset", dataset_id)
        if self.version == 2:
            document: dict[str, Any] = {"name": name}
            if parent_folder_id is not None:
                document["parent_folder"] = parent_folder_id
            response = self._call(
                "POST",
                f"/api/v2/datasets/{_segment(dataset_id, 'dataset_id')}/folders",
                json=document,
                operation="create a folder",
                subject=subject,
            )
            return self._new_id(response, "create a folder")
        response = self._call(
            "POST",
            f"/api/datasets/{_segment(dataset_id, 'dataset_id')}/newFolder",
            json={
                "name": name,
                "parentId": parent_folder_id or dataset_id,
                "parentType": "folder" if parent_folder_id else "dataset",
            },
            operation="create a folder",
            subject=subject,
        )
        answer = self._json(response, "create a folder")
        if isinstance(answer, dict) and answer.get("id"):
            return _string(answer["id"])
        # Clowder releases before 1.9 answer only {"status": "success"}: find the new folder by its path.
        index = self._load_folder_index(dataset_id)
        parent_path = () if parent_folder_id is None else index.by_id.get(parent_folder_id, ())
        found = index.by_path.get((*parent_path, name.strip()))
        if found is None:
            raise Unavailable(f"Clowder at {self._where} created folder {name!r} but did not say its id")
        return found

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
        body = _MultipartBody(
            "File" if self.version == 1 else "file",
            name,
            content_type or mimetypes.guess_type(name)[0] or "application/octet-stream",
            source,
            size,
        )
        params = {"folder_id": parent} if parent else {}
        if self.version == 1:
            path = f"/api/uploadToDataset/{_segment(dataset_id, 'dataset_id')}"
        else:
            path = f"/api/v2/datasets/{_segment(dataset_id, 'dataset_id')}/files"
        operation = f"upload {relative_path!r}"
        try:
            response = self._call(
                "POST",
                path,
                params=params,
                body=body,
                operation=operation,
                subject=("Clowder dataset", dataset_id),
            )
        except _SourceSizeMismatch as mismatch:
            raise InvalidInput(
                f"the source of {relative_path!r} gave {mismatch.sent} bytes or more where {size} were announced",
                field="size",
            ) from None
        answer = self._json(response, operation)
        if (
            self.version == 1
            and isinstance(answer, dict)
            and isinstance(answer.get("ids"), list)
            and answer["ids"]
        ):
            first = answer["ids"][0]
            answer = first if isinstance(first, dict) else {"id": first}
        return self._new_id_from(answer, operation)

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

    def _folder_index(self, dataset_id: str, *, refresh: bool = False) -> _FolderIndex:
        index = self._folder_indexes.get(dataset_id)
        if index is None or refresh:
            index = self._folder_indexes[dataset_id] = self._load_folder_index(dataset_id)
        return index

    def _load_folder_index(self, dataset_id: str) -> _FolderIndex:
        index = _FolderIndex()
        if self.version == 2:
            tree = self._v2_folder_tree(dataset_id)
            for folder_id in tree:
                index.add(self._v2_folder_path(dataset_id, folder_id, tree), folder_id)
            return index
        # Clowder 1 names each folder by its path of display names, "/top/sub".
        listed = self._get_json(
            f"/api/datasets/{_segment(dataset_id, 'dataset_id')}/folders",
            operation="list the dataset's folders",
            subject=("Clowder dataset", dataset_id),
        )
        for item in _list(listed, self._where):
            if isinstance(item, dict) and item.get("id"):
                index.add(tuple(_string(item.get("name")).removeprefix("/").split("/")), _string(item["id"]))
        return index

    def _new_id(self, response: httpx.Response, operation: str) -> str:
        return self._new_id_from(self._json(response, operation), operation)

    def _new_id_from(self, answer: Any, operation: str) -> str:
        if isinstance(answer, dict) and answer.get("id"):
            return _string(answer["id"])
        raise Unavailable(f"Clowder at {self._where} did not say the new id after we asked it to {operation}")

    # ------------------------------------------------------------------ HTTP

    def _get_json(
        self,
        path: str,
        *,
        operation: str,
        subject: tuple[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        response = self._call("GET", path, params=params, operation=operation, subject=subject)
        return self._json(response, operation)

    def _pages(
        self,
        path: str,
        *,
        operation: str,
        subject: tuple[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every item of a Clowder 2 paged list ``{metadata: {total_count, skip, limit}, data: [...]}``."""
        skip = 0
        seen: set[str] = set()
        while True:
            page = _object(
                self._get_json(
                    path,
                    params={**(params or {}), "skip": skip, "limit": self.page_size},
                    operation=operation,
                    subject=subject,
                ),
                self._where,
            )
            data = page.get("data")
            items = [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []
            for item in items:
                # Pages are sorted newest first, so an item added meanwhile shifts the next page by one.
                key = _string(item.get("id"))
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
            elif len(items) < self.page_size:
                return

    def _call(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        subject: tuple[str, str] | None = None,
        params: dict[str, Any] | None = None,
        json: Any = None,
        body: _MultipartBody | None = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        accept_statuses: Iterable[int] = (),
        authenticate: bool = True,
    ) -> httpx.Response:
        """One request with retries; a 2xx (or an accepted status) is returned, anything else raised."""
        idempotent = method in ("GET", "HEAD", "DELETE")
        accepted = set(accept_statuses)
        attempt = 0
        while True:
            attempt += 1
            request_headers = dict(headers or {})
            if authenticate:
                request_headers[self._header] = self._api_key
            content: Iterator[bytes] | None = None
            if body is not None:
                content = body.chunks()
                request_headers["Content-Type"] = body.content_type
                if body.length is not None:
                    request_headers["Content-Length"] = str(body.length)
            request = self._http.build_request(
                method,
                self.base_url + path,
                params=params,
                json=json,
                content=content,
                headers=request_headers,
            )
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as error:
                can_repeat = idempotent or isinstance(error, _NEVER_ARRIVED)
                if body is not None and not body.can_resend():
                    can_repeat = False
                if isinstance(error, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
                    can_repeat = False
                failure = _describe(error)
                if not can_repeat or attempt > self.retries:
                    raise Unavailable(self._failed(operation, failure, attempt)) from None
                self._retrying(method, path, failure, attempt)
                self._pause(attempt)
                continue
            status = response.status_code
            if 200 <= status < 300 or status in accepted:
                return response
            retryable = status == 429 or status >= 500
            if not idempotent and status not in _REFUSED_BEFORE_ACTING:
                retryable = False
            if body is not None and not body.can_resend():
                retryable = False
            if retryable and attempt <= self.retries:
                response.close()
                self._retrying(method, path, f"HTTP {status}", attempt)
                self._pause(attempt, response.headers.get("Retry-After"))
                continue
            response.read()
            response.close()
            raise self._error(response, operation, subject, attempt) from None

    def _error(
        self, response: httpx.Response, operation: str, subject: tuple[str, str] | None, attempts: int
    ) -> WorkbenchError:
        status = response.status_code
        if status in (401, 403):
            return Forbidden(
                f"Clowder refused the API key (HTTP {status}) when asked to {operation} at {self._where}"
            )
        if status == 404:
            if subject is not None:
                return NotFound(
                    subject[0], subject[1], message=f"{subject[0]} '{subject[1]}' not found at {self._where}"
                )
            return NotFound(
                "Clowder resource", message=f"Clowder at {self._where} has no {response.url.path}"
            )
        if 300 <= status < 400:
            return Unavailable(
                f"Clowder at {self._where} redirected the request to {operation} to "
                f"{response.headers.get('Location', 'elsewhere')!r}: check the Clowder URL"
            )
        # A proxy's error page may echo the request's headers: the key is cut out of what Clowder says.
        detail = _detail(response).replace(self._api_key, "[API key]")
        if 400 <= status < 500 and status != 429:
            return InvalidInput(f"Clowder at {self._where} refused to {operation}: HTTP {status} {detail}")
        return Unavailable(self._failed(operation, f"HTTP {status} {detail}".strip(), attempts))

    def _failed(self, operation: str, failure: str, attempts: int) -> str:
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return f"Clowder at {self._where} could not {operation}{tries}: {failure}"

    def _retrying(self, method: str, path: str, failure: str, attempt: int) -> None:
        log.warning(
            "Clowder at %s: %s %s failed (%s); retrying (attempt %d of %d)",
            self._where,
            method,
            path,
            failure,
            attempt + 1,
            self.retries + 1,
        )

    def _pause(self, attempt: int, retry_after: str | None = None) -> None:
        delay = min(MAX_BACKOFF_SECONDS, self.backoff * 2 ** (attempt - 1))
        # Half fixed, half random: retries from many workers spread out instead of arriving together.
        delay = delay / 2 + _jitter.uniform(0, delay / 2)
        if retry_after is not None and retry_after.strip().isdigit():
            delay = max(delay, min(MAX_BACKOFF_SECONDS, float(retry_after.strip())))
        if delay > 0:
            time.sleep(delay)

    def _json(self, response: httpx.Response, operation: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise Unavailable(
                f"Clowder at {self._where} answered the request to {operation} with something that is not JSON"
            ) from None


def _segment(value: str, field: str) -> str:
    """An id as one URL path segment: ids come from events and from Clowder's answers, and must not
    reach other paths. Quoting alone is not enough: ``.`` and ``..`` stay themselves, and a server
    or proxy resolves them as a step up the path."""
    if not _CLOWDER_ID.fullmatch(value):
        raise InvalidInput(f"{value[:80]!r} is not a Clowder id: {CLOWDER_ID_RULE}", field=field)
    return quote(value, safe="")


def _is_file(source: Source) -> TypeGuard[IO[bytes]]:
    return hasattr(source, "read")


def _read(source: Source) -> Iterator[bytes]:
    if isinstance(source, bytes):
        yield source
    elif _is_file(source):
        while chunk := source.read(CHUNK_SIZE):
            yield chunk
    else:
        for chunk in source:
            if chunk:
                yield bytes(chunk)


def _describe(error: Exception) -> str:
    if isinstance(error, (httpx.TimeoutException, TimeoutError)):
        return f"timed out ({type(error).__name__})"
    text = str(error) or type(error).__name__
    return text[:200]


def _detail(response: httpx.Response) -> str:
    """The server's own words about an error, short: FastAPI's {"detail": ...} or Play's text."""
    try:
        answer = response.json()
    except ValueError:
        return response.text.strip()[:200]
    if isinstance(answer, dict) and "detail" in answer:
        answer = answer["detail"]
    return (answer if isinstance(answer, str) else str(answer))[:200]


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Unavailable(
            f"Clowder at {where} answered with {type(value).__name__} where an object was expected"
        )
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise Unavailable(
            f"Clowder at {where} answered with {type(value).__name__} where a list was expected"
        )
    return value


def _string(value: Any) -> str:
    return "" if value is None else str(value)


def _size(value: Any) -> int | None:
    """Clowder 1 sends sizes as strings ("190497"), Clowder 2 as numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None
