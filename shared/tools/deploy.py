"""``workbench deploy``: a kustomization's manifests applied to a cluster with server-side apply."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shared.adapters.runtime.kube_api import KubeApi, Manifest, resource_for
from shared.core.errors import InvalidInput, NotFound

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = frozenset({"apiVersion", "kind", "resources", "namespace", "images"})
# What others refer to goes first, as kubectl orders them: a Namespace before what lives in it, a
# ServiceAccount before the RoleBinding and Service that name it.
FIRST_KINDS = (
    "Namespace",
    "CustomResourceDefinition",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "Secret",
)


def read_kustomization(directory: Path) -> list[Manifest]:
    """Every object a kustomization lists (folders of their own kustomization included), with its
    ``namespace`` and ``images`` applied; anything else a kustomization may do is refused by name."""
    path = next((directory / name for name in KUSTOMIZATION_FILES if (directory / name).is_file()), None)
    if path is None:
        raise InvalidInput(f"{directory} has no kustomization.yaml", field="--directory")
    document = _load_one(path)
    unknown = sorted(set(document) - SUPPORTED_FIELDS)
    if unknown:
        raise InvalidInput(
            f"{path}: {', '.join(unknown)} cannot be carried out here (only resources, namespace and images); "
            "use kubectl apply -k for this kustomization",
            field="kustomization",
        )
    manifests: list[Manifest] = []
    for entry in document.get("resources") or []:
        if not isinstance(entry, str) or "://" in entry:
            raise InvalidInput(
                f"{path}: resource {entry!r} is not a file or folder beside it", field="resources"
            )
        resource = directory / entry
        if resource.is_dir():
            manifests += read_kustomization(resource)
        elif resource.is_file():
            manifests += _load_objects(resource)
        else:
            raise InvalidInput(f"{path}: resource {entry!r} does not exist", field="resources")
    namespace = document.get("namespace")
    if namespace:
        for manifest in manifests:
            if resource_for(manifest["apiVersion"], manifest["kind"]).namespaced:
                manifest["metadata"]["namespace"] = namespace
    for image in document.get("images") or []:
        if not isinstance(image, dict) or not image.get("name"):
            raise InvalidInput(f"{path}: every entry of images needs a name", field="images")
        for manifest in manifests:
            _set_images(manifest, image)
    return manifests


def _load_one(path: Path) -> dict[str, Any]:
    import yaml

    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise InvalidInput(f"{path} cannot be read as YAML: {error}", field="kustomization") from None
    if not isinstance(document, dict):
        raise InvalidInput(f"{path} is not a YAML mapping", field="kustomization")
    return document


def _load_objects(path: Path) -> list[Manifest]:
    import yaml

    try:
        documents = list(yaml.safe_load_all(path.read_text()))
    except (OSError, yaml.YAMLError) as error:
        raise InvalidInput(f"{path} cannot be read as YAML: {error}", field="resources") from None
    objects = []
    for index, document in enumerate(documents):
        if document is None:
            continue  # an empty document between two separators
        if (
            not isinstance(document, dict)
            or not isinstance(document.get("apiVersion"), str)
            or not isinstance(document.get("kind"), str)
            or not isinstance(document.get("metadata"), dict)
            or not document["metadata"].get("name")
        ):
            raise InvalidInput(
                f"{path}, document {index + 1}: not an object with apiVersion, kind and metadata.name",
                field="resources",
            )
        objects.append(document)
    return objects


def _set_images(value: Any, image: dict[str, Any]) -> None:
    """What kustomize's ``images`` does: containers running the named image get its new name, tag or digest."""
    if isinstance(value, list):
        for item in value:
            _set_images(item, image)
        return
    if not isinstance(value, dict):
        return
    for key, item in value.items():
        if key in ("containers", "initContainers") and isinstance(item, list):
            for container in item:
                if isinstance(container, dict) and isinstance(container.get("image"), str):
                    container["image"] = _new_image(container["image"], image)
        _set_images(item, image)


def _new_image(current: str, image: dict[str, Any]) -> str:
    name, _, digest = current.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    if name != image["name"]:
        return current
    name = str(image.get("newName") or name)
    if image.get("digest"):
        return f"{name}@{image['digest']}"
    tag = str(image.get("newTag") or tag)
    if tag:
        return f"{name}:{tag}"
    return f"{name}@{digest}" if digest else name


def ordered(manifests: list[Manifest]) -> list[Manifest]:
    def rank(manifest: Manifest) -> int:
        kind = manifest["kind"]
        return FIRST_KINDS.index(kind) if kind in FIRST_KINDS else len(FIRST_KINDS)

    return sorted(manifests, key=rank)


def apply_all(api: KubeApi, manifests: list[Manifest], *, dry_run: bool) -> Iterator[str]:
    """Apply each object (dependencies first), saying what was applied as ``kubectl`` says it."""
    for manifest in ordered(manifests):
        body = copy.deepcopy(manifest)
        api_version, kind, name = body["apiVersion"], body["kind"], body["metadata"]["name"]
        resource = resource_for(api_version, kind)
        namespace = body["metadata"].get("namespace") if resource.namespaced else None
        if resource.namespaced and not namespace:
            raise InvalidInput(
                f"{kind} '{name}' names no namespace (set metadata.namespace)", field="namespace"
            )
        try:
            api.apply(resource, namespace, body, dry_run=dry_run)
        except NotFound as error:
            if namespace and f'namespaces "{namespace}" not found' in error.message:
                hint = (
                    " (a dry run creates nothing, so it cannot check what goes into a new one)"
                    if dry_run
                    else ""
                )
                raise NotFound(
                    "namespace", namespace, message=f"namespace '{namespace}' does not exist{hint}"
                ) from error
            if "could not find the requested resource" not in error.message:
                raise
            raise NotFound(
                kind,
                name,
                message=f"the cluster does not serve {kind} ({api_version}): install what provides it "
                "(Knative Serving and Eventing, eventing-rabbitmq, the Gateway API) first",
            ) from error
        group = api_version.rpartition("/")[0]
        what = f"{kind.lower()}.{group}" if group else kind.lower()
        yield f"{what}/{name} serverside-applied" + (" (server dry run)" if dry_run else "")
