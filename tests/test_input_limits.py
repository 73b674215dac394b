"""Hostile requests at the platform's doors: bodies past their limits (413, read no further), unsigned
events (refused before anything is kept), malformed JSON and text (400 naming the field, never 500),
and the token cookie (taken by forward authentication only)."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.test import Client as WsgiClient
from werkzeug.test import EnvironBuilder, run_wsgi_app

from events import codec, types
from shared.bootstrap import Platform
from shared.domain.deadletters import DATA_LIMIT
from shared.serving import registry
from shared.tools.gateway import Gateway
from tests.conftest import Api

HUGE = 100 << 20
"""100 MiB: what the attacks announce; never held in memory here (and never read by the server)."""
CLOWDER = "https://clowder.example.org"


class Body(io.RawIOBase):
    """A request body of ``size`` bytes of ``filler`` that exists only as it is read, counting what the
    server reads; reading far past ``allowed`` fails the test rather than fill the memory."""

    def __init__(self, size: int = HUGE, *, allowed: int = 4 << 20, filler: bytes = b" ") -> None:
        self.size = size
        self.allowed = allowed
        self.filler = filler
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self.size - self.read_bytes, 1 << 16)
        if self.read_bytes + count > self.allowed:
            raise AssertionError(f"the server read past {self.allowed} bytes of a {self.size}-byte body")
        buffer[:count] = (self.filler * (count // len(self.filler) + 1))[:count]
        self.read_bytes += count
        return count


def send(
    app: Any,
    path: str,
    body: Body,
    *,
    chunked: bool = False,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> tuple[int, Any]:
    """POST ``body`` to a WSGI app as a server hands it over: with its Content-Length, or chunked
    (no length; the server ends the stream)."""
    environ = EnvironBuilder(
        path=path, method="POST", headers=list((headers or {}).items()), content_type=content_type
    ).get_environ()
    environ["wsgi.input"] = body
    if chunked:
        environ.pop("CONTENT_LENGTH", None)
        environ["wsgi.input_terminated"] = True
    else:
        environ["CONTENT_LENGTH"] = str(body.size)
    chunks, status, _ = run_wsgi_app(app, environ, buffered=True)
    payload = b"".join(chunks)
    return int(status.split()[0]), json.loads(payload) if payload else None


@pytest.fixture
def database() -> str:
    """SQLite, unless a test parametrizes ``database`` with "postgresql"."""
    return "sqlite"


@pytest.fixture
def environment(database: str, request: pytest.FixtureRequest) -> dict[str, str]:
    if database == "postgresql":
        return {"WORKBENCH_DATABASE_URL": str(request.getfixturevalue("postgres_url"))}
    return {}


@pytest.fixture
def gateway(platform: Platform) -> Iterator[Gateway]:
    """The local platform's entry point: the API, the /events ingress and the /objects store."""
    served = Gateway(data_dir=platform.data_dir)
    yield served
    assert served.ingress is not None
    served.ingress.wait_idle(10)
    served.ingress.close()


def dead_letter_files(platform: Platform) -> list[Path]:
    return sorted((platform.data_dir / "deadletter").glob("*.json"))


def event_of(
    data: dict[str, Any], *, secret: bytes | None, event_type: str = types.TRANSFER_REQUESTED
) -> Any:
    return codec.new_event(event_type, data, source=CLOWDER, secret=secret)


TRANSFER = {"clowder_url": CLOWDER, "dataset_id": "42", "email": "nobody@example.org"}


# --- 7. size limits ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/authenticate", "/api/register", "/api/stacks", "/api/version", "/"])
def test_a_100_mib_api_body_is_refused_before_a_byte_is_read(gateway: Gateway, path: str) -> None:
    """Also where no body is expected: functions-framework would read it after any other answer."""
    body = Body(allowed=0)
    status, reply = send(gateway, path, body)
    assert status == 413, reply
    assert "WORKBENCH_MAX_BODY_BYTES" in reply["Error"]
    assert body.read_bytes == 0


def test_a_chunked_api_body_is_read_only_up_to_the_limit(gateway: Gateway, platform: Platform) -> None:
    limit = platform.settings.server.max_body_bytes
    body = Body(allowed=limit + (1 << 16))
    status, reply = send(gateway, "/api/authenticate", body, chunked=True)
    assert status == 413, reply
    assert limit <= body.read_bytes <= limit + (1 << 16)


@pytest.mark.parametrize("environment", [{"WORKBENCH_MAX_BODY_BYTES": "2048"}])
def test_the_api_body_limit_is_a_setting(gateway: Gateway) -> None:
    padded = json.dumps({"username": "admin", "password": "x" * 4000}).encode()
    response = WsgiClient(gateway).post("/api/authenticate", data=padded, content_type="application/json")
    assert response.status_code == 413
    assert "2048" in response.get_json()["Error"]


def test_an_account_package_of_the_whole_catalog_fits_the_body_limit(api: Api, platform: Platform) -> None:
    admin = api.admin()
    specs = api.call("GET", "/api/services?catalog=system", admin).get_json()
    account = {
        "namespace": "carol",
        "name": "Carol",
        "email": "carol@example.org",
        "password": "carol-password",
    }
    package = json.dumps({"account": account, "services": specs, "stacks": []}).encode()
    assert len(package) < platform.settings.server.max_body_bytes // 2, len(package)
    response = api.call("POST", "/api/accounts/import", admin, data=package, content_type="application/json")
    assert response.status_code == 200, response.get_json()


def test_a_100_mib_event_is_refused_unread_and_kept_nowhere(gateway: Gateway, platform: Platform) -> None:
    headers, _ = codec.to_http(event_of(TRANSFER, secret=platform.event_secret), "binary")
    body = Body(allowed=0)
    status, reply = send(gateway, "/events", body, headers=headers)
    assert status == 413, reply
    assert "WORKBENCH_MAX_EVENT_BYTES" in reply["Error"]
    assert body.read_bytes == 0
    chunked = Body(allowed=platform.settings.server.max_event_bytes + (1 << 16))
    status, _ = send(gateway, "/events", chunked, headers=headers, chunked=True)
    assert status == 413
    assert gateway.ingress is not None and gateway.ingress.wait_idle(10)
    assert dead_letter_files(platform) == []
    assert platform.store.list_dead_letters(10) == []


@pytest.mark.parametrize("name", ["transfer", registry.DEAD_LETTER_FUNCTION, "stack_status"])
def test_event_functions_refuse_a_100_mib_event_unread(api: Api, platform: Platform, name: str) -> None:
    """On the cluster events reach the functions from the Broker: each keeps the limit too."""
    headers, _ = codec.to_http(event_of(TRANSFER, secret=platform.event_secret), "binary")
    body = Body(allowed=0)
    app = api.client(name).application
    status, reply = send(app, "/", body, headers=headers)
    assert status == 413, reply
    assert body.read_bytes == 0
    assert platform.store.list_dead_letters(10) == []


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(lambda platform: event_of(TRANSFER, secret=None), id="unsigned"),
        pytest.param(lambda platform: event_of(TRANSFER, secret=b"not-the-pairing-secret"), id="forged"),
        pytest.param(
            lambda platform: codec.Event(
                {**event_of(TRANSFER, secret=platform.event_secret).attributes, "subject": "changed"},
                event_of(TRANSFER, secret=None).data,
            ),
            id="altered",
        ),
    ],
)
@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_the_ingress_refuses_unsigned_events_and_keeps_nothing(
    gateway: Gateway, platform: Platform, event: Any, mode: codec.Mode
) -> None:
    """Checked before the 202: no delivery, no retry, no dead letter (file or record)."""
    headers, body = codec.to_http(event(platform), mode)
    response = WsgiClient(gateway).post("/events", headers=headers, data=body)
    assert response.status_code == 401
    assert "wbsignature" in response.get_json()["Error"]
    assert gateway.ingress is not None and gateway.ingress.wait_idle(10)
    assert dead_letter_files(platform) == []
    assert platform.store.list_dead_letters(10) == []
    assert platform.store.list_transfers() == []


@pytest.mark.parametrize("environment", [{"WORKBENCH_REQUIRE_SIGNATURES": "false"}])
def test_without_required_signatures_the_ingress_takes_unsigned_events(
    gateway: Gateway, platform: Platform
) -> None:
    headers, body = codec.to_http(event_of(TRANSFER, secret=None), "binary")
    assert WsgiClient(gateway).post("/events", headers=headers, data=body).status_code == 202


def test_a_dead_letter_keeps_only_an_excerpt_of_the_data(gateway: Gateway, platform: Platform) -> None:
    """A signed event the function refuses for good (nobody has the e-mail) is dead-lettered with the
    start of its data and a marker, in the store and in the ingress's folder."""
    data = {**TRANSFER, "folders": ["x" * 1000] * 200}
    event = event_of(data, secret=platform.event_secret)
    assert len(event.data) > 10 * DATA_LIMIT
    headers, body = codec.to_http(event, "binary")
    assert WsgiClient(gateway).post("/events", headers=headers, data=body).status_code == 202
    assert gateway.ingress is not None and gateway.ingress.wait_idle(30)
    (kept,) = platform.store.list_dead_letters(10)
    (file,) = dead_letter_files(platform)
    written = json.loads(file.read_text())
    for text in (kept.data, written["data"]):
        assert text.startswith(event.data[:100].decode())
        assert text.endswith(f"… [{len(event.data) - DATA_LIMIT} more bytes not kept]")
        assert len(text.encode()) < DATA_LIMIT + 100
    assert file.name.endswith(".json") and event.id not in file.name  # named by a digest


def test_the_dead_letter_sink_keeps_only_an_excerpt(api: Api, platform: Platform) -> None:
    attributes = {
        **event_of(TRANSFER, secret=None).attributes,
        "subject": "s" * 5000,
        "knativeerrordest": "http://transfer.workbench.svc.cluster.local",
        "knativeerrorcode": "400",
    }
    data = json.dumps({"junk": "x" * (200 << 10)}).encode()
    headers, body = codec.to_http(codec.Event(attributes, data), "binary")
    response = api.client(registry.DEAD_LETTER_FUNCTION).post("/", headers=headers, data=body)
    assert response.status_code == 202
    (kept,) = platform.store.list_dead_letters(10)
    assert kept.data.endswith("more bytes not kept]") and len(kept.data) < DATA_LIMIT + 100
    assert kept.subject.endswith("more characters not kept]") and len(kept.subject) < 1100


@pytest.mark.parametrize("environment", [{"WORKBENCH_MAX_UPLOAD_BYTES": "1000"}])
def test_uploads_past_their_limit_are_refused_and_leave_nothing(gateway: Gateway, platform: Platform) -> None:
    from shared.adapters.objectstore.local import FORM_OVERHEAD, LocalObjectStore

    store = platform.objects
    assert isinstance(store, LocalObjectStore) and store.max_upload_bytes == 1000
    grant = store.upload_grant("exports/e1/", 300)
    client = WsgiClient(gateway)

    def upload(content: bytes) -> Any:
        return client.post(
            "/objects",
            data={**grant.fields, "key": "exports/e1/${filename}", "file": (io.BytesIO(content), "f.bin")},
        )

    assert upload(b"x" * 1000).status_code == 204
    response = upload(b"y" * 1001)
    assert response.status_code == 413
    assert "WORKBENCH_MAX_UPLOAD_BYTES" in response.get_json()["Error"]
    assert b"".join(store.read("exports/e1/f.bin")) == b"x" * 1000  # the refused file replaced nothing
    assert list((store.root / ".partial").glob("*")) == []
    body = Body(allowed=0)
    status, reply = send(gateway, "/objects", body, content_type="multipart/form-data; boundary=x")
    assert status == 413, reply
    assert body.read_bytes == 0
    chunked = Body(allowed=1000 + FORM_OVERHEAD + (1 << 16))
    status, _ = send(
        gateway, "/objects", chunked, chunked=True, content_type="multipart/form-data; boundary=x"
    )
    assert status in (400, 413)  # filler is no form: refused as such, or for its size, never read whole


def test_an_s3_upload_grant_states_the_limit() -> None:
    import moto

    from shared.adapters.objectstore.s3 import S3ObjectStore

    with moto.mock_aws():
        store = S3ObjectStore(
            bucket="limits",
            access_key="testing",
            secret_key="testing",
            create_bucket=True,
            max_upload_bytes=12345,
        )
        grant = store.upload_grant("exports/e1/", 300)
    policy = json.loads(base64.b64decode(grant.fields["policy"]))
    assert ["content-length-range", 0, 12345] in policy["conditions"]


class _Quiet(WSGIRequestHandler):
    def log(self, type: str, message: str, *args: Any) -> None:
        pass


@pytest.fixture
def served(gateway: Gateway) -> Iterator[tuple[str, int]]:
    server: BaseWSGIServer = make_server("127.0.0.1", 0, gateway, threaded=True, request_handler=_Quiet)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield "127.0.0.1", server.server_port
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("path", "content_type", "size"),
    [
        ("/api/authenticate", "application/json", HUGE),
        ("/events", "application/cloudevents+json", HUGE),
        ("/objects", "multipart/form-data; boundary=x", 8 << 30),  # uploads may be 5 GiB by default
    ],
)
def test_over_http_the_413_comes_before_the_body(
    served: tuple[str, int], path: str, content_type: str, size: int
) -> None:
    """A client announcing more than the limit and sending 1 KiB gets its 413 at once: nobody waits
    for the rest."""
    started = time.monotonic()
    with socket.create_connection(served, timeout=10) as connection:
        connection.sendall(
            f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {size}\r\n\r\n".encode()
            + b" " * 1024
        )
        reply = connection.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert time.monotonic() - started < 5


# --- 8. malformed input: 400 naming the field, never 500 ----------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000
HUGE_INTEGER = b"1" + b"0" * 100_000


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (DEEP, "body"),
        (b'{"username": ' + DEEP + b', "password": "x"}', "body"),
        (b'{"username": ' + b"[" * 100 + b"]" * 100 + b', "password": "x"}', "username.0.0.0.0.0.…"),
        (b'{"username": ' + HUGE_INTEGER + b', "password": "x"}', "username"),
        (b'{"username": "\\ud800", "password": "x"}', "username"),
        (b'{"username": "admin", "password": "\\udfff"}', "password"),
        (b'{"username": "\xed\xa0\x80", "password": "x"}', "body"),  # a surrogate encoded as UTF-8
        (b'{"username": "admin", "password": NaN}', "body"),
    ],
    ids=["deep", "deep-field", "deeper-than-64", "huge-integer", "surrogate", "surrogate-2", "cesu", "nan"],
)
def test_malformed_login_bodies_are_400_naming_the_field(api: Api, body: bytes, field: str) -> None:
    response = api.call("POST", "/api/authenticate", data=body, content_type="application/json")
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["Error"].startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/stacks", b'{"key": "\\ud800"}', "key"),
        ("POST", "/api/services", b'{"key": "\\ud800", "name": "x"}', "key"),
        ("PUT", "/api/services/x", b'{"key": "x", "config": [{"name": "\\udbff"}]}', "config.0.name"),
        ("POST", "/api/exports", b'{"folder": "\\ud800", "name": "x"}', "folder"),
        (
            "POST",
            "/api/exports",
            b'{"folder": "a", "name": "x", "description": ' + HUGE_INTEGER + b"}",
            "description",
        ),
        ("POST", "/api/transfers", b'{"datasetId": "\\ud800"}', "datasetId"),
    ],
)
def test_malformed_user_bodies_are_400_naming_the_field(
    api: Api, method: str, path: str, body: bytes, field: str
) -> None:
    token = api.make_user()
    response = api.call(method, path, token, data=body, content_type="application/json")
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["Error"].startswith(f"{field}: ")


@pytest.mark.parametrize("token", ["é", "\u2603" * 3, "\ud800"])
def test_non_ascii_tokens_of_links_are_400_naming_the_token(api: Api, token: str) -> None:
    api.make_user()
    body = json.dumps({"u": "alice", "t": token}).encode()  # "\ud800" travels as its escape
    response = api.call("PUT", "/api/register/verify", data=body, content_type="application/json")
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["Error"].startswith("t: ")
    # In a query a lone surrogate can only be its UTF-8 bytes, which the query keeps percent-encoded:
    # an ASCII token that matches none.
    query = f"u=alice&t={quote(token, errors='surrogatepass')}"
    for decision in ("approve", "deny"):
        response = api.call("GET", f"/api/register/{decision}?{query}")
        assert response.status_code == (404 if token == "\ud800" else 400), response.get_json()
        if token != "\ud800":
            assert response.get_json()["Error"].startswith("t: ")


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("expires=9999999999&signature=%C3%A9", 400, "signature"),
        ("expires=9999999999&signature=%ED%A0%80", 400, "signature"),
        ("expires=%C2%B2&signature=abc", 400, "expires"),  # "²" passes isdigit() and fails int()
        ("expires=" + "9" * 100_000 + "&signature=abc", 400, "expires"),
        ("expires=9999999999&signature=" + "0" * 64, 403, None),
    ],
)
def test_object_urls_with_malformed_signatures_are_refused(
    gateway: Gateway, platform: Platform, query: str, status: int, field: str | None
) -> None:
    platform.objects.put("exports/e1/f.txt", [b"data"])
    response = WsgiClient(gateway).get(f"/objects/exports/e1/f.txt?{query}")
    assert response.status_code == status, response.get_json()
    if field:
        assert response.get_json()["Error"].startswith(f"{field}: ")


def test_upload_grants_with_non_ascii_signatures_are_400(gateway: Gateway, platform: Platform) -> None:
    grant = platform.objects.upload_grant("exports/e1/", 300)
    response = WsgiClient(gateway).post(
        "/objects",
        data={**grant.fields, "signature": "é" * 64, "key": "exports/e1/f", "file": (io.BytesIO(b"x"), "f")},
    )
    assert response.status_code == 400
    assert response.get_json()["Error"].startswith("signature: ")


def test_object_ranges_beyond_any_size_are_ignored(gateway: Gateway, platform: Platform) -> None:
    platform.objects.put("exports/e1/f.txt", [b"data"])
    url = platform.objects.presign_get("exports/e1/f.txt").split("/objects/", 1)[1]
    response = WsgiClient(gateway).get(f"/objects/{url}", headers={"Range": "bytes=" + "9" * 5000 + "-"})
    assert response.status_code == 200
    assert response.data == b"data"


def _binary(event: Any, data: bytes) -> tuple[dict[str, str], bytes]:
    headers, _ = codec.to_http(event, "binary")
    return headers, data


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (DEEP, "data"),
        (b'{"dataset_id": ' + HUGE_INTEGER + b"}", "data.dataset_id"),
        (b'{"dataset_id": "\\ud800"}', "data.dataset_id"),
        (b'{"email": "a", "x": {"y": "\\udc00"}}', "data.x.y"),
    ],
    ids=["deep", "huge-integer", "surrogate", "nested-surrogate"],
)
def test_malformed_event_data_is_400_naming_the_field(
    gateway: Gateway, api: Api, platform: Platform, data: bytes, field: str
) -> None:
    """At the ingress (before the signature, which such data cannot carry) and at the function."""
    headers, body = _binary(event_of(TRANSFER, secret=platform.event_secret), data)
    for app in (gateway, api.client("transfer").application):
        path = "/events" if app is gateway else "/"
        response = WsgiClient(app).post(path, headers=headers, data=body)
        assert response.status_code == 400, response.get_json()
        assert f"{field}" in response.get_json()["Error"]
    assert platform.store.list_dead_letters(10) == []


@pytest.mark.parametrize(
    ("envelope", "field"),
    [
        ({"source": "\\ud800"}, "source"),
        ({"subject": "\\udfff"}, "subject"),
        ({"wbsignature": "v1=\\u00e9"}, "wbsignature"),
        ({"data": {"email": "\\ud800"}}, "data.email"),
    ],
)
def test_malformed_structured_events_are_refused_not_500(
    gateway: Gateway, api: Api, platform: Platform, envelope: dict[str, str], field: str
) -> None:
    headers, body = codec.to_http(event_of(TRANSFER, secret=platform.event_secret), "structured")
    document = json.loads(body)
    document.update(envelope)
    # The escapes are written as they would arrive: json.dumps would escape the backslash.
    raw = json.dumps(document).replace("\\\\u", "\\u").encode()
    for app, path in ((gateway, "/events"), (api.client("transfer").application, "/")):
        response = WsgiClient(app).post(path, headers=headers, data=raw)
        assert response.status_code in (400, 401), response.get_json()
        assert field.split(".")[0] in response.get_json()["Error"]


NUL_REQUESTS = [
    ("GET", "/api/services/x%00", None, "key"),
    ("GET", "/api/accounts/alice%00", None, "account_id"),
    ("GET", "/api/services?catalog=user%00", None, "catalog"),
    ("POST", "/api/authenticate", b'{"username": "alice\\u0000", "password": "x"}', "username"),
    ("POST", "/api/stacks", b'{"key": "\\u0000"}', "key"),
    (
        "POST",
        "/api/services",
        b'{"key": "k", "config": [{"name": "a", "value": "\\u0000"}]}',
        "config.0.value",
    ),
]
"""A request with a NUL in a name, a query or a body: method, path, body and the field its error names."""
DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("database", DATABASES)
@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    NUL_REQUESTS,
    ids=[f"{method} {path}" for method, path, _, _ in NUL_REQUESTS],
)
def test_nul_in_names_queries_and_bodies_is_400_naming_the_field(
    api: Api, database: str, method: str, path: str, body: bytes | None, field: str
) -> None:
    """PostgreSQL keeps no NUL in text: refused at the door, it is a 400, not the database's 503."""
    token = api.make_user()
    response = api.call(method, path, token, data=body, content_type="application/json")
    assert response.status_code == 400, (path, response.get_json())
    assert response.get_json()["Error"].startswith(f"{field}: "), response.get_json()


@pytest.mark.parametrize("database", DATABASES)
def test_nul_in_an_event_is_400_naming_the_field(gateway: Gateway, platform: Platform, database: str) -> None:
    data = b'{"clowder_url": "https://clowder.example.org", "dataset_id": "1", "email": "a\\u0000"}'
    headers, body = _binary(event_of(TRANSFER, secret=platform.event_secret), data)
    response = WsgiClient(gateway).post("/events", headers=headers, data=body)
    assert response.status_code == 400
    assert "data.email" in response.get_json()["Error"]


def test_a_token_nested_beyond_the_parser_is_401_not_500(api: Api) -> None:
    header = base64.urlsafe_b64encode(b"[" * 30_000).rstrip(b"=").decode()
    response = api.call("GET", "/api/stacks", f"{header}.e30.c2ln")
    assert response.status_code == 401


# --- 11. the token cookie -----------------------------------------------------------------------------


def test_a_token_cookie_logs_in_nowhere_but_check_token(api: Api, platform: Platform) -> None:
    """A page elsewhere can make the browser send its cookie, not an Authorization header: only forward
    authentication, which changes nothing, takes the cookie."""
    token = api.make_user()
    sid = api.call("POST", "/api/stacks", token, json={"key": "cloudcmd"}).get_json()["id"]
    for name in ("stacks", "start", "stop", "accounts", "services", "check_token"):
        api.client(name).set_cookie("token", token)
    assert api.call("GET", "/api/check_token").status_code == 200
    assert api.call("GET", "/api/stacks").status_code == 401
    assert api.call("POST", "/api/stacks", json={"key": "cloudcmd"}).status_code == 401
    assert api.call("GET", f"/api/start/{sid}").status_code == 401
    assert api.call("GET", f"/api/stop/{sid}").status_code == 401
    assert api.call("DELETE", f"/api/stacks/{sid}").status_code == 401
    assert api.call("PUT", "/api/accounts/alice", json={"namespace": "alice"}).status_code == 401
    ((owner, stack),) = platform.store.list_all_stacks()
    assert (owner, stack.status) == ("alice", "stopped")


def test_the_management_page_sends_the_bearer_header_not_the_cookie() -> None:
    script = (Path(__file__).resolve().parent.parent / "shared" / "data" / "ui" / "js" / "api.js").read_text()
    assert "Authorization = `Bearer ${token}`" in script
    assert 'credentials: "omit"' in script
    assert "cookie" not in script.lower()
