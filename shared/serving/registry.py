"""The one registry of functions: it drives the local gateway, the OpenAPI document and the tests."""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from events import names as event_names

if TYPE_CHECKING:
    from pydantic import BaseModel

Access = Literal["public", "user", "admin", "reset", "service"]
"""Who may call a route: anyone; a user's token; the admin's token; a user's or a password-reset token
(checked by the handler, since reset tokens are refused everywhere else); a user's token or Clowder's
service token (checked by the handler)."""


class Route(NamedTuple):
    """One HTTP route of a function; ``endpoint`` names the handler the function binds to it."""

    method: str
    path: str
    endpoint: str
    summary: str
    access: Access = "user"
    body: str | None = None
    """The name of the body's model, e.g. ``"Account"`` (see ``model``)."""
    reply: str | None = None
    """The reply's type, written over model names: ``"Stack"``, ``"list[Stack]"``, ``"str"`` (see
    ``annotation``). Routes name their models rather than import them, so that a function imports
    only the models of its own handlers."""
    status: int = 200
    query: tuple[str, ...] = ()
    validated_by_handler: bool = False
    """The body is passed on as parsed JSON, for a handler that validates it against a JSON Schema."""


ANY_EVENT = "*"
"""In ``Function.events``: the function receives whatever is sent to it (the dead-letter sink). No
Trigger filters on it and the local ingress never routes by it: only dead-lettering delivers there."""

APISERVER_EVENTS = (
    "dev.knative.apiserver.resource.add",
    "dev.knative.apiserver.resource.update",
    "dev.knative.apiserver.resource.delete",
)
"""What a Knative ApiServerSource (resource mode) sends of the stacks' pods; the cluster's, not signed."""

CLOWDER_JOB_EVENT = "dev.knative.rabbitmq.event"
"""What a RabbitmqSource makes of each job on Clowder's extractor queues; not signed (the job's key is
checked with Clowder instead)."""

DEAD_LETTER_FUNCTION = "deadletter"
"""The function every Trigger (and the local ingress) hands an event to once its delivery failed."""


class Function(NamedTuple):
    """A deployable function: its entry point and the routes (or event types) it answers.

    Functions and routes are named tuples rather than dataclasses: every function imports this
    registry, and a named tuple class costs a fraction of a dataclass's to make."""

    name: str
    summary: str
    routes: tuple[Route, ...] = ()
    events: tuple[str, ...] = ()
    """CloudEvent types delivered to this function (by a Trigger each; locally by the /events ingress)."""
    min_scale: int = 0
    max_scale: int = 10
    concurrency: int = 50
    """Requests one instance serves at once: its server's threads and Knative's containerConcurrency."""
    timeout_seconds: int = 120
    """How long one request may take (Knative's timeoutSeconds); longer for work that streams data."""

    @property
    def kind(self) -> Literal["http", "cloudevent"]:
        """``cloudevent`` for a function that receives events (it may also answer HTTP routes)."""
        return "cloudevent" if self.events else "http"

    @property
    def routed_events(self) -> tuple[str, ...]:
        """The event types a Trigger (or the local ingress, by type) delivers to this function."""
        return tuple(event_type for event_type in self.events if event_type != ANY_EVENT)

    @property
    def module(self) -> str:
        return f"functions.{self.name}"

    @property
    def target(self) -> str:
        return self.name

    @property
    def source(self) -> str:
        return f"functions/{self.name}.py"


def _routes(*routes: Route) -> tuple[Route, ...]:
    return routes


MODEL_MODULES = {"TransferRequest": "shared.domain.transfers"}
"""The module of each route model that is not in ``shared.core.models``."""

_PLAIN_TYPES: dict[str, type] = {"str": str, "int": int, "bool": bool}
_GENERIC_TYPES: dict[str, Any] = {"list": list, "dict": dict}


@cache
def model(name: str) -> type[BaseModel]:
    """The model a route names, its module imported now."""
    module = importlib.import_module(MODEL_MODULES.get(name, "shared.core.models"))
    found: type[BaseModel] | None = getattr(module, name, None)
    if found is None:
        raise LookupError(f"a route names the model {name!r}, which {module.__name__} does not define")
    return found


@cache
def annotation(text: str) -> Any:
    """The type a route's ``reply`` (or ``body``) stands for: a model name, ``str``, ``int``, ``bool``,
    or ``list[...]`` and ``dict[..., ...]`` of those, e.g. ``dict[str, list[Config]]``."""
    name, bracket, rest = text.strip().partition("[")
    name = name.strip()
    if not bracket:
        return _PLAIN_TYPES.get(name) or model(name)
    if name not in _GENERIC_TYPES or not rest.endswith("]"):
        raise ValueError(
            f"cannot read the annotation {text!r}: use a model name, list[...] or dict[..., ...]"
        )
    arguments = tuple(annotation(part) for part in _top_level_parts(rest[:-1]))
    return _GENERIC_TYPES[name][arguments if len(arguments) > 1 else arguments[0]]


def _top_level_parts(text: str) -> list[str]:
    """``str, list[Config]`` → ``["str", "list[Config]"]``: the parts between commas outside brackets."""
    parts: list[str] = []
    depth = start = 0
    for index, character in enumerate(text):
        if character == "[":
            depth += 1
        elif character == "]":
            depth -= 1
        elif character == "," and depth == 0:
            parts.append(text[start:index].strip())
            start = index + 1
    parts.append(text[start:].strip())
    return parts


FUNCTIONS: tuple[Function, ...] = (
    Function(
        "authenticate",
        "Log in and out",
        routes=_routes(
            Route(
                "POST",
                "/api/authenticate",
                "login",
                "Log in with a user name or e-mail and a password",
                access="public",
                body="Auth",
                reply="Token",
            ),
            Route("DELETE", "/api/authenticate", "logout", "Log out", access="public"),
        ),
    ),
    Function(
        "check_token",
        "Validate a token, optionally for one of the caller's endpoints",
        routes=_routes(
            Route(
                "GET",
                "/api/check_token",
                "check",
                "Validate the token; with host, that it may reach that host",
                query=("host",),
            ),
        ),
        min_scale=1,
    ),
    Function(
        "refresh_token",
        "Exchange a token for a fresh one",
        routes=_routes(
            Route(
                "GET",
                "/api/refresh_token",
                "refresh",
                "Refresh the token (within the refresh window)",
                access="public",
                reply="Token",
            ),
        ),
    ),
    Function(
        "accounts",
        "Accounts: list, create, read, update, delete, export and import",
        routes=_routes(
            Route(
                "GET",
                "/api/accounts",
                "list",
                "List every account",
                access="admin",
                reply="list[Account]",
            ),
            Route(
                "POST",
                "/api/accounts",
                "create",
                "Create an approved account",
                access="admin",
                body="Account",
                reply="Account",
            ),
            Route(
                "POST",
                "/api/accounts/import",
                "import_package",
                "Import an exported account",
                access="admin",
                body="ExportPackage",
                reply="Account",
            ),
            Route(
                "GET",
                "/api/accounts/<account_id>",
                "read",
                "Read an account (the admin's or one's own)",
                reply="Account",
            ),
            Route(
                "PUT",
                "/api/accounts/<account_id>",
                "update",
                "Update an account",
                body="Account",
                reply="Account",
            ),
            Route(
                "DELETE",
                "/api/accounts/<account_id>",
                "delete",
                "Delete an account and all it owns",
                access="admin",
            ),
            Route(
                "GET",
                "/api/accounts/<account_id>/export",
                "export_package",
                "Export an account with its catalog and stacks",
                reply="ExportPackage",
            ),
            Route(
                "GET",
                "/api/export/<account_id>",
                "export_package",
                "Export an account with its catalog and stacks (the Go apiserver's path)",
                access="admin",
                reply="ExportPackage",
            ),
            Route(
                "POST",
                "/api/import/<account_id>",
                "import_package",
                "Import an exported account, keeping its password (the Go apiserver's path)",
                access="admin",
                body="ExportPackage",
                reply="Account",
            ),
        ),
    ),
    Function(
        "register",
        "Registration, approval and password reset",
        routes=_routes(
            Route(
                "POST",
                "/api/register",
                "register",
                "Register a new account",
                access="public",
                body="Account",
                reply="Account",
            ),
            Route(
                "PUT",
                "/api/register/verify",
                "verify",
                "Verify a registered e-mail address",
                access="public",
                body="Verify",
                reply="Message",
            ),
            Route(
                "GET",
                "/api/register/approve",
                "approve",
                "Approve a verified account",
                access="public",
                reply="Message",
                query=("u", "t"),
            ),
            Route(
                "GET",
                "/api/register/deny",
                "deny",
                "Deny a verified account",
                access="public",
                reply="Message",
                query=("u", "t"),
            ),
            Route(
                "POST",
                "/api/reset",
                "reset",
                "Send a password reset e-mail",
                access="public",
                reply="Message",
                query=("userId",),
            ),
            Route(
                "POST",
                "/api/reset/<account_id>",
                "reset",
                "Send a password reset e-mail",
                access="public",
                reply="Message",
            ),
            Route(
                "PUT",
                "/api/change_password",
                "change_password",
                "Change the caller's password",
                access="reset",
                body="Password",
                reply="Message",
            ),
        ),
    ),
    Function(
        "services",
        "Service catalogs: the system catalog and each user's own",
        routes=_routes(
            Route(
                "GET",
                "/api/services",
                "list",
                "List service specs",
                reply="list[ServiceSpec]",
                query=("catalog",),
            ),
            Route(
                "POST",
                "/api/services",
                "create",
                "Add a service spec",
                body="ServiceSpec",
                reply="ServiceSpec",
                query=("catalog",),
                validated_by_handler=True,
            ),
            Route(
                "GET",
                "/api/services/<key>",
                "read",
                "Read a service spec",
                reply="ServiceSpec",
                query=("catalog",),
            ),
            Route(
                "PUT",
                "/api/services/<key>",
                "update",
                "Replace a service spec",
                body="ServiceSpec",
                reply="ServiceSpec",
                query=("catalog",),
                validated_by_handler=True,
            ),
            Route(
                "DELETE",
                "/api/services/<key>",
                "delete",
                "Delete a service spec",
                query=("catalog",),
            ),
        ),
    ),
    Function(
        "configs",
        "Configuration options of service specs",
        routes=_routes(
            Route(
                "GET",
                "/api/configs",
                "list",
                "Configuration options by spec key",
                reply="dict[str, list[Config]]",
                query=("services",),
            ),
        ),
    ),
    Function(
        "stacks",
        "A user's stacks: list, create, read, update, rename, delete",
        routes=_routes(
            Route("GET", "/api/stacks", "list", "List the caller's stacks", reply="list[Stack]"),
            Route(
                "POST",
                "/api/stacks",
                "create",
                "Add a stack (stopped)",
                body="Stack",
                reply="Stack",
            ),
            Route("GET", "/api/stacks/<sid>", "read", "Read a stack", reply="Stack"),
            Route(
                "PUT",
                "/api/stacks/<sid>",
                "update",
                "Replace a stopped stack's services",
                body="Stack",
                reply="Stack",
            ),
            Route(
                "PUT",
                "/api/stacks/<sid>/rename",
                "rename",
                "Rename a stack",
                body="Rename",
                reply="Stack",
            ),
            Route("DELETE", "/api/stacks/<sid>", "delete", "Delete a stopped stack"),
            Route(
                "GET",
                "/api/stacks/<sid>/events",
                "events",
                "A start's progress as server-sent events (text/event-stream): each service's status "
                "messages (image pull, container, readiness) and status, then the stack's outcome and "
                "an end event; Last-Event-ID resumes",
            ),
        ),
    ),
    Function(
        "start",
        "Start a stack, or quickstart a spec",
        routes=_routes(
            Route(
                "GET",
                "/api/start",
                "quickstart",
                "Add (if needed) and start a stack of one spec",
                reply="Stack",
                query=("key",),
            ),
            Route(
                "GET",
                "/api/start/<sid>",
                "start",
                "Start a stack (asynchronous)",
                reply="Stack",
                status=202,
            ),
        ),
        max_scale=5,
    ),
    Function(
        "stop",
        "Stop a stack, or all of the caller's stacks",
        routes=_routes(
            Route(
                "GET",
                "/api/stop/<sid>",
                "stop",
                "Stop a stack (asynchronous)",
                reply="Stack",
                status=202,
            ),
            Route(
                "GET",
                "/api/stop_all",
                "stop_all",
                "Stop every running stack of the caller",
                reply="list[Stack]",
                status=202,
            ),
        ),
        max_scale=5,
    ),
    Function(
        "logs",
        "Logs of a stack service",
        routes=_routes(
            Route(
                "GET",
                "/api/logs/<ssid>",
                "read",
                "The service's status messages and log tail",
                reply="str",
                query=("lines",),
            ),
        ),
    ),
    Function(
        "console",
        "A shell in one of the caller's running stack services, over a websocket",
        routes=_routes(
            Route(
                "GET",
                "/api/check_console",
                "check",
                "The caller's stack service (200, as Go; 404 not the caller's), and whether a console "
                "opens in it now (available) or why not (reason: not running, no containers here)",
                query=("ssid", "namespace"),
                reply="ConsoleCheck",
            ),
            Route(
                "GET",
                "/api/console",
                "open",
                "Upgrade to a websocket carrying an interactive shell in the service's container (the "
                "token as Authorization or as the subprotocol bearer.<token>)",
                query=("ssid", "namespace", "cols", "rows"),
                status=101,
            ),
        ),
        concurrency=25,
        # A session lasts as long as its user types; the cluster's max-revision-timeout must allow it.
        timeout_seconds=3600,
    ),
    Function(
        "system",
        "Paths, version, health, vocabularies, contact, support and log level",
        routes=_routes(
            Route(
                "GET",
                "/api/",
                "paths",
                "The API's top-level paths",
                access="public",
                reply="list[str]",
            ),
            Route("GET", "/api/version", "version", "The server version", access="public", reply="str"),
            Route(
                "GET",
                "/api/healthz",
                "healthz",
                "Health of the function and its database",
                access="public",
                reply="Health",
            ),
            Route(
                "GET",
                "/api/openapi.json",
                "openapi",
                "This API as an OpenAPI 3 document",
                access="public",
            ),
            Route(
                "GET",
                "/api/vocabulary/<name>",
                "vocabulary",
                "A vocabulary of tags",
                access="public",
                reply="Vocabulary",
            ),
            Route(
                "GET",
                "/api/contact",
                "contact",
                "Support contact information",
                access="public",
                reply="Contact",
            ),
            Route(
                "POST",
                "/api/support",
                "support",
                "Send a support request",
                body="SupportRequest",
                reply="Message",
            ),
            Route(
                "PUT",
                "/api/log_level/<level>",
                "log_level",
                "Set the log level (a name, or a glog verbosity number)",
                access="admin",
                reply="LogLevel",
            ),
            Route(
                "GET",
                "/api/download",
                "download",
                "How to get the command-line client (with os, the steps for that platform)",
                access="public",
                query=("os",),
            ),
        ),
        min_scale=1,
    ),
    Function(
        "transfer",
        "Clowder asks for a dataset in a workbench: stage it and hand it to the user's shovels",
        events=(event_names.TRANSFER_REQUESTED,),
        max_scale=5,
        concurrency=4,
        timeout_seconds=600,
    ),
    Function(
        "shovel_reports",
        "What the shovels report: files placed, folders uploaded, folders verified, heartbeats, commands "
        "given up",
        events=(
            event_names.TRANSFER_PROGRESS,
            event_names.EXPORT_UPLOADED,
            event_names.SHOVEL_HEARTBEAT,
            event_names.SHOVEL_COMMAND_ABANDONED,
            event_names.TRANSFER_VERIFIED,
        ),
        timeout_seconds=600,
    ),
    Function(
        "export",
        "Make a Clowder dataset from a workbench folder",
        routes=_routes(
            Route(
                "POST",
                "/api/exports",
                "create",
                "Export a folder of the caller's home to a new Clowder dataset",
                body="ExportRequest",
                reply="Export",
                status=202,
            ),
            Route("GET", "/api/exports", "list", "The caller's exports", reply="list[Export]"),
            Route("GET", "/api/exports/<export_id>", "read", "One export", reply="Export"),
        ),
        events=(event_names.EXPORT_REQUESTED,),
        concurrency=4,
        timeout_seconds=600,
    ),
    Function(
        "clowder_job",
        "Clowder's own extractor jobs (Send to Workbench, start and stop stacks), their status told back",
        events=(CLOWDER_JOB_EVENT, event_names.TRANSFER_COMPLETED, event_names.TRANSFER_FAILED),
        max_scale=5,
        concurrency=4,
        timeout_seconds=600,
    ),
    Function(
        "withdrawal",
        "Clowder deleted a dataset or withdrew access to it: its copies are flagged to their owners",
        events=(event_names.DATASET_WITHDRAWN,),
        max_scale=2,
        concurrency=10,
    ),
    Function(
        "stack_action",
        "Clowder asks to start or stop a user's stack",
        events=(event_names.STACK_START_REQUESTED, event_names.STACK_STOP_REQUESTED),
    ),
    Function(
        "stack_status",
        "A stack's pod changed in the cluster: bring the stack's status up to date",
        events=APISERVER_EVENTS,
    ),
    Function(
        "transfers",
        "The caller's transfers: ask for one, follow its state",
        routes=_routes(
            Route("GET", "/api/transfers", "list", "The caller's transfers", reply="list[Transfer]"),
            Route(
                "POST",
                "/api/transfers",
                "create",
                "Send a dataset of the paired Clowder into the caller's home",
                body="TransferRequest",
                reply="Transfer",
                status=202,
                query=("dry_run",),
            ),
            Route(
                "GET",
                "/api/transfers/<transfer_id>",
                "read",
                "One transfer: state, counts, errors",
                reply="Transfer",
            ),
            Route(
                "POST",
                "/api/transfers/<transfer_id>/verify",
                "verify",
                "Re-hash a completed transfer's folder against its receipts: files modified, missing or "
                "added since, at once where the platform reaches the homes; elsewhere (a cluster) 202: "
                "the check is asked of the user's shovel and GET follows it",
                reply="ReceiptCheck",
            ),
            Route(
                "GET",
                "/api/transfers/<transfer_id>/verify",
                "check",
                "The transfer's latest check: requested (waitingForStack when no stack runs to take "
                "it), completed with its result, or failed saying why",
                reply="TransferCheck",
            ),
        ),
    ),
    Function(
        "containers",
        "A user's stacks with status and connect URLs, for the user, the admin or Clowder",
        routes=_routes(
            Route(
                "GET",
                "/api/containers/<user>",
                "list",
                "The user's stacks (the user's or the admin's token, or Clowder's service token)",
                access="service",
                reply="list[Container]",
            ),
            Route(
                "GET",
                "/api/datasets/<dataset_id>/copies",
                "copies",
                "Where copies of a Clowder dataset went: its completed transfers, with the user, the folder "
                "and the stack services that see it (the admin's token or Clowder's service token)",
                access="service",
                reply="list[DatasetCopy]",
                query=("version",),
            ),
            Route(
                "GET",
                "/api/shovels",
                "shovels",
                "Every shovel's last heartbeat, stale ones marked (the admin's view of their health)",
                access="admin",
                reply="list[ShovelHealth]",
            ),
        ),
    ),
    Function(
        "ui",
        "The management page: one HTML document and its static assets, talking only to the API",
        routes=_routes(
            Route("GET", "/", "index", "The management page", access="public"),
            Route("GET", "/ui/<path:asset>", "asset", "A static asset of the page", access="public"),
        ),
        concurrency=100,
    ),
    Function(
        DEAD_LETTER_FUNCTION,
        "Events whose delivery failed, kept with Knative's reasons; the admin lists them",
        routes=_routes(
            Route(
                "GET",
                "/api/deadletters",
                "list",
                "The newest dead-lettered events, newest first (at most limit, default 100)",
                access="admin",
                reply="list[DeadLetter]",
                query=("limit",),
            ),
        ),
        events=(ANY_EVENT,),
        max_scale=2,
        concurrency=10,
    ),
)

_BY_NAME = {function.name: function for function in FUNCTIONS}


def function(name: str) -> Function:
    """The registered function called ``name``; the error lists the names that exist."""
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(sorted(_BY_NAME))
        raise KeyError(f"no function {name!r} in the registry; known: {known}") from None


def http_functions() -> tuple[Function, ...]:
    """The functions that answer HTTP routes (some also receive events)."""
    return tuple(f for f in FUNCTIONS if f.routes)


def event_functions() -> tuple[Function, ...]:
    return tuple(f for f in FUNCTIONS if f.events)


def function_for_event(event_type: str) -> Function | None:
    """The function a Trigger delivers ``event_type`` to; None for types nobody here receives."""
    return next((f for f in FUNCTIONS if event_type in f.routed_events), None)
