"""A first pass through the API: login, catalog, a stack."""

from tests.conftest import Api
from tests.test_catalog import shipped_spec_files


def test_login_and_list(api: Api) -> None:
    token = api.make_user()
    response = api.call("GET", "/api/services?catalog=system", token)
    assert response.status_code == 200
    assert len(response.get_json()) == len(shipped_spec_files())
    response = api.call("POST", "/api/stacks", token, json={"key": "jupyterlab"})
    assert response.status_code == 200, response.get_json()
    stack = response.get_json()
    assert stack["status"] == "stopped"
