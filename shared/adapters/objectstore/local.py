"""The embedded object store: a directory with S3's key layout, signed URLs and a WSGI app serving them."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import socket
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, quote

from shared.adapters.objectstore import (
    MAX_UPLOAD_BYTES,
    Blob,
    UploadGrant,
    blob_key,
    check_expiry,
    check_key,
    check_prefix,
)
from shared.core.durable import DurableWriter
from shared.core.errors import (
    Conflict,
    ContentTooLarge,
    Forbidden,
    InvalidInput,
    NotFound,
    Unavailable,
    WorkbenchError,
)

log = logging.getLogger(__name__)

PARTIAL_DIRECTORY = ".partial"
READ_SIZE = 1 << 20
FORM_READ_SIZE = 64 << 10
FORM_FIELD_LIMIT = 64 << 10  # policy, signature and key are small; anything bigger is not a grant's form
FORM_BUFFER_LIMIT = 1 << 20  # bounds what the multipart decoder holds (part headers, a read's worth of data)
FORM_PART_LIMIT = 32
FORM_OVERHEAD = FORM_FIELD_LIMIT * FORM_PART_LIMIT  # what an upload's body may hold besides its file

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class LocalObjectStore:
    """Objects as files under ``root``; writes land in ``root/.partial`` and are renamed into place."""

    def __init__(
        self,
        root: Path,
        *,
        public_url: str,
        secret: bytes,
        clock: Callable[[], float] = time.time,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
    ) -> None:
        if not secret:
            raise InvalidInput("the local object store needs a signing secret", field="secret")
        self.root = Path(root)
        self.public_url = public_url.rstrip("/")
        self._secret = secret
        self._clock = clock
        self.max_upload_bytes = max_upload_bytes
        """The largest file an upload grant admits (WORKBENCH_MAX_UPLOAD_BYTES); larger ones get 413."""

    # -- the ObjectStore port ----------------------------------------------------------------------

    def put_blob(self, chunks: Iterable[bytes], *, size: int | None = None) -> Blob:
        digest = hashlib.sha256()
        temporary, size = self._spool(chunks, digest.update, size)
        sha256 = digest.hexdigest()
        key = blob_key(sha256)
        final = self.file_path(key)
        try:
            if final.is_file():
                temporary.unlink()  # content-addressed: the stored blob already holds these bytes
            else:
                self._move_into_place(temporary, final)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise self._unavailable("store", key, error) from error
        return Blob(key=key, sha256=sha256, size=size)

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        final = self.file_path(key)
        temporary, size = self._spool(chunks, None)
        try:
            self._move_into_place(temporary, final)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            if isinstance(error, (IsADirectoryError, NotADirectoryError, FileExistsError)):
                raise Conflict(f"object key '{key}' clashes with an existing key's folder") from error
            raise self._unavailable("store", key, error) from error
        return size

    def has(self, key: str) -> bool:
        return self.size(key) is not None

    def size(self, key: str) -> int | None:
        path = self.file_path(key)
        try:
            status = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as error:
            raise self._unavailable("inspect", key, error) from error
        return status.st_size if stat.S_ISREG(status.st_mode) else None

    def read(self, key: str, chunk_size: int = READ_SIZE) -> Iterator[bytes]:
        # Opened here rather than in the generator, so that a missing key fails at the call.
        handle, _ = self.open(key)
        return self.chunks_of(handle, key, 0, None, chunk_size)

    def delete(self, key: str) -> None:
        path = self.file_path(key)
        try:
            path.unlink(missing_ok=True)
        except (IsADirectoryError, NotADirectoryError):
            return  # no object has this key, which is all that delete promises (as on S3)
        except OSError as error:
            raise self._unavailable("delete", key, error) from error

    def list(self, prefix: str) -> list[tuple[str, int]]:
        check_prefix(prefix)
        folder = prefix.rpartition("/")[0]
        start = self.root.joinpath(*folder.split("/")) if folder else self.root
        found: list[tuple[str, int]] = []
        for directory, subdirectories, files in os.walk(start):
            here = Path(directory)
            if here == self.root and PARTIAL_DIRECTORY in subdirectories:
                subdirectories.remove(PARTIAL_DIRECTORY)  # uploads in progress are not objects yet
            for name in files:
                path = here / name
                key = path.relative_to(self.root).as_posix()
                if not key.startswith(prefix) or key.startswith(f"{PARTIAL_DIRECTORY}/"):
                    continue
                try:
                    found.append((key, path.stat().st_size))
                except FileNotFoundError:
                    continue  # deleted while we listed
                except OSError as error:
                    raise self._unavailable("list", prefix, error) from error
        return sorted(found)

    def presign_get(self, key: str, expires_seconds: int = 3600) -> str:
        check_key(key)
        expires = int(self._clock()) + check_expiry(expires_seconds)
        signature = self._sign(f"GET\n{key}\n{expires}".encode())
        return f"{self.public_url}/objects/{quote(key, safe='/')}?expires={expires}&signature={signature}"

    def upload_grant(self, prefix: str, expires_seconds: int = 3600) -> UploadGrant:
        check_prefix(prefix)
        if not prefix.endswith("/"):
            # A grant for "" or a partial name would let an uploader write over blobs or other folders.
            raise InvalidInput(
                f"an upload grant's prefix is a folder ending with '/', got {prefix!r}", field="prefix"
            )
        expires = int(self._clock()) + check_expiry(expires_seconds)
        document = json.dumps({"prefix": prefix, "expires": expires}, sort_keys=True, separators=(",", ":"))
        policy = base64.b64encode(document.encode()).decode("ascii")
        fields = {"policy": policy, "signature": self._sign(b"POST\n" + policy.encode("ascii"))}
        return UploadGrant(url=f"{self.public_url}/objects", fields=fields, prefix=prefix)

    # -- for the server side -----------------------------------------------------------------------

    def file_path(self, key: str) -> Path:
        """The file that holds (or would hold) ``key``; refuses hostile keys and the partial folder."""
        check_key(key)
        if key.split("/", 1)[0] == PARTIAL_DIRECTORY:
            raise InvalidInput(f"'{PARTIAL_DIRECTORY}/' is reserved for uploads in progress", field="key")
        return self.root.joinpath(*key.split("/"))

    def open(self, key: str) -> tuple[IO[bytes], int]:
        """The object's file, open for reading, and its size."""
        path = self.file_path(key)
        try:
            handle = path.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound("object", key) from None
        except OSError as error:
            raise self._unavailable("read", key, error) from error
        return handle, os.fstat(handle.fileno()).st_size

    def chunks_of(
        self, handle: IO[bytes], key: str, start: int, length: int | None, chunk_size: int
    ) -> Iterator[bytes]:
        """Up to ``length`` bytes of an opened object from ``start``, closing the file at the end."""
        try:
            handle.seek(start)
            remaining = length
            while remaining is None or remaining > 0:
                wanted = chunk_size if remaining is None else min(chunk_size, remaining)
                try:
                    chunk = handle.read(wanted)
                except OSError as error:
                    raise self._unavailable("read", key, error) from error
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            handle.close()

    def verify_get(self, key: str, expires: str, signature: str) -> None:
        """Refuse (Forbidden) a download URL whose signature does not match or that has expired."""
        if not expires or not signature:
            raise Forbidden("the URL is not signed: it needs 'expires' and 'signature'")
        # isdigit() alone admits digits int() refuses ("²") and more digits than int() converts.
        if not (expires.isascii() and expires.isdigit() and len(expires) <= 12):
            raise InvalidInput(f"must be a Unix time in seconds, got {expires[:20]!r}", field="expires")
        expected = self._sign(f"GET\n{key}\n{expires}".encode())
        if not hmac.compare_digest(expected.encode("ascii"), _ascii(signature, "signature")):
            raise Forbidden("the URL's signature does not match")
        self._check_not_expired(int(expires))

    def verify_grant(self, policy: str, signature: str) -> str:
        """The prefix of a valid, unexpired upload grant; Forbidden otherwise."""
        if not policy or not signature:
            raise Forbidden("the upload form needs the grant's 'policy' and 'signature' fields")
        expected = self._sign(b"POST\n" + _ascii(policy, "policy"))
        if not hmac.compare_digest(expected.encode("ascii"), _ascii(signature, "signature")):
            raise Forbidden("the upload grant's signature does not match")
        try:
            document = json.loads(base64.b64decode(policy, validate=True))
            prefix, expires = document["prefix"], document["expires"]
        except (binascii.Error, ValueError, TypeError, KeyError):
            raise Forbidden("the upload grant's policy cannot be read") from None
        if not isinstance(prefix, str) or not isinstance(expires, int):
            raise Forbidden("the upload grant's policy cannot be read")
        self._check_not_expired(expires)
        return prefix

    # -- internals ---------------------------------------------------------------------------------

    def _sign(self, message: bytes) -> str:
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def _check_not_expired(self, expires: int) -> None:
        if self._clock() > expires:
            moment = datetime.fromtimestamp(expires, UTC).isoformat()
            raise Forbidden(f"the URL or grant expired at {moment}")

    def _spool(
        self, chunks: Iterable[bytes], observe: Callable[[bytes], object] | None, size: int | None = None
    ) -> tuple[Path, int]:
        """Write ``chunks`` (``size`` bytes, where known) to a new file in the partial folder; on any
        failure, leave nothing behind."""
        try:
            descriptor, temporary = self._new_partial()
        except OSError as error:
            raise self._unavailable("write", PARTIAL_DIRECTORY, error) from error
        output = DurableWriter(descriptor, size=size)
        try:
            for chunk in chunks:  # the caller's own errors pass through unchanged
                if observe is not None:
                    observe(chunk)
                try:
                    output.write(chunk)
                except OSError as error:
                    raise self._unavailable("write", PARTIAL_DIRECTORY, error) from error
            try:
                # Durable before the rename, so that a crash never leaves a short file at the final key.
                output.finish()
            except OSError as error:
                raise self._unavailable("write", PARTIAL_DIRECTORY, error) from error
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        finally:
            output.close()
            os.close(descriptor)
        return temporary, output.size

    def _new_partial(self) -> tuple[int, Path]:
        """A new, empty file of the partial folder (made when missing), open for writing."""
        partial = self.root / PARTIAL_DIRECTORY
        while True:
            path = partial / f"upload-{secrets.token_hex(8)}"
            try:
                return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), path
            except FileNotFoundError:
                partial.mkdir(parents=True, exist_ok=True)
            except FileExistsError:
                continue  # 64 random bits taken already: draw again

    def _move_into_place(self, temporary: Path, final: Path) -> None:
        try:
            os.replace(temporary, final)
        except FileNotFoundError:  # the key's folder is new
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temporary, final)

    def _unavailable(self, action: str, key: str, error: OSError) -> Unavailable:
        reason = error.strerror or type(error).__name__
        return Unavailable(f"the object store directory {self.root} cannot {action} '{key}': {reason}")


def _ascii(value: str, field: str) -> bytes:
    """A signature or policy as bytes; compare_digest cannot compare text that is not ASCII."""
    if not value.isascii():
        raise InvalidInput("must be ASCII, as every signature and policy this store issues is", field=field)
    return value.encode("ascii")


# -- the server side: GET /objects/<key> and POST /objects, as S3 answers pre-signed URLs and POST forms --

RANGE = re.compile(r"bytes=([0-9]{0,19})-([0-9]{0,19})")  # longer numbers: no range, as S3 ignores it


def objects_app(store: LocalObjectStore) -> WSGIApp:
    """A WSGI app answering the store's signed downloads and upload grants; mount it at ``/objects``."""

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            return _answer(store, environ, start_response)
        except WorkbenchError as error:
            return _error(start_response, error.status, error.message)
        except Exception:
            log.exception(
                "object request %s %s failed", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO")
            )
            return _error(start_response, 500, "the object store failed; see the server log")

    return app


def _answer(store: LocalObjectStore, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    path = _object_path(environ)
    method = environ.get("REQUEST_METHOD", "GET").upper()
    if path is None:
        return _error(start_response, 404, "object requests are under /objects/")
    if path in {"", "/"}:
        if method != "POST":
            return _error(start_response, 405, "upload with POST /objects", [("Allow", "POST")])
        _receive_upload(store, environ)
        start_response("204 No Content", [("Content-Length", "0")])
        return []
    if method not in {"GET", "HEAD"}:
        return _error(start_response, 405, "download with GET /objects/<key>", [("Allow", "GET, HEAD")])
    key = path.removeprefix("/")
    store.file_path(key)  # refuses a hostile key before anything else is said about it
    query = parse_qs(environ.get("QUERY_STRING", ""))
    store.verify_get(key, _first(query, "expires"), _first(query, "signature"))
    return _send_object(store, key, environ, start_response, body=method == "GET")


def _object_path(environ: Environ) -> str | None:
    """The path below ``/objects``, whether the app is mounted there (SCRIPT_NAME) or sees the full path."""
    path = str(environ.get("PATH_INFO", ""))
    if not str(environ.get("SCRIPT_NAME", "")).rstrip("/").endswith("/objects"):
        if path != "/objects" and not path.startswith("/objects/"):
            return None
        path = path.removeprefix("/objects")
    try:
        # PEP 3333 hands the path over as latin-1; keys are UTF-8.
        return path.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise InvalidInput("the object path is not valid UTF-8", field="key") from None


def _first(query: dict[str, list[str]], name: str) -> str:
    values = query.get(name)
    return values[0] if values else ""


def _send_object(
    store: LocalObjectStore, key: str, environ: Environ, start_response: StartResponse, *, body: bool
) -> Iterable[bytes]:
    handle, size = store.open(key)
    start, end = 0, size - 1
    status = "200 OK"
    match = RANGE.fullmatch(str(environ.get("HTTP_RANGE", "")).strip())
    if match and (match[1] or match[2]):
        if match[1]:
            start = int(match[1])
            end = min(int(match[2]), size - 1) if match[2] else size - 1
        else:
            start, end = max(0, size - int(match[2])), size - 1
        if start >= size or end < start:
            handle.close()
            return _error(
                start_response,
                416,
                f"the range is outside the object's {size} bytes",
                [("Content-Range", f"bytes */{size}")],
            )
        status = "206 Partial Content"
    length = max(0, end - start + 1)
    headers = [
        ("Content-Type", "application/octet-stream"),
        ("Content-Length", str(length)),
        ("Accept-Ranges", "bytes"),
    ]
    if status.startswith("206"):
        headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
    start_response(status, headers)
    if not body:
        handle.close()
        return []
    connection = environ.get("werkzeug.socket")
    if isinstance(connection, socket.socket):
        return _sent_by_kernel(handle, connection, start, length)
    return store.chunks_of(handle, key, start, length, READ_SIZE)


def _sent_by_kernel(handle: IO[bytes], connection: socket.socket, start: int, length: int) -> Iterator[bytes]:
    """The body straight from the file to the client's socket (``sendfile``: no copy through Python).

    Werkzeug's server hands its connection to the app; it sends the status and headers as the empty
    first piece goes out, and the kernel sends the rest."""
    try:
        yield b""
        with suppress(OSError):  # only advice: a staged blob was written past the page cache
            os.posix_fadvise(handle.fileno(), start, length, os.POSIX_FADV_WILLNEED)
        if length and connection.sendfile(handle, offset=start, count=length) != length:
            # The file ended early: cut the connection rather than leave the client waiting for the rest.
            raise ConnectionAbortedError("the object ended before its announced length")
    finally:
        handle.close()


def _receive_upload(store: LocalObjectStore, environ: Environ) -> None:
    """Check the grant from the fields before the file, then stream the file to its key atomically;
    a body or file larger than the store admits is refused (413) before or while it is read."""
    from werkzeug.sansio.multipart import Data, Field, File
    from werkzeug.wsgi import get_content_length

    from shared.core.limits import too_large

    limit = store.max_upload_bytes + FORM_OVERHEAD
    length = get_content_length(environ)
    if length is not None and length > limit:
        raise too_large(length, limit, "WORKBENCH_MAX_UPLOAD_BYTES and the form's fields")
    events = _form_events(environ, limit)
    fields: dict[str, str] = {}
    for event in events:
        if isinstance(event, Field):
            fields[event.name] = _field_value(events, event.name)
        elif isinstance(event, File):
            if event.name != "file":
                raise InvalidInput(
                    f"the upload's file field is named 'file', got {event.name!r}", field="file"
                )
            prefix = store.verify_grant(fields.get("policy", ""), fields.get("signature", ""))
            key = fields.get("key", "")
            if not key:
                raise InvalidInput("the upload form needs a 'key' field before the file", field="key")
            key = check_key(key.replace("${filename}", event.filename))
            if not key.startswith(prefix):
                raise Forbidden(f"key '{key}' is outside the grant's prefix '{prefix}'")

            def file_data() -> Iterator[bytes]:
                received = 0
                for part in events:
                    if not isinstance(part, Data):
                        raise InvalidInput("the upload's file part is malformed", field="file")
                    if part.data:
                        received += len(part.data)
                        if received > store.max_upload_bytes:
                            raise ContentTooLarge(
                                f"the file is larger than the {store.max_upload_bytes} bytes allowed "
                                "(WORKBENCH_MAX_UPLOAD_BYTES)"
                            )
                        yield part.data
                    if not part.more_data:
                        return
                raise InvalidInput("the upload ended before the file did", field="file")

            store.put(key, file_data())
            for _ in events:
                pass  # as S3 does, fields after the file are ignored; read them so the connection stays usable
            return
    raise InvalidInput("the upload form has no 'file' field", field="file")


def _form_events(environ: Environ, limit: int) -> Iterator[Any]:
    """The multipart events of the request body (at most ``limit`` bytes), read in small pieces."""
    from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
    from werkzeug.http import parse_options_header
    from werkzeug.sansio.multipart import NEED_DATA, Epilogue, MultipartDecoder
    from werkzeug.wsgi import get_input_stream

    content_type, options = parse_options_header(environ.get("CONTENT_TYPE"))
    boundary = options.get("boundary")
    if content_type != "multipart/form-data" or not boundary:
        raise InvalidInput("an upload is multipart/form-data with a boundary", field="Content-Type")
    decoder = MultipartDecoder(
        boundary.encode("latin-1"), max_form_memory_size=FORM_BUFFER_LIMIT, max_parts=FORM_PART_LIMIT
    )
    stream = get_input_stream(environ, max_content_length=limit)
    while True:
        try:
            event = decoder.next_event()
            if event is NEED_DATA:
                try:
                    chunk = stream.read(FORM_READ_SIZE)
                except RequestEntityTooLarge:  # a chunked body past the limit
                    raise ContentTooLarge(f"the upload is larger than the {limit} bytes allowed") from None
                decoder.receive_data(chunk or None)
                continue
        except (ValueError, HTTPException) as error:
            raise InvalidInput(f"the upload form cannot be read ({error})", field="body") from None
        yield event
        if isinstance(event, Epilogue):
            return


def _field_value(events: Iterator[Any], name: str) -> str:
    from werkzeug.sansio.multipart import Data

    pieces: list[bytes] = []
    size = 0
    for event in events:
        if not isinstance(event, Data):
            break
        size += len(event.data)
        if size > FORM_FIELD_LIMIT:
            raise InvalidInput(f"the form field is larger than {FORM_FIELD_LIMIT} bytes", field=name)
        pieces.append(event.data)
        if not event.more_data:
            try:
                return b"".join(pieces).decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInput("the form field is not UTF-8", field=name) from None
    raise InvalidInput("the form field is malformed", field=name)


def _error(
    start_response: StartResponse, status: int, message: str, extra: list[tuple[str, str]] | None = None
) -> list[bytes]:
    body = json.dumps({"Error": message}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *(extra or [])]
    start_response(f"{status} {HTTPStatus(status).phrase}", headers)
    return [body]
