"""The object store port: content-addressed blobs, pre-signed downloads and upload grants."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from shared.core.errors import InvalidInput
from shared.core.paths import path_problem, shown

BLOB_PREFIX = "blobs/sha256/"
MAX_KEY_BYTES = 1024  # S3's limit, applied everywhere so that a key valid on one adapter is valid on all
MAX_EXPIRY_SECONDS = 7 * 24 * 3600  # the longest a SigV4 pre-signed URL may live
MAX_UPLOAD_BYTES = 5 << 30  # the largest file an upload grant admits unless set: S3's limit for one POST


def blob_key(sha256: str) -> str:
    """Where a blob with this digest lives: ``blobs/sha256/<first two hex>/<digest>``."""
    return f"{BLOB_PREFIX}{sha256[:2]}/{sha256}"


def check_key(key: str, *, field: str = "key") -> str:
    """``key`` if it is relative, '/'-separated, UTF-8 of at most MAX_KEY_BYTES, without empty, ``.``
    or ``..`` segments, NUL or control characters (C1 included)."""
    if not isinstance(key, str) or not key:
        raise InvalidInput("an object key must be a non-empty string", field=field)
    # S3 limits the whole key only; a segment longer than a file name fails in the local store's write.
    problem = path_problem(key, exact=True, c1=True, max_bytes=MAX_KEY_BYTES, max_name_bytes=None)
    if problem is not None:
        raise InvalidInput(f"object key {shown(key)} {problem}", field=field)
    return key


def check_prefix(prefix: str, *, field: str = "prefix") -> str:
    """``prefix`` if it is empty or a key (or the start of one), possibly ending with '/'."""
    if prefix == "":
        return prefix
    check_key(prefix.removesuffix("/") if prefix != "/" else prefix, field=field)
    return prefix


def check_expiry(seconds: int) -> int:
    """``seconds`` if a pre-signed URL or grant may live that long."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= MAX_EXPIRY_SECONDS:
        raise InvalidInput(
            f"must be between 1 and {MAX_EXPIRY_SECONDS} seconds, got {seconds!r}", field="expires"
        )
    return seconds


@dataclass(frozen=True)
class Blob:
    key: str
    sha256: str
    size: int


@dataclass(frozen=True)
class UploadGrant:
    """A form POST that may store any key starting with ``prefix`` until it expires (S3 POST policy)."""

    url: str
    fields: dict[str, str]
    prefix: str


class StagingFolder(Protocol):
    """One transfer's staging folder in a user's home (``home.StagedFolder``)."""

    def write(self, name: str, data: bytes) -> None: ...
    def stream(self, name: str, chunks: Iterable[bytes], *, size: int | None) -> Blob: ...
    def barrier(self, names: list[str]) -> dict[str, OSError]: ...
    def discard(self, name: str) -> None: ...


class HomeStagingPort(Protocol):
    """Staging into the users' own volumes, where the platform reaches them (``home.HomeStaging``)."""

    def folder(self, user: str, transfer_id: str) -> AbstractContextManager[StagingFolder]: ...
    def remove(self, user: str, transfer_id: str) -> None: ...


class ObjectStore(Protocol):
    def put_blob(self, chunks: Iterable[bytes], *, size: int | None = None) -> Blob:
        """Store a stream under its sha256 (computed on the way); memory does not grow with size.
        ``size``, when known, is a hint (space can be set aside); the stream decides."""
        ...

    def has(self, key: str) -> bool: ...
    def size(self, key: str) -> int | None: ...
    def read(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]: ...
    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        """Store a stream at a fixed key (manifests, exports); returns its size."""
        ...

    def delete(self, key: str) -> None: ...
    def list(self, prefix: str) -> list[tuple[str, int]]: ...
    def presign_get(self, key: str, expires_seconds: int = 3600) -> str: ...
    def upload_grant(self, prefix: str, expires_seconds: int = 3600) -> UploadGrant: ...
