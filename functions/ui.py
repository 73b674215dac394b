"""HTTP function ``ui``: the management page at ``/`` and its static assets under ``/ui/``."""

from __future__ import annotations

import time
from functools import cache

import functions_framework
from flask import Request, Response
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.exceptions import NotFound as NoRoute
from werkzeug.routing import Map, Rule

from shared.serving import metrics, registry
from shared.serving import ui as page
from shared.serving.api import error_response, guard, json_errors, metrics_response


@cache
def _routing() -> Map:
    return Map(
        [
            Rule(route.path, methods=[route.method], endpoint=route.endpoint)
            for route in registry.function("ui").routes
        ],
        strict_slashes=False,
        merge_slashes=False,
    )


def _served(request: Request, asset: page.Asset) -> Response:
    response = Response(asset.body, mimetype=None, content_type=asset.content_type)
    response.headers.update(page.SECURITY_HEADERS)
    # Revalidated on every use (a 304 while unchanged), so a new release shows at once.
    response.headers["Cache-Control"] = "no-cache"
    response.set_etag(asset.etag)
    response.make_conditional(request)  # a 304 without a body when the ETag matches
    return response


def _secured(response: Response) -> Response:
    response.headers.update(page.SECURITY_HEADERS)
    return response


json_errors()


@functions_framework.http
def ui(request: Request) -> Response:
    if request.path == metrics.PATH and request.method in ("GET", "HEAD"):
        return metrics_response(request)
    began = time.perf_counter()
    route, response = _answer(request)
    metrics.REQUESTS.record("ui", route, request.method, response.status_code, time.perf_counter() - began)
    return response


def _answer(request: Request) -> tuple[str, Response]:
    """The route the request matched (for the metrics) and its answer."""
    refused = guard(request)  # the page takes no body, yet one sent would be read after the answer
    if refused is not None:
        return metrics.UNMATCHED, _secured(refused)
    adapter = _routing().bind("", default_method="GET")
    try:
        rule, params = adapter.match(request.path, method=request.method, return_rule=True)
    except MethodNotAllowed as error:
        allowed = ", ".join(sorted(error.valid_methods or []))
        response = error_response(
            405, f"method {request.method} not allowed on {request.path}; allowed: {allowed}"
        )
        response.headers["Allow"] = allowed
        return metrics.UNMATCHED, _secured(response)
    except NoRoute:
        return metrics.UNMATCHED, _secured(
            error_response(404, f"no route {request.method} {request.path} in function 'ui'")
        )
    route = metrics.route_label(rule.rule)
    if rule.endpoint == "index":
        return route, _served(request, page.index())
    found = page.asset(params["asset"])
    if found is None:
        return route, _secured(error_response(404, f"the management page has no asset {params['asset']!r}"))
    return route, _served(request, found)
