"""A shell in a running stack service, over a websocket: the session between the browser and the shell."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from typing import TYPE_CHECKING, Any

from shared.core.errors import InvalidInput
from shared.domain.console import LARGEST_SIZE

if TYPE_CHECKING:
    from flask import Response

    from shared.adapters.runtime import ConsoleSession

log = logging.getLogger(__name__)

SUBPROTOCOL = "workbench.console"
"""The subprotocol the server answers a browser with (never the offered token)."""
RESIZE = 4
"""A binary message starting with this byte carries the terminal's size as JSON, as Kubernetes' channel
4 does (``{"Width": 120, "Height": 40}``); any other binary message starting with 0 is keystrokes, and a
text message is keystrokes as it is (what the Go CLI sends)."""
STDIN = 0
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


def require_upgrade(headers: Any) -> None:
    if headers.get("Upgrade", "").lower() != "websocket":
        raise InvalidInput(
            "this route opens a websocket: send a websocket upgrade (GET with Upgrade: websocket)"
        )


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
