"""The services function (system and user catalogs) and the configs function, through the functions as served."""

from __future__ import annotations

from typing import Any

import pytest

from shared.bootstrap import Platform
from tests.conftest import Api
from tests.test_catalog import shipped_spec_files

SHIPPED_SPECS = len(shipped_spec_files())
KEY_MAX_LENGTH = 17


def new_spec(key: str = "myservice", **changes: Any) -> dict[str, Any]:
    """A spec that passes every check; tests break one part of it at a time."""
    spec: dict[str, Any] = {
        "key": key,
        "label": "My service",
        "description": "A service of the caller's own",
        "image": {"name": "nginx", "tags": ["latest", "1.27"]},
        "resourceLimits": {"cpuMax": 100, "cpuDefault": 10, "memMax": 100, "memDefault": 10},
    }
    spec.update(changes)
    return spec


def error_of(response: Any) -> str:
    body = response.get_json()
    assert isinstance(body, dict) and set(body) == {"Error"}, body
    message: str = body["Error"]
    return message


def keys_of(response: Any) -> list[str]:
    assert response.status_code == 200, response.get_json()
    return [spec["key"] for spec in response.get_json()]


def post_spec(api: Api, token: str, spec: Any, catalog: str = "") -> Any:
    path = "/api/services" + (f"?catalog={catalog}" if catalog else "")
    return api.call("POST", path, token, json=spec)


# --- listing -----------------------------------------------------------------------------------


def test_system_catalog_lists_the_shipped_specs(api: Api, alice: str) -> None:
    response = api.call("GET", "/api/services?catalog=system", alice)
    keys = keys_of(response)
    assert len(keys) == SHIPPED_SPECS
    assert keys == sorted(set(keys))
    assert {"jupyterlab", "rstudio", "clowder", "mongo", "cloudcmd"} <= set(keys)
    assert {spec["catalog"] for spec in response.get_json()} == {"system"}


def test_user_catalog_lists_only_the_callers_specs(api: Api, alice: str, bob: str) -> None:
    assert keys_of(api.call("GET", "/api/services?catalog=user", alice)) == []
    assert post_spec(api, alice, new_spec("alicething")).status_code == 200
    assert post_spec(api, bob, new_spec("bobthing")).status_code == 200

    assert keys_of(api.call("GET", "/api/services?catalog=user", alice)) == ["alicething"]
    assert keys_of(api.call("GET", "/api/services?catalog=user", bob)) == ["bobthing"]


def test_all_catalogs_merge_system_and_own(api: Api, alice: str, bob: str) -> None:
    assert post_spec(api, alice, new_spec("alicething")).status_code == 200
    assert post_spec(api, bob, new_spec("bobthing")).status_code == 200

    system = keys_of(api.call("GET", "/api/services?catalog=system", alice))
    for query in ("?catalog=all", ""):
        merged = keys_of(api.call("GET", f"/api/services{query}", alice))
        assert merged == sorted([*system, "alicething"]), query


@pytest.mark.parametrize("catalog", ["mine", "System", "everything"])
def test_unknown_catalog_is_rejected_naming_catalog(api: Api, alice: str, catalog: str) -> None:
    response = api.call("GET", f"/api/services?catalog={catalog}", alice)
    assert response.status_code == 400, catalog
    assert error_of(response).startswith("catalog:"), catalog
    assert catalog in error_of(response)


def test_listing_needs_a_token(api: Api, platform: Platform) -> None:
    response = api.call("GET", "/api/services")
    assert response.status_code == 401
    assert error_of(response)


# --- adding ------------------------------------------------------------------------------------


def test_posted_spec_is_the_callers_only(api: Api, alice: str, bob: str) -> None:
    response = post_spec(
        api,
        alice,
        new_spec("alicething", privileged=True, catalog="system", securityContext={"privileged": True}),
    )
    assert response.status_code == 200, response.get_json()
    created = response.get_json()
    assert created["key"] == "alicething"
    assert created["catalog"] == "user"  # whatever the body says
    assert created["privileged"] is False  # privileged services only in the admin's catalog
    assert created["securityContext"] is None
    assert created["createdTime"] > 0
    assert created["createdTime"] == created["updateTime"]

    read = api.call("GET", "/api/services/alicething", alice)
    assert read.status_code == 200
    assert read.get_json() == created

    assert api.call("GET", "/api/services/alicething", bob).status_code == 404
    assert "alicething" not in keys_of(api.call("GET", "/api/services", bob))
    # Bob may use the same key in his own catalog.
    assert post_spec(api, bob, new_spec("alicething")).status_code == 200


SCHEMA_BREAKS: list[tuple[dict[str, Any], str, str]] = [
    # The Go apiserver checked the schema on the spec as decoded and encoded again, so image.tags
    # left out (encoded as null) broke it; a wrong type broke the decoding.
    ({"image": {"name": "nginx"}}, "image.tags", "array"),
    ({"ports": [{"port": "80", "protocol": "http"}]}, "ports.0.port", "integer"),
    ({"label": 5}, "label", "string"),
    # Beyond Go: what no runtime can run.
    ({"ports": [{"port": 70000, "protocol": "http"}]}, "ports.0.port", "65535"),
    ({"volumeMounts": [{"mountPath": "data"}]}, "volumeMounts.0.mountPath", "absolute"),
    ({"key": "Has_Capitals"}, "key", "lower-case"),
]

SCHEMA_WARNINGS: list[tuple[dict[str, Any], str, str]] = [
    # Fields the Go apiserver's decoding filled in with their zero values, so its schema check passed.
    ({"config": [{"name": "PASSWORD"}]}, "config.0", "value"),
    ({"depends": [{"key": "mongo"}]}, "depends.0", "required"),
    ({"description": None}, "description", "required"),
]


def schema_case_id(case: tuple[dict[str, Any], str, str]) -> str:
    _change, field, named = case
    return f"{field}-{named}"


@pytest.mark.parametrize("case", SCHEMA_BREAKS, ids=schema_case_id)
def test_spec_breaking_the_schema_is_rejected_naming_the_field(
    api: Api, alice: str, case: tuple[dict[str, Any], str, str]
) -> None:
    change, field, named = case
    spec = {name: value for name, value in new_spec(**change).items() if value is not None}
    response = post_spec(api, alice, spec)
    assert response.status_code == 400, (change, response.get_json())
    message = error_of(response)
    assert message.startswith(f"{field}:"), (change, message)
    assert named in message, (change, message)
    assert keys_of(api.call("GET", "/api/services?catalog=user", alice)) == []


@pytest.mark.parametrize("case", SCHEMA_WARNINGS, ids=schema_case_id)
def test_what_only_the_stricter_schema_breaks_is_taken_with_a_warning(
    api: Api, alice: str, case: tuple[dict[str, Any], str, str]
) -> None:
    """validate.go: the schema is checked on the spec as decoded into Go's type, where an absent field
    has its zero value; the schema's view of the document as sent comes back as a Warning header."""
    change, field, named = case
    spec = {name: value for name, value in new_spec("warned", **change).items() if value is not None}
    response = post_spec(api, alice, spec)
    assert response.status_code == 200, (change, response.get_json())
    (warning,) = response.headers.getlist("Warning")
    assert warning.startswith(f'299 - "the spec schema: {field}:'), (change, warning)
    assert named in warning, (change, warning)
    assert api.call("GET", "/api/services/warned", alice).status_code == 200


def test_a_spec_within_the_stricter_schema_is_taken_without_a_warning(api: Api, alice: str) -> None:
    plain = post_spec(api, alice, new_spec("unwarned"))
    assert plain.status_code == 200
    assert plain.headers.getlist("Warning") == []


def test_key_longer_than_seventeen_characters_is_rejected(api: Api, alice: str) -> None:
    response = post_spec(api, alice, new_spec("k" * (KEY_MAX_LENGTH + 1)))
    assert response.status_code == 400
    assert error_of(response).startswith("key:")

    response = post_spec(api, alice, new_spec("k" * KEY_MAX_LENGTH))
    assert response.status_code == 200, response.get_json()


def test_key_already_in_use_is_a_conflict(api: Api, alice: str) -> None:
    assert post_spec(api, alice, new_spec("alicething")).status_code == 200
    for taken in ("jupyterlab", "alicething"):
        response = post_spec(api, alice, new_spec(taken, label="Another"))
        assert response.status_code == 409, taken
        assert taken in error_of(response)
        stored = api.call("GET", f"/api/services/{taken}", alice).get_json()
        assert stored["label"] != "Another"


def test_missing_dependency_is_not_found(api: Api, alice: str) -> None:
    spec = new_spec(depends=[{"key": "nosuchservice", "required": True}])
    response = post_spec(api, alice, spec)
    assert response.status_code == 404
    assert error_of(response) == "Missing dependency nosuchservice"


def test_dependencies_may_be_in_the_system_or_own_catalog(api: Api, alice: str) -> None:
    assert post_spec(api, alice, new_spec("base")).status_code == 200
    spec = new_spec(
        "composite",
        depends=[{"key": "base", "required": True}, {"key": "mongo", "required": False}],
    )
    response = post_spec(api, alice, spec)
    assert response.status_code == 200, response.get_json()
    assert [dependency["key"] for dependency in response.get_json()["depends"]] == ["base", "mongo"]


def test_only_the_admin_adds_to_the_system_catalog(api: Api, alice: str, admin: str) -> None:
    response = post_spec(api, alice, new_spec("sharedthing"), catalog="system")
    assert response.status_code == 403
    assert error_of(response)
    assert "sharedthing" not in keys_of(api.call("GET", "/api/services?catalog=system", alice))

    response = post_spec(api, admin, new_spec("sharedthing", privileged=True), catalog="system")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["catalog"] == "system"
    assert response.get_json()["privileged"] is True

    system = api.call("GET", "/api/services?catalog=system", alice)
    assert len(keys_of(system)) == SHIPPED_SPECS + 1
    assert "sharedthing" in keys_of(system)
    assert "sharedthing" not in keys_of(api.call("GET", "/api/services?catalog=user", alice))
    # Now that the system catalog has it, a user cannot add it again.
    assert post_spec(api, alice, new_spec("sharedthing")).status_code == 409


def test_adding_to_all_catalogs_is_rejected(api: Api, alice: str) -> None:
    response = post_spec(api, alice, new_spec(), catalog="all")
    assert response.status_code == 400
    assert "catalog" in error_of(response)


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b"[1, 2]", b'"jupyterlab"', b"\xff\xfe", b"null"],
    ids=["not-json", "empty", "list", "string", "not-utf8", "null"],
)
def test_body_that_is_not_a_spec_object_is_rejected(api: Api, alice: str, body: bytes) -> None:
    response = api.call(
        "POST", "/api/services", alice, data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, body
    assert error_of(response)


def test_rejected_posts_change_nothing(api: Api, alice: str) -> None:
    before = api.call("GET", "/api/services", alice).get_json()
    rejected = [
        post_spec(api, alice, new_spec(image={"name": "nginx"})),
        post_spec(api, alice, new_spec("k" * 18)),
        post_spec(api, alice, new_spec("jupyterlab", label="Hijacked")),
        post_spec(api, alice, new_spec(depends=[{"key": "nosuchservice", "required": True}])),
        post_spec(api, alice, new_spec(), catalog="system"),
        api.call("POST", "/api/services", alice, data=b"{", headers={"Content-Type": "application/json"}),
    ]
    assert [response.status_code for response in rejected] == [400, 400, 409, 404, 403, 400]
    assert api.call("GET", "/api/services", alice).get_json() == before


# --- reading -----------------------------------------------------------------------------------


def test_read_a_spec(api: Api, alice: str) -> None:
    response = api.call("GET", "/api/services/mongo", alice)
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["key"] == "mongo"
    assert spec["image"]["name"] == "mongo"
    assert spec["catalog"] == "system"

    response = api.call("GET", "/api/services/nosuchservice", alice)
    assert response.status_code == 404
    assert "nosuchservice" in error_of(response)


def test_read_from_a_named_catalog(api: Api, alice: str) -> None:
    assert api.call("GET", "/api/services/mongo?catalog=system", alice).status_code == 200
    assert api.call("GET", "/api/services/mongo?catalog=user", alice).status_code == 404
    assert post_spec(api, alice, new_spec("alicething")).status_code == 200
    assert api.call("GET", "/api/services/alicething?catalog=user", alice).status_code == 200
    assert api.call("GET", "/api/services/alicething?catalog=system", alice).status_code == 404


# --- replacing ---------------------------------------------------------------------------------


def put_spec(api: Api, token: str, key: str, spec: Any, catalog: str = "") -> Any:
    path = f"/api/services/{key}" + (f"?catalog={catalog}" if catalog else "")
    return api.call("PUT", path, token, json=spec)


def test_replace_a_spec(api: Api, alice: str, bob: str) -> None:
    created = post_spec(api, alice, new_spec("alicething")).get_json()
    response = put_spec(api, alice, "alicething", new_spec("alicething", label="Renamed", privileged=True))
    assert response.status_code == 200, response.get_json()
    replaced = response.get_json()
    assert replaced["label"] == "Renamed"
    assert replaced["createdTime"] == created["createdTime"]
    assert replaced["catalog"] == "user"
    assert replaced["privileged"] is False

    assert api.call("GET", "/api/services/alicething", alice).get_json()["label"] == "Renamed"
    # Bob cannot replace Alice's spec: in his catalog it does not exist.
    response = put_spec(api, bob, "alicething", new_spec("alicething", label="Bob's"))
    assert response.status_code == 404
    assert api.call("GET", "/api/services/alicething", alice).get_json()["label"] == "Renamed"


def test_replace_with_another_key_is_rejected(api: Api, alice: str) -> None:
    assert post_spec(api, alice, new_spec("alicething")).status_code == 200
    response = put_spec(api, alice, "alicething", new_spec("otherthing"))
    assert response.status_code == 400
    assert error_of(response).startswith("key:")
    assert api.call("GET", "/api/services/otherthing", alice).status_code == 404


def test_replace_an_unknown_spec_is_not_found(api: Api, alice: str) -> None:
    response = put_spec(api, alice, "nosuchservice", new_spec("nosuchservice"))
    assert response.status_code == 404
    assert "nosuchservice" in error_of(response)
    # A system spec is not in the user's catalog, so a user cannot replace it.
    assert put_spec(api, alice, "mongo", new_spec("mongo")).status_code == 404
    assert put_spec(api, alice, "mongo", new_spec("mongo"), catalog="system").status_code == 403


def test_replace_a_spec_in_use_is_a_conflict(api: Api, alice: str, bob: str) -> None:
    assert post_spec(api, alice, new_spec("alicething")).status_code == 200
    stack = api.call("POST", "/api/stacks", alice, json={"key": "alicething"})
    assert stack.status_code == 200, stack.get_json()

    response = put_spec(api, alice, "alicething", new_spec("alicething", label="Renamed"))
    assert response.status_code == 409
    assert error_of(response) == "Service is in use"
    assert api.call("GET", "/api/services/alicething", alice).get_json()["label"] == "My service"

    # Bob's spec of the same key is his own, and no stack of his uses it.
    assert post_spec(api, bob, new_spec("alicething")).status_code == 200
    assert put_spec(api, bob, "alicething", new_spec("alicething", label="Bob's")).status_code == 200

    # Once the stack is gone, Alice may replace hers.
    sid = stack.get_json()["id"]
    assert api.call("DELETE", f"/api/stacks/{sid}", alice).status_code == 200
    assert put_spec(api, alice, "alicething", new_spec("alicething", label="Renamed")).status_code == 200


def test_admin_cannot_replace_a_system_spec_a_user_runs(api: Api, alice: str, admin: str) -> None:
    assert post_spec(api, admin, new_spec("sharedthing"), catalog="system").status_code == 200
    assert api.call("POST", "/api/stacks", alice, json={"key": "sharedthing"}).status_code == 200
    response = put_spec(api, admin, "sharedthing", new_spec("sharedthing", label="New"), catalog="system")
    assert response.status_code == 409
    assert error_of(response) == "Service is in use"


# --- deleting ----------------------------------------------------------------------------------


def test_delete_a_spec(api: Api, alice: str) -> None:
    assert post_spec(api, alice, new_spec("alicething")).status_code == 200
    response = api.call("DELETE", "/api/services/alicething", alice)
    assert response.status_code == 200
    assert api.call("GET", "/api/services/alicething", alice).status_code == 404
    assert "alicething" not in keys_of(api.call("GET", "/api/services", alice))
    assert api.call("DELETE", "/api/services/alicething", alice).status_code == 404


def test_delete_a_spec_another_spec_requires_is_a_conflict(api: Api, alice: str) -> None:
    assert post_spec(api, alice, new_spec("base")).status_code == 200
    composite = new_spec("composite", depends=[{"key": "base", "required": True}])
    assert post_spec(api, alice, composite).status_code == 200

    response = api.call("DELETE", "/api/services/base", alice)
    assert response.status_code == 409
    assert "composite" in error_of(response)
    assert api.call("GET", "/api/services/base", alice).status_code == 200

    assert api.call("DELETE", "/api/services/composite", alice).status_code == 200
    assert api.call("DELETE", "/api/services/base", alice).status_code == 200


def test_delete_a_spec_in_use_is_a_conflict(api: Api, alice: str) -> None:
    assert post_spec(api, alice, new_spec("alicething")).status_code == 200
    assert api.call("POST", "/api/stacks", alice, json={"key": "alicething"}).status_code == 200
    response = api.call("DELETE", "/api/services/alicething", alice)
    assert response.status_code == 409
    assert error_of(response) == "Service is in use"
    assert api.call("GET", "/api/services/alicething", alice).status_code == 200


def test_delete_another_users_spec_is_not_found(api: Api, alice: str, bob: str) -> None:
    assert post_spec(api, alice, new_spec("alicething")).status_code == 200
    response = api.call("DELETE", "/api/services/alicething", bob)
    assert response.status_code == 404
    assert api.call("GET", "/api/services/alicething", alice).status_code == 200


def test_only_the_admin_deletes_from_the_system_catalog(api: Api, alice: str, admin: str) -> None:
    assert api.call("DELETE", "/api/services/jupyterlab?catalog=system", alice).status_code == 403
    # Without a catalog the user's own is meant, where jupyterlab is not.
    assert api.call("DELETE", "/api/services/jupyterlab", alice).status_code == 404
    assert api.call("GET", "/api/services/jupyterlab", alice).status_code == 200

    # mongo is required by other system specs (girder, clowder, ...).
    response = api.call("DELETE", "/api/services/mongo?catalog=system", admin)
    assert response.status_code == 409
    assert "girder" in error_of(response)
    assert api.call("DELETE", "/api/services/jupyterlab?catalog=system", admin).status_code == 200
    assert api.call("GET", "/api/services/jupyterlab", alice).status_code == 404


# --- configs -----------------------------------------------------------------------------------


def test_configs_by_spec_key(api: Api, alice: str) -> None:
    own = new_spec("alicething", config=[{"name": "GREETING", "value": "hello", "canOverride": True}])
    assert post_spec(api, alice, own).status_code == 200

    response = api.call("GET", "/api/configs?services=mysql,postgres,alicething,mongo", alice)
    assert response.status_code == 200, response.get_json()
    configs = response.get_json()
    assert set(configs) == {"mysql", "postgres", "alicething", "mongo"}
    for key in ("mysql", "postgres"):
        spec = api.call("GET", f"/api/services/{key}", alice).get_json()
        assert configs[key] == spec["config"]
        assert configs[key], key
    assert configs["mongo"] == []
    assert configs["alicething"] == [
        {
            "name": "GREETING",
            "value": "hello",
            "label": "",
            "isPassword": False,
            "canOverride": True,
            "useFrom": "",
            "setTo": "",
        }
    ]


def test_configs_of_an_unknown_spec_is_not_found(api: Api, alice: str, bob: str) -> None:
    response = api.call("GET", "/api/configs?services=mysql,nosuchservice", alice)
    assert response.status_code == 404
    assert "nosuchservice" in error_of(response)
    assert post_spec(api, alice, new_spec("alicething")).status_code == 200
    assert api.call("GET", "/api/configs?services=alicething", bob).status_code == 404


@pytest.mark.parametrize("query", ["", "?services=", "?other=mysql"], ids=["none", "empty", "other"])
def test_configs_need_the_services_parameter(api: Api, alice: str, query: str) -> None:
    response = api.call("GET", f"/api/configs{query}", alice)
    assert response.status_code == 400, query
    assert error_of(response).startswith("services:"), query
