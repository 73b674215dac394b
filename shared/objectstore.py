"""The object store port: content-addressed blobs, pre-signed downloads and upload grants."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

BLOB_PREFIX = "blobs/sha256/"


def blob_key(sha256: str) -> str:
    """Where a blob with this digest lives: ``blobs/sha256/<first two hex>/<digest>``."""
    return f"{BLOB_PREFIX}{sha256[:2]}/{sha256}"


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


class ObjectStore(Protocol):
    def put_blob(self, chunks: Iterable[bytes]) -> Blob:
        """Store a stream under its sha256 (computed on the way); memory does not grow with size."""
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
