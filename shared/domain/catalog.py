"""The service catalog: the shipped default specs, spec validation and catalog import."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import ValidationError

from shared.adapters.store import SYSTEM_CATALOG, Store
from shared.core.errors import InvalidInput, NotFound
from shared.core.models import ServiceSpec, Vocabulary

if TYPE_CHECKING:
    from fastjsonschema import JsonSchemaValueException

DEFAULT_CATALOG: Path = Path(__file__).parents[1] / "data" / "catalog"
"""The catalog shipped with the package: the National Data Service's public specs (BSD-3)."""

SPEC_SCHEMA: Path = DEFAULT_CATALOG / "schemas" / "spec-schema.json"

# Folders of a catalog that hold something other than specs, as the Go apiserver skipped them.
VOCABULARY_FOLDER = "vocab"
SCHEMA_FOLDER = "schemas"

# The Go apiserver's limit: Kubernetes object names are built from the key (prefixed with the
# stack id), and they must stay within a DNS label.
KEY_MAX_LENGTH = 17
KEY_PATTERN = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")


def _field_path(parts: Iterable[object]) -> str:
    return ".".join(str(part) for part in parts)


class SpecValidator:
    """Checks specs posted or put through the API; the JSON Schema is compiled on first use."""

    def __init__(self, schema: Path = SPEC_SCHEMA) -> None:
        self._schema = schema
        self._compiled: Callable[[object], object] | None = None
        self._lock = threading.Lock()

    def _schema_check(self) -> Callable[[object], object]:
        if self._compiled is None:
            with self._lock:
                if self._compiled is None:
                    # Imported here so that importing a function module stays cheap.
                    import fastjsonschema

                    schema = json.loads(self._schema.read_text(encoding="utf-8"))
                    self._compiled = fastjsonschema.compile(schema)
        return self._compiled

    def validate(self, document: object) -> ServiceSpec:
        """The spec in ``document``, or ``InvalidInput`` naming the first field at fault."""
        self.check(document)
        return parse_spec(document)

    def check_posted(self, document: object) -> CheckedSpec:
        """A spec sent through the API, refused only where the Go apiserver refused it.

        The Go apiserver decoded the body into its ``ServiceSpec`` type and checked the schema on
        that, encoded again (validate.go): an absent field was there with its zero value, so a spec
        without a ``description`` or with a probe of empty strings and zeros passed, and one without
        ``image.tags`` (encoded as null) did not. Then the key's length. What the schema says of the
        document as sent comes back as warnings. Beyond Go, the rules that keep a spec runnable here
        still refuse: the key names containers, hosts and folders; ports and mount paths must be real."""
        import fastjsonschema

        if not isinstance(document, dict):
            raise InvalidInput("a service spec must be a JSON object")
        spec = parse_spec(document)
        encoded = spec.model_dump(mode="json")
        try:
            self._schema_check()(encoded)
        except fastjsonschema.JsonSchemaValueException as error:
            raise _schema_fault(error) from error
        _check_runnable(encoded)
        warnings: list[str] = []
        try:
            self._schema_check()(document)
        except fastjsonschema.JsonSchemaValueException as error:
            fault = _schema_fault(error)
            warnings.append(f"the spec schema: {fault.message}")
        warnings.extend(_config_advice(encoded))
        return CheckedSpec(spec, tuple(warnings))

    def check(self, document: object) -> None:
        """Raise ``InvalidInput`` unless ``document`` meets the schema and the rules beyond it."""
        import fastjsonschema

        if not isinstance(document, dict):
            raise InvalidInput("a service spec must be a JSON object")
        try:
            self._schema_check()(document)
        except fastjsonschema.JsonSchemaValueException as error:
            raise _schema_fault(error) from error
        _check_rules(document)


def _schema_fault(error: JsonSchemaValueException) -> InvalidInput:
    """fastjsonschema's error as ``InvalidInput``: ``data.image.tags`` becomes ``image.tags``."""
    path = _field_path(error.path[1:])
    message = str(error.message).removeprefix(f"{error.name} ")
    if error.rule == "required" and not path:
        # At the top level there is no enclosing field to blame, so blame the missing one.
        missing = [name for name in error.rule_definition if name not in error.value]
        others = ", ".join(repr(name) for name in missing[1:])
        return InvalidInput(f"is required, as are {others}" if others else "is required", field=missing[0])
    return InvalidInput(message, field=path or None)


class CheckedSpec(NamedTuple):
    """A spec the API takes, and what the stricter checks found wrong with it."""

    spec: ServiceSpec
    warnings: tuple[str, ...]


def _config_advice(document: dict[str, Any]) -> list[str]:
    """What ``_check_rules`` refuses in a catalog's config options, as warnings for the API."""
    try:
        _check_config(document)
    except (InvalidInput, KeyError, TypeError) as error:
        return [str(error)]
    return []


def _check_rules(document: dict[str, Any]) -> None:
    """What the JSON Schema cannot say; ``document`` has already passed the schema."""
    _check_runnable(document)
    _check_config(document)


def _check_runnable(document: dict[str, Any]) -> None:
    """The key, ports and mount paths a runtime can use."""
    key = document["key"]
    if len(key) > KEY_MAX_LENGTH:
        raise InvalidInput(f"must be at most {KEY_MAX_LENGTH} characters, not {len(key)}", field="key")
    if not KEY_PATTERN.fullmatch(key):
        raise InvalidInput(
            "must be lower-case letters, digits and '-', and start and end with a letter or digit",
            field="key",
        )
    for index, port in enumerate(document.get("ports") or []):
        if not 1 <= port["port"] <= 65535:
            raise InvalidInput("must be between 1 and 65535", field=f"ports.{index}.port")
    for index, mount in enumerate(document.get("volumeMounts") or []):
        if not PurePosixPath(mount["mountPath"]).is_absolute():
            raise InvalidInput("must be an absolute path", field=f"volumeMounts.{index}.mountPath")


def _check_config(document: dict[str, Any]) -> None:
    """Config names are unique and each ``useFrom`` names one of the spec's dependencies."""
    dependency_keys = {dependency["key"] for dependency in document.get("depends") or []}
    first_index_of: dict[str, int] = {}
    for index, config in enumerate(document.get("config") or []):
        name = config["name"]
        if name in first_index_of:
            raise InvalidInput(
                f"'{name}' is already config.{first_index_of[name]}.name",
                field=f"config.{index}.name",
            )
        first_index_of[name] = index
        use_from = config.get("useFrom")
        if use_from:
            _split_use_from(use_from, index, dependency_keys)


def _split_use_from(use_from: object, index: int, dependency_keys: set[str]) -> tuple[str, str]:
    """The dependency key and config name of ``useFrom``, which must name one of ``depends``."""
    field_name = f"config.{index}.useFrom"
    if not isinstance(use_from, str):
        raise InvalidInput("must be a string", field=field_name)
    dependency_key, _, config_name = use_from.partition(".")
    if not dependency_key or not config_name:
        raise InvalidInput(f"must be '<dependency key>.<CONFIG NAME>', not '{use_from}'", field=field_name)
    if dependency_key not in dependency_keys:
        raise InvalidInput(
            f"names '{dependency_key}', which is not among the spec's depends", field=field_name
        )
    return dependency_key, config_name


def parse_spec(document: object) -> ServiceSpec:
    """``document`` as a ``ServiceSpec`` (pydantic strict), or ``InvalidInput`` naming the field."""
    try:
        return ServiceSpec.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        raise InvalidInput(first["msg"], field=_field_path(first["loc"]) or None) from error


def check_dependencies(spec: ServiceSpec, lookup: Callable[[str], ServiceSpec | None]) -> list[str]:
    """The Go apiserver's checks (checkDependencies, checkConfigs): every dependency exists, and so
    does the service each ``useFrom`` and ``setTo`` names before its dot, else ``NotFound`` (404).
    Returns warnings for a ``useFrom`` naming a config its service does not offer."""
    for dependency in spec.depends or []:
        if lookup(dependency.key) is None:
            raise NotFound(kind="service", id=dependency.key, message=f"Missing dependency {dependency.key}")
    warnings: list[str] = []
    for index, config in enumerate(spec.config or []):
        for reference in (config.useFrom, config.setTo):
            if not reference:
                continue
            service_key, _, config_name = reference.partition(".")
            found = lookup(service_key)
            if found is None:
                raise NotFound(
                    kind="service", id=service_key, message=f"Missing config dependency {service_key}"
                )
            if reference == config.useFrom and config_name not in {o.name for o in found.config or []}:
                warnings.append(
                    f"config.{index}.useFrom: service '{service_key}' has no config '{config_name}'"
                )
    return warnings


@dataclass
class CatalogContents:
    """What a catalog folder held, and what was wrong with it."""

    specs: list[ServiceSpec] = field(default_factory=list)
    vocabularies: list[Vocabulary] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _spec_files(directory: Path) -> Iterator[Path]:
    """The ``.json`` files below ``directory`` in a stable order, leaving out non-spec folders."""
    for path in sorted(directory.iterdir()):
        # Dot folders (a git checkout's .git, editor state) never hold specs.
        if path.name.startswith("."):
            continue
        if path.is_dir():
            yield from _spec_files(path)
        elif path.suffix == ".json" and path.is_file():
            yield path


def _read_json(path: Path, name: str, warnings: list[str]) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        warnings.append(f"{name}: skipped, not readable as JSON ({error})")
        return None
    if not isinstance(document, dict):
        warnings.append(f"{name}: skipped, not a JSON object")
        return None
    return document


def load_catalog_dir(directory: Path, *, validator: SpecValidator | None = None) -> CatalogContents:
    """The specs and vocabularies in ``directory``, loaded leniently as the Go apiserver did.

    A spec that breaks the strict schema still loads, with a warning; one that is not JSON, has no
    key or cannot be read as a ``ServiceSpec`` at all is skipped with a warning. Specs come back
    sorted by key; when two files share a key, the later one (in path order) wins.
    """
    validator = validator or SpecValidator()
    contents = CatalogContents()
    by_key: dict[str, tuple[str, ServiceSpec]] = {}
    top_level_skipped = {directory / VOCABULARY_FOLDER, directory / SCHEMA_FOLDER}
    for path in _spec_files(directory):
        if any(path.is_relative_to(folder) for folder in top_level_skipped):
            continue
        name = path.relative_to(directory).as_posix()
        document = _read_json(path, name, contents.warnings)
        if document is None:
            continue
        key = document.get("key")
        if not isinstance(key, str) or not key:
            contents.warnings.append(f"{name}: skipped, it has no key")
            continue
        try:
            spec = parse_spec(document)
        except InvalidInput as fault:
            contents.warnings.append(f"{name}: skipped, not a service spec: {fault}")
            continue
        try:
            validator.check(document)
        except InvalidInput as fault:
            contents.warnings.append(f"{name}: loaded, but breaks the spec schema: {fault}")
        if key in by_key:
            contents.warnings.append(f"{name}: key '{key}' is also in {by_key[key][0]}; this later file wins")
        by_key[key] = (name, spec)
    contents.specs = [spec for _, (_, spec) in sorted(by_key.items())]

    vocabulary_folder = directory / VOCABULARY_FOLDER
    if vocabulary_folder.is_dir():
        for path in sorted(vocabulary_folder.glob("*.json")):
            name = path.relative_to(directory).as_posix()
            document = _read_json(path, name, contents.warnings)
            if document is None:
                continue
            try:
                vocabulary = Vocabulary.model_validate(document)
            except ValidationError as error:
                contents.warnings.append(f"{name}: skipped, not a vocabulary: {error.errors()[0]['msg']}")
                continue
            # A vocabulary is fetched by name; a file that leaves it out is named by its file.
            contents.vocabularies.append(vocabulary.model_copy(update={"name": vocabulary.name or path.stem}))
    return contents


def import_catalog(store: Store, directory: Path, *, owner: str = SYSTEM_CATALOG) -> CatalogContents:
    """Load ``directory`` and write its specs into ``owner``'s catalog in ``store``.

    Specs already stored under the same key are replaced; others are left alone. Each spec is
    marked with its catalog as the API marks the specs posted to it, and, as there, a user's
    catalog holds no privileged service. Vocabularies are shared by every user, so only an import
    into the system catalog writes them.
    """
    if not directory.is_dir():
        raise InvalidInput(f"catalog folder '{directory}' does not exist or is not a folder")
    contents = load_catalog_dir(directory)
    system = owner == SYSTEM_CATALOG
    marks: dict[str, Any] = (
        {"catalog": "system"} if system else {"catalog": "user", "privileged": False, "securityContext": None}
    )
    contents.specs = [spec.model_copy(update=marks) for spec in contents.specs]
    for spec in contents.specs:
        store.replace_spec(owner, spec)
    if system:
        for vocabulary in contents.vocabularies:
            store.put_vocabulary(vocabulary)
    return contents
