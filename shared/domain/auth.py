"""Tokens (JWT HS256 with the Go apiserver's claims) and password hashing (argon2)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.core import apr1
from shared.core.errors import Unauthorized

RESET_SCOPE = "reset"
STACK_CONTROL_SECONDS = 3600
"""How long a stack's control token lasts: a command carrying one waits its turn in the user's queue
for minutes at most, and a token that leaks is soon worth nothing."""
ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("user", "exp", "orig_iat")
VERIFIED_TOKENS = 4096
GENERATION_CLAIM = "gen"
"""The account's token generation when the token was issued (beside the Go apiserver's claims)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the user name, whether they are the admin, and the token's claims."""

    user: str
    admin: bool = False
    claims: dict[str, Any] = field(default_factory=dict)

    @property
    def scope(self) -> str | None:
        scope = self.claims.get("scope")
        return scope if isinstance(scope, str) else None


def stack_control_scope(sid: str) -> str:
    """The scope of a token that may start and stop the stack ``sid`` of its user, and do nothing else."""
    return f"stack:{sid}:control"


GenerationOf = Callable[[str], str | None]
"""The current token generation of an account that may use tokens; None when it may not (deleted,
not approved)."""


class Tokens:
    """Issues and checks tokens with claims ``user``, ``admin``, ``exp``, ``orig_iat`` and ``gen``.

    With ``generation_of`` (the store's, in the platform), a token is good only while the account it
    names still has the generation the token carries: deleting or re-creating the account, a status
    change, logging out and changing the password each give the account a new one."""

    def __init__(
        self,
        secret: str,
        *,
        lifetime_seconds: int,
        refresh_seconds: int,
        generation_of: GenerationOf | None = None,
    ) -> None:
        if len(secret) < 32:
            raise ValueError("the token secret must be at least 32 characters")
        self._secret = secret
        self.lifetime_seconds = lifetime_seconds
        self.refresh_seconds = refresh_seconds
        self._generation_of = generation_of
        self._verified: dict[str, Principal] = {}
        """API tokens checked before, until they expire: a client sends the same one with every call."""

    def issue(
        self,
        user: str,
        *,
        admin: bool = False,
        orig_iat: int | None = None,
        scope: str | None = None,
        lifetime_seconds: int | None = None,
        generation: str | None = None,
    ) -> str:
        """A token for ``user``; without ``generation``, the account's current one is looked up (a
        token for an account that has none, e.g. not approved, carries none and is refused)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "user": user,
            "admin": admin,
            "exp": now + (lifetime_seconds or self.lifetime_seconds),
            "orig_iat": orig_iat if orig_iat is not None else now,
        }
        if scope is not None:
            claims["scope"] = scope
        if generation is None and self._generation_of is not None:
            generation = self._generation_of(user)
        if generation is not None:
            claims[GENERATION_CLAIM] = generation
        return encode_jwt(claims, self._secret.encode("utf-8"))

    def issue_stack_control(self, user: str, sid: str) -> str:
        """A token that starts and stops ``user``'s stack ``sid`` only (what a shovel carries out for
        the user), for ``STACK_CONTROL_SECONDS``; like every token of the account, it is refused once
        the account's sessions end."""
        return self.issue(user, scope=stack_control_scope(sid), lifetime_seconds=STACK_CONTROL_SECONDS)

    def link_mac(self, *facts: str) -> str:
        """A keyed MAC (HMAC-SHA256, base64url) of ``facts``, for the tokens of e-mailed links: the
        same facts give the same token, and nobody without the server's secret can make one. Its key
        is derived from the secret, so that it signs nothing a JWT could be."""
        key = hmac.new(self._secret.encode("utf-8"), b"workbench e-mail link", hashlib.sha256).digest()
        message = json.dumps(facts, ensure_ascii=True).encode("ascii")  # unambiguous, whatever a fact holds
        return _base64url(hmac.new(key, message, hashlib.sha256).digest())

    def decode(self, token: str, *, allow_expired: bool = False) -> Principal:
        claims = decode_jwt(token, self._secret.encode("utf-8"), verify_exp=not allow_expired)
        user = claims.get("user")
        if not isinstance(user, str) or not user:
            raise Unauthorized("invalid token: no user claim")
        return Principal(user=user, admin=claims.get("admin") is True, claims=claims)

    def verify(self, token: str, *, scope: str | None = None) -> Principal:
        """An API token: valid, unexpired, of the account as it is, and unscoped, or of ``scope`` when
        the route names the one scope it also takes (a stack's control token on that stack's start and
        stop); a password-reset token is taken by no route.

        What a token says is remembered until its ``exp``: nothing about it can change (its
        signature, claims, ``nbf`` and ``iat`` were checked), so a call with it again only checks the
        time, and the account's generation: that is read on every call (one primary-key read), since
        any instance of any function may have ended the account's sessions since. At most
        ``VERIFIED_TOKENS`` are remembered; past that the memory starts afresh."""
        principal = self._verified.get(token)
        if principal is None or principal.claims["exp"] <= time.time():
            principal = self.decode(token)
            if len(self._verified) >= VERIFIED_TOKENS:
                self._verified.clear()
            self._verified[token] = principal
        # Checked on every call, not once: the same token may next come to a route of another scope.
        if principal.scope is not None and principal.scope != scope:
            raise Unauthorized(f"a {principal.scope} token cannot be used for this call")
        self.check_generation(principal)
        return principal

    def check_generation(self, principal: Principal) -> None:
        """Refuse a token whose account is gone, cannot log in, or has ended its sessions since."""
        if self._generation_of is None:
            return
        current = self._generation_of(principal.user)
        if current is None:
            raise Unauthorized(f"token refused: account '{principal.user}' no longer exists or cannot log in")
        if principal.claims.get(GENERATION_CLAIM) != current:
            raise Unauthorized("token refused: its session was ended (logout, password or account change)")

    def refresh(self, token: str) -> str:
        """A fresh token for a valid one issued (``orig_iat``) within the refresh window, of the same
        account generation."""
        principal = self.decode(token, allow_expired=True)
        if principal.scope is not None:
            raise Unauthorized(f"a {principal.scope} token cannot be refreshed")
        orig_iat = principal.claims.get("orig_iat")
        if not isinstance(orig_iat, int) or orig_iat + self.refresh_seconds < time.time():
            raise Unauthorized("token is too old to refresh; log in again")
        self.check_generation(principal)
        generation = principal.claims.get(GENERATION_CLAIM)
        return self.issue(
            principal.user,
            admin=principal.admin,
            orig_iat=orig_iat,
            generation=generation if isinstance(generation, str) else None,
        )


# --- JWT (RFC 7519) in the JWS compact form, HS256 only -----------------------------------------
# The Go apiserver's tokens are HS256 and nothing else is accepted, which makes this a few lines of
# the standard library. A general JWT library costs more to import than a cold start can spare: one
# that also supports the asymmetric algorithms (PyJWT) loads ``cryptography`` whenever it is
# installed, about as long as starting the function itself.

_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
"""A base64url segment without padding (RFC 7515, section 2)."""
_HEADER = {"alg": ALGORITHM, "typ": "JWT"}


def _base64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unbase64url(segment: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise Unauthorized("invalid token: a part is not base64url") from None


def _json_object(segment: str, part: str) -> dict[str, Any]:
    try:
        document = json.loads(_unbase64url(segment))
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep, a number too long
        raise Unauthorized(f"invalid token: the {part} is not JSON") from None
    if not isinstance(document, dict):
        raise Unauthorized(f"invalid token: the {part} is not a JSON object")
    return document


def _signature(signing_input: str, key: bytes) -> bytes:
    return hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()


def _time_claim(claims: dict[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Unauthorized(f"invalid token: the {name} claim is not a number")
    return float(value)


def encode_jwt(claims: dict[str, Any], key: bytes) -> str:
    """A compact HS256 JWT of ``claims``."""
    signing_input = _base64url(json.dumps(_HEADER, separators=(",", ":")).encode()) + "."
    signing_input += _base64url(json.dumps(claims, separators=(",", ":")).encode())
    return f"{signing_input}.{_base64url(_signature(signing_input, key))}"


def decode_jwt(token: str, key: bytes, *, verify_exp: bool = True) -> dict[str, Any]:
    """The claims of a compact HS256 JWT signed with ``key``; ``Unauthorized`` saying what is wrong.

    Checked, as a JWT library checks them: the form, the algorithm (HS256 only: no ``none``, and no
    other algorithm an attacker may pick), the signature (in constant time), the required claims,
    ``exp`` (unless ``verify_exp`` is off, for refreshing), and ``nbf``, ``iat`` and ``aud`` when
    present (no audience is expected, so a token meant for one is refused)."""
    parts = token.split(".")
    if len(parts) != 3 or not all(_SEGMENT.fullmatch(part) for part in parts):
        raise Unauthorized("invalid token: not a compact JWT")
    header_segment, claims_segment, signature_segment = parts
    header = _json_object(header_segment, "header")
    if header.get("alg") != ALGORITHM:
        raise Unauthorized(f"invalid token: the algorithm is not {ALGORITHM}")
    if "crit" in header:
        raise Unauthorized("invalid token: it has critical extensions, which are not understood here")
    expected = _signature(f"{header_segment}.{claims_segment}", key)
    if not hmac.compare_digest(expected, _unbase64url(signature_segment)):
        raise Unauthorized("invalid token: the signature does not match")
    claims = _json_object(claims_segment, "payload")
    for name in REQUIRED_CLAIMS:
        if claims.get(name) is None:
            raise Unauthorized(f"invalid token: it has no {name} claim")
    now = time.time()
    if "iat" in claims and _time_claim(claims, "iat") > now:
        raise Unauthorized("invalid token: it is not valid yet (iat)")
    if "nbf" in claims and _time_claim(claims, "nbf") > now:
        raise Unauthorized("invalid token: it is not valid yet (nbf)")
    expires = _time_claim(claims, "exp")
    if verify_exp and expires <= now:
        raise Unauthorized("token is expired")
    if claims.get("aud"):
        raise Unauthorized("invalid token: it is meant for an audience")
    return claims


class Passwords:
    """Argon2id password hashes."""

    def __init__(self) -> None:
        from argon2 import PasswordHasher

        self._hasher = PasswordHasher()
        self._dummy_hash: str | None = None

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether a hash that just verified should be replaced by a current argon2 one."""
        return password_hash.startswith(apr1.PREFIX) or self._hasher.check_needs_rehash(password_hash)

    def verify_nobody(self, password: str) -> bool:
        """As long as ``verify`` takes, for a login naming no account (so that the time taken does not
        tell a known name from an unknown one); always False."""
        if self._dummy_hash is None:
            import secrets

            self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
        self.verify(self._dummy_hash, password)
        return False

    def verify(self, password_hash: str, password: str) -> bool:
        """Whether ``password`` matches: an argon2 hash, or the APR1 hash of an account imported
        from the Go apiserver (replaced on its next login, see ``needs_rehash``)."""
        from argon2.exceptions import InvalidHashError, VerificationError

        if not password_hash:
            return False
        if password_hash.startswith(apr1.PREFIX):
            return apr1.verify(password_hash, password)
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False
