"""A shell in a running stack service, over a websocket: who may open one, and the session between them."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from typing import TYPE_CHECKING, Any

from shared.core.errors import Conflict, InvalidInput, NotFound, NotSupported, WorkbenchError
from shared.core.models import ConsoleCheck
from shared.domain.stacks import stack_id_of

if TYPE_CHECKING:
    from flask import Response

    from shared.adapters.runtime import ConsoleSession
    from shared.bootstrap import Platform
    from shared.core.models import StackService

log = logging.getLogger(__name__)

SUBPROTOCOL = "workbench.console"
"""The subprotocol the server answers a browser with (never the offered token)."""
RESIZE = 4
"""A binary message starting with this byte carries the terminal's size as JSON, as Kubernetes' channel
4 does (``{"Width": 120, "Height": 40}``); any other binary message starting with 0 is keystrokes, and a
text message is keystrokes as it is (what the Go CLI sends)."""
STDIN = 0
DEFAULT_SIZE = (80, 24)
LARGEST_SIZE = 1000
MAX_MESSAGE_BYTES = 64 * 1024
PING_SECONDS = 25
"""A client that stops answering pings is gone: its session ends, and the shell with it."""


def accept_websockets() -> None:
    """Have the app serving this function route websocket upgrades to it too.

    functions-framework routes every path to the function, but for plain HTTP only: werkzeug tells
    an upgrade apart and refuses it (400) unless a rule is for websockets. A function module calls
    this at import, inside the app's context; imported outside an app (e.g. by a test) it does
    nothing."""
    import flask
    from werkzeug.routing import Rule

    if flask.has_app_context():
        flask.current_app.url_map.add(Rule("/<path:path>", endpoint="run", websocket=True))


def owned_service(
    platform: Platform, owner: str, ssid: str | None, namespace: str | None = None
) -> StackService:
    """The caller's stack service ``ssid``; as the Go apiserver, 404 for one that is not the
    caller's (whoever names another user's ``namespace``, the admin too)."""
    if not ssid:
        raise InvalidInput("names no stack service", field="ssid")
    if namespace and namespace != owner:
        raise NotFound("stack service", ssid)
    stack = platform.store.get_stack(owner, stack_id_of(ssid))
    service = next((item for item in stack.services if item.id == ssid), None) if stack else None
    if service is None:
        raise NotFound("stack service", ssid)
    return service


def refusal(platform: Platform, service: StackService) -> WorkbenchError | None:
    """Why no console opens in ``service`` now: 501 where the runtime has no containers, 409 while
    the service is not running; None when one opens."""
    if not platform.runtime.consoles:
        return NotSupported(
            "no console here: stacks run as local processes, which have no container to open a shell "
            "in; a console needs Docker, Podman or Kubernetes"
        )
    if service.status != "ready":
        return Conflict(
            f"stack service '{service.id}' is not running (its status: {service.status or 'stopped'}); "
            "start its stack first"
        )
    return None


def check(platform: Platform, owner: str, ssid: str | None, namespace: str | None = None) -> ConsoleCheck:
    """``check_console`` as Go answered it: 200 for any stack service of the caller's (404 else),
    saying here too whether a shell opens in it now and, if not, why."""
    service = owned_service(platform, owner, ssid, namespace)
    refused = refusal(platform, service)
    return ConsoleCheck(ssid=service.id, available=refused is None, reason=str(refused or ""))


def openable(platform: Platform, owner: str, ssid: str | None, namespace: str | None = None) -> StackService:
    """The caller's running stack service ``ssid``, where a console opens; else its refusal."""
    service = owned_service(platform, owner, ssid, namespace)
    refused = refusal(platform, service)
    if refused is not None:
        raise refused
    return service


def terminal_size(columns: str | None, rows: str | None) -> tuple[int, int]:
    """The terminal's size from the query (``cols``, ``rows``), else 80 by 24."""
    size = list(DEFAULT_SIZE)
    for index, (name, value) in enumerate((("cols", columns), ("rows", rows))):
        if value:
            if not value.isdigit() or not 0 < int(value) <= LARGEST_SIZE:
                raise InvalidInput(f"must be a whole number from 1 to {LARGEST_SIZE}", field=name)
            size[index] = int(value)
    return size[0], size[1]


def require_upgrade(headers: Any) -> None:
    if headers.get("Upgrade", "").lower() != "websocket":
        raise InvalidInput(
            "this route opens a websocket: send a websocket upgrade (GET with Upgrade: websocket)"
        )


def open_session(platform: Platform, owner: str, ssid: str, size: tuple[int, int]) -> ConsoleSession:
    session = platform.runtime.console(owner, ssid, *size)
    log.info("console opened in %s for %s", ssid, owner)
    return session


def serve(environ: dict[str, Any], session: ConsoleSession, ssid: str) -> Response:
    """Take the connection over as a websocket and carry the terminal both ways until either end
    closes; then end the session (the shell and everything it started). The answer ends the request
    without writing to the connection the websocket took."""
    import simple_websocket

    class Socket(simple_websocket.Server):  # type: ignore[misc]
        def choose_subprotocol(self, request: Any) -> str | None:
            # A browser offers its token beside the console's name: the answer is the name alone.
            return SUBPROTOCOL if SUBPROTOCOL in request.subprotocols else None

    try:
        socket = Socket(environ, ping_interval=PING_SECONDS, max_message_size=MAX_MESSAGE_BYTES)
    except Exception:
        session.close()
        raise
    output = threading.Thread(target=_carry_output, args=(session, socket), name=f"console {ssid}")
    output.start()
    try:
        _carry_input(session, socket)
    finally:
        session.close()
        output.join()
        if socket.connected:
            with contextlib.suppress(simple_websocket.ConnectionClosed):
                socket.close(1000, "the shell ended")
    log.info("console closed in %s", ssid)
    return _ended(socket.mode)


def _carry_input(session: ConsoleSession, socket: Any) -> None:
    import simple_websocket

    while True:
        try:
            message = socket.receive()
        except simple_websocket.ConnectionClosed:
            return
        if message is None:
            return
        if isinstance(message, str):
            session.write(message.encode())
        elif message[:1] == bytes([RESIZE]):
            size = _size_of(message[1:])
            if size is not None:
                session.resize(*size)
        elif message[:1] == bytes([STDIN]):
            session.write(bytes(message[1:]))


def _carry_output(session: ConsoleSession, socket: Any) -> None:
    import simple_websocket

    try:
        while True:
            data = session.read()
            if not data:
                break
            socket.send(data)
    except (simple_websocket.ConnectionClosed, OSError):
        pass
    finally:
        # The shell ended (or the client went): wake the input side, which then ends the session.
        if socket.connected:
            with contextlib.suppress(simple_websocket.ConnectionClosed, OSError):
                socket.close(1000, "the shell ended")
        socket.event.set()


def _size_of(data: bytes) -> tuple[int, int] | None:
    try:
        size = json.loads(data)
        columns, rows = int(size["Width"]), int(size["Height"])
    except (ValueError, KeyError, TypeError):
        return None
    if not (0 < columns <= LARGEST_SIZE and 0 < rows <= LARGEST_SIZE):
        return None
    return columns, rows


def _ended(mode: str) -> Response:
    """An answer that writes nothing: the websocket owned the connection. Werkzeug's server takes a
    ``ConnectionError`` as a connection gone, gunicorn a ``StopIteration`` as one to close."""
    from flask import Response

    class Ended(Response):
        def __call__(self, environ: Any, start_response: Any) -> Any:
            if mode == "gunicorn":
                raise StopIteration()
            raise ConnectionError("the websocket has ended")

    return Ended()
