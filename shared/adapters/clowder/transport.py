"""Requests to one Clowder instance: its URL, the API-key header, retries, and Clowder's refusals as the
project's own errors; with the small helpers that read Clowder's JSON answers."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from events.ids import CLOWDER_ID_PATTERN, CLOWDER_ID_RULE
from shared.adapters.clowder.multipart import MultipartBody
from shared.core.errors import Forbidden, InvalidInput, NotFound, Unavailable, WorkbenchError
from shared.core.retry import Again, Attempt, Policy, retry_after

# The package's name, as before the client was divided: one logger for every piece of it.
log = logging.getLogger("shared.adapters.clowder")

ERROR_BODY_BYTES = 64 * 1024

_CLOWDER_ID = re.compile(CLOWDER_ID_PATTERN)
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


class Transport:
    """HTTP to one Clowder: ``call`` sends a request with retries and returns a 2xx answer or raises.

    ``key_header`` names the header that carries the API key (it depends on the Clowder version, which
    may be found only by a first request). The key appears in no message or log line."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        key_header: Callable[[], str],
        *,
        timeout: float,
        retries: int,
        backoff: float,
        max_backoff: float,
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
        self.where = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
        self.api_key = api_key
        self.key_header = key_header
        self.timeout = timeout
        self.policy = Policy(retries=max(0, retries), backoff=max(0.0, backoff), max_backoff=max_backoff)
        self.http = httpx.Client(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            headers={"Accept": "application/json"},
        )

    def close(self) -> None:
        self.http.close()

    def get_json(
        self,
        path: str,
        *,
        operation: str,
        subject: tuple[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        response = self.call("GET", path, params=params, operation=operation, subject=subject)
        return self.json(response, operation)

    def call(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        subject: tuple[str, str] | None = None,
        params: dict[str, Any] | None = None,
        json: Any = None,
        body: MultipartBody | None = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        accept_statuses: Iterable[int] = (),
        authenticate: bool = True,
    ) -> httpx.Response:
        """One request with retries; a 2xx (or an accepted status) is returned, anything else raised."""
        idempotent = method in ("GET", "HEAD", "DELETE")
        accepted = set(accept_statuses)

        def attempt(now: Attempt) -> httpx.Response:
            request_headers = dict(headers or {})
            if authenticate:
                request_headers[self.key_header()] = self.api_key
            content: Iterator[bytes] | None = None
            if body is not None:
                content = body.chunks()
                request_headers["Content-Type"] = body.content_type
                if body.length is not None:
                    request_headers["Content-Length"] = str(body.length)
            request = self.http.build_request(
                method,
                self.base_url + path,
                params=params,
                json=json,
                content=content,
                headers=request_headers,
            )
            try:
                response = self.http.send(request, stream=stream)
            except httpx.TransportError as error:
                can_repeat = idempotent or isinstance(error, _NEVER_ARRIVED)
                if body is not None and not body.can_resend():
                    can_repeat = False
                if isinstance(error, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
                    can_repeat = False
                failure = describe(error)
                if not can_repeat or now.last:
                    raise Unavailable(self.failed(operation, failure, now.number)) from None
                raise Again(failure) from None
            status = response.status_code
            if 200 <= status < 300 or status in accepted:
                return response
            retryable = status == 429 or status >= 500
            if not idempotent and status not in _REFUSED_BEFORE_ACTING:
                retryable = False
            if body is not None and not body.can_resend():
                retryable = False
            if retryable and not now.last:
                response.close()
                raise Again(f"HTTP {status}", retry_after(response.headers.get("Retry-After")))
            response.read()
            response.close()
            raise self.error(response, operation, subject, now.number) from None

        return self.policy.run(attempt, self.on_retry(method, path))

    def error(
        self, response: httpx.Response, operation: str, subject: tuple[str, str] | None, attempts: int
    ) -> WorkbenchError:
        """What a refusal means: 401/403 ``Forbidden``, 404 ``NotFound``, 4xx ``InvalidInput``, the rest
        ``Unavailable``."""
        status = response.status_code
        if status in (401, 403):
            return Forbidden(
                f"Clowder refused the API key (HTTP {status}) when asked to {operation} at {self.where}"
            )
        if status == 404:
            if subject is not None:
                return NotFound(
                    subject[0], subject[1], message=f"{subject[0]} '{subject[1]}' not found at {self.where}"
                )
            return NotFound("Clowder resource", message=f"Clowder at {self.where} has no {response.url.path}")
        if 300 <= status < 400:
            return Unavailable(
                f"Clowder at {self.where} redirected the request to {operation} to "
                f"{response.headers.get('Location', 'elsewhere')!r}: check the Clowder URL"
            )
        # A proxy's error page may echo the request's headers: the key is cut out of what Clowder says.
        detail = _detail(response).replace(self.api_key, "[API key]")
        if 400 <= status < 500 and status != 429:
            return InvalidInput(f"Clowder at {self.where} refused to {operation}: HTTP {status} {detail}")
        return Unavailable(self.failed(operation, f"HTTP {status} {detail}".strip(), attempts))

    def failed(self, operation: str, failure: str, attempts: int) -> str:
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return f"Clowder at {self.where} could not {operation}{tries}: {failure}"

    def on_retry(self, method: str, path: str) -> Callable[[int, Again], None]:
        """The log line before repeating ``method path``."""

        def retrying(attempt: int, again: Again) -> None:
            log.warning(
                "Clowder at %s: %s %s failed (%s); retrying (attempt %d of %d)",
                self.where,
                method,
                path,
                again.reason,
                attempt + 1,
                self.policy.retries + 1,
            )

        return retrying

    def json(self, response: httpx.Response, operation: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise Unavailable(
                f"Clowder at {self.where} answered the request to {operation} with something that is not JSON"
            ) from None

    def new_id(self, response: httpx.Response, operation: str) -> str:
        return self.new_id_from(self.json(response, operation), operation)

    def new_id_from(self, answer: Any, operation: str) -> str:
        if isinstance(answer, dict) and answer.get("id"):
            return string(answer["id"])
        raise Unavailable(f"Clowder at {self.where} did not say the new id after we asked it to {operation}")

    def as_object(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise Unavailable(
                f"Clowder at {self.where} answered with {type(value).__name__} where an object was expected"
            )
        return value

    def as_list(self, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise Unavailable(
                f"Clowder at {self.where} answered with {type(value).__name__} where a list was expected"
            )
        return value


def segment(value: str, field: str) -> str:
    """An id as one URL path segment: ids come from events and from Clowder's answers, and must not
    reach other paths. Quoting alone is not enough: ``.`` and ``..`` stay themselves, and a server
    or proxy resolves them as a step up the path."""
    if not _CLOWDER_ID.fullmatch(value):
        raise InvalidInput(f"{value[:80]!r} is not a Clowder id: {CLOWDER_ID_RULE}", field=field)
    return quote(value, safe="")


def describe(error: Exception) -> str:
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


def string(value: Any) -> str:
    return "" if value is None else str(value)


def size(value: Any) -> int | None:
    """Clowder 1 sends sizes as strings ("190497"), Clowder 2 as numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None
