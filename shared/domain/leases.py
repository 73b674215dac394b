"""Keeping a claim on work alive while it goes on, so that no sweep takes it for abandoned."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from shared.core.errors import WorkbenchError

log = logging.getLogger(__name__)


@contextmanager
def lease_kept(renew: Callable[[], object], every: float, *, what: str) -> Iterator[None]:
    """Call ``renew`` every ``every`` seconds while the block runs (on a thread of its own: one long
    download must not let the lease run out). A renewal that fails is logged; the next one tries again."""
    done = threading.Event()

    def keep() -> None:
        while not done.wait(every):
            try:
                renew()
            except WorkbenchError as error:
                log.warning("could not renew the lease of %s: %s", what, error.message)

    keeper = threading.Thread(target=keep, name=f"lease of {what}", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        done.set()
        keeper.join()
