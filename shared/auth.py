"""Tokens (JWT HS256 with the Go apiserver's claims) and password hashing (argon2)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from shared.errors import Unauthorized

RESET_SCOPE = "reset"


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


class Tokens:
    """Issues and checks tokens with claims ``user``, ``admin``, ``exp`` and ``orig_iat``."""

    def __init__(self, secret: str, *, lifetime_seconds: int, refresh_seconds: int) -> None:
        if len(secret) < 32:
            raise ValueError("the token secret must be at least 32 characters")
        self._secret = secret
        self.lifetime_seconds = lifetime_seconds
        self.refresh_seconds = refresh_seconds

    def issue(
        self,
        user: str,
        *,
        admin: bool = False,
        orig_iat: int | None = None,
        scope: str | None = None,
        lifetime_seconds: int | None = None,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "user": user,
            "admin": admin,
            "exp": now + (lifetime_seconds or self.lifetime_seconds),
            "orig_iat": orig_iat if orig_iat is not None else now,
        }
        if scope is not None:
            claims["scope"] = scope
        import jwt  # imported on first use: a function's cold start need not pay for it

        return jwt.encode(claims, self._secret, algorithm="HS256")

    def decode(self, token: str, *, allow_expired: bool = False) -> Principal:
        import jwt

        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                options={"verify_exp": not allow_expired, "require": ["user", "exp", "orig_iat"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token is expired") from None
        except jwt.InvalidTokenError as error:
            raise Unauthorized(f"invalid token: {error}") from None
        user = claims.get("user")
        if not isinstance(user, str) or not user:
            raise Unauthorized("invalid token: no user claim")
        return Principal(user=user, admin=claims.get("admin") is True, claims=claims)

    def verify(self, token: str) -> Principal:
        """An API token: valid, unexpired, and not a password-reset token."""
        principal = self.decode(token)
        if principal.scope is not None:
            raise Unauthorized(f"a {principal.scope} token cannot be used for this call")
        return principal

    def refresh(self, token: str) -> str:
        """A fresh token for a valid one issued (``orig_iat``) within the refresh window."""
        principal = self.decode(token, allow_expired=True)
        if principal.scope is not None:
            raise Unauthorized(f"a {principal.scope} token cannot be refreshed")
        orig_iat = principal.claims.get("orig_iat")
        if not isinstance(orig_iat, int) or orig_iat + self.refresh_seconds < time.time():
            raise Unauthorized("token is too old to refresh; log in again")
        return self.issue(principal.user, admin=principal.admin, orig_iat=orig_iat)


class Passwords:
    """Argon2id password hashes."""

    def __init__(self) -> None:
        from argon2 import PasswordHasher

        self._hasher = PasswordHasher()

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        from argon2.exceptions import InvalidHashError, VerificationError

        if not password_hash:
            return False
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False
