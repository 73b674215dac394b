"""The Clowder client against the Clowder test server, for Clowder 1.x and 2.x alike."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from shared.adapters.clowder import ClowderClient, RestartRequired
from shared.core.errors import Forbidden, InvalidInput, NotFound, Unavailable
from tests.clowder_server import ClowderServer, route_templates

API_DOCUMENTS = Path(__file__).resolve().parent / "data" / "clowder"
API_KEY = "test-api-key-5d1f0c9e"
MEGABYTE = 1 << 20


@pytest.fixture(params=[1, 2], ids=["clowder1", "clowder2"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ClowderServer]:
    with ClowderServer(tmp_path / "clowder", version=request.param, api_key=API_KEY) as running:
        yield running


def connect(server: ClowderServer, base_url: str | None = None, **options: Any) -> ClowderClient:
    # A small page size makes Clowder 2's paging show with a few dozen files; short waits keep tests fast.
    settings: dict[str, Any] = {
        "version": server.version,
        "timeout": 2.0,
        "retries": 3,
        "backoff": 0.01,
        "page_size": 10,
    } | options
    return ClowderClient(base_url or server.url, API_KEY, **settings)


@pytest.fixture
def client(server: ClowderServer) -> Iterator[ClowderClient]:
    with connect(server) as connected:
        yield connected


def write_random_file(path: Path, megabytes: int) -> str:
    """A file of random bytes, written a megabyte at a time; returns its sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as stream:
        for _ in range(megabytes):
            block = os.urandom(MEGABYTE)
            digest.update(block)
            stream.write(block)
    return digest.hexdigest()


def blob_path(server: ClowderServer) -> str:
    return "/api/files/*/blob" if server.version == 1 else "/api/v2/files/*"


def assert_no_key(error: BaseException) -> None:
    assert API_KEY not in str(error)


class HashingSink:
    """Keeps only a running sha256 and a byte count, as the transfer does."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.size = 0

    def __call__(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.size += len(chunk)


# ---------------------------------------------------------------------- reading


def test_detects_the_version(server: ClowderServer) -> None:
    with ClowderClient(server.url, API_KEY) as detecting:
        assert detecting.version == server.version
    status = server.requests_to("/api/v2/status")
    assert len(status) == 1
    assert status[0].header("X-API-Key") is None  # the probe carries no key


def test_reads_dataset_metadata_exactly(server: ClowderServer, client: ClowderClient) -> None:
    dataset_id = server.add_dataset("  Données brutes: sol/2024 ", "Carottes de sol, campagne été")

    dataset = client.dataset(dataset_id)

    assert (dataset.id, dataset.name, dataset.description) == (
        dataset_id,
        "  Données brutes: sol/2024 ",
        "Carottes de sol, campagne été",
    )


def test_lists_every_file_with_its_folder_path(server: ClowderServer, client: ClowderClient) -> None:
    dataset_id = server.add_dataset("Field campaign")
    tree = {f"top-{number}.txt": f"top {number}".encode() for number in range(4)}
    tree |= {f"raw/{number}.csv": b"x" * number for number in range(8)}
    tree |= {f"raw/2024/june/{number}.csv": b"june" * number for number in range(9)}
    tree |= {f"raw/2024/{number}.dat": b"y" for number in range(3)}
    tree |= {f"notes/été {number}.md": b"# notes" for number in range(3)}
    ids = server.add_files(dataset_id, tree)
    server.add_folder(dataset_id, "empty")
    assert len(tree) > 25

    files = client.files(dataset_id)

    assert sorted(file.path for file in files) == sorted(tree)
    by_path = {file.path: file for file in files}
    for path, content in tree.items():
        assert by_path[path].id == ids[path]
        assert by_path[path].size == len(content)
        assert by_path[path].name == path.rsplit("/", 1)[-1]
    if server.version == 2:
        # 27 files at 10 a page: the client went on to the third page, asking its own page size.
        pages = server.requests_to(f"/api/v2/datasets/{dataset_id}/files")
        assert [request.query["skip"] for request in pages] == [["0"], ["10"], ["20"]]
        assert all(request.query["limit"] == ["10"] for request in pages)
    else:
        assert server.requests_to("/api/files/*/paths")


def test_returns_names_as_clowder_has_them(server: ClowderServer, client: ClowderClient) -> None:
    # Normalising and refusing hostile names is the caller's job; the client must not hide them.
    dataset_id = server.add_dataset("Hostile")
    folder_id = server.add_folder(dataset_id, "..")
    server.add_file(dataset_id, "passwd ", b"x", folder_id=folder_id)

    (file,) = client.files(dataset_id)

    assert (file.name, file.path) == ("passwd ", "../passwd ")


def test_lists_an_empty_dataset(server: ClowderServer, client: ClowderClient) -> None:
    assert client.files(server.add_dataset("Empty")) == []


def test_downloads_a_large_file_byte_for_byte(
    server: ClowderServer, client: ClowderClient, tmp_path: Path
) -> None:
    source = tmp_path / "large.bin"
    expected = write_random_file(source, 5)
    dataset_id = server.add_dataset("Large")
    file_id = server.add_file(dataset_id, "large.bin", source=source)
    (listed,) = client.files(dataset_id)

    digest = hashlib.sha256()
    chunks = 0
    for chunk in client.download(file_id, size=listed.size):
        assert len(chunk) < 5 * MEGABYTE
        digest.update(chunk)
        chunks += 1

    assert digest.hexdigest() == expected
    assert chunks > 1


def test_resumes_a_truncated_body_with_a_range_request(
    server: ClowderServer, client: ClowderClient, tmp_path: Path
) -> None:
    source = tmp_path / "data.bin"
    expected = write_random_file(source, 3)
    file_id = server.add_file(server.add_dataset("Resume"), "data.bin", source=source)
    server.ranges = True
    server.truncate(blob_path(server), after_bytes=MEGABYTE + 123, times=1)
    sink = HashingSink()

    for chunk in client.download(file_id, size=3 * MEGABYTE):
        sink(chunk)

    assert sink.size == 3 * MEGABYTE
    assert sink.digest.hexdigest() == expected
    downloads = server.requests_to(blob_path(server))
    assert [request.header("Range") for request in downloads] == [None, f"bytes={MEGABYTE + 123}-"]


def test_without_ranges_a_broken_download_must_restart(
    server: ClowderServer, client: ClowderClient, tmp_path: Path
) -> None:
    source = tmp_path / "data.bin"
    expected = write_random_file(source, 2)
    file_id = server.add_file(server.add_dataset("Restart"), "data.bin", source=source)
    server.ranges = False
    server.truncate(blob_path(server), after_bytes=300_000, times=1)
    sink = HashingSink()

    with pytest.raises(RestartRequired) as raised:
        for chunk in client.download(file_id):
            sink(chunk)

    assert raised.value.received == sink.size == 300_000
    assert "start again from byte 0" in str(raised.value)
    assert_no_key(raised.value)

    # Starting again from byte 0 is the consumer's part, and gives the whole file.
    sink = HashingSink()
    for chunk in client.download(file_id):
        sink(chunk)
    assert sink.size == 2 * MEGABYTE
    assert sink.digest.hexdigest() == expected
    assert all(request.header("Range") is None for request in server.requests_to(blob_path(server)))


def test_a_wrong_content_length_is_unavailable(server: ClowderServer, client: ClowderClient) -> None:
    file_id = server.add_file(server.add_dataset("Wrong"), "data.bin", b"z" * 10_000)
    server.wrong_length(blob_path(server), declared=4_000)

    with pytest.raises(Unavailable, match="Content-Length") as raised:
        b"".join(client.download(file_id, size=10_000))
    assert_no_key(raised.value)


@pytest.mark.parametrize("credentials", ["", "user:secret@"], ids=["kept-alive", "httpx"])
def test_a_body_without_length_that_ends_short_must_restart(tmp_path: Path, credentials: str) -> None:
    # Clowder 2 streams downloads without Content-Length or ranges; only the listed size shows a short
    # body. Downloads go over kept-alive connections of their own, or through httpx where it is needed:
    # for a proxy the environment names, or for credentials in the URL (as here).
    with ClowderServer(
        tmp_path / "clowder", version=2, api_key=API_KEY, ranges=False, lengths=False
    ) as server:
        file_id = server.add_file(server.add_dataset("Streamed"), "data.bin", b"a" * 1000 + b"b" * 500)
        url = server.url.replace("://", f"://{credentials}")
        with connect(server, base_url=url) as client:
            with pytest.raises(RestartRequired) as raised:
                b"".join(client.download(file_id, size=2000))
            assert raised.value.received == 1500
            server.truncate(blob_path(server), after_bytes=1200, times=1)
            with pytest.raises(RestartRequired) as raised:
                b"".join(client.download(file_id, size=1500))
            assert raised.value.received == 1200
            assert b"".join(client.download(file_id)) == b"a" * 1000 + b"b" * 500
        # httpx sends the URL's credentials as Basic authorization; the kept-alive connections have none.
        downloads = server.requests_to(blob_path(server))
        assert len(downloads) == 3
        assert all(
            (request.header("Authorization") is not None) == bool(credentials) for request in downloads
        )


def test_redirects_are_not_followed(server: ClowderServer, client: ClowderClient) -> None:
    # Following one would send the key to whatever host the Location names.
    dataset_id = server.add_dataset("Moved")
    server.redirect(f"*/datasets/{dataset_id}", f"{server.url}/elsewhere/{dataset_id}")

    with pytest.raises(Unavailable, match="redirected") as raised:
        client.dataset(dataset_id)
    assert [request.path for request in server.requests] == [
        f"{'/api' if server.version == 1 else '/api/v2'}/datasets/{dataset_id}"
    ]
    assert_no_key(raised.value)


def test_downloading_50_megabytes_holds_little_memory(
    server: ClowderServer, client: ClowderClient, tmp_path: Path
) -> None:
    source = tmp_path / "big.bin"
    expected = write_random_file(source, 50)
    file_id = server.add_file(server.add_dataset("Big"), "big.bin", source=source)
    sink = HashingSink()

    tracemalloc.start()
    try:
        for chunk in client.download(file_id, size=50 * MEGABYTE):
            sink(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert sink.digest.hexdigest() == expected
    # The server thread's allocations count too; both sides stream, so the peak is a few blocks.
    assert peak < 5 * MEGABYTE, f"peak {peak / MEGABYTE:.1f} MB while downloading 50 MB"


# ---------------------------------------------------------------------- failures


def test_retries_server_errors(
    server: ClowderServer, client: ClowderClient, caplog: pytest.LogCaptureFixture
) -> None:
    dataset_id = server.add_dataset("Flaky")
    server.fail(f"*/datasets/{dataset_id}", status=503, times=2)

    with caplog.at_level("WARNING", logger="shared.adapters.clowder"):
        assert client.dataset(dataset_id).name == "Flaky"
    assert len(server.requests_to(f"*/datasets/{dataset_id}")) == 3
    prefix = "/api/v2" if server.version == 2 else "/api"
    assert [record.getMessage() for record in caplog.records] == [
        f"Clowder at {server.url}: GET {prefix}/datasets/{dataset_id} failed (HTTP 503); "
        f"retrying (attempt {attempt} of 4)"
        for attempt in (2, 3)
    ]


def test_gives_up_on_persistent_server_errors(server: ClowderServer, client: ClowderClient) -> None:
    dataset_id = server.add_dataset("Down")
    server.fail(f"*/datasets/{dataset_id}", status=500)

    with pytest.raises(Unavailable) as raised:
        client.dataset(dataset_id)

    message = str(raised.value)
    assert server.url in message
    assert "read the dataset" in message
    assert "HTTP 500" in message
    assert "after 4 attempts" in message
    assert_no_key(raised.value)
    assert len(server.requests_to(f"*/datasets/{dataset_id}")) == 4


def test_a_refused_key_is_forbidden_at_once(server: ClowderServer) -> None:
    dataset_id = server.add_dataset("Private")
    stranger = ClowderClient(server.url, "not-the-key", version=server.version, backoff=0.01)
    with stranger, pytest.raises(Forbidden, match="Clowder refused the API key") as raised:
        stranger.dataset(dataset_id)
    assert "not-the-key" not in str(raised.value)
    assert len(server.requests_to(f"*/datasets/{dataset_id}")) == 1


def test_missing_things_are_not_found(server: ClowderServer, client: ClowderClient) -> None:
    with pytest.raises(NotFound, match="dataset '0123456789abcdef01234567' not found"):
        client.dataset("0123456789abcdef01234567")
    with pytest.raises(NotFound):
        client.files("0123456789abcdef01234567")
    with pytest.raises(NotFound, match="file 'fedcba9876543210fedcba98' not found"):
        b"".join(client.download("fedcba9876543210fedcba98"))
    assert len(server.requests_to("*/datasets/0123456789abcdef01234567")) == 1


def test_slow_answers_are_retried_then_unavailable(server: ClowderServer) -> None:
    dataset_id = server.add_dataset("Slow")
    with connect(server, timeout=0.3, retries=2) as impatient:
        server.slow(f"*/datasets/{dataset_id}", seconds=1.0, times=1)
        assert impatient.dataset(dataset_id).name == "Slow"

        server.slow(f"*/datasets/{dataset_id}", seconds=1.0)
        with pytest.raises(Unavailable, match="timed out") as raised:
            impatient.dataset(dataset_id)
    assert_no_key(raised.value)
    assert len(server.requests_to(f"*/datasets/{dataset_id}")) == 2 + 3


def test_the_key_travels_in_the_header_only(server: ClowderServer, client: ClowderClient) -> None:
    dataset_id = server.add_dataset("Keys")
    ids = server.add_files(dataset_id, {"a/b.txt": b"b", "c.txt": b"c"})
    client.files(dataset_id)
    b"".join(client.download(ids["a/b.txt"]))
    created = client.create_dataset("Copy", "")
    client.upload(created, "d/e.txt", b"e", 1)

    header = "X-API-Key" if server.version == 1 else "X-API-KEY"
    assert len(server.requests) > 5
    for request in server.requests:
        assert "key" not in request.query
        assert all(API_KEY not in value for values in request.query.values() for value in values)
        assert request.header(header) == API_KEY


# ---------------------------------------------------------------------- writing


def test_creates_a_dataset_with_folders_and_files(
    server: ClowderServer, client: ClowderClient, tmp_path: Path
) -> None:
    large = tmp_path / "large.bin"
    write_random_file(large, 3)
    dataset_id = client.create_dataset("Export of results", "From the workbench", None)
    uploads: dict[str, bytes] = {
        "README.md": b"# results\n",
        "results/summary.csv": b"a,b\n1,2\n",
        "results/plots/été.png": bytes(range(256)) * 40,
        "results/plots/raw/data.bin": large.read_bytes(),
        "logs/run 1.log": b"",
    }

    file_ids = []
    for path, content in uploads.items():
        if path.endswith("data.bin"):
            with large.open("rb") as stream:
                file_ids.append(client.upload(dataset_id, path, stream, large.stat().st_size))
        elif path.endswith(".csv"):
            chunks = [content[:3], content[3:]]
            file_ids.append(client.upload(dataset_id, path, iter(chunks), len(content)))
        else:
            file_ids.append(client.upload(dataset_id, path, io.BytesIO(content), len(content)))

    assert server.datasets[dataset_id].name == "Export of results"
    assert server.datasets[dataset_id].description == "From the workbench"
    assert server.read_tree(dataset_id) == uploads
    assert sorted(file_ids) == sorted(
        file.id for file in server.files.values() if file.dataset_id == dataset_id
    )
    folder_posts = server.requests_to("*/newFolder" if server.version == 1 else "*/folders", method="POST")
    assert len(folder_posts) == 4  # results, results/plots, results/plots/raw, logs: each once

    # Another client (a retried export) finds the folders there and creates none.
    with connect(server) as again:
        again.upload(dataset_id, "results/plots/raw/more.bin", b"more", 4)
    assert len(server.requests_to("*/newFolder" if server.version == 1 else "*/folders", method="POST")) == 4
    assert server.read_tree(dataset_id)["results/plots/raw/more.bin"] == b"more"
    assert {file.path for file in client.files(dataset_id)} == set(uploads) | {"results/plots/raw/more.bin"}


def test_uploads_below_a_given_folder(server: ClowderServer, client: ClowderClient) -> None:
    dataset_id = client.create_dataset("Nested", "")
    top = server.add_folder(dataset_id, "incoming")
    inner = server.add_folder(dataset_id, "batch 7", top)

    client.upload(dataset_id, "x/y.txt", b"y", 1, folder_id=inner)
    client.upload(dataset_id, "z.txt", b"z", 1, folder_id=top)

    assert server.read_tree(dataset_id) == {"incoming/batch 7/x/y.txt": b"y", "incoming/z.txt": b"z"}


def test_old_clowder1_folders_without_ids(tmp_path: Path) -> None:
    with ClowderServer(tmp_path / "old", version=1, api_key=API_KEY, legacy_new_folder=True) as server:
        with connect(server) as client:
            dataset_id = client.create_dataset("Old", "")
            client.upload(dataset_id, "a/b/c.txt", b"c", 1)
            client.upload(dataset_id, "a/d.txt", b"d", 1)
        assert server.read_tree(dataset_id) == {"a/b/c.txt": b"c", "a/d.txt": b"d"}
        assert len(server.folders) == 2


def test_uploads_are_repeated_only_when_safe(server: ClowderServer, client: ClowderClient) -> None:
    dataset_id = client.create_dataset("Uploads", "")
    upload_path = "*/uploadToDataset/*" if server.version == 1 else "*/datasets/*/files"

    # 503 refuses before acting, and a file can be read again: repeated, stored once.
    server.fail(upload_path, status=503, times=1, method="POST")
    client.upload(dataset_id, "a.txt", io.BytesIO(b"aaa"), 3)
    assert server.read_tree(dataset_id) == {"a.txt": b"aaa"}

    # A 500 may come after the file was stored: not repeated.
    server.fail(upload_path, status=500, times=1, method="POST")
    with pytest.raises(Unavailable, match="HTTP 500"):
        client.upload(dataset_id, "b.txt", io.BytesIO(b"bbb"), 3)

    # A stream of chunks cannot be read twice: not repeated either.
    server.fail(upload_path, status=503, times=1, method="POST")
    with pytest.raises(Unavailable, match="HTTP 503"):
        client.upload(dataset_id, "c.txt", iter([b"ccc"]), 3)

    assert server.read_tree(dataset_id) == {"a.txt": b"aaa"}
    assert len(server.requests_to(upload_path, method="POST")) == 4


def test_an_upload_of_the_wrong_size_is_refused(server: ClowderServer, client: ClowderClient) -> None:
    dataset_id = client.create_dataset("Sizes", "")

    with pytest.raises(InvalidInput, match="announced"):
        client.upload(dataset_id, "short.txt", io.BytesIO(b"abc"), 10)
    with pytest.raises(InvalidInput, match="announced"):
        client.upload(dataset_id, "long.txt", iter([b"abcdef", b"ghij"]), 4)

    assert server.read_tree(dataset_id) == {}


def test_an_upload_path_must_be_relative(client: ClowderClient, server: ClowderServer) -> None:
    dataset_id = client.create_dataset("Paths", "")
    for path in ("/etc/passwd", "a/../b", "a//b", ""):
        with pytest.raises(InvalidInput):
            client.upload(dataset_id, path, b"x", 1)


# ---------------------------------------------------------------------- the test server and the specs


def test_the_server_routes_are_in_the_spec(server: ClowderServer) -> None:
    if server.version == 1:
        spec = yaml.safe_load((API_DOCUMENTS / "clowder-v1-swagger.yml").read_text())
        prefix = "/api"  # the v1 spec's paths are relative to its server URL, .../api
    else:
        spec = json.loads((API_DOCUMENTS / "clowder2-openapi.json").read_text())
        prefix = ""
    documented = {
        (method.upper(), _shape(prefix + path))
        for path, operations in spec["paths"].items()
        for method in operations
        if method in ("get", "post", "put", "patch", "delete")
    }
    for method, template in route_templates(server.version):
        assert (method, _shape(template)) in documented, f"{method} {template} is not in the spec"


def _shape(template: str) -> str:
    """A path template without its parameter names: the spec's {ds_id} and {id} are the same slot."""
    return re.sub(r"\{[^}]*\}", "{}", template)


def test_clowder2_answers_match_the_spec_schemas(tmp_path: Path) -> None:
    spec = json.loads((API_DOCUMENTS / "clowder2-openapi.json").read_text())

    def check(document: Any, schema_name: str) -> None:
        schema = {"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]}
        jsonschema.Draft7Validator(schema).validate(without_nulls(document))

    def without_nulls(document: Any) -> Any:
        # The spec comes from pydantic 1, which writes Optional fields as plain types; Clowder 2 sends them
        # as null, so an absent value stands for null here.
        if isinstance(document, dict):
            return {key: without_nulls(value) for key, value in document.items() if value is not None}
        if isinstance(document, list):
            return [without_nulls(value) for value in document]
        return document

    with ClowderServer(tmp_path / "v2", version=2, api_key=API_KEY) as server:
        dataset_id = server.add_dataset("Schema")
        server.add_files(dataset_id, {"f/a.txt": b"a"})
        base = f"{server.url}/api/v2/datasets/{dataset_id}"
        with httpx.Client(headers={"X-API-KEY": API_KEY}) as http:
            check(http.get(base).json(), "DatasetOut")
            files = http.get(f"{base}/files").json()
            folders = http.get(f"{base}/folders").json()
            status = http.get(f"{server.url}/api/v2/status").json()
    check(files, "Paged")
    check(files["data"][0], "FileOut")
    check(folders, "Paged")
    check(folders["data"][0], "FolderOut")
    check(status, "Status")
    # Asked for no page, Clowder 2 answers the first ten.
    assert files["metadata"] == {"total_count": 1, "skip": 0, "limit": 10}


def test_on_a_production_server_downloads_keep_their_connections(tmp_path: Path) -> None:
    # Cheroot keeps connections open between answers (werkzeug's test server closes each one): the
    # client reuses them, also after an answer it had to retry.
    with ClowderServer(tmp_path / "clowder", 2, API_KEY, server="cheroot", threads=4) as server:
        dataset_id = server.add_dataset("Kept alive")
        contents = {f"f{number}.bin": os.urandom(300_000 + number) for number in range(6)}
        ids = server.add_files(dataset_id, contents)
        server.fail(f"/api/v2/files/{ids['f3.bin']}", 503, times=1)
        with connect(server) as client:
            listed = {file.path: file for file in client.files(dataset_id)}
            for path, data in contents.items():
                assert b"".join(client.download(ids[path], size=listed[path].size)) == data
        assert len(server.requests_to(f"/api/v2/files/{ids['f3.bin']}")) == 2
