"""Accounts made through the accounts function, with tokens minted as a login would mint them (a plugin
of conftest): ``users`` makes them, ``admin``, ``alice`` and ``bob`` are tokens of such accounts."""

from __future__ import annotations

import pytest

from shared.bootstrap import Platform
from tests.conftest import Api


class Users:
    """Accounts made through the accounts function; tokens minted directly, as a login would.

    Logging in hashes passwords (argon2, ~0.1 s each), which the authenticate tests already cover.
    """

    def __init__(self, api: Api, platform: Platform) -> None:
        self.api = api
        self.platform = platform

    def admin(self) -> str:
        return self.platform.tokens.issue("admin", admin=True)

    def make(self, user: str) -> str:
        account = {
            "namespace": user,
            "name": user.title(),
            "email": f"{user}@example.org",
            "password": "secret-" + user,
        }
        response = self.api.call("POST", "/api/accounts", self.admin(), json=account)
        assert response.status_code == 200, response.get_json()
        return self.platform.tokens.issue(user)


@pytest.fixture
def users(api: Api, platform: Platform) -> Users:
    return Users(api, platform)


@pytest.fixture
def admin(users: Users) -> str:
    return users.admin()


@pytest.fixture
def alice(users: Users) -> str:
    return users.make("alice")


@pytest.fixture
def bob(users: Users) -> str:
    return users.make("bob")
