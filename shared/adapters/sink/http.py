"""Outbound events over HTTP: to the Broker on a cluster, or to this platform's own /events."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from events.types import Payload

log = logging.getLogger("workbench.events")


class HttpSink:
    """Signs each event with the pairing secret and posts it to ``url``."""

    def __init__(self, url: str, source: str, secret: Callable[[], bytes]) -> None:
        self.url = url
        self.source = source
        # Asked for at the first event: the secret may be made (and written) on first use.
        self._secret = secret

    def emit(self, event_type: str, data: Payload, *, subject: str | None = None) -> None:
        from events import codec, producer

        event = codec.new_event(event_type, data, source=self.source, subject=subject, secret=self._secret())
        try:
            status = producer.send(event, self.url)
        except producer.DeliveryError as error:
            log.warning("could not send %s to %s: %s", event_type, self.url, error)
            return
        if status >= 300:
            log.warning("the sink %s answered %d to %s", self.url, status, event_type)
