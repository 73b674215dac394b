"""The local gateway: one WSGI app routing each /api path to its function, as the public entry point does."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule

from shared.serving import registry
from shared.tools.ingress import EventIngress

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"


class Gateway:
    """Dispatches by path to each function's own functions-framework app, built on first use; with a
    data dir it is also the local Broker (``/events``) and serves the local object store (``/objects``)."""

    def __init__(self, functions_dir: Path = FUNCTIONS_DIR, *, data_dir: Path | None = None) -> None:
        self.functions_dir = functions_dir
        self._apps: dict[str, WSGIApp] = {}
        self._lock = threading.Lock()
        self.ingress: EventIngress | None = None
        if data_dir is not None:
            self.ingress = EventIngress(self.app_for, data_dir / "deadletter")
        self._objects: WSGIApp | None = None
        self._routes = Map(
            [
                Rule(route.path, methods=[route.method], endpoint=function.name)
                for function in registry.http_functions()
                for route in function.routes
            ],
            strict_slashes=False,
            merge_slashes=False,
        )

    def app_for(self, name: str) -> WSGIApp:
        app = self._apps.get(name)
        if app is None:
            with self._lock:
                app = self._apps.get(name)
                if app is None:
                    import functions_framework

                    function = registry.function(name)
                    create_app: Callable[..., WSGIApp] = functions_framework.create_app
                    app = create_app(function.target, str(self.functions_dir / f"{name}.py"), "http")
                    self._apps[name] = app
        return app

    def function_for(self, method: str, path: str) -> str | None:
        """The function answering ``method path``; for a known path with another method, its owner."""
        adapter = self._routes.bind("")
        try:
            name, _ = adapter.match(path, method=method)
            return str(name)
        except HTTPException:
            pass
        for other in ("GET", "POST", "PUT", "DELETE"):
            try:
                name, _ = adapter.match(path, method=other)
                return str(name)  # the function itself answers 405 with the allowed methods
            except HTTPException:
                continue
        return None

    def objects_app(self) -> WSGIApp | None:
        """The local object store's pre-signed URLs, when the platform uses the local store."""
        if self._objects is None:
            from shared.bootstrap import platform

            current = platform()
            if current.settings.s3.bucket:
                return None
            from shared.adapters.objectstore.local import LocalObjectStore, objects_app

            store = current.objects
            assert isinstance(store, LocalObjectStore)
            self._objects = objects_app(store)
        return self._objects

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        if self.ingress is not None and path.rstrip("/") == "/events":
            return self.ingress(environ, start_response)
        if self.ingress is not None and (path == "/objects" or path.startswith("/objects/")):
            objects = self.objects_app()
            if objects is not None:
                return objects(environ, start_response)
        name = self.function_for(environ.get("REQUEST_METHOD", "GET"), path)
        if name is None:
            body = json.dumps(
                {"Error": f"no function answers {path}; the API is under /api/ (see /api/openapi.json)"}
            ).encode()
            start_response(
                "404 Not Found",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        return self.app_for(name)(environ, start_response)
