"""Apache's APR1 (MD5-crypt) password hashes, which the Go apiserver stored: checked, never made.

Accounts exported from the Go Workbench carry them; they are verified here on login and replaced by
an argon2 hash as soon as the password is known."""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "$apr1$"
_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ROUNDS = 1000
_SALT_MAX = 8


def is_apr1(password_hash: str) -> bool:
    """Whether ``password_hash`` looks like ``$apr1$<salt>$<22 characters>``."""
    if not password_hash.startswith(PREFIX):
        return False
    salt, separator, digest = password_hash[len(PREFIX) :].partition("$")
    return (
        bool(separator)
        and 0 < len(salt) <= _SALT_MAX
        and "$" not in salt
        and len(digest) == 22
        and all(character in _ALPHABET for character in digest)
    )


def _md5(data: bytes = b"") -> hashlib._Hash:
    # A legacy format kept only to let old accounts log in once; new hashes are argon2.
    return hashlib.md5(data, usedforsecurity=False)


def _encode(value: int, length: int) -> str:
    characters = []
    for _ in range(length):
        characters.append(_ALPHABET[value & 0x3F])
        value >>= 6
    return "".join(characters)


def apr1(password: str, salt: str) -> str:
    """The APR1 hash of ``password`` with ``salt`` (at most its first 8 characters), as htpasswd -m."""
    secret = password.encode("utf-8")
    salt_bytes = salt[:_SALT_MAX].encode("utf-8")
    magic = PREFIX.encode("ascii")
    context = _md5(secret + magic + salt_bytes)
    alternate = _md5(secret + salt_bytes + secret).digest()
    for remaining in range(len(secret), 0, -16):
        context.update(alternate[: min(16, remaining)])
    length = len(secret)
    while length:
        context.update(b"\0" if length & 1 else secret[:1])
        length >>= 1
    digest = context.digest()
    for round_number in range(_ROUNDS):
        step = _md5()
        step.update(secret if round_number & 1 else digest)
        if round_number % 3:
            step.update(salt_bytes)
        if round_number % 7:
            step.update(secret)
        step.update(digest if round_number & 1 else secret)
        digest = step.digest()
    groups = ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5))
    encoded = "".join(_encode((digest[a] << 16) | (digest[b] << 8) | digest[c], 4) for a, b, c in groups)
    return f"{PREFIX}{salt[:_SALT_MAX]}${encoded}{_encode(digest[11], 2)}"


def verify(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches the APR1 ``password_hash`` (compared in constant time)."""
    if not is_apr1(password_hash):
        return False
    salt = password_hash[len(PREFIX) :].partition("$")[0]
    return hmac.compare_digest(apr1(password, salt).encode("utf-8"), password_hash.encode("utf-8"))
