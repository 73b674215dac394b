"""The local Broker: CloudEvents accepted at /events and delivered to their function by type, with retries."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.core.durable import write_atomically
from shared.serving import registry

if TYPE_CHECKING:
    from events.codec import Event

log = logging.getLogger("workbench.ingress")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
RETRIED = {404, 409, 429}
"""Besides 5xx, the statuses Knative's delivery retries; any other 4xx is final."""


DELIVERY_WORKERS = 16
"""Events delivered at once, as a Broker delivers to functions that scale out: a transfer's delivery
lasts as long as its staging, so ten users' transfers arriving together are staged together (none
waits for the others to finish), and the shovels' reports still get through meanwhile."""


class EventIngress:
    """Accepts an event with 202 at once, as a Broker does, then delivers it to the function whose
    Trigger filter names its type (exact match on ``type``), retrying with exponential backoff.

    Before accepting, it checks what the functions would check first: the body's size
    (``WORKBENCH_MAX_EVENT_BYTES``, else 413, read no further), the CloudEvent itself (else 400), and
    its signature where signatures are required (else 401), so that no unsigned or forged event is
    delivered, retried or kept.

    What still fails is dead-lettered as the Triggers' delivery spec does it: handed, with the
    ``knativeerror*`` extensions, to the ``deadletter`` function (so both deployments keep and show
    dead letters alike), and written into ``<data dir>/deadletter`` as well, so that nothing is lost
    when that function cannot take it either."""

    def __init__(
        self,
        app_for: Callable[[str], WSGIApp],
        dead_letters: Path,
        *,
        attempts: int = 5,
        backoff_seconds: float = 0.5,
        workers: int = DELIVERY_WORKERS,
    ) -> None:
        self.app_for = app_for
        self.dead_letters = dead_letters
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="event delivery")
        self._pending = 0
        self._idle = threading.Condition()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        from werkzeug.wrappers import Request

        from events import codec
        from events.errors import InvalidEvent, InvalidSignature
        from shared.bootstrap import platform
        from shared.core.errors import ContentTooLarge
        from shared.serving.eventing import event_body, verify

        request = Request(environ)
        if request.method != "POST":
            return _reply(start_response, 405, {"Error": "send CloudEvents with POST"}, allow="POST")
        try:
            event = codec.from_http(dict(request.headers), event_body(request))
        except ContentTooLarge as error:
            return _reply(start_response, 413, {"Error": error.message})
        except InvalidEvent as error:
            return _reply(start_response, 400, {"Error": f"not a valid CloudEvent: {error}"})
        try:
            verify(platform(), event)
        except InvalidSignature as error:
            log.warning("refused event %s (%s) from %s: %s", event.id, event.type, event.source, error)
            return _reply(start_response, 401, {"Error": f"refused: {error}"})
        except InvalidEvent as error:
            return _reply(start_response, 400, {"Error": f"not a valid CloudEvent: {error}"})
        function = registry.function_for_event(event.type)
        if function is None:
            log.info("no function receives %s; event %s dropped", event.type, event.id)
        else:
            with self._idle:
                self._pending += 1
            self._executor.submit(self._deliver, event, function.name)
        return _reply(start_response, 202, None)

    def _deliver(self, event: Event, function_name: str) -> None:
        try:
            status, answer = self._attempt(event, function_name)
            if not 200 <= status < 300:
                self._dead_letter(event, function_name, status, answer)
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def _attempt(self, event: Event, function_name: str) -> tuple[int, bytes]:
        """Deliver in binary mode, retrying what Knative retries; the last status and reply."""
        from werkzeug.test import EnvironBuilder, run_wsgi_app

        from events import codec
        from shared.core.retry import Again, Attempt, Policy

        headers, body = codec.to_http(event, "binary")

        def once(now: Attempt) -> tuple[int, bytes]:
            environ = EnvironBuilder(
                path="/", method="POST", headers=list(headers.items()), data=body
            ).get_environ()
            try:
                chunks, status_line, _ = run_wsgi_app(self.app_for(function_name), environ)
                answer = b"".join(chunks)
                status = int(status_line.split()[0])
            except Exception as error:
                log.exception("delivering %s to %s failed", event.id, function_name)
                status, answer = 500, str(error).encode()
            if not now.last and (status >= 500 or status in RETRIED):
                raise Again(f"{function_name} answered {status}")
            return status, answer

        # Without jitter, as a Trigger's exponential backoffPolicy waits: backoff * 2 ** (n - 1).
        policy = Policy(retries=max(0, self.attempts - 1), backoff=self.backoff_seconds, jitter=False)
        return policy.run(once)

    def _dead_letter(self, event: Event, function_name: str, status: int, answer: bytes) -> None:
        """Keep what could not be delivered, with the ``knativeerror*`` facts a dead-letter sink gets."""
        from events.codec import Event
        from shared.domain.deadletters import ERROR_CODE, ERROR_DATA, ERROR_DESTINATION, error_data

        log.warning(
            "event %s (%s) dead-lettered: %s answered %d", event.id, event.type, function_name, status
        )
        self._write_dead_letter(event, function_name, status, answer)
        extended = Event(
            {
                **event.attributes,
                ERROR_DESTINATION: function_name,
                ERROR_CODE: str(status),
                ERROR_DATA: error_data(answer),
            },
            event.data,
        )
        # As with a Trigger's dead-letter sink, a failure here is only logged: the file keeps it.
        kept, reply = self._attempt(extended, registry.DEAD_LETTER_FUNCTION)
        if not 200 <= kept < 300:
            log.error(
                "the %s function refused event %s with %d: %s",
                registry.DEAD_LETTER_FUNCTION,
                event.id,
                kept,
                reply.decode("utf-8", "replace")[:200],
            )

    def _write_dead_letter(self, event: Event, function_name: str, status: int, answer: bytes) -> None:
        from shared.domain.deadletters import ERROR_DATA_LIMIT, TEXT_LIMIT, dead_letter_id, excerpt

        self.dead_letters.mkdir(parents=True, exist_ok=True)
        record = {
            "attributes": {
                name: excerpt(value.encode(), TEXT_LIMIT) for name, value in event.attributes.items()
            },
            "data": excerpt(event.data),
            "knativeerrordest": function_name,
            "knativeerrorcode": status,
            "knativeerrordata": excerpt(answer, ERROR_DATA_LIMIT),
            "time": time.time(),
        }
        # Named by a digest, not by the event's id: an id may hold a '/' or be longer than a file name.
        name = f"{int(time.time() * 1000)}-{dead_letter_id(event.source, event.id, function_name)}.json"
        write_atomically(self.dead_letters / name, json.dumps(record).encode(), prefix=".")

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every accepted event was delivered or dead-lettered (for tests and shutdown)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _reply(
    start_response: Callable[..., Any], status: int, body: dict[str, str] | None, *, allow: str | None = None
) -> Iterable[bytes]:
    from werkzeug.http import HTTP_STATUS_CODES

    payload = b"" if body is None else json.dumps(body).encode()
    headers = [("Content-Length", str(len(payload)))]
    if body is not None:
        headers.append(("Content-Type", "application/json"))
    if allow:
        headers.append(("Allow", allow))
    start_response(f"{status} {HTTP_STATUS_CODES[status]}", headers)
    return [payload]
