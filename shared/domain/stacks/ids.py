"""The ids of stacks and of their services."""

from __future__ import annotations

import secrets
import string

ID_ALPHABET = string.ascii_lowercase + string.digits


def random_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(length))


def new_stack_id() -> str:
    """``s`` and 5 random characters, as the Go apiserver made them."""
    return "s" + random_suffix()


def stack_id_of(ssid: str) -> str:
    return ssid.split("-", 1)[0]
