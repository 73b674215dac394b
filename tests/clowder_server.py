"""A Clowder test server: the Clowder 1.x or 2.x REST API over real HTTP, files on disk, fault injection.

    with ClowderServer(tmp_path / "clowder", version=2, api_key="key") as clowder:
        dataset_id = clowder.add_dataset("Soil samples")
        clowder.add_files(dataset_id, {"raw/a.csv": b"1,2", "README": b"hello"})
        clowder.truncate("/api/v2/files/*", after_bytes=10, times=1)
        ...  # point a ClowderClient at clowder.url
        assert clowder.read_tree(dataset_id) == {...}

Paths, parameters, field names, the auth header and paging follow the API documents in ``tests/data/clowder``
(``clowder-v1-swagger.yml``, ``clowder2-openapi.json``); where the v1 spec leaves an answer undocumented
(``content: {}``) the fields are those Clowder 1.x's own code sends. Every request is recorded.
"""

from __future__ import annotations

import fnmatch
import io
import json
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

BLOCK_SIZE = 64 * 1024
FILE_BLOCK_SIZE = 1 << 20
"""File bodies go out in blocks this large: one read and one socket write per MiB, not per 64 KiB."""
V2_VERSION = "2.0.0-beta.4"
USER = {
    "email": "tester@example.org",
    "first_name": "Test",
    "last_name": "User",
    "id": "5eb7cf5a86d9755df3a6c593",
    "admin": False,
    "admin_mode": False,
    "read_only_user": False,
}


def new_id() -> str:
    """A MongoDB-style ObjectId, as both Clowder versions use."""
    return secrets.token_hex(12)


@dataclass
class Dataset:
    id: str
    name: str
    description: str
    spaces: list[str] = field(default_factory=list)
    license_id: str | None = None
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    metadata: list[dict[str, Any]] = field(default_factory=list)
    """The JSON-LD metadata documents attached to it, as Clowder answers them back."""
    frozen_version: int | None = None
    """Clowder 2: the number of the released (frozen) version this record is, None for a draft."""


@dataclass
class Folder:
    id: str
    dataset_id: str
    name: str
    parent_id: str | None  # None: at the top of the dataset
    order: int = 0
    created: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class File:
    id: str
    dataset_id: str
    folder_id: str | None
    name: str
    source: Path  # the bytes served, read from disk on every download
    content_type: str
    order: int = 0
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    local: bool = False
    """Kept on Clowder 2's ``local`` storage: listed with its ``storage_path`` (the source on disk)."""
    digest: tuple[str, str] | None = None
    """A digest listed with the file: (field name, hex value), e.g. ("sha512", ...)."""

    @property
    def size(self) -> int:
        return self.source.stat().st_size


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Fault:
    """One injected misbehaviour for requests whose path matches ``pattern`` (fnmatch, e.g. ``/api/files/*``)."""

    kind: Literal["fail", "redirect", "slow", "truncate", "wrong_length"]
    pattern: str
    method: str | None
    times: int | None  # None: every matching request
    status: int = 503
    location: str = ""
    seconds: float = 0.0
    after_bytes: int = 0
    declared: int | None = None
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        return (self.method is None or self.method == method) and fnmatch.fnmatchcase(path, self.pattern)


class _Request(Request):
    """Closes every temporary file its form parser opened, also those of an upload that broke off."""

    def __init__(self, environ: dict[str, Any]) -> None:
        super().__init__(environ)
        self._opened: list[IO[bytes]] = []

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        stream = super()._get_file_stream(total_content_length, content_type, filename, content_length)
        self._opened.append(stream)
        return stream

    def close(self) -> None:
        super().close()
        for stream in self._opened:
            stream.close()


class _BlockReader:
    """A request socket's reader that reads large amounts a block at a time.

    Werkzeug drains every finished request with ``rfile.read(10_000_000)``, and a buffered read that
    large allocates its whole size up front: 10 MB per request that memory tests in this process
    would count against the client."""

    def __init__(self, inner: io.BufferedIOBase) -> None:
        self._inner = inner

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size <= BLOCK_SIZE:
            return self._inner.read(-1 if size is None else size)
        pieces: list[bytes] = []
        remaining = size
        while remaining > 0:
            piece = self._inner.read(min(BLOCK_SIZE, remaining))
            if not piece:
                break
            pieces.append(piece)
            remaining -= len(piece)
        return b"".join(pieces)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Handler(WSGIRequestHandler):
    def setup(self) -> None:
        super().setup()
        self.rfile = _BlockReader(self.rfile)  # type: ignore[assignment]

    def log(self, type: str, message: str, *args: Any) -> None:
        """No access log on stderr: tests make hundreds of requests."""


HttpServerKind = Literal["werkzeug", "cheroot"]


class _HttpServer(Protocol):
    """What the Clowder test server needs of the HTTP server under its WSGI app."""

    @property
    def port(self) -> int: ...
    def serve(self) -> None: ...
    def stop(self) -> None: ...


class _WerkzeugServer:
    """Werkzeug's development server: one thread per connection, every connection closed after its answer."""

    def __init__(self, app: Callable[..., Any], port: int) -> None:
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", port, app, threaded=True, request_handler=_Handler
        )

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def serve(self) -> None:
        # A short poll interval makes stop() quick: shutdown() waits for the serving loop's next poll.
        self._server.serve_forever(0.02)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _CherootServer:
    """Cheroot (CherryPy's production WSGI server): a fixed pool of worker threads, keep-alive connections."""

    def __init__(self, app: Callable[..., Any], port: int, threads: int) -> None:
        from cheroot import wsgi

        self._server = wsgi.Server(("127.0.0.1", port), app, numthreads=threads, server_name="clowder-test")
        self._server.prepare()  # binds, so that the port is known before serving starts

    @property
    def port(self) -> int:
        return int(self._server.bind_addr[1])

    def serve(self) -> None:
        self._server.serve()

    def stop(self) -> None:
        self._server.stop()


class ClowderServer:
    """Clowder ``version`` 1 or 2 on 127.0.0.1 (a free port) in a background thread, storing under ``root``.

    ``ranges``: answer ``Range: bytes=N-`` with 206 and advertise ``Accept-Ranges: bytes`` (Clowder 1's
    blob download does; Clowder 2's streaming download does not, so turn it off to play Clowder 2 exactly).
    ``lengths``: send a download's Content-Length (Clowder 2's streaming download sends none, so a body
    the ``truncate`` fault cuts short then ends as if it were whole).
    ``legacy_new_folder``: Clowder 1 before 1.9 answered a new folder with ``{"status": "success"}`` only.
    ``server``: werkzeug's development server (the default, for tests), or cheroot, a production WSGI
    server with keep-alive connections and a pool of ``threads`` (for benchmarks; its answers are
    always whole, so the ``truncate`` fault needs werkzeug)."""

    def __init__(
        self,
        root: Path,
        version: Literal[1, 2],
        api_key: str,
        *,
        ranges: bool = True,
        lengths: bool = True,
        legacy_new_folder: bool = False,
        server: HttpServerKind = "werkzeug",
        threads: int = 16,
        port: int = 0,
        amqp_url: str | None = None,
    ) -> None:
        self.root = root
        self.amqp_url = amqp_url
        self.users: dict[str, dict[str, Any]] = {api_key: USER}
        """Each API key and the user it belongs to (the server's own key is USER's)."""
        self.statuses: list[dict[str, Any]] = []
        """Every status an extractor sent to this Clowder's reply queue, as it came."""
        self.heartbeats: dict[str, dict[str, Any]] = {}
        """The last heartbeat of each extractor (by queue) seen on the ``extractors`` exchange."""
        self.jobs: dict[str, dict[str, Any]] = {}
        self._extractors: _ExtractorSide | None = None
        self.version = version
        self.api_key = api_key
        self.ranges = ranges
        self.lengths = lengths
        self.legacy_new_folder = legacy_new_folder
        self.server_kind = server
        self.threads = threads
        self.port = port
        self.datasets: dict[str, Dataset] = {}
        self.folders: dict[str, Folder] = {}
        self.files: dict[str, File] = {}
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self._blobs = root / "blobs"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._order = count()
        self._stopping = threading.Event()
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._routes = Map(
            [Rule(path, endpoint=endpoint, methods=methods) for path, endpoint, methods in _ROUTES[version]],
            strict_slashes=False,
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ClowderServer:
        if self.amqp_url is not None:
            self._extractors = _ExtractorSide(self, self.amqp_url)
            self._extractors.start()
        if self.server_kind == "cheroot":
            self._server = _CherootServer(self._wsgi, self.port, self.threads)
        else:
            self._server = _WerkzeugServer(self._wsgi, self.port)
        self._thread = threading.Thread(target=self._server.serve, name="clowder-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes requests held by slow()
        if self._server is not None:
            self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None
        if self._extractors is not None:
            self._extractors.stop()
            self._extractors = None

    def __enter__(self) -> ClowderServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the Clowder test server is not running")
        return f"http://127.0.0.1:{self._server.port}"

    # ------------------------------------------------------------------ extractors

    def add_user(self, email: str) -> str:
        """A Clowder user with an API key of their own; returns the key."""
        key = secrets.token_urlsafe(24)
        with self._lock:
            self.users[key] = {**USER, "id": new_id(), "email": email, "first_name": email.split("@")[0]}
        return key

    def publish_job(self, queue: str, body: dict[str, Any] | bytes) -> None:
        """Put a job on an extractor's queue as Clowder does (default exchange, the queue as routing key,
        persistent, ``reply_to`` this Clowder's reply queue; Clowder 1 adds a ``correlation_id``)."""
        if self._extractors is None:
            raise RuntimeError("the Clowder test server has no RabbitMQ (amqp_url)")
        self._extractors.publish(queue, body if isinstance(body, bytes) else json.dumps(body).encode())

    @property
    def reply_queue(self) -> str:
        """The queue this Clowder reads statuses from (what it sets as each job's ``reply_to``)."""
        if self._extractors is None:
            raise RuntimeError("the Clowder test server has no RabbitMQ (amqp_url)")
        return self._extractors.reply_queue

    def statuses_of(self, job_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [status for status in self.statuses if status.get("job_id") == job_id]

    def _submit(
        self,
        request: Request,
        queue: str,
        resource_id: str,
        dataset_id: str,
        file: File | None,
        parameters: Any,
    ) -> str:
        """The job message of a submission, as Clowder 1's ``submitDatasetManually``/``submitFileManually``
        or Clowder 2's ``submit_dataset_job``/``submit_file_job`` make it; returns the job id."""
        key = request.headers.get("X-API-Key" if self.version == 1 else "X-API-KEY") or self.api_key
        job_id = new_id()
        body: dict[str, Any]
        if self.version == 1:
            body = {
                "notifies": [],
                "msgid": new_id(),
                "id": resource_id,
                "jobid": job_id,
                "intermediateId": resource_id,
                "fileSize": str(file.size) if file else "0",
                "host": self.url + "/",
                "datasetId": dataset_id,
                "flags": "",
                "secretKey": key,
                "routing_key": "extractors." + queue,
                "source": {"type": "file" if file else "dataset", "id": resource_id},
                "activity": "submitted",
                "target": "{}",
            }
            if file:
                body["filename"] = file.name
            if parameters is not None:
                # Clowder 1 writes a dataset submission's parameters into the job as JSON text
                # (Json.stringify), a file submission's as they came.
                body["parameters"] = parameters if file else json.dumps(parameters)
        else:
            body = {
                "host": self.url,
                "secretKey": key,
                "retry_count": 0,
                "resource_type": "file" if file else "dataset",
                "flags": "",
                "id": resource_id,
                "datasetId": dataset_id,
                "job_id": job_id,
                "parameters": parameters,
            }
            if file:
                body.update(filename=file.name, fileSize=file.size)
            else:
                body["datasetName"] = self.datasets[dataset_id].name
        self.jobs[job_id] = {"queue": queue, "resource_id": resource_id, "body": body}
        self.publish_job(queue, body)
        return job_id

    def _v1_me(self, request: Request) -> Response:
        user = self.users[request.headers.get("X-API-Key") or request.args.get("key") or ""]
        return _json(
            {
                "id": user["id"],
                "firstName": user["first_name"],
                "lastName": user["last_name"],
                "fullName": f"{user['first_name']} {user['last_name']}",
                "email": user["email"],
                "identityProvider": "Local",
            }
        )

    def _v1_extractors(self, request: Request) -> Response:
        return _json([beat["extractor_info"] for beat in self.heartbeats.values()])

    def _v1_dataset_extraction(self, request: Request, ds_id: str) -> Response:
        if ds_id not in self.datasets:
            return self._missing("dataset", ds_id)
        document = request.get_json(silent=True) or {}
        extractor = document.get("extractor")
        if not isinstance(extractor, str) or not extractor:
            return _json({"status": "error", "msg": "no extractor specified"}, 400)
        job_id = self._submit(request, extractor, ds_id, ds_id, None, document.get("parameters"))
        return _json({"status": "OK", "job_id": job_id})

    def _v1_file_extraction(self, request: Request, id: str) -> Response:
        file = self.files.get(id)
        if file is None:
            return self._missing("file", id)
        document = request.get_json(silent=True) or {}
        extractor = document.get("extractor")
        if not isinstance(extractor, str) or not extractor:
            return _json({"status": "error", "msg": "no extractor specified"}, 400)
        job_id = self._submit(request, extractor, id, file.dataset_id, file, document.get("parameters"))
        return _json({"status": "OK", "job_id": job_id})

    def _v2_profile(self, request: Request) -> Response:
        return _json(self.users[request.headers.get("X-API-KEY") or ""])

    def _v2_listeners(self, request: Request) -> Response:
        listeners = [
            {
                "id": beat["id"],
                "name": beat["extractor_info"]["name"],
                "version": beat["extractor_info"]["version"],
                "description": beat["extractor_info"]["description"],
                "alive": True,
                "properties": {
                    **beat["extractor_info"],
                    "parameters": beat["extractor_info"]["parameters"]["schema"],
                },
            }
            for beat in self.heartbeats.values()
        ]
        return self._v2_paged(request, listeners, lambda item: item)

    def _v2_dataset_extract(self, request: Request, dataset_id: str) -> Response:
        if dataset_id not in self.datasets:
            return self._missing("Dataset", dataset_id)
        name = request.args.get("extractorName")
        if not name:
            return _json({"detail": [{"loc": ["query", "extractorName"], "msg": "field required"}]}, 422)
        parameters = request.get_json(silent=True)
        return _json(self._submit(request, name, dataset_id, dataset_id, None, parameters))

    def _v2_file_extract(self, request: Request, file_id: str) -> Response:
        file = self.files.get(file_id)
        if file is None:
            return self._missing("File", file_id)
        name = request.args.get("extractorName")
        if not name:
            return _json({"detail": [{"loc": ["query", "extractorName"], "msg": "field required"}]}, 422)
        parameters = request.get_json(silent=True)
        return _json(self._submit(request, name, file_id, file.dataset_id, file, parameters))

    # ------------------------------------------------------------------ content

    def add_dataset(self, name: str, description: str = "") -> str:
        with self._lock:
            dataset = Dataset(id=new_id(), name=name, description=description)
            self.datasets[dataset.id] = dataset
            return dataset.id

    def freeze(self, dataset_id: str, version: int) -> None:
        """Make the dataset a released version, as Clowder 2 answers for a frozen version's record:
        ``frozen`` true and its ``frozen_version_num``."""
        with self._lock:
            self.datasets[dataset_id].frozen_version = version

    def delete_dataset(self, dataset_id: str) -> bool:
        """Remove a dataset with its folders and files (Clowder cascades); False if there is none."""
        with self._lock:
            if self.datasets.pop(dataset_id, None) is None:
                return False
            for folder_id in [key for key, folder in self.folders.items() if folder.dataset_id == dataset_id]:
                del self.folders[folder_id]
            for file_id in [key for key, file in self.files.items() if file.dataset_id == dataset_id]:
                del self.files[file_id]
            return True

    def add_folder(self, dataset_id: str, name: str, parent_id: str | None = None) -> str:
        with self._lock:
            folder = Folder(new_id(), dataset_id, name, parent_id, order=next(self._order))
            self.folders[folder.id] = folder
            return folder.id

    def add_file(
        self,
        dataset_id: str,
        name: str,
        data: bytes | None = None,
        *,
        source: Path | None = None,
        folder_id: str | None = None,
        content_type: str = "application/octet-stream",
        local: bool = False,
        digest: tuple[str, str] | None = None,
    ) -> str:
        """A file from ``data``, or served straight from ``source`` on disk (not copied: large files stay
        cheap); ``digest``: a (field name, hex) pair its listing carries, true or not."""
        if (data is None) == (source is None):
            raise ValueError("give either data or source")
        file_id = new_id()
        if source is None:
            source = self._blobs / file_id
            source.write_bytes(data or b"")
        with self._lock:
            self.files[file_id] = File(
                file_id,
                dataset_id,
                folder_id,
                name,
                source,
                content_type,
                order=next(self._order),
                local=local,
                digest=digest,
            )
        return file_id

    def add_files(self, dataset_id: str, tree: Mapping[str, bytes | Path]) -> dict[str, str]:
        """Files by relative path ("raw/2024/a.csv"), creating the folders on the way; path -> file id."""
        created: dict[str, str] = {}
        for relative_path, content in tree.items():
            *folder_names, name = relative_path.split("/")
            parent: str | None = None
            for folder_name in folder_names:
                parent = self._child_folder(dataset_id, parent, folder_name) or self.add_folder(
                    dataset_id, folder_name, parent
                )
            if isinstance(content, Path):
                created[relative_path] = self.add_file(dataset_id, name, source=content, folder_id=parent)
            else:
                created[relative_path] = self.add_file(dataset_id, name, content, folder_id=parent)
        return created

    def _child_folder(self, dataset_id: str, parent_id: str | None, name: str) -> str | None:
        with self._lock:
            for folder in self.folders.values():
                if folder.dataset_id == dataset_id and folder.parent_id == parent_id and folder.name == name:
                    return folder.id
        return None

    def folder_names(self, folder_id: str | None) -> list[str]:
        """The folder names from the top of the dataset down to ``folder_id``."""
        names: list[str] = []
        while folder_id is not None:
            folder = self.folders[folder_id]
            names.insert(0, folder.name)
            folder_id = folder.parent_id
        return names

    def file_path(self, file_id: str) -> str:
        file = self.files[file_id]
        return "/".join([*self.folder_names(file.folder_id), file.name])

    def read_file(self, file_id: str) -> bytes:
        return self.files[file_id].source.read_bytes()

    def read_tree(self, dataset_id: str) -> dict[str, bytes]:
        """Every file of the dataset by relative path, with its bytes (for small test datasets)."""
        with self._lock:
            files = [file for file in self.files.values() if file.dataset_id == dataset_id]
        return {self.file_path(file.id): file.source.read_bytes() for file in files}

    def requests_to(self, pattern: str, method: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [
                request
                for request in self.requests
                if fnmatch.fnmatchcase(request.path, pattern) and (method is None or request.method == method)
            ]

    # ------------------------------------------------------------------ faults

    def fail(
        self, pattern: str, status: int = 503, *, times: int | None = None, method: str | None = None
    ) -> Fault:
        """Answer matching requests with ``status`` (before checking the key)."""
        return self._add_fault(Fault("fail", pattern, method, times, status=status))

    def redirect(
        self, pattern: str, location: str, *, times: int | None = None, method: str | None = None
    ) -> Fault:
        """Answer matching requests with 302 to ``location`` (before checking the key)."""
        return self._add_fault(Fault("redirect", pattern, method, times, status=302, location=location))

    def slow(
        self, pattern: str, seconds: float, *, times: int | None = None, method: str | None = None
    ) -> Fault:
        """Wait ``seconds`` before answering matching requests."""
        return self._add_fault(Fault("slow", pattern, method, times, seconds=seconds))

    def truncate(
        self, pattern: str, after_bytes: int, *, times: int | None = None, method: str | None = None
    ) -> Fault:
        """Announce the full Content-Length of a file download, send only ``after_bytes``, then close."""
        return self._add_fault(Fault("truncate", pattern, method, times, after_bytes=after_bytes))

    def wrong_length(
        self,
        pattern: str,
        declared: int | None = None,
        *,
        times: int | None = None,
        method: str | None = None,
    ) -> Fault:
        """Announce ``declared`` bytes (default: half the body) for a file download and send that many: a
        well-formed answer whose length is not the file's."""
        return self._add_fault(Fault("wrong_length", pattern, method, times, declared=declared))

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def _add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def _take_fault(self, kind: str, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.kind == kind and fault.matches(method, path):
                    fault.hits += 1
                    return fault
        return None

    # ------------------------------------------------------------------ HTTP

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = _Request(environ)
        with self._lock:
            self.requests.append(
                RecordedRequest(
                    method=request.method,
                    path=request.path,
                    query={key: request.args.getlist(key) for key in request.args},
                    headers={name.lower(): value for name, value in request.headers.items()},
                )
            )
        try:
            response = self._respond(request)
        finally:
            request.close()
        return response(environ, start_response)

    def _respond(self, request: Request) -> Response:
        if (slow := self._take_fault("slow", request.method, request.path)) is not None:
            self._stopping.wait(slow.seconds)
        if (failure := self._take_fault("fail", request.method, request.path)) is not None:
            return self._error(failure.status, f"injected failure {failure.status}")
        if (redirect := self._take_fault("redirect", request.method, request.path)) is not None:
            return Response(b"", redirect.status, headers={"Location": redirect.location})
        adapter = self._routes.bind_to_environ(request.environ)
        try:
            endpoint, arguments = adapter.match()
        except HTTPException as error:
            return self._error(error.code or 404, error.description or "not found")
        if endpoint != "v2_status" and not self._authorised(request):
            return self._error(401, "Not authorized" if self.version == 1 else "Not authenticated")
        if endpoint not in _ANY_USER and not self._platform_key(request):
            return self._error(403, "Forbidden")
        handler: Callable[..., Response] = getattr(self, f"_{endpoint}")
        with self._lock:
            return handler(request, **arguments)

    def _given_key(self, request: Request) -> str | None:
        if self.version == 1:
            # Clowder 1 reads X-API-Key, and still the deprecated ?key= (recorded, so tests can forbid it).
            return request.headers.get("X-API-Key") or request.args.get("key")
        return request.headers.get("X-API-KEY")

    def _authorised(self, request: Request) -> bool:
        given = self._given_key(request)
        return given is not None and any(
            secrets.compare_digest(given.encode(), key.encode()) for key in list(self.users)
        )

    def _platform_key(self, request: Request) -> bool:
        given = self._given_key(request) or ""
        return secrets.compare_digest(given.encode(), self.api_key.encode())

    def _error(self, status: int, message: str) -> Response:
        if self.version == 2:
            return _json({"detail": message}, status)
        if status == 404:
            return Response(message, status, content_type="text/plain")
        return _json(message, status)

    def _missing(self, kind: str, identifier: str) -> Response:
        return self._error(404, f"{kind} {identifier} not found")

    def _file_response(self, request: Request, file: File) -> Response:
        """The file's bytes from disk in blocks, with ranges and the download faults applied."""
        size = file.size
        start, end, status = 0, size - 1, 200
        headers = {"Content-Disposition": f'attachment; filename="{file.name}"'}
        if self.ranges:
            headers["Accept-Ranges"] = "bytes"
            asked = _parse_range(request.headers.get("Range"), size)
            if asked == "unsatisfiable":
                return Response(b"", 416, headers={"Content-Range": f"bytes */{size}"})
            if asked is not None:
                start, end = asked
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = max(0, end - start + 1)
        declared = sent = length
        if (truncated := self._take_fault("truncate", request.method, request.path)) is not None:
            sent = min(length, truncated.after_bytes)
        elif (wrong := self._take_fault("wrong_length", request.method, request.path)) is not None:
            declared = sent = wrong.declared if wrong.declared is not None else length // 2
            sent = min(sent, length)
        if self.lengths:
            headers["Content-Length"] = str(declared)
        if sent != length:
            # A short body must end in EOF, also where the server keeps connections open.
            headers["Connection"] = "close"
        return Response(
            _read_blocks(file.source, start, sent),
            status,
            headers=headers,
            content_type=file.content_type,
            direct_passthrough=True,
        )

    def _save_upload(self, request: Request, dataset_id: str, field_name: str | None) -> list[File]:
        folder_id = request.args.get("folder_id") or None
        uploads = [
            storage
            for name, storage in request.files.items(multi=True)
            if field_name is None or name == field_name
        ]
        saved: list[File] = []
        for storage in uploads:
            file_id = new_id()
            target = self._blobs / file_id
            storage.save(target)  # werkzeug spools large parts to disk, so this stays small in memory
            file = File(
                file_id,
                dataset_id,
                folder_id,
                storage.filename or "",
                target,
                storage.mimetype or "application/octet-stream",
                order=next(self._order),
            )
            self.files[file_id] = file
            saved.append(file)
        return saved

    # ------------------------------------------------------------------ Clowder 1.x (/api)

    def _v1_dataset_json(self, dataset: Dataset) -> dict[str, Any]:
        return {
            "id": dataset.id,
            "name": dataset.name,
            "description": dataset.description,
            "created": _java_date(dataset.created),
            "thumbnail": "None",
            "authorId": USER["id"],
            "spaces": dataset.spaces,
            "resource_type": "dataset",
        }

    def _v1_file_json(self, file: File) -> dict[str, Any]:
        # The shape of Clowder 1's Datasets.jsonFile; note "contentType" here, "content-type" in /api/files.
        return {
            "id": file.id,
            "filename": file.name,
            "contentType": file.content_type,
            "date-created": _java_date(file.created),
            "size": str(file.size),
            **_digest_field(file),
        }

    def _v1_dataset(self, request: Request, id: str) -> Response:
        if id not in self.datasets:
            return self._missing("dataset", id)
        return _json(self._v1_dataset_json(self.datasets[id]))

    def _v1_delete_dataset(self, request: Request, id: str) -> Response:
        if not self.delete_dataset(id):
            return self._missing("dataset", id)
        return _json({"status": "success"})

    def _v1_dataset_files(self, request: Request, id: str) -> Response:
        """Every file, in folders or not: top-level files first, then folder by folder, as Clowder 1 does."""
        if id not in self.datasets:
            return self._missing("dataset", id)
        ordered = sorted(
            (file for file in self.files.values() if file.dataset_id == id),
            key=lambda file: (file.folder_id is not None, file.order),
        )
        maximum = int(request.args.get("max", "-1"))
        if maximum >= 0:
            ordered = ordered[:maximum]
        return _json([self._v1_file_json(file) for file in ordered])

    def _v1_top_files(self, request: Request, id: str) -> Response:
        if id not in self.datasets:
            return self._missing("dataset", id)
        top = [file for file in self.files.values() if file.dataset_id == id and file.folder_id is None]
        return _json([self._v1_file_json(file) for file in sorted(top, key=lambda file: file.order)])

    def _v1_folders(self, request: Request, ds_id: str) -> Response:
        """Each folder named by its path of names from the top, "/raw/2024", as Clowder 1 does."""
        if ds_id not in self.datasets:
            return self._missing("dataset", ds_id)
        folders = sorted((f for f in self.folders.values() if f.dataset_id == ds_id), key=lambda f: f.order)
        return _json([{"id": f.id, "name": "/" + "/".join(self.folder_names(f.id))} for f in folders])

    def _v1_paths(self, request: Request, id: str) -> Response:
        """``{"paths": [[datasets holding the file directly], [dataset, folder, subfolder], ...]}``."""
        file = self.files.get(id)
        if file is None:
            return self._missing("file", id)
        dataset = self.datasets[file.dataset_id]
        paths: list[list[str]] = []
        if file.folder_id is None:
            paths.append([dataset.name])
        else:
            paths.append([dataset.name.strip(), *self.folder_names(file.folder_id)])
        return _json({"paths": paths})

    def _v1_blob(self, request: Request, id: str) -> Response:
        file = self.files.get(id)
        if file is None:
            return self._missing("file", id)
        return self._file_response(request, file)

    def _v1_create_dataset(self, request: Request) -> Response:
        document = request.get_json(silent=True)
        if not isinstance(document, dict) or not isinstance(document.get("name"), str):
            return self._error(400, "Missing parameter [name]")
        dataset_id = self.add_dataset(document["name"], str(document.get("description", "")))
        spaces = document.get("space")
        if isinstance(spaces, list):
            self.datasets[dataset_id].spaces = [str(space) for space in spaces]
        return _json({"id": dataset_id})

    def _v1_metadata(self, request: Request, id: str) -> Response:
        """``/api/datasets/{id}/metadata.jsonld``: Clowder 1 reads the agent first (a user agent names its
        ``user_id`` URL) and refuses a document without one, then keeps ``content`` under the agent."""
        if id not in self.datasets:
            return self._missing("dataset", id)
        dataset = self.datasets[id]
        if request.method == "GET":
            return _json(dataset.metadata)
        document = request.get_json(silent=True)
        agent = document.get("agent") if isinstance(document, dict) else None
        if not isinstance(agent, dict) or not isinstance(agent.get("@type"), str):
            return self._error(400, "Creator data is missing or incorrect.")
        if agent["@type"] == "cat:user" and not str(agent.get("user_id", "")).startswith(
            ("http://", "https://")
        ):
            return self._error(400, "Creator data is missing or incorrect.")
        assert isinstance(document, dict)
        content = document.get("content")
        if not isinstance(content, dict):
            return self._error(400, "Metadata content is missing")
        dataset.metadata.append(
            {
                "@context": document.get("@context"),
                "attached_to": {"resource_type": "cat:dataset", "url": f"{self.url}/datasets/{id}"},
                "created_at": datetime.now(UTC).strftime("%a %b %d %H:%M:%S UTC %Y"),
                "agent": agent,
                "content": content,
            }
        )
        return _json("Metadata successfully added to db")

    def _v2_metadata(self, request: Request, dataset_id: str) -> Response:
        """``/api/v2/datasets/{id}/metadata``: a ``MetadataIn`` (``content`` required; a definition or a
        JSON-LD context says what it means) kept as a ``MetadataOut``."""
        if dataset_id not in self.datasets:
            return self._missing("dataset", dataset_id)
        dataset = self.datasets[dataset_id]
        if request.method == "GET":
            return _json(dataset.metadata)
        document = request.get_json(silent=True)
        if not isinstance(document, dict) or not isinstance(document.get("content"), dict):
            return _json({"detail": [{"loc": ["body", "content"], "msg": "field required"}]}, 422)
        if not any(document.get(key) for key in ("definition", "@context", "context_url")):
            return self._error(400, "Context is required")
        kept = {
            "@context": document.get("@context", []),
            "context_url": document.get("context_url"),
            "definition": document.get("definition"),
            "content": document["content"],
            "description": document.get("description"),
            "resource": {"collection": "datasets", "resource_id": dataset_id, "version": None},
            "agent": {"creator": USER, "listener": None},
            "created": datetime.now(UTC).isoformat(),
            "origin_id": None,
            "id": new_id(),
            "frozen": False,
        }
        dataset.metadata.append(kept)
        return _json(kept)

    def _v1_new_folder(self, request: Request, parentDatasetId: str) -> Response:
        document = request.get_json(silent=True)
        if not isinstance(document, dict):
            return self._error(400, "Expecting JSON")
        for key in ("name", "parentId", "parentType"):
            if not isinstance(document.get(key), str):
                return self._error(400, f"Missing parameter [{key}]")
        if parentDatasetId not in self.datasets:
            return self._error(500, f"Parent Dataset {parentDatasetId} not found")
        parent_id: str | None = None
        if document["parentType"] == "folder":
            parent_id = document["parentId"]
            if parent_id not in self.folders:
                return self._error(500, f"parent folder {parent_id} not found")
        elif document["parentId"] != parentDatasetId:
            return self._error(500, f"Parent type {document['parentType']} not acceptable")
        folder_id = self.add_folder(parentDatasetId, document["name"].strip(), parent_id)
        if self.legacy_new_folder:
            return _json({"status": "success"})
        folder = self.folders[folder_id]
        return _json(
            {
                "id": folder.id,
                "name": folder.name,
                "parentDatasetID": parentDatasetId,
                "parentId": document["parentId"],
                "parentType": document["parentType"],
                "files": "",
                "folders": "",
                "created": _java_date(folder.created),
            }
        )

    def _v1_upload(self, request: Request, id: str) -> Response:
        if id not in self.datasets:
            return self._missing("dataset", id)
        folder_id = request.args.get("folder_id")
        if folder_id and folder_id not in self.folders:
            return self._error(400, f"folder {folder_id} not found")
        saved = self._save_upload(request, id, field_name=None)
        if not saved:
            return self._error(400, "No files uploaded")
        if len(saved) == 1:
            return _json({"id": saved[0].id})
        return _json({"ids": [{"id": file.id, "name": file.name} for file in saved]})

    # ------------------------------------------------------------------ Clowder 2 (/api/v2)

    def _v2_dataset_json(self, dataset: Dataset) -> dict[str, Any]:
        return {
            "name": dataset.name,
            "description": dataset.description,
            "status": "PRIVATE",
            "creator": USER,
            "created": dataset.created.isoformat(),
            "modified": dataset.created.isoformat(),
            "user_views": 0,
            "downloads": 0,
            "thumbnail_id": None,
            "origin_id": None,
            "standard_license": True,
            "license_id": dataset.license_id,
            "id": dataset.id,
            "frozen": dataset.frozen_version is not None,
            "frozen_version_num": -999 if dataset.frozen_version is None else dataset.frozen_version,
            "deleted": False,
        }

    def _v2_file_json(self, file: File) -> dict[str, Any]:
        return {
            "name": file.name,
            "status": "PRIVATE",
            "creator": USER,
            "created": file.created.isoformat(),
            "version_id": file.id,
            "version_num": 1,
            "dataset_id": file.dataset_id,
            "folder_id": file.folder_id,
            "views": 0,
            "downloads": 0,
            "bytes": file.size,
            "content_type": {"content_type": file.content_type, "main_type": file.content_type.split("/")[0]},
            "thumbnail_id": None,
            "storage_type": "local" if file.local else "minio",
            "storage_path": str(file.source) if file.local else None,
            **_digest_field(file),
            "object_type": "file",
            "origin_id": None,
            "id": file.id,
            "frozen": False,
        }

    def _v2_folder_json(self, folder: Folder) -> dict[str, Any]:
        return {
            "name": folder.name,
            "dataset_id": folder.dataset_id,
            "parent_folder": folder.parent_id,
            "creator": USER,
            "created": folder.created.isoformat(),
            "modified": folder.created.isoformat(),
            "object_type": "folder",
            "origin_id": None,
            "id": folder.id,
            "frozen": False,
        }

    def _v2_paged(
        self, request: Request, items: list[Any], shape: Callable[[Any], dict[str, Any]]
    ) -> Response:
        """Clowder 2's ``Paged``: skip 0 and limit 10 unless asked, newest first (callers sort); only the
        page's items are shaped, as a database query would return only them."""
        try:
            skip = int(request.args.get("skip", "0"))
            limit = int(request.args.get("limit", "10"))
        except ValueError:
            return _json({"detail": [{"loc": ["query", "skip"], "msg": "value is not a valid integer"}]}, 422)
        return _json(
            {
                "metadata": {"total_count": len(items), "skip": skip, "limit": limit},
                "data": [shape(item) for item in items[skip : skip + limit]],
            }
        )

    def _v2_status(self, request: Request) -> Response:
        return _json({"version": V2_VERSION})

    def _v2_create_dataset(self, request: Request) -> Response:
        license_id = request.args.get("license_id")
        if not license_id:
            return _json(
                {
                    "detail": [
                        {
                            "loc": ["query", "license_id"],
                            "msg": "field required",
                            "type": "value_error.missing",
                        }
                    ]
                },
                422,
            )
        document = request.get_json(silent=True)
        if not isinstance(document, dict):
            return _json({"detail": [{"loc": ["body"], "msg": "field required"}]}, 422)
        dataset_id = self.add_dataset(
            str(document.get("name", "N/A")), str(document.get("description") or "")
        )
        self.datasets[dataset_id].license_id = license_id
        return _json(self._v2_dataset_json(self.datasets[dataset_id]))

    def _v2_dataset(self, request: Request, dataset_id: str) -> Response:
        if dataset_id not in self.datasets:
            return self._missing("Dataset", dataset_id)
        return _json(self._v2_dataset_json(self.datasets[dataset_id]))

    def _v2_delete_dataset(self, request: Request, dataset_id: str) -> Response:
        if not self.delete_dataset(dataset_id):
            return self._missing("Dataset", dataset_id)
        return _json({"deleted": dataset_id})

    def _v2_files(self, request: Request, dataset_id: str) -> Response:
        if dataset_id not in self.datasets:
            return self._missing("Dataset", dataset_id)
        if request.method == "POST":
            folder_id = request.args.get("folder_id")
            if folder_id and folder_id not in self.folders:
                return self._missing("Folder", folder_id)
            saved = self._save_upload(request, dataset_id, field_name="file")
            if len(saved) != 1:
                return _json({"detail": [{"loc": ["body", "file"], "msg": "field required"}]}, 422)
            return _json(self._v2_file_json(saved[0]))
        # Without folder_id: every file of the dataset, whatever its folder.
        folder_id = request.args.get("folder_id")
        files = [
            file
            for file in self.files.values()
            if file.dataset_id == dataset_id and (folder_id is None or file.folder_id == folder_id)
        ]
        files.sort(key=lambda file: file.order, reverse=True)
        return self._v2_paged(request, files, self._v2_file_json)

    def _v2_folders(self, request: Request, dataset_id: str) -> Response:
        if dataset_id not in self.datasets:
            return self._missing("Dataset", dataset_id)
        if request.method == "POST":
            document = request.get_json(silent=True)
            if not isinstance(document, dict):
                return _json({"detail": [{"loc": ["body"], "msg": "field required"}]}, 422)
            parent_id = document.get("parent_folder")
            if parent_id is not None and parent_id not in self.folders:
                return self._error(400, f"Parent folder {parent_id} not found")
            folder_id = self.add_folder(dataset_id, str(document.get("name", "N/A")), parent_id)
            return _json(self._v2_folder_json(self.folders[folder_id]))
        # Without parent_folder: only the top-level folders, as Clowder 2 does.
        parent_id = request.args.get("parent_folder")
        folders = [
            folder
            for folder in self.folders.values()
            if folder.dataset_id == dataset_id and folder.parent_id == parent_id
        ]
        folders.sort(key=lambda folder: folder.order, reverse=True)
        return self._v2_paged(request, folders, self._v2_folder_json)

    def _v2_folder(self, request: Request, dataset_id: str, folder_id: str) -> Response:
        if dataset_id not in self.datasets:
            return self._missing("Dataset", dataset_id)
        folder = self.folders.get(folder_id)
        if folder is None or folder.dataset_id != dataset_id:
            return self._missing("Folder", folder_id)
        return _json(self._v2_folder_json(folder))

    def _v2_download(self, request: Request, file_id: str) -> Response:
        file = self.files.get(file_id)
        if file is None:
            return self._missing("File", file_id)
        return self._file_response(request, file)

    def _v2_summary(self, request: Request, file_id: str) -> Response:
        file = self.files.get(file_id)
        if file is None:
            return self._missing("File", file_id)
        return _json(self._v2_file_json(file))


# (path, endpoint, methods); the endpoint names the handler method, "_" + endpoint.
_ROUTES: dict[int, list[tuple[str, str, list[str]]]] = {
    1: [
        ("/api/datasets/createempty", "v1_create_dataset", ["POST"]),
        ("/api/datasets/<id>", "v1_dataset", ["GET"]),
        ("/api/datasets/<id>", "v1_delete_dataset", ["DELETE"]),
        ("/api/datasets/<id>/files", "v1_dataset_files", ["GET"]),
        ("/api/datasets/<id>/listFiles", "v1_top_files", ["GET"]),
        ("/api/datasets/<ds_id>/folders", "v1_folders", ["GET"]),
        ("/api/datasets/<parentDatasetId>/newFolder", "v1_new_folder", ["POST"]),
        ("/api/uploadToDataset/<id>", "v1_upload", ["POST"]),
        ("/api/files/<id>", "v1_blob", ["GET"]),
        ("/api/files/<id>/blob", "v1_blob", ["GET"]),
        ("/api/files/<id>/paths", "v1_paths", ["GET"]),
        ("/api/me", "v1_me", ["GET"]),
        ("/api/extractors", "v1_extractors", ["GET"]),
        ("/api/datasets/<ds_id>/extractions", "v1_dataset_extraction", ["POST"]),
        ("/api/datasets/<id>/metadata.jsonld", "v1_metadata", ["GET", "POST"]),
        ("/api/files/<id>/extractions", "v1_file_extraction", ["POST"]),
    ],
    2: [
        ("/api/v2/status", "v2_status", ["GET"]),
        ("/api/v2/datasets", "v2_create_dataset", ["POST"]),
        ("/api/v2/datasets/<dataset_id>", "v2_dataset", ["GET"]),
        ("/api/v2/datasets/<dataset_id>", "v2_delete_dataset", ["DELETE"]),
        ("/api/v2/datasets/<dataset_id>/files", "v2_files", ["GET", "POST"]),
        ("/api/v2/datasets/<dataset_id>/folders", "v2_folders", ["GET", "POST"]),
        ("/api/v2/datasets/<dataset_id>/folders/<folder_id>", "v2_folder", ["GET"]),
        ("/api/v2/files/<file_id>", "v2_download", ["GET"]),
        ("/api/v2/files/<file_id>/summary", "v2_summary", ["GET"]),
        ("/api/v2/users/profile", "v2_profile", ["GET"]),
        ("/api/v2/listeners", "v2_listeners", ["GET"]),
        ("/api/v2/datasets/<dataset_id>/extract", "v2_dataset_extract", ["POST"]),
        ("/api/v2/datasets/<dataset_id>/metadata", "v2_metadata", ["GET", "POST"]),
        ("/api/v2/files/<file_id>/extract", "v2_file_extract", ["POST"]),
    ],
}
_ANY_USER = frozenset(
    {
        "v2_status",
        "v1_me",
        "v1_extractors",
        "v1_dataset_extraction",
        "v1_file_extraction",
        "v1_dataset",
        "v2_profile",
        "v2_listeners",
        "v2_dataset_extract",
        "v2_file_extract",
        "v2_dataset",
    }
)
"""What a user's own key may do here; the rest answers the platform's key only (a user sees every
dataset: this Clowder has no permissions)."""


class _ExtractorSide:
    """The Clowder side of extractors on a real RabbitMQ: jobs published as Clowder does, a reply queue
    (Clowder 1: server-named and exclusive; Clowder 2: ``clowder.<instance id>``, durable) whose
    statuses are recorded, and the heartbeats of the ``extractors`` fanout exchange."""

    def __init__(self, server: ClowderServer, url: str) -> None:
        import pika

        self.server = server
        self.parameters = pika.URLParameters(url)
        self.reply_queue = "" if server.version == 1 else f"clowder.{secrets.token_hex(5)}"
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="clowder-test-replies", daemon=True)
        self._publish_lock = threading.Lock()
        self._publisher: Any = None

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the Clowder test server could not reach RabbitMQ")

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        with self._publish_lock:
            if self._publisher is not None and self._publisher.is_open:
                if self.server.version == 2:
                    self._publisher.channel().queue_delete(self.reply_queue)
                self._publisher.close()

    def publish(self, queue: str, body: bytes) -> None:
        import pika

        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=2,
            reply_to=self.reply_queue,
            correlation_id=str(uuid.uuid4()) if self.server.version == 1 else None,
        )
        with self._publish_lock:
            if self._publisher is None or not self._publisher.is_open:
                self._publisher = pika.BlockingConnection(self.parameters)
            channel = self._publisher.channel()
            channel.basic_publish("", queue, body, properties)
            channel.close()

    def _listen(self) -> None:
        import pika

        connection = pika.BlockingConnection(self.parameters)
        try:
            channel = connection.channel()
            if self.server.version == 1:
                self.reply_queue = channel.queue_declare("", exclusive=True).method.queue
            else:
                channel.queue_declare(self.reply_queue, durable=True)
            channel.exchange_declare("extractors", exchange_type="fanout", durable=True)
            beats = channel.queue_declare("", exclusive=True).method.queue
            channel.queue_bind(beats, "extractors")
            self._ready.set()
            while not self._stopping.is_set():
                taken = False
                for queue in (self.reply_queue, beats):
                    method, _, body = channel.basic_get(queue, auto_ack=True)
                    if method is None or body is None:
                        continue
                    taken = True
                    try:
                        document = json.loads(body)
                    except ValueError:
                        continue  # other tests on this RabbitMQ send what is no heartbeat, as Clowder ignores
                    with self.server._lock:
                        if queue == beats:
                            if isinstance(document, dict) and isinstance(document.get("queue"), str):
                                self.server.heartbeats[document["queue"]] = document
                        else:
                            self.server.statuses.append(document)
                if not taken:
                    connection.sleep(0.05)
        finally:
            self._ready.set()
            connection.close()


def route_templates(version: Literal[1, 2]) -> list[tuple[str, str]]:
    """(method, path template with {parameters}) of every route, to check them against the spec."""
    return [
        (method, re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", path))
        for path, _, methods in _ROUTES[version]
        for method in methods
    ]


def _json(document: Any, status: int = 200) -> Response:
    return Response(json.dumps(document), status, content_type="application/json")


def _java_date(moment: datetime) -> str:
    """Clowder 1 dates are Java's Date.toString(): "Tue Sep 04 09:28:45 UTC 2018"."""
    return moment.strftime("%a %b %d %H:%M:%S UTC %Y")


def _parse_range(header: str | None, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """One ``bytes=`` range as (first, last) byte; None to answer with the whole file."""
    if not header:
        return None
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if first == "":
        start, end = max(0, size - int(last)), size - 1
    else:
        start = int(first)
        end = min(size - 1, int(last)) if last else size - 1
    if start >= size or start > end:
        return "unsatisfiable"
    return start, end


def _read_blocks(path: Path, start: int, length: int) -> Iterator[bytes]:
    with path.open("rb", buffering=0) as stream:
        stream.seek(start)
        remaining = length
        while remaining > 0:
            block = stream.read(min(FILE_BLOCK_SIZE, remaining))
            if not block:
                return
            remaining -= len(block)
            yield block


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.clowder_server ROOT --dataset NAME=FOLDER …``: a Clowder test server in a process
    of its own (as a benchmark wants it, apart from the client's interpreter), serving every file below
    each folder as a dataset until SIGTERM or SIGINT. Prints one JSON line once it serves:
    ``{"url", "datasets": {NAME: {"id", "files": {relative path: file id}}}}``."""
    import argparse
    import signal
    import sys

    parser = argparse.ArgumentParser(prog="python -m tests.clowder_server", description=main.__doc__)
    parser.add_argument("root", type=Path, help="folder for the server's own files")
    parser.add_argument("--version", type=int, choices=(1, 2), default=2)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--server", choices=("werkzeug", "cheroot"), default="cheroot")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME=FOLDER")
    arguments = parser.parse_args(argv)
    version: Literal[1, 2] = 1 if arguments.version == 1 else 2
    server = ClowderServer(
        arguments.root,
        version,
        arguments.api_key,
        server=arguments.server,
        threads=arguments.threads,
        port=arguments.port,
    )
    datasets: dict[str, dict[str, Any]] = {}
    for given in arguments.dataset:
        name, _, folder = given.partition("=")
        if not name or not folder:
            parser.error(f"--dataset takes NAME=FOLDER, got {given!r}")
        base = Path(folder)
        dataset_id = server.add_dataset(name)
        tree = {path.relative_to(base).as_posix(): path for path in sorted(base.rglob("*")) if path.is_file()}
        datasets[name] = {"id": dataset_id, "files": server.add_files(dataset_id, tree)}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with server:
        print(json.dumps({"url": server.url, "datasets": datasets}), flush=True)
        stop.wait()
    sys.stdout.flush()
    return 0


def _digest_field(file: File) -> dict[str, str]:
    return {} if file.digest is None else {file.digest[0]: file.digest[1]}


if __name__ == "__main__":
    raise SystemExit(main())
