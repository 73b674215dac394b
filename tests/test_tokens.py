"""The HS256 JWT codec of shared.domain.auth, checked against PyJWT and against tokens a forger would try."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest

from shared.core.errors import Unauthorized
from shared.domain.auth import decode_jwt, encode_jwt

KEY = "k" * 48


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    document = {"user": "alice", "admin": False, "exp": now + 600, "orig_iat": now} | changes
    return {name: value for name, value in document.items() if value is not None}


def segment(document: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()


def test_the_tokens_are_those_pyjwt_makes_and_reads() -> None:
    document = claims(scope="reset")
    token = encode_jwt(document, KEY.encode())
    assert token == jwt.encode(document, KEY, algorithm="HS256")
    assert jwt.decode(token, KEY, algorithms=["HS256"]) == document
    assert decode_jwt(jwt.encode(document, KEY, algorithm="HS256"), KEY.encode()) == document


def test_an_expired_token_is_refused_unless_expiry_is_not_checked() -> None:
    token = encode_jwt(claims(exp=int(time.time()) - 1), KEY.encode())
    with pytest.raises(Unauthorized, match="expired"):
        decode_jwt(token, KEY.encode())
    assert decode_jwt(token, KEY.encode(), verify_exp=False)["user"] == "alice"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (lambda: encode_jwt(claims(), b"another-key-" + b"x" * 40), "signature"),
        (lambda: jwt.encode(claims(), None, algorithm="none"), "algorithm"),
        (lambda: jwt.encode(claims(), KEY, algorithm="HS384"), "algorithm"),
        (lambda: jwt.encode(claims(), KEY, algorithm="HS256", headers={"crit": ["exp"]}), "critical"),
        (lambda: encode_jwt(claims(nbf=int(time.time()) + 600), KEY.encode()), "not valid yet"),
        (lambda: encode_jwt(claims(iat=int(time.time()) + 600), KEY.encode()), "not valid yet"),
        (lambda: encode_jwt(claims(aud="elsewhere"), KEY.encode()), "audience"),
        (lambda: encode_jwt(claims(exp="tomorrow"), KEY.encode()), "not a number"),
        (lambda: encode_jwt(claims(exp=True), KEY.encode()), "not a number"),
        (lambda: encode_jwt(claims(orig_iat=None), KEY.encode()), "orig_iat"),
        (lambda: encode_jwt(claims(user=None), KEY.encode()), "user"),
        (lambda: "only.two", "compact"),
        (lambda: "a.b.c.d", "compact"),
        (lambda: "a+b.c.d", "compact"),
        (lambda: "e30.e30.", "algorithm"),
        (lambda: segment({"alg": "HS256"}) + ".W10." + "x", "base64url"),
    ],
)
def test_forged_or_malformed_tokens_are_refused(token: Any, reason: str) -> None:
    with pytest.raises(Unauthorized, match=reason):
        decode_jwt(token(), KEY.encode())


def test_a_changed_payload_breaks_the_signature() -> None:
    header, _, signature = encode_jwt(claims(), KEY.encode()).split(".")
    forged = f"{header}.{segment(claims(admin=True))}.{signature}"
    with pytest.raises(Unauthorized, match="signature"):
        decode_jwt(forged, KEY.encode())


def test_a_payload_that_is_not_an_object_is_refused() -> None:
    signing_input = segment({"alg": "HS256", "typ": "JWT"}) + "." + segment([1, 2])
    digest = hmac.new(KEY.encode(), signing_input.encode(), hashlib.sha256).digest()
    signature = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    with pytest.raises(Unauthorized, match="not a JSON object"):
        decode_jwt(f"{signing_input}.{signature}", KEY.encode())


def test_a_verified_token_is_remembered_only_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.domain import auth

    tokens = auth.Tokens(KEY, lifetime_seconds=60, refresh_seconds=600)
    token = tokens.issue("alice")
    assert tokens.verify(token).user == "alice"
    assert tokens.verify(token) is tokens.verify(token)  # the second call is answered from memory
    later = time.time() + 61
    monkeypatch.setattr(auth.time, "time", lambda: later)
    with pytest.raises(Unauthorized, match="expired"):
        tokens.verify(token)


def test_only_tokens_that_passed_are_remembered_and_the_memory_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shared.domain import auth

    monkeypatch.setattr(auth, "VERIFIED_TOKENS", 3)
    tokens = auth.Tokens(KEY, lifetime_seconds=60, refresh_seconds=600)
    forged = encode_jwt(claims(), b"another-key-" + b"x" * 40)
    reset = tokens.issue("alice", scope=auth.RESET_SCOPE)
    for _ in range(2):
        with pytest.raises(Unauthorized, match="signature"):
            tokens.verify(forged)
        with pytest.raises(Unauthorized, match="reset"):
            tokens.verify(reset)
    issued = [tokens.issue(f"user{number}") for number in range(5)]
    assert [tokens.verify(token).user for token in issued] == [f"user{number}" for number in range(5)]
    assert len(tokens._verified) <= 3


def test_a_remembered_token_is_refused_once_its_account_generation_changes() -> None:
    """Only the signature check is remembered: the account's generation is asked on every call."""
    from shared.domain import auth

    generations: dict[str, str | None] = {"alice": "first"}
    asked: list[str] = []

    def generation_of(user: str) -> str | None:
        asked.append(user)
        return generations.get(user)

    tokens = auth.Tokens(KEY, lifetime_seconds=60, refresh_seconds=600, generation_of=generation_of)
    token = tokens.issue("alice")
    assert jwt.decode(token, KEY, algorithms=["HS256"])["gen"] == "first"
    assert tokens.verify(token).user == "alice"
    assert tokens.verify(token).user == "alice"
    generations["alice"] = "second"
    with pytest.raises(Unauthorized, match="ended"):
        tokens.verify(token)
    with pytest.raises(Unauthorized, match="ended"):
        tokens.refresh(token)
    generations["alice"] = None  # deleted, or no longer approved
    with pytest.raises(Unauthorized, match="no longer exists or cannot log in"):
        tokens.verify(tokens.issue("alice", generation="second"))
    assert asked.count("alice") >= 5

    generations["alice"] = "third"
    fresh = tokens.refresh(tokens.issue("alice"))
    assert jwt.decode(fresh, KEY, algorithms=["HS256"])["gen"] == "third"
    assert tokens.verify(fresh).user == "alice"
