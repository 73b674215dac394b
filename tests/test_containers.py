"""``GET /api/containers/{user}``: what Clowder sees of a user's stacks, and that it holds no secret."""

from __future__ import annotations

import httpx
import pytest

from shared.bootstrap import Platform
from tests.conftest import Api
from tests.test_stacks import add_spec, create, spec, started
from tests.users import Users

SERVICE_TOKEN = "clowder-service-token-of-the-containers-tests"
PASSWORD = "secret-xyz"
VAULT = spec(
    "vault",
    config=[
        {"name": "PASSWORD", "value": "", "isPassword": True, "canOverride": True},
        {"name": "GREETING", "value": "a-config-value-clowder-does-not-need", "canOverride": True},
    ],
)


@pytest.fixture
def environment() -> dict[str, str]:
    return {"WORKBENCH_CLOWDER_SERVICE_TOKEN": SERVICE_TOKEN}


pytestmark = pytest.mark.usefixtures("no_stack_left")


def test_clowder_sees_names_status_and_urls_but_no_config(api: Api, platform: Platform) -> None:
    users = Users(api, platform)
    alice = users.make("alice")
    add_spec(api, users.admin(), VAULT, catalog="system")
    body = {
        "key": "vault",
        "name": "Vault",
        "services": [{"service": "vault", "config": {"PASSWORD": PASSWORD}}],
    }
    sid = create(api, alice, body)["id"]
    stack = started(api, alice, sid)
    # The owner still reads the whole stack, config included.
    assert stack["services"][0]["config"]["PASSWORD"] == PASSWORD
    [url] = [endpoint["url"] for endpoint in stack["services"][0]["endpoints"]]

    response = api.call("GET", "/api/containers/alice", SERVICE_TOKEN)
    assert response.status_code == 200, response.get_json()
    text = response.get_data(as_text=True)
    assert PASSWORD not in text
    assert "a-config-value-clowder-does-not-need" not in text
    assert "config" not in text
    assert response.get_json() == [
        {
            "id": sid,
            "key": "vault",
            "name": "Vault",
            "status": "started",
            "endpoints": [url],
            "services": [{"id": f"{sid}-vault", "service": "vault", "status": "ready", "endpoints": [url]}],
        }
    ]
    assert httpx.get(url, timeout=5).status_code == 200
    # The route is Clowder's: its owner and the admin get the same answer.
    for token in (alice, users.admin()):
        assert api.call("GET", "/api/containers/alice", token).get_json() == response.get_json()
