"""HTTP function ``system``: paths, version, health, OpenAPI, vocabularies, contact, support, log level."""

from __future__ import annotations

import logging
from typing import Any

import functions_framework
from flask import Request, Response

from shared import __version__
from shared.core.errors import InvalidInput, NotFound, Unavailable
from shared.core.models import Contact, Health, LogLevel, Message, Vocabulary
from shared.serving import registry
from shared.serving.api import Call, Document, Reply, json_errors, serve

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def paths(call: Call) -> list[str]:
    tops = {
        "/api/" + route.path.removeprefix("/api/").split("/")[0]
        for function in registry.http_functions()
        for route in function.routes
    }
    return sorted(path for path in tops if path != "/api/")


def version(call: Call) -> str:
    return __version__


def healthz(call: Call) -> Reply:
    try:
        call.platform.store.ping()
    except Unavailable as error:
        return Reply(503, Health(status="unavailable", database=error.message))
    return Reply(200, Health(status="ok", database="ok"))


def openapi(call: Call) -> dict[str, Any]:
    from shared.serving.openapi import document

    return document()


def vocabulary(call: Call) -> Vocabulary:
    found = call.platform.store.get_vocabulary(call.params["name"])
    if found is None:
        raise NotFound("vocabulary", call.params["name"])
    return found


def contact(call: Call) -> Contact:
    server = call.platform.settings.server
    return Contact(email=server.support_email, forum=server.forum_url, chat=server.chat_url)


def support(call: Call) -> Message:
    principal = call.principal
    record = call.platform.store.get_account(principal.user)
    sender = (
        "an anonymous user"
        if call.body.anonymous or record is None
        else (f"{record.account.name} <{record.account.email}> ({principal.user})")
    )
    call.platform.mailer.send(
        call.platform.settings.server.support_email,
        f"Workbench support request: {call.body.type}",
        f"From {sender}:\n\n{call.body.message}\n",
    )
    return Message(message="Support request sent.")


def log_level(call: Call) -> LogLevel:
    level = _level_name(call.params["level"])
    logging.getLogger().setLevel(level)
    return LogLevel(level=level)


def _level_name(given: str) -> str:
    """A level's name, or a glog verbosity number as the Go apiserver took them: 0 logs what glog
    logs without ``-v`` (INFO), 1 and above add its verbose messages (DEBUG)."""
    try:
        verbosity = int(given)
    except ValueError:
        level = given.upper()
        if level not in LEVELS:
            raise InvalidInput(
                f"must be one of {', '.join(LEVELS)}, or a glog verbosity number (0 and above)",
                field="level",
            ) from None
        return level
    if verbosity < 0:
        raise InvalidInput("a glog verbosity number must be 0 or above", field="level")
    return "INFO" if verbosity == 0 else "DEBUG"


def download(call: Call) -> Reply:
    """Go answered 200 with links for an unknown ``os`` and the binary for a known one; here the page
    for any ``os``, with the steps that install the Python client (shared/serving/download.py)."""
    from shared.serving import download as client_download

    text = client_download.page(call.platform.settings.server.origin, call.query("os"))
    return Reply(
        200,
        Document(text, "text/html"),
        (("Content-Security-Policy", "default-src 'none'"), ("X-Content-Type-Options", "nosniff")),
    )


json_errors()


@functions_framework.http
def system(request: Request) -> Response:
    return serve(
        "system",
        request,
        {
            "paths": paths,
            "version": version,
            "healthz": healthz,
            "openapi": openapi,
            "vocabulary": vocabulary,
            "contact": contact,
            "support": support,
            "log_level": log_level,
            "download": download,
        },
    )
