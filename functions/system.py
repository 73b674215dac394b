"""HTTP function ``system``: paths, version, health, OpenAPI, vocabularies, contact, support, log level."""

from __future__ import annotations

import logging
from typing import Any

import functions_framework
from flask import Request, Response

from shared import __version__, registry
from shared.api import Call, Reply, json_errors, serve
from shared.errors import InvalidInput, NotFound, Unavailable
from shared.models import Contact, Health, LogLevel, Message, Vocabulary

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
    from shared.openapi import document

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
    level = call.params["level"].upper()
    if level not in LEVELS:
        raise InvalidInput(f"must be one of {', '.join(LEVELS)}", field="level")
    logging.getLogger().setLevel(level)
    return LogLevel(level=level)


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
        },
    )
