"""The time as the platform records it: whole seconds since the epoch (the Go apiserver's timestamps)."""

from __future__ import annotations

import time


def now() -> int:
    """The current time in whole seconds since the epoch."""
    return int(time.time())
