"""The error of a body past its documented limit, worded alike wherever a body is bounded."""

from __future__ import annotations

from shared.core.errors import ContentTooLarge


def too_large(length: int | None, limit: int, setting: str) -> ContentTooLarge:
    """``ContentTooLarge`` for a body of ``length`` bytes (None: unknown, e.g. chunked) over ``limit``,
    naming the ``setting`` that sets the limit."""
    size = "longer" if length is None or length <= limit else f"{length} bytes"
    return ContentTooLarge(f"the body is {size}, more than the {limit} bytes allowed ({setting})")
