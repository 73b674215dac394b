"""The production object store: any S3 API (AWS, MinIO, Ceph) through boto3, streamed with bounded memory."""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, Literal, cast

from shared.adapters.objectstore import (
    MAX_UPLOAD_BYTES,
    Blob,
    UploadGrant,
    blob_key,
    check_expiry,
    check_key,
    check_prefix,
)
from shared.core.errors import InvalidInput, NotFound, Unavailable

if TYPE_CHECKING:
    from boto3.s3.transfer import TransferConfig
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

# Give this prefix a lifecycle rule: a crash between the upload and the copy leaves objects here.
TEMPORARY_PREFIX = "tmp/"
PART_SIZE = 8 << 20
CONCURRENCY = 4
MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


class ChunkReader:
    """A read-only, non-seekable file over an iterator of chunks that hashes and counts what passes through.

    ``read(n)`` returns exactly ``n`` bytes until the end, as S3's multipart upload needs full parts.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._leftover = b""
        self._exhausted = False
        self._digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, size: int | None = -1) -> bytes:
        wanted = None if size is None or size < 0 else size
        # A BytesIO's getvalue() hands over its buffer without copying it: one part in memory, not two.
        buffer = io.BytesIO()
        if self._leftover:
            buffer.write(self._leftover[:wanted] if wanted is not None else self._leftover)
            self._leftover = self._leftover[buffer.tell() :]
        while (wanted is None or buffer.tell() < wanted) and not self._exhausted:
            chunk = next(self._chunks, None)  # the caller's own errors pass through unchanged
            if chunk is None:
                self._exhausted = True
                break
            self._digest.update(chunk)
            self.size += len(chunk)
            needed = len(chunk) if wanted is None else wanted - buffer.tell()
            if needed < len(chunk):
                buffer.write(memoryview(chunk)[:needed])
                self._leftover = chunk[needed:]
            else:
                buffer.write(chunk)
        return buffer.getvalue()

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class S3ObjectStore:
    """Objects in one S3 bucket; blobs are uploaded under ``tmp/`` and copied to their content address."""

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        presign_endpoint_url: str | None = None,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
        create_bucket: bool = False,
        part_size: int = PART_SIZE,
        concurrency: int = CONCURRENCY,
        attempts: int = 3,
    ) -> None:
        # Imported here: boto3 takes long to import and most functions never touch the object store.
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.max_upload_bytes = max_upload_bytes
        self.region = region or "us-east-1"
        self._where = f"bucket '{bucket}' at {endpoint_url or f'AWS S3 ({self.region})'}"
        # MinIO and Ceph answer path-style requests whatever their DNS; AWS picks its own style.
        addressing: Literal["path", "auto"] = "path" if endpoint_url else "auto"
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": addressing},
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": attempts, "mode": "standard"},
            max_pool_connections=max(10, concurrency * 2),
        )
        session = boto3.session.Session(
            aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=self.region
        )
        self.client: S3Client = session.client("s3", endpoint_url=endpoint_url, config=config)
        # Pre-signed URLs are signed for the host that fetches them, so shovels may need another address.
        self._presign_client: S3Client = (
            session.client("s3", endpoint_url=presign_endpoint_url, config=config)
            if presign_endpoint_url
            else self.client
        )
        self._transfer = _transfer_config(TransferConfig, part_size, concurrency)
        if create_bucket:
            self._ensure_bucket()

    # -- the ObjectStore port ----------------------------------------------------------------------

    def put_blob(self, chunks: Iterable[bytes], *, size: int | None = None) -> Blob:
        temporary = f"{TEMPORARY_PREFIX}{uuid.uuid4().hex}"
        reader = ChunkReader(chunks)
        self._upload(reader, temporary)
        sha256 = reader.hexdigest()
        key = blob_key(sha256)
        try:
            if self._head(key) is None:
                with self._errors("copy to", key):
                    self.client.copy(
                        {"Bucket": self.bucket, "Key": temporary}, self.bucket, key, Config=self._transfer
                    )
        finally:
            self._delete_quietly(temporary)
        return Blob(key=key, sha256=sha256, size=reader.size)

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        check_key(key)
        reader = ChunkReader(chunks)
        self._upload(reader, key)
        return reader.size

    def has(self, key: str) -> bool:
        return self.size(key) is not None

    def size(self, key: str) -> int | None:
        check_key(key)
        return self._head(key)

    def read(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        check_key(key)
        # Requested here rather than in the generator, so that a missing key fails at the call.
        with self._errors("read", key):
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        return self._stream(body, key, chunk_size)

    def delete(self, key: str) -> None:
        check_key(key)
        with self._errors("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def list(self, prefix: str) -> list[tuple[str, int]]:
        check_prefix(prefix)
        found: list[tuple[str, int]] = []
        with self._errors("list", prefix):
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            ):
                found.extend((item["Key"], item["Size"]) for item in page.get("Contents", []))
        return found

    def presign_get(self, key: str, expires_seconds: int = 3600) -> str:
        check_key(key)
        with self._errors("sign a download of", key):
            return self._presign_client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=check_expiry(expires_seconds),
            )

    def upload_grant(self, prefix: str, expires_seconds: int = 3600) -> UploadGrant:
        check_prefix(prefix)
        if not prefix.endswith("/"):
            raise InvalidInput(
                f"an upload grant's prefix is a folder ending with '/', got {prefix!r}", field="prefix"
            )
        with self._errors("sign an upload grant for", prefix):
            # For a key ending in ${filename}, botocore itself adds ["starts-with", "$key", prefix].
            # S3 refuses a larger file itself (EntityTooLarge), as the local store answers 413.
            post = self._presign_client.generate_presigned_post(
                self.bucket,
                prefix + "${filename}",
                Conditions=[["content-length-range", 0, self.max_upload_bytes]],
                ExpiresIn=check_expiry(expires_seconds),
            )
        # The uploader names its own key under the prefix, as with the local store's grant.
        fields = {name: str(value) for name, value in post["fields"].items() if name != "key"}
        return UploadGrant(url=str(post["url"]), fields=fields, prefix=prefix)

    # -- internals ---------------------------------------------------------------------------------

    def _upload(self, reader: ChunkReader, key: str) -> None:
        # A failed multipart upload is aborted by the transfer manager: nothing appears at ``key``.
        with self._errors("upload", key):
            self.client.upload_fileobj(
                cast("IO[Any]", reader),  # upload_fileobj needs only read(); the stubs ask for a whole file
                self.bucket,
                key,
                Config=self._transfer,
            )

    def _head(self, key: str) -> int | None:
        try:
            with self._errors("inspect", key):
                return self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"]
        except NotFound:
            return None

    def _stream(self, body: Any, key: str, chunk_size: int) -> Iterator[bytes]:
        try:
            with self._errors("read", key):
                yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    def _delete_quietly(self, key: str) -> None:
        try:
            self.delete(key)
        except Unavailable as error:
            log.warning("could not remove the temporary object '%s': %s", key, error.message)

    def _ensure_bucket(self) -> None:
        import botocore.exceptions

        try:
            with self._errors("find", self.bucket):
                self.client.head_bucket(Bucket=self.bucket)
            return
        except NotFound:
            pass
        arguments: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":
            arguments["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self.client.create_bucket(**arguments)
        except botocore.exceptions.ClientError as error:
            if _code(error) not in {"BucketAlreadyOwnedByYou"}:
                raise self._unavailable("create", self.bucket, error) from error
        except botocore.exceptions.BotoCoreError as error:
            raise self._unavailable("create", self.bucket, error) from error

    @contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        """Map boto3's and botocore's errors to the project's: a missing key, or an unusable store."""
        import boto3.exceptions
        import botocore.exceptions

        try:
            yield
        except botocore.exceptions.ClientError as error:
            if _code(error) in MISSING_CODES:
                raise NotFound("object", key) from error
            raise self._unavailable(action, key, error) from error
        except (botocore.exceptions.BotoCoreError, boto3.exceptions.Boto3Error) as error:
            raise self._unavailable(action, key, error) from error

    def _unavailable(self, action: str, key: str, error: Exception) -> Unavailable:
        import botocore.exceptions

        if isinstance(error, botocore.exceptions.ClientError):
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
            message = error.response.get("Error", {}).get("Message", "")
            detail = f"{_code(error)} (HTTP {status}) {message}".strip()
        else:
            # botocore's messages name the endpoint or the missing credential, never a secret.
            detail = f"{type(error).__name__}: {error}"
        return Unavailable(f"the object store ({self._where}) cannot {action} '{key}': {detail}")


def _code(error: Any) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _transfer_config(config_class: type[TransferConfig], part_size: int, concurrency: int) -> TransferConfig:
    """Multipart above one part; about ``concurrency + 1`` parts in memory at most, whatever the size."""
    config = config_class(
        multipart_threshold=part_size,
        multipart_chunksize=part_size,
        max_concurrency=concurrency,
        use_threads=True,
        preferred_transfer_client="classic",  # the CRT client ignores these bounds
    )
    # Without this bound s3transfer reads ahead up to ten parts of a non-seekable stream.
    config.max_in_memory_upload_chunks = concurrency
    return config
