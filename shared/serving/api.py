"""Serving a function's routes: match, authenticate, parse the body, call the handler, map the result."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import MethodNotAllowed
from werkzeug.exceptions import NotFound as NoRoute
from werkzeug.routing import Map, MapAdapter, Rule

from shared.core.errors import ContentTooLarge, Forbidden, InvalidInput, Unauthorized, WorkbenchError
from shared.serving import metrics, registry

if TYPE_CHECKING:
    from flask import Request, Response
    from pydantic import BaseModel, TypeAdapter, ValidationError
    from werkzeug.datastructures import MultiDict

    from shared.bootstrap import Platform
    from shared.domain.auth import Principal

log = logging.getLogger("workbench.api")

COOKIE_ROUTES = frozenset({("GET", "/api/check_token")})
"""The only route that also takes the token from a ``token`` cookie: forward authentication, which
changes nothing and is sent the browser's cookie by the ingress (as the Go apiserver's nginx auth-url
was). Anywhere else a cookie would let any page the browser opens act as its user (CSRF)."""
WEBSOCKET_ROUTES = frozenset({("GET", "/api/console")})
"""Routes that upgrade to a websocket, which a browser opens without an ``Authorization`` header: they
also take the token as an offered subprotocol ``bearer.<token>`` (as Kubernetes takes one), which no
other page can send for the user, unlike a cookie, and which no access log or history keeps, unlike a
query parameter."""
STACK_CONTROL_ROUTES = frozenset({("GET", "/api/start/<sid>"), ("GET", "/api/stop/<sid>")})
"""Routes that also take a token scoped to their own stack (``stack:<sid>:control``), which is all a
shovel holds to carry out its user's start or stop of that stack."""
TOKEN_SUBPROTOCOL = "bearer."  # noqa: S105 (the prefix a token comes after, not a secret)


@dataclass
class Reply:
    """A handler's answer when it differs from the route's usual status."""

    status: int
    body: Any = None
    headers: tuple[tuple[str, str], ...] = ()
    """Headers to send beside the body, e.g. ``Warning`` lines (a header may repeat)."""


@dataclass(frozen=True)
class Upgraded:
    """A handler's own WSGI answer, sent as it is: the end of a connection it took over (a websocket)."""

    response: Response


@dataclass(frozen=True)
class Document:
    """A reply body that is not JSON, sent as it is with its media type (e.g. an HTML page)."""

    text: str
    media_type: str


@dataclass(frozen=True)
class RawJson:
    """A reply body already serialized as JSON (e.g. documents kept in the store), sent as it is."""

    text: str


class Call:
    """One request to one route, as a handler sees it."""

    def __init__(
        self, request: Request, route: registry.Route, params: Mapping[str, str], platform: Platform
    ) -> None:
        self.request = request
        self.route = route
        self.params = params
        self.platform = platform
        self._principal: Principal | None = None
        self.body: Any = None

    def query(self, name: str) -> str | None:
        value = self.request.args.get(name)
        return value if value is None else value.strip()

    def bearer_token(self) -> str | None:
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        if (self.route.method, self.route.path) in COOKIE_ROUTES:
            return self.request.cookies.get("token") or None
        if (self.route.method, self.route.path) in WEBSOCKET_ROUTES:
            offered = self.request.headers.get("Sec-WebSocket-Protocol", "")
            for protocol in offered.split(","):
                if protocol.strip().startswith(TOKEN_SUBPROTOCOL):
                    return protocol.strip().removeprefix(TOKEN_SUBPROTOCOL) or None
        return None

    @property
    def principal(self) -> Principal:
        if self._principal is None:
            token = self.bearer_token()
            if token is None:
                raise Unauthorized("missing bearer token")
            self._principal = self.platform.tokens.verify(token, scope=self._scope())
        return self._principal

    def _scope(self) -> str | None:
        """The one scoped token this route takes besides the account's own, if any."""
        if (self.route.method, self.route.path) not in STACK_CONTROL_ROUTES:
            return None
        from shared.domain.auth import stack_control_scope

        return stack_control_scope(self.params["sid"])


BACKGROUND_HEADER = "X-Workbench-Background"
"""Set by the page on the calls it makes on its own (its polls): they are not the user's activity."""


def _note_activity(call: Call) -> None:
    """A user's call, or token refresh, counts as their activity for the idle shutdown (scoped
    tokens, e.g. a stack's control token in a shovel's hands, are not the user)."""
    if call.request.headers.get(BACKGROUND_HEADER):
        return
    principal = call._principal
    if principal is None and call.route.path == "/api/refresh_token":
        token = call.bearer_token()
        with suppress(Unauthorized):
            principal = call.platform.tokens.decode(token, allow_expired=True) if token else None
    if principal is not None and principal.scope is None:
        from shared.domain import idle

        idle.note_activity(call.platform, principal.user)


Handler = Callable[[Call], Any]


@cache
def _routing(function_name: str) -> MapAdapter:
    """The function's routes, bound once: matching an explicit path and method changes no state."""
    function = registry.function(function_name)
    routes = Map(
        [Rule(route.path, methods=[route.method], endpoint=route) for route in function.routes],
        strict_slashes=False,
        merge_slashes=False,
    )
    return routes.bind("", default_method="GET")


def warning_header(text: str) -> str:
    """A ``Warning`` header's value (RFC 7234: ``299 - "text"``), in ASCII with quotes escaped."""
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    return '299 - "' + quoted.encode("ascii", "backslashreplace").decode("ascii") + '"'


def error_response(status: int, message: str) -> Response:
    from flask import Response

    return Response(
        json.dumps({"Error": message}),
        status=status,
        mimetype="application/json",
        headers={"Cache-Control": "no-cache"},
    )


def json_errors() -> None:
    """Have the app serving this function answer its own errors (e.g. an unparsable path) as JSON.

    functions-framework points ``errorhandler`` at the app whose module is being loaded, so a
    function module calls this at import; imported outside an app (e.g. by a test) it does nothing.
    """
    import functions_framework
    from werkzeug.exceptions import HTTPException

    register = getattr(functions_framework, "errorhandler", None)
    if register is None:
        return

    def answer(error: HTTPException) -> Response:
        return error_response(error.code or 500, error.description or error.name)

    register(HTTPException)(answer)


def _json_response(status: int, body: Any) -> Response:
    from flask import Response
    from pydantic import BaseModel

    headers = {"Cache-Control": "no-cache"}
    if body is None:
        return Response(b"", status=status, headers=headers)
    if isinstance(body, Document):
        return Response(
            body.text, status=status, content_type=f"{body.media_type}; charset=utf-8", headers=headers
        )
    payload: str | bytes
    if isinstance(body, RawJson):
        payload = body.text
    elif isinstance(body, BaseModel):
        payload = body.model_dump_json()
    elif isinstance(body, list) and body and isinstance(body[0], BaseModel):
        model = type(body[0])
        if all(type(item) is model for item in body):
            payload = _list_of(model).dump_json(body)  # one pass in pydantic-core, not one call per item
        else:
            payload = "[" + ",".join(item.model_dump_json() for item in body) + "]"
    else:
        payload = json.dumps(body)
    return Response(payload, status=status, mimetype="application/json", headers=headers)


@cache
def _list_of(model: type[BaseModel]) -> TypeAdapter[list[Any]]:
    from pydantic import TypeAdapter

    return TypeAdapter(list[model])  # type: ignore[valid-type]


def _parse_body(request: Request, route: registry.Route, limit: int) -> Any:
    """The route's body, read only up to ``limit`` bytes (413 past it), parsed and validated (400)."""
    from shared.serving import bodies

    raw = bodies.read(request, limit, "WORKBENCH_MAX_BODY_BYTES")
    if not raw.strip():
        raise InvalidInput("a JSON body is required")
    document = bodies.json_document(raw)
    if route.validated_by_handler or route.body is None:
        return document
    return validate(registry.model(route.body), document)


def validate(model: type[BaseModel], document: Any) -> BaseModel:
    """``document`` as ``model``; the error names the first field at fault."""
    from pydantic import ValidationError

    try:
        return model.model_validate(document)
    except ValidationError as error:
        raise invalid_input(error) from None


def invalid_input(error: ValidationError) -> InvalidInput:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return InvalidInput(f"{first['msg']}{more}", field=location)


def _refuse_nul(params: Mapping[str, str], query: MultiDict[str, str]) -> None:
    """NUL is in no name or value here, and PostgreSQL cannot even look one up (a 503, not a 404)."""
    for name, value in (*params.items(), *query.items(multi=True)):
        if "\x00" in value:
            raise InvalidInput("holds a NUL character", field=name)


def guard(request: Request) -> Response | None:
    """The streamed 413 for a request to an HTTP function whose body is past WORKBENCH_MAX_BODY_BYTES,
    else None (and the body is bounded for later reads)."""
    from shared.bootstrap import platform
    from shared.serving import bodies

    return bodies.guard(request, platform().settings.server.max_body_bytes)


def serve(function_name: str, request: Request, handlers: Mapping[str, Handler]) -> Response:
    """Answer ``request`` with the handler bound to the matching route of ``function_name`` (or, at
    ``/metrics``, with the metrics), counting it and its time by route."""
    if request.path == metrics.PATH and request.method in ("GET", "HEAD"):
        return metrics_response(request)
    began = time.perf_counter()
    route, response = _serve(function_name, request, handlers)
    label = metrics.route_label(route.path) if route is not None else metrics.UNMATCHED
    metrics.REQUESTS.record(
        function_name, label, request.method, response.status_code, time.perf_counter() - began
    )
    return response


def metrics_response(request: Request) -> Response:
    """The answer to ``GET /metrics``: no token needed, since it holds counts and durations only."""
    from flask import Response

    status, body, media_type = metrics.scrape(request.headers.get("Accept"))
    return Response(body, status=status, content_type=media_type, headers={"Cache-Control": "no-cache"})


def _serve(
    function_name: str, request: Request, handlers: Mapping[str, Handler]
) -> tuple[registry.Route | None, Response]:
    """The route matched (None: none) and the answer."""
    from shared.bootstrap import platform

    refused = guard(request)  # first: whatever the answer, the body may be read after it
    if refused is not None:
        return None, refused
    try:
        route, params = _routing(function_name).match(request.path, method=request.method)
    except MethodNotAllowed as error:
        allowed = ", ".join(sorted(error.valid_methods or []))
        response = error_response(
            405, f"method {request.method} not allowed on {request.path}; allowed: {allowed}"
        )
        response.headers["Allow"] = allowed
        return None, response
    except NoRoute:
        return None, error_response(
            404, f"no route {request.method} {request.path} in function '{function_name}'"
        )
    return route, _answer(request, route, params, handlers, platform())


def _answer(
    request: Request,
    route: registry.Route,
    params: Mapping[str, str],
    handlers: Mapping[str, Handler],
    current: Platform,
) -> Response:
    from shared.serving import bodies

    try:
        _refuse_nul(params, request.args)
        call = Call(request, route, params, current)
        if route.access in ("user", "admin"):
            principal = call.principal
            if route.access == "admin" and not principal.admin:
                raise Forbidden("only the admin may do this")
        if route.body is not None:
            call.body = _parse_body(request, route, call.platform.settings.server.max_body_bytes)
        result = handlers[route.endpoint](call)
        _note_activity(call)
    except ContentTooLarge as error:
        return bodies.refusal(error)
    except WorkbenchError as error:
        if error.status >= 500:
            log.warning("%s %s: %s", request.method, request.path, error.message)
        response = error_response(error.status, error.message)
        response.headers.update(error.headers)
        return response
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal error; the server log has the details")
    if isinstance(result, Upgraded):
        return result.response
    if isinstance(result, Reply):
        response = _json_response(result.status, result.body)
        for name, value in result.headers:
            response.headers.add(name, value)
        return response
    return _json_response(route.status, result)
