"""Request bodies read within their documented limit, and the JSON in them parsed safely."""

# functions-framework reads every request body in full once the function has answered (to keep the
# connection usable), unless the answer is streamed. So a function bounds the body before anything
# else (``guard``), and answers a body past its limit with a streamed 413 (``refusal``): otherwise
# a body it never meant to read would be read, however large, into memory.

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from events import safe_json
from shared.core.errors import ContentTooLarge, InvalidInput
from shared.core.limits import too_large

if TYPE_CHECKING:
    from flask import Response
    from werkzeug.wrappers import Request


def read(request: Request, limit: int, setting: str) -> bytes:
    """The whole body, at most ``limit`` bytes (the value of ``setting``): ``ContentTooLarge`` before
    anything is read when the Content-Length says more, and as soon as a chunked body goes past it."""
    from werkzeug.exceptions import RequestEntityTooLarge

    # Werkzeug ends a chunked body quietly at the maximum, so one byte more tells a longer body apart.
    request.max_content_length = limit + 1
    try:
        data = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise too_large(request.content_length, limit, setting) from None
    if len(data) > limit:
        raise too_large(request.content_length, limit, setting)
    return data


def admit(request: Request, limit: int, setting: str) -> None:
    """Bound the body to ``limit`` bytes for whoever reads it: ``ContentTooLarge`` at once when its
    Content-Length says more; a chunked body, whose size only reading tells, is read here (up to the
    limit)."""
    request.max_content_length = limit
    length = request.content_length
    if length is not None:
        if length > limit:
            raise too_large(length, limit, setting)
    elif "wsgi.input_terminated" in request.environ:
        read(request, limit, setting)


def guard(request: Request, limit: int) -> Response | None:
    """The streamed 413 for a request to an HTTP function whose body is past ``limit`` (the value of
    WORKBENCH_MAX_BODY_BYTES), else None (and the body is bounded for later reads)."""
    try:
        admit(request, limit, "WORKBENCH_MAX_BODY_BYTES")
    except ContentTooLarge as error:
        return refusal(error)
    return None


def refusal(error: ContentTooLarge) -> Response:
    """The 413 answer, ``{"Error": …}`` as every error; streamed, so that the rest stays unread."""
    import json

    from flask import Response

    payload = json.dumps({"Error": error.message}).encode()
    return Response(
        iter([payload]), status=413, mimetype="application/json", headers={"Cache-Control": "no-cache"}
    )


def json_document(raw: bytes) -> Any:
    """The parsed body; ``InvalidInput`` naming the field at fault (``body`` for the whole) for what is
    not UTF-8 JSON, nests too deep, holds numbers beyond 64 bits or strings with lone surrogates."""
    try:
        return safe_json.loads(raw)
    except safe_json.RefusedJson as error:
        raise InvalidInput(error.message, field=error.field("")) from None


def event_body(request: Request, limit: int) -> bytes:
    """A delivered CloudEvent's body (attributes and data in structured mode), within ``limit`` bytes
    (the value of WORKBENCH_MAX_EVENT_BYTES)."""
    return read(request, limit, "WORKBENCH_MAX_EVENT_BYTES")
