"""The shipped catalog, spec validation and catalog import."""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest

from shared.adapters.store import SYSTEM_CATALOG, Store
from shared.adapters.store.sql import open_store
from shared.core.errors import InvalidInput, NotFound
from shared.core.models import ServiceSpec
from shared.domain.catalog import (
    DEFAULT_CATALOG,
    CatalogContents,
    SpecValidator,
    check_dependencies,
    import_catalog,
    load_catalog_dir,
)

TEST_SPECS = Path(__file__).parent / "data" / "specs"


def shipped_spec_files() -> list[Path]:
    return sorted(
        path
        for path in DEFAULT_CATALOG.rglob("*.json")
        if path.relative_to(DEFAULT_CATALOG).parts[0] not in ("vocab", "schemas")
    )


def read(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def write(path: Path, document: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document), encoding="utf-8")


def minimal_spec(**changes: Any) -> dict[str, Any]:
    """A spec that passes every check; tests break one part of it at a time."""
    spec: dict[str, Any] = {
        "key": "minimal",
        "label": "Minimal",
        "description": "A spec with only what the schema requires",
        "image": {"name": "nginx", "tags": ["latest"]},
        "resourceLimits": {"cpuMax": 100, "cpuDefault": 10, "memMax": 100, "memDefault": 10},
    }
    spec.update(changes)
    return spec


@pytest.fixture(scope="module")
def validator() -> SpecValidator:
    return SpecValidator()


@pytest.fixture(scope="module")
def shipped() -> CatalogContents:
    return load_catalog_dir(DEFAULT_CATALOG)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield opened
    opened.close()


def refusal(validator: SpecValidator, document: object) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        validator.validate(document)
    return caught.value


# --- the shipped catalog ---------------------------------------------------------------------


def test_shipped_catalog_is_the_reference_catalog_byte_for_byte() -> None:
    # The sha256 of every file of the public ndslabs-specs catalog (specs, schema, vocabulary).
    reference = (Path(__file__).parent / "data" / "reference-catalog.sha256").read_text().splitlines()
    referenced: set[str] = set()
    for line in reference:
        digest, relative = line.split(maxsplit=1)
        shipped_copy = DEFAULT_CATALOG / relative
        assert hashlib.sha256(shipped_copy.read_bytes()).hexdigest() == digest, relative
        referenced.add(Path(relative).as_posix())
    # File for file: nothing of the reference missing, nothing shipped beside it but its licence and
    # our README.
    shipped = {
        path.relative_to(DEFAULT_CATALOG).as_posix() for path in DEFAULT_CATALOG.rglob("*") if path.is_file()
    }
    assert shipped == referenced | {"LICENSE", "README.md"}
    assert "National Data Service" in (DEFAULT_CATALOG / "LICENSE").read_text(encoding="utf-8")


def test_shipped_catalog_loads_every_spec_sorted_by_key(shipped: CatalogContents) -> None:
    keys = [spec.key for spec in shipped.specs]
    assert len(keys) == len(set(keys)) == len(shipped_spec_files())  # each file one spec, of its own key
    assert keys == sorted(keys)
    assert {"jupyterlab", "rstudio", "clowder", "mongo", "cloudcmd"} <= set(keys)


def test_shipped_catalog_warns_exactly_for_the_specs_that_break_the_strict_schema(
    shipped: CatalogContents,
) -> None:
    strict = fastjsonschema.compile(read(DEFAULT_CATALOG / "schemas" / "spec-schema.json"))
    breakers = []
    for path in shipped_spec_files():
        try:
            strict(read(path))
        except fastjsonschema.JsonSchemaValueException:
            breakers.append(path.relative_to(DEFAULT_CATALOG).as_posix())
    assert breakers, "the upstream catalog has specs that break its own strict schema"
    assert len(shipped.warnings) == len(breakers)
    for breaker, warning in zip(breakers, shipped.warnings, strict=True):
        assert warning.startswith(f"{breaker}: loaded, but breaks the spec schema: ")
    assert (
        "ckan/ckan.json: loaded, but breaks the spec schema: config.0: must contain ['value'] properties"
    ) in shipped.warnings


def test_shipped_catalog_has_the_tags_vocabulary(shipped: CatalogContents) -> None:
    [tags] = shipped.vocabularies
    assert tags.name == "tags"
    assert len(tags.terms) > 10
    assert all(term.id and term.name for term in tags.terms)


def test_shipped_keys_are_kubernetes_name_safe(shipped: CatalogContents, validator: SpecValidator) -> None:
    for spec in shipped.specs:
        # Only the key differs from a spec known to pass, so only the key is under test.
        validator.validate(minimal_spec(key=spec.key))


def test_shipped_dependencies_all_resolve_within_the_catalog(shipped: CatalogContents) -> None:
    by_key = {spec.key: spec for spec in shipped.specs}
    unresolved = []
    for spec in shipped.specs:
        try:
            check_dependencies(spec, by_key.get)
        except (NotFound, InvalidInput) as error:
            unresolved.append(f"{spec.key}: {error}")
    assert unresolved == []
    assert any(spec.depends for spec in shipped.specs)
    assert any(config.useFrom for spec in shipped.specs for config in spec.config or [])


def test_importing_the_module_leaves_fastjsonschema_unloaded() -> None:
    probe = "import shared.domain.catalog, sys; print('fastjsonschema' in sys.modules)"
    repository = Path(__file__).parent.parent
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=repository
    )
    assert result.stdout.strip() == "False"


# --- the Go apiserver's test specs -----------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["small", "full", "multiport", "multivol", "baddep", "cpuhog", "memhog", "noimage", "toobig"],
)
def test_valid_test_specs_are_accepted(validator: SpecValidator, name: str) -> None:
    document = read(TEST_SPECS / f"{name}.json")
    spec = validator.validate(document)
    assert spec.key == document["key"]


def test_badspec_is_refused_for_its_missing_image(validator: SpecValidator) -> None:
    error = refusal(validator, read(TEST_SPECS / "badspec.json"))
    assert error.field == "image"
    assert str(error) == "image: is required"


def test_badspec_with_an_image_is_refused_for_its_port_without_a_number(
    validator: SpecValidator,
) -> None:
    document = read(TEST_SPECS / "badspec.json")
    document["image"] = {"name": "nginx", "tags": ["latest"]}
    error = refusal(validator, document)
    assert error.field == "ports.0"
    assert error.message.endswith("must contain ['port'] properties")


def test_full_spec_keeps_every_field(validator: SpecValidator) -> None:
    spec = validator.validate(read(TEST_SPECS / "full.json"))
    assert spec.image.tags == ["latest", "v1", "v2", "v3"]
    assert [port.port for port in spec.ports or []] == [80, 8000]
    assert [mount.mountPath for mount in spec.volumeMounts or []] == ["/data", "/other"]
    assert spec.readinessProbe.timeout == 600
    assert spec.tags == ["tagId1", "tagId2"]


def test_baddep_names_its_missing_dependency(validator: SpecValidator) -> None:
    baddep = validator.validate(read(TEST_SPECS / "baddep.json"))
    with pytest.raises(NotFound) as caught:
        check_dependencies(baddep, lambda key: None)
    assert str(caught.value) == "Missing dependency noimagetest"
    assert caught.value.kind == "service"

    noimage = validator.validate(read(TEST_SPECS / "noimage.json"))
    check_dependencies(baddep, {noimage.key: noimage}.get)


# --- validation rules --------------------------------------------------------------------------


def test_minimal_spec_is_accepted(validator: SpecValidator) -> None:
    assert validator.validate(minimal_spec()) == ServiceSpec.model_validate(minimal_spec())


def test_a_document_that_is_not_an_object_is_refused(validator: SpecValidator) -> None:
    assert "JSON object" in str(refusal(validator, ["minimal"]))


def test_schema_paths_become_dotted_field_names(validator: SpecValidator) -> None:
    error = refusal(validator, minimal_spec(image={}))
    assert error.field == "image"
    assert str(error) == "image: must contain ['name', 'tags'] properties"

    error = refusal(validator, minimal_spec(image={"name": "nginx", "tags": ["latest", 3]}))
    assert error.field == "image.tags.1"
    assert str(error) == "image.tags.1: must be string"


def test_several_missing_top_level_fields_are_all_named(validator: SpecValidator) -> None:
    error = refusal(validator, {"key": "bare"})
    assert error.field == "label"
    assert str(error) == "label: is required, as are 'image', 'description', 'resourceLimits'"


def test_a_key_of_17_characters_is_accepted_and_18_refused(validator: SpecValidator) -> None:
    validator.validate(minimal_spec(key="a" * 17))
    error = refusal(validator, minimal_spec(key="a" * 18))
    assert error.field == "key"
    assert "at most 17 characters" in str(error)


@pytest.mark.parametrize("key", ["", "Jupyter", "my_app", "-lead", "trail-", "a.b"])
def test_keys_that_cannot_name_kubernetes_objects_are_refused(validator: SpecValidator, key: str) -> None:
    assert refusal(validator, minimal_spec(key=key)).field == "key"


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_ports_outside_the_tcp_range_are_refused(validator: SpecValidator, port: int) -> None:
    ports = [{"port": 80, "protocol": "http"}, {"port": port, "protocol": "tcp"}]
    error = refusal(validator, minimal_spec(ports=ports))
    assert error.field == "ports.1.port"


def test_a_relative_mount_path_is_refused(validator: SpecValidator) -> None:
    error = refusal(validator, minimal_spec(volumeMounts=[{"mountPath": "data"}]))
    assert error.field == "volumeMounts.0.mountPath"
    assert "absolute" in str(error)


def test_a_duplicate_config_name_is_refused(validator: SpecValidator) -> None:
    config = [{"name": "PASSWORD", "value": "a"}, {"name": "PASSWORD", "value": "b"}]
    error = refusal(validator, minimal_spec(config=config))
    assert error.field == "config.1.name"
    assert "config.0.name" in str(error)


@pytest.mark.parametrize(
    ("use_from", "complaint"),
    [
        ("postgres", "must be '<dependency key>.<CONFIG NAME>'"),
        (".POSTGRES_DB", "must be '<dependency key>.<CONFIG NAME>'"),
        ("mysql.MYSQL_DATABASE", "'mysql', which is not among the spec's depends"),
        (5, "must be a string"),
    ],
)
def test_use_from_must_name_a_listed_dependency(
    validator: SpecValidator, use_from: object, complaint: str
) -> None:
    document = minimal_spec(
        depends=[{"key": "postgres", "required": True}],
        config=[{"name": "DATABASE", "value": "", "useFrom": use_from}],
    )
    error = refusal(validator, document)
    assert error.field == "config.0.useFrom"
    assert complaint in str(error)


def test_a_type_the_schema_leaves_open_is_refused_by_the_model(validator: SpecValidator) -> None:
    error = refusal(validator, minimal_spec(privileged="yes"))
    assert error.field == "privileged"
    assert "boolean" in str(error)


def test_use_from_naming_a_config_the_dependency_lacks_is_a_warning(validator: SpecValidator) -> None:
    """server.go checkConfigs: only the service before the dot must exist (else 404)."""
    postgres = validator.validate(
        minimal_spec(key="postgres", config=[{"name": "POSTGRES_DB", "value": "db"}])
    )
    document = minimal_spec(
        depends=[{"key": "postgres", "required": True}],
        config=[
            {"name": "DATABASE", "value": "", "useFrom": "postgres.POSTGRES_DB"},
            {"name": "SCHEMA", "value": "", "useFrom": "postgres.POSTGRES_SCHEMA"},
        ],
    )
    spec = validator.validate(document)
    (warning,) = check_dependencies(spec, {postgres.key: postgres}.get)
    assert warning.startswith("config.1.useFrom:")
    assert "'postgres' has no config 'POSTGRES_SCHEMA'" in warning
    with pytest.raises(NotFound) as caught:
        check_dependencies(spec, {}.get)
    assert str(caught.value) == "Missing dependency postgres"


# --- loading and importing folders -------------------------------------------------------------


def test_a_folder_with_faulty_files_loads_the_rest_with_warnings(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    small = read(TEST_SPECS / "small.json")
    write(catalog / "apps" / "small.json", small)
    write(catalog / "apps" / "nested" / "multiport.json", read(TEST_SPECS / "multiport.json"))
    write(catalog / "apps" / "badspec.json", read(TEST_SPECS / "badspec.json"))
    (catalog / "apps" / "broken.json").write_text("{ not json", encoding="utf-8")
    write(catalog / "apps" / "keyless.json", {"label": "No key"})
    write(catalog / "apps" / "list.json", ["not", "a", "spec"])
    write(catalog / "apps" / "wrongtypes.json", minimal_spec(key="wrongtypes", ports="eighty"))
    renamed = copy.deepcopy(small)
    renamed["label"] = "The later small"
    write(catalog / "zlater" / "small.json", renamed)
    # Files that are not specs at all pass silently, as the Go apiserver ignored them.
    (catalog / "apps" / "logo.png").write_bytes(b"\x89PNG\r\n")
    (catalog / "README.md").write_text("# notes", encoding="utf-8")
    write(catalog / "schemas" / "spec-schema.json", {"type": "object"})
    write(catalog / ".git" / "stray.json", minimal_spec(key="stray"))
    write(catalog / "vocab" / "tags.json", {"name": "tags", "terms": [{"id": "1", "name": "A"}]})
    write(catalog / "vocab" / "unnamed.json", {"terms": []})

    contents = load_catalog_dir(catalog)

    assert [spec.key for spec in contents.specs] == ["badspectest", "multiport", "smalltest"]
    assert next(spec for spec in contents.specs if spec.key == "smalltest").label == ("The later small")
    assert [vocabulary.name for vocabulary in contents.vocabularies] == ["tags", "unnamed"]
    assert contents.warnings[0] == "apps/badspec.json: loaded, but breaks the spec schema: " + (
        "image: is required"
    )
    assert contents.warnings[1].startswith("apps/broken.json: skipped, not readable as JSON")
    assert contents.warnings[2:] == [
        "apps/keyless.json: skipped, it has no key",
        "apps/list.json: skipped, not a JSON object",
        "apps/wrongtypes.json: skipped, not a service spec: ports: Input should be a valid list",
        "zlater/small.json: key 'smalltest' is also in apps/small.json; this later file wins",
    ]


def test_import_writes_the_shipped_catalog_into_a_store(store: Store) -> None:
    contents = import_catalog(store, DEFAULT_CATALOG)

    stored = store.list_specs(SYSTEM_CATALOG)
    assert [spec.key for spec in stored] == [spec.key for spec in contents.specs]
    assert len(stored) == len(shipped_spec_files())
    assert stored == contents.specs
    assert {spec.catalog for spec in stored} == {"system"}
    tags = store.get_vocabulary("tags")
    assert tags is not None
    assert tags == contents.vocabularies[0]
    assert contents.warnings == load_catalog_dir(DEFAULT_CATALOG).warnings


def test_import_again_replaces_specs_and_keeps_others(store: Store, tmp_path: Path) -> None:
    import_catalog(store, DEFAULT_CATALOG)
    local = tmp_path / "local"
    mongo = read(DEFAULT_CATALOG / "mongo" / "mongo.json")
    mongo["label"] = "Local MongoDB"
    write(local / "mongo.json", mongo)

    contents = import_catalog(store, local)

    assert contents.warnings == []
    assert len(store.list_specs(SYSTEM_CATALOG)) == len(shipped_spec_files())
    replaced = store.get_spec(SYSTEM_CATALOG, "mongo")
    assert replaced is not None
    assert replaced.label == "Local MongoDB"


def test_import_into_a_user_catalog_leaves_the_system_catalog_alone(store: Store, tmp_path: Path) -> None:
    local = tmp_path / "local"
    write(local / "small.json", read(TEST_SPECS / "small.json"))
    write(local / "docker.json", read(DEFAULT_CATALOG / "docker" / "docker.json") | {"privileged": True})
    write(local / "vocab" / "tags.json", {"name": "tags", "terms": []})

    import_catalog(store, local, owner="alice")

    stored = store.list_specs("alice")
    assert [spec.key for spec in stored] == ["docker", "smalltest"]
    assert [(spec.catalog, spec.privileged) for spec in stored] == [("user", False)] * 2
    assert store.list_specs(SYSTEM_CATALOG) == []
    assert store.get_vocabulary("tags") is None


def test_import_of_a_missing_folder_names_the_path(store: Store, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-catalog"
    with pytest.raises(InvalidInput) as caught:
        import_catalog(store, missing)
    assert str(missing) in str(caught.value)
    assert store.list_specs(SYSTEM_CATALOG) == []


def test_a_privileged_security_context_survives_loading_into_the_system_catalog(
    shipped: CatalogContents,
) -> None:
    docker = next(spec for spec in shipped.specs if spec.key == "docker")
    assert docker.securityContext is not None
    assert docker.securityContext.privileged is True
