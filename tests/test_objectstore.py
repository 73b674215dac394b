"""The object store contract, run against the local directory store and S3 (moto in-process and over HTTP)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from werkzeug.serving import make_server
from werkzeug.test import Client, EnvironBuilder, run_wsgi_app

from shared.adapters.objectstore import blob_key
from shared.adapters.objectstore.local import LocalObjectStore, objects_app
from shared.adapters.objectstore.s3 import S3ObjectStore
from shared.adapters.runtime.processes import free_port
from shared.core.errors import InvalidInput, NotFound, Unavailable
from tests.support import wait_until

MIB = 1 << 20
PART_SIZE = 5 * MIB  # S3's smallest part, so that tests exercise multipart without big files
SECRET = b"local-object-store-test-secret"
HOSTILE_KEYS = ["../x", "a/../../x", "/abs", "a\x00b", "a\nb", "a\x7fb", "", "a//b", "./a", "a/.", "a\\b"]


def pattern(index: int, size: int = MIB) -> bytes:
    return bytes([index % 251]) * size


def stream(total: int, *, chunk: int = MIB) -> Iterator[bytes]:
    """``total`` bytes generated chunk by chunk, never all at once."""
    for index in range(total // chunk):
        yield pattern(index, chunk)


def digest_of(total: int, *, chunk: int = MIB) -> str:
    hasher = hashlib.sha256()
    for piece in stream(total, chunk=chunk):
        hasher.update(piece)
    return hasher.hexdigest()


def crashing(after: int, *, chunk: int = MIB) -> Iterator[bytes]:
    yield from stream(after, chunk=chunk)
    raise RuntimeError("the source went away halfway")


def bucket_name() -> str:
    return f"workbench-{uuid.uuid4().hex[:12]}"


@dataclass
class Harness:
    kind: str
    store: Any
    fetch: httpx.Client | None
    """A client that can fetch the store's URLs, when a server answers them."""
    leftovers: Callable[[], list[str]]
    """Temporary objects or files still around (uploads in progress or left by a crash)."""


def serve(app: Any) -> tuple[str, Callable[[], None]]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join()

    return f"http://127.0.0.1:{server.server_port}", stop


@pytest.fixture(scope="module")
def moto_servers() -> Iterator[tuple[str, str]]:
    """Two moto HTTP servers sharing one backend: the store's endpoint and the shovels' address."""
    from moto.server import ThreadedMotoServer

    servers = [ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False) for _ in range(2)]
    for server in servers:
        server.start()
    endpoint, public = (f"http://{host}:{port}" for host, port in (s.get_host_and_port() for s in servers))
    yield endpoint, public
    for server in servers:
        server.stop()


def s3_leftovers(store: S3ObjectStore) -> Callable[[], list[str]]:
    def leftovers() -> list[str]:
        uploads = store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
        return [key for key, _ in store.list("tmp/")] + [f"upload of {u['Key']}" for u in uploads]

    return leftovers


@pytest.fixture
def local_harness(tmp_path: Path) -> Iterator[Harness]:
    holder: dict[str, Any] = {}
    url, stop = serve(lambda environ, start_response: holder["app"](environ, start_response))
    store = LocalObjectStore(tmp_path / "objects", public_url=url, secret=SECRET)
    holder["app"] = objects_app(store)
    partial = store.root / ".partial"
    with httpx.Client(timeout=30) as client:
        yield Harness("local", store, client, lambda: sorted(p.name for p in partial.glob("*")))
    stop()


@pytest.fixture(params=["local", "s3-memory", "s3-server"])
def object_store(request: pytest.FixtureRequest) -> Iterator[Harness]:
    if request.param == "local":
        yield request.getfixturevalue("local_harness")
    elif request.param == "s3-memory":
        import moto

        with moto.mock_aws():
            store = S3ObjectStore(
                bucket=bucket_name(),
                access_key="testing",
                secret_key="testing",
                create_bucket=True,
                part_size=PART_SIZE,
                concurrency=2,
            )
            yield Harness("s3-memory", store, None, s3_leftovers(store))
    else:
        endpoint, public = request.getfixturevalue("moto_servers")
        store = S3ObjectStore(
            bucket=bucket_name(),
            endpoint_url=endpoint,
            presign_endpoint_url=public,
            access_key="testing",
            secret_key="testing",
            create_bucket=True,
            part_size=PART_SIZE,
            concurrency=2,
        )
        with httpx.Client(timeout=30) as client:
            yield Harness("s3-server", store, client, s3_leftovers(store))


# -- the contract, on every adapter ----------------------------------------------------------------


def test_put_blob_stores_under_its_sha256(object_store: Harness) -> None:
    content = b"a dataset file\n" * 1000
    blob = object_store.store.put_blob([content[:7], content[7:]])
    assert blob.sha256 == hashlib.sha256(content).hexdigest()
    assert blob.key == blob_key(blob.sha256)
    assert blob.size == len(content)
    assert object_store.store.size(blob.key) == len(content)
    assert b"".join(object_store.store.read(blob.key)) == content
    assert object_store.leftovers() == []


def test_the_same_content_twice_is_one_blob(object_store: Harness) -> None:
    first = object_store.store.put_blob([b"same ", b"bytes"])
    second = object_store.store.put_blob([b"same bytes"])
    assert first == second
    assert object_store.store.list("blobs/") == [(first.key, 10)]
    assert object_store.leftovers() == []


def test_empty_stream_is_a_blob_too(object_store: Harness) -> None:
    blob = object_store.store.put_blob([])
    assert blob.sha256 == hashlib.sha256(b"").hexdigest()
    assert object_store.store.size(blob.key) == 0
    assert b"".join(object_store.store.read(blob.key)) == b""


def test_read_size_has_delete_and_list(object_store: Harness) -> None:
    store = object_store.store
    assert store.put("exports/a/one.txt", [b"one"]) == 3
    assert store.put("exports/a/sub/two.txt", iter([b"t", b"wo"])) == 3
    assert store.put("exports/b/three.txt", [b"three"]) == 5
    assert store.put("exports/a/one.txt", [b"one, again"]) == 10  # a fixed key is overwritten

    assert store.list("exports/a/") == [("exports/a/one.txt", 10), ("exports/a/sub/two.txt", 3)]
    assert [key for key, _ in store.list("exports/")] == [
        "exports/a/one.txt",
        "exports/a/sub/two.txt",
        "exports/b/three.txt",
    ]
    assert store.list("exports/a/o") == [("exports/a/one.txt", 10)]
    assert store.list("nothing/") == []
    assert store.has("exports/a/one.txt")
    assert store.size("exports/b/three.txt") == 5
    assert list(store.read("exports/a/one.txt", chunk_size=4)) == [b"one,", b" aga", b"in"]

    store.delete("exports/a/one.txt")
    store.delete("exports/a/one.txt")  # deleting what is gone is not an error, as on S3
    assert not store.has("exports/a/one.txt")
    assert store.size("exports/a/one.txt") is None
    assert not store.has("exports/a")  # a folder is not an object
    with pytest.raises(NotFound, match=r"exports/a/one\.txt"):
        store.read("exports/a/one.txt")


def test_a_large_stream_is_stored_in_parts(object_store: Harness) -> None:
    total = 40 * MIB
    parts: list[str] = []
    if object_store.kind != "local":
        object_store.store.client.meta.events.register(
            "before-parameter-build.s3.CreateMultipartUpload",
            lambda **kwargs: parts.append(kwargs["params"]["Key"]),
        )
    tracemalloc.start()
    try:
        blob = object_store.store.put_blob(stream(total))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert blob.sha256 == digest_of(total)
    assert object_store.store.size(blob.key) == total
    if object_store.kind == "local":
        assert peak < 4 * MIB, f"peak {peak / MIB:.1f} MiB"
    else:
        # The upload to tmp/ and the copy to the blob key both went in parts (the copy beyond 5 GB needs it).
        assert len(parts) == 2 and parts[0].startswith("tmp/") and parts[1] == blob.key
    hasher = hashlib.sha256()
    for chunk in object_store.store.read(blob.key):
        hasher.update(chunk)
    assert hasher.hexdigest() == blob.sha256
    assert object_store.leftovers() == []


def test_a_crash_mid_put_leaves_nothing(object_store: Harness) -> None:
    # Past two parts on S3, so that a multipart upload was started and must be aborted.
    with pytest.raises(RuntimeError, match="halfway"):
        object_store.store.put_blob(crashing(12 * MIB))
    with pytest.raises(RuntimeError, match="halfway"):
        object_store.store.put("exports/x/file.bin", crashing(12 * MIB))
    with pytest.raises(RuntimeError, match="halfway"):
        object_store.store.put_blob(crashing(1 * MIB))
    assert object_store.store.list("") == []
    assert not object_store.store.has("exports/x/file.bin")
    assert object_store.leftovers() == []


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_hostile_keys_are_refused(object_store: Harness, key: str) -> None:
    store = object_store.store
    calls: list[Callable[[], object]] = [
        lambda: store.has(key),
        lambda: store.size(key),
        lambda: store.read(key),
        lambda: store.put(key, [b"x"]),
        lambda: store.delete(key),
        lambda: store.presign_get(key),
    ]
    for call in calls:
        with pytest.raises(InvalidInput):
            call()
    if key:
        with pytest.raises(InvalidInput):
            store.list(key if key.endswith("/") else key + "/")
        with pytest.raises(InvalidInput):
            store.upload_grant(key + "/")
    assert store.list("") == []


def test_grants_are_for_folders_only(object_store: Harness) -> None:
    for prefix in ["", "exports", "/exports/"]:
        with pytest.raises(InvalidInput):
            object_store.store.upload_grant(prefix)
    for seconds in [0, -5, 8 * 24 * 3600]:
        with pytest.raises(InvalidInput, match="expires"):
            object_store.store.presign_get("exports/a", seconds)


def test_a_presigned_url_fetches_the_bytes(object_store: Harness) -> None:
    content = "données\n".encode() * 100
    blob = object_store.store.put_blob([content])
    object_store.store.put("exports/ü and space/f.txt", [b"odd name"])
    if object_store.fetch is None:
        url = object_store.store.presign_get(blob.key, 60)
        assert "X-Amz-Expires=60" in url and "X-Amz-Signature=" in url
        return
    response = object_store.fetch.get(object_store.store.presign_get(blob.key))
    assert response.status_code == 200
    assert response.content == content
    assert int(response.headers["Content-Length"]) == len(content)
    response = object_store.fetch.get(object_store.store.presign_get("exports/ü and space/f.txt"))
    assert response.content == b"odd name"


def test_an_upload_grant_stores_under_its_prefix(object_store: Harness) -> None:
    grant = object_store.store.upload_grant("exports/e1/", 300)
    assert grant.prefix == "exports/e1/"
    if object_store.fetch is None:
        return
    response = object_store.fetch.post(
        grant.url,
        data={**grant.fields, "key": "exports/e1/data/${filename}"},
        files={"file": ("table.csv", io.BytesIO(b"a,b\n1,2\n"))},
    )
    assert response.status_code == 204, response.text
    assert b"".join(object_store.store.read("exports/e1/data/table.csv")) == b"a,b\n1,2\n"
    assert object_store.leftovers() == []


def test_an_upload_grant_limits_keys_to_its_prefix(object_store: Harness) -> None:
    grant = object_store.store.upload_grant("exports/e1/", 300)
    if object_store.kind != "local":
        # S3 enforces the policy (moto does not): it must say so, and expire.
        policy = json.loads(base64.b64decode(grant.fields["policy"]))
        assert ["starts-with", "$key", "exports/e1/"] in policy["conditions"]
        assert policy["expiration"]
        return
    assert object_store.fetch is not None
    response = object_store.fetch.post(
        grant.url, data={**grant.fields, "key": "exports/other/x"}, files={"file": ("x", b"intruder")}
    )
    assert response.status_code == 403
    assert "outside" in response.json()["Error"]
    response = object_store.fetch.post(
        grant.url, data={**grant.fields, "key": "exports/e1/../x"}, files={"file": ("x", b"intruder")}
    )
    assert response.status_code == 400
    assert object_store.store.list("") == []


def test_an_unreachable_endpoint_is_unavailable_and_named() -> None:
    store = S3ObjectStore(
        bucket="workbench-data", endpoint_url="http://127.0.0.1:1", access_key="a", secret_key="hidden-secret"
    )
    for call in [
        lambda: store.has("k"),
        lambda: store.read("k"),
        lambda: store.put_blob([b"x"]),
        lambda: store.list(""),
    ]:
        with pytest.raises(Unavailable) as caught:
            call()
        assert "http://127.0.0.1:1" in caught.value.message
        assert "workbench-data" in caught.value.message
        assert "hidden-secret" not in caught.value.message
    with pytest.raises(Unavailable, match=r"127\.0\.0\.1:1"):
        S3ObjectStore(bucket="workbench-data", endpoint_url="http://127.0.0.1:1", create_bucket=True)


def test_an_unusable_directory_is_unavailable_and_named(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store's root should be")
    store = LocalObjectStore(blocker, public_url="http://h", secret=SECRET)
    with pytest.raises(Unavailable, match="not-a-directory"):
        store.put_blob([b"x"])
    with pytest.raises(Unavailable, match="not-a-directory"):
        store.put("a/b", [b"x"])


# -- S3 memory, measured without moto in this process (moto keeps whole objects in memory) -----------


@pytest.fixture(scope="module")
def moto_process() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            httpx.get(f"{endpoint}/moto-api/", timeout=1)
        except httpx.TransportError:
            assert process.poll() is None, "the moto server process ended"
            return False
        return True

    try:
        wait_until(answers, "the moto server process to start", 30, every=0.1)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_s3_memory_stays_bounded_whatever_the_size(moto_process: str) -> None:
    store = S3ObjectStore(
        bucket=bucket_name(),
        endpoint_url=moto_process,
        access_key="testing",
        secret_key="testing",
        create_bucket=True,
        part_size=PART_SIZE,
        concurrency=1,
    )
    total = 40 * MIB
    tracemalloc.start()
    try:
        blob = store.put_blob(stream(total))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert blob.sha256 == digest_of(total)
    assert store.size(blob.key) == total
    # One part uploading, the next one read, and the signer's buffer: not the 40 MiB.
    assert peak < 3 * PART_SIZE, f"peak {peak / MIB:.1f} MiB"


# -- the local store's server side ---------------------------------------------------------------


def test_a_download_range_answers_206(local_harness: Harness) -> None:
    store, client = local_harness.store, local_harness.fetch
    assert client is not None
    store.put("exports/r/digits.txt", [b"0123456789"])
    url = store.presign_get("exports/r/digits.txt")
    response = client.get(url, headers={"Range": "bytes=4-"})
    assert response.status_code == 206
    assert response.content == b"456789"
    assert response.headers["Content-Range"] == "bytes 4-9/10"
    assert response.headers["Content-Length"] == "6"
    response = client.get(url, headers={"Range": "bytes=2-4"})
    assert (response.status_code, response.content) == (206, b"234")
    response = client.get(url, headers={"Range": "bytes=-3"})
    assert (response.status_code, response.content) == (206, b"789")
    response = client.get(url, headers={"Range": "bytes=10-"})
    assert response.status_code == 416
    assert response.headers["Content-Range"] == "bytes */10"
    response = client.head(url)
    assert (response.status_code, response.headers["Content-Length"], response.content) == (200, "10", b"")


def test_expired_or_tampered_urls_are_refused(local_harness: Harness, tmp_path: Path) -> None:
    store, client = local_harness.store, local_harness.fetch
    assert client is not None
    store.put("exports/s/secret.txt", [b"private"])
    store.put("exports/s/other.txt", [b"other"])
    an_hour_ago = LocalObjectStore(
        store.root, public_url=store.public_url, secret=SECRET, clock=lambda: time.time() - 7200
    )
    url = store.presign_get("exports/s/secret.txt")
    refused = {
        "expired": an_hour_ago.presign_get("exports/s/secret.txt", 60),
        "tampered signature": url[:-4] + "0000",
        "another key": url.replace("secret.txt", "other.txt"),
        "later expiry": url.replace("expires=", "expires=9"),
        "unsigned": url.split("?")[0],
        "another secret": LocalObjectStore(store.root, public_url=store.public_url, secret=b"x").presign_get(
            "exports/s/secret.txt"
        ),
    }
    for reason, bad_url in refused.items():
        response = client.get(bad_url)
        assert response.status_code == 403, reason
        assert response.json()["Error"], reason
    assert "expired" in client.get(refused["expired"]).json()["Error"]
    assert client.get(url).content == b"private"
    missing = store.presign_get("exports/s/missing.txt")
    assert client.get(missing).status_code == 404


def test_expired_or_tampered_grants_are_refused(local_harness: Harness) -> None:
    store, client = local_harness.store, local_harness.fetch
    assert client is not None
    an_hour_ago = LocalObjectStore(
        store.root, public_url=store.public_url, secret=SECRET, clock=lambda: time.time() - 7200
    )
    expired = an_hour_ago.upload_grant("exports/g/", 60)
    fresh = store.upload_grant("exports/g/")
    wider = base64.b64encode(json.dumps({"prefix": "", "expires": 2**40}).encode()).decode()
    refused = {
        "expired": expired.fields,
        "tampered policy": {**fresh.fields, "policy": wider},
        "no signature": {"policy": fresh.fields["policy"]},
    }
    for reason, fields in refused.items():
        response = client.post(
            fresh.url, data={**fields, "key": "exports/g/f"}, files={"file": ("f", b"data")}
        )
        assert response.status_code == 403, reason
    response = client.post(fresh.url, data={**fresh.fields}, files={"file": ("f", b"data")})
    assert response.status_code == 400 and "key" in response.json()["Error"]
    response = client.post(fresh.url, data={**fresh.fields, "key": "exports/g/f"})
    assert response.status_code == 400
    assert client.get(fresh.url).status_code == 405
    assert store.list("") == []
    assert local_harness.leftovers() == []


def test_a_truncated_upload_leaves_nothing(local_harness: Harness) -> None:
    store = local_harness.store
    grant = store.upload_grant("exports/t/")
    builder = EnvironBuilder(
        path="/objects",
        method="POST",
        data={**grant.fields, "key": "exports/t/f", "file": (io.BytesIO(b"x" * 300_000), "f")},
    )
    environ = builder.get_environ()
    body = environ["wsgi.input"].read()
    environ["wsgi.input"] = io.BytesIO(body[: len(body) // 2])  # the client went away halfway
    response, status, _ = run_wsgi_app(objects_app(store), environ)
    assert status.startswith("400"), b"".join(response)
    assert store.list("") == []
    assert local_harness.leftovers() == []


def test_a_large_upload_streams_to_disk(local_harness: Harness, tmp_path: Path) -> None:
    store = local_harness.store
    grant = store.upload_grant("exports/big/")
    # The form is written to disk first and fed to the app directly: werkzeug's development server
    # itself reads up to 10 MB after each response, which would blur what the app holds.
    boundary = "----workbench-boundary"
    fields = {**grant.fields, "key": "exports/big/large.bin"}
    body_path = tmp_path / "form.bin"
    with body_path.open("wb") as body:
        for name, value in fields.items():
            body.write(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            )
        body.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="large.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        for chunk in stream(40 * MIB):
            body.write(chunk)
        body.write(f"\r\n--{boundary}--\r\n".encode())
    with body_path.open("rb") as body:
        environ = EnvironBuilder(
            path="/objects",
            method="POST",
            input_stream=body,
            content_length=body_path.stat().st_size,
            content_type=f"multipart/form-data; boundary={boundary}",
        ).get_environ()
        tracemalloc.start()
        try:
            response, status, _ = run_wsgi_app(objects_app(store), environ, buffered=True)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert status.startswith("204"), b"".join(response)
    assert store.size("exports/big/large.bin") == 40 * MIB
    hasher = hashlib.sha256()
    for chunk in store.read("exports/big/large.bin"):
        hasher.update(chunk)
    assert hasher.hexdigest() == digest_of(40 * MIB)
    assert peak < 4 * MIB, f"peak {peak / MIB:.1f} MiB"


def test_the_app_works_mounted_at_objects(tmp_path: Path) -> None:
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    store = LocalObjectStore(tmp_path / "objects", public_url="http://gateway", secret=SECRET)
    store.put("exports/m/f.txt", [b"mounted"])
    gateway = DispatcherMiddleware(lambda environ, start_response: [], {"/objects": objects_app(store)})
    client = Client(gateway)
    path = store.presign_get("exports/m/f.txt").removeprefix("http://gateway")
    response = client.get(path)
    assert (response.status_code, response.data) == (200, b"mounted")
    grant = store.upload_grant("exports/m/")
    response = client.post(
        "/objects",
        data={**grant.fields, "key": "exports/m/g.txt", "file": (io.BytesIO(b"posted"), "g.txt")},
    )
    assert response.status_code == 204
    assert b"".join(store.read("exports/m/g.txt")) == b"posted"
    assert client.get("/objects/.partial/x?expires=1&signature=x").status_code == 400


# -- writing durably ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 4095, 4097, MIB + 1, 5 * MIB + 3])
@pytest.mark.parametrize("direct", [True, False], ids=["direct", "page-cache"])
def test_a_durable_file_holds_exactly_the_bytes_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int, direct: bool
) -> None:
    import shared.core.durable

    if not direct:  # as on a filesystem without direct I/O
        monkeypatch.setattr(shared.core.durable, "_set_direct", lambda descriptor, on: False)
    data = pattern(7, size)
    path = tmp_path / "file.bin"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    writer = shared.core.durable.DurableWriter(descriptor, size=size)
    try:
        for start in range(0, size, 300_001):  # pieces that fit no block or alignment
            writer.write(data[start : start + 300_001])
        writer.finish()
    finally:
        writer.close()
        os.close(descriptor)
    assert writer.size == size
    assert path.read_bytes() == data


@pytest.mark.parametrize("hint", [None, 5 * MIB, 9 * MIB, 3])
def test_a_blob_is_the_stream_whatever_its_size_hint(local_harness: Harness, hint: int | None) -> None:
    pieces = [pattern(index, 65_537) for index in range(81)]  # 5,308,497 bytes: no multiple of a block
    content = b"".join(pieces)
    blob = local_harness.store.put_blob(iter(pieces), size=hint)
    assert (blob.size, blob.sha256) == (len(content), hashlib.sha256(content).hexdigest())
    assert b"".join(local_harness.store.read(blob.key)) == content


def test_downloads_are_sent_by_the_kernel_where_the_server_allows(
    local_harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shared.adapters.objectstore.local

    sent: list[tuple[int, int]] = []
    original = shared.adapters.objectstore.local._sent_by_kernel

    def spying(handle: Any, connection: socket.socket, start: int, length: int) -> Iterator[bytes]:
        sent.append((start, length))
        return original(handle, connection, start, length)

    monkeypatch.setattr(shared.adapters.objectstore.local, "_sent_by_kernel", spying)
    content = pattern(3, 3 * MIB + 17)
    blob = local_harness.store.put_blob([content])
    url = local_harness.store.presign_get(blob.key)
    assert local_harness.fetch is not None
    assert local_harness.fetch.get(url).content == content
    ranged = local_harness.fetch.get(url, headers={"Range": "bytes=1000-2000999"})
    assert (ranged.status_code, ranged.content) == (206, content[1000:2001000])
    assert sent == [(0, len(content)), (1000, 2_000_000)]
    # Without the server's socket (another WSGI server, or werkzeug's test client) the app streams it.
    app = objects_app(local_harness.store)
    path, _, query = url.partition("://")[2].partition("/")[2].partition("?")
    body, status, _ = run_wsgi_app(
        app,
        EnvironBuilder(path="/" + path, query_string=query, headers={"Range": "bytes=-5000"}).get_environ(),
    )
    assert (status, b"".join(body)) == ("206 Partial Content", content[-5000:])
    assert len(sent) == 2
