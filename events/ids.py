"""What an id of a Clowder dataset, file or space may look like (cheap to import, as events.names is)."""

from __future__ import annotations

CLOWDER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
"""Clowder's own ids are 24 hex digits (MongoDB ObjectIds); any id of letters, digits, ``-`` and ``_``
is taken, but never ``.``, ``..``, a slash or an escape, which would name another path of Clowder's
API once put into a URL."""

CLOWDER_ID_RULE = "letters, digits, '-' and '_' only (at most 64), as Clowder's ids are"
"""The pattern in words, for error messages."""
