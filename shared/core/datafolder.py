"""The user's data folder: where sent datasets land in the home, and where every app sees it."""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterable

from shared.core.errors import InvalidInput
from shared.core.models import ServiceSpec
from shared.core.paths import safe_relative

DATA_FOLDER = "Clowder"
"""The folder of the home that holds what Clowder sent; every app container of the user mounts it."""
MOUNT_NAME = "clowder"
"""Its name inside the app, beneath the app's own working folder (the spec's first volume mount)."""
FALLBACK_MOUNT = "/data/clowder"
"""Where an app whose spec mounts no folder sees it."""
WORK_FOLDER = ".workbench-partial"
"""The home's own hidden folder, mounted into no app: the shovel's ledgers and partial files, and the
folders a transfer is staged into where the platform reaches the home (``staged_folder``), all on
the home's own volume, so that moving a finished file into view is a rename."""


def staged_folder(transfer_id: str) -> str:
    """The folder of ``WORK_FOLDER`` that the platform stages a transfer's files into."""
    return f"{transfer_id}.staged"


def staged_name(path: str) -> str:
    """A staged file's name in its ``staged_folder``: plain, and the same each time it is staged."""
    return hashlib.sha256(path.encode()).hexdigest()


def mount_path(spec: ServiceSpec) -> str:
    """The path inside the app's container where the data folder is mounted."""
    for mount in spec.volumeMounts or ():
        # A "docker" mount is the engine's socket, not a folder of the home (stacks mount none for it).
        if mount.mountPath and mount.type != "docker":
            return posixpath.join(posixpath.normpath(mount.mountPath), MOUNT_NAME)
    return FALLBACK_MOUNT


def target_in_home(target: str, *, field: str = "target") -> str:
    """A transfer's target as a path of the home inside the data folder.

    ``target`` is relative to the data folder (``Soil samples``), or names it (``Clowder/Soil
    samples``); anything that would lead elsewhere is refused."""
    clean = safe_relative(target, field=field)
    if clean == DATA_FOLDER:
        raise InvalidInput(f"{target!r} is the data folder itself; name a folder inside it", field=field)
    if clean.startswith(DATA_FOLDER + "/"):
        return clean
    return f"{DATA_FOLDER}/{clean}"


def in_app(spec: ServiceSpec, home_path: str) -> str | None:
    """Where a path of the home inside the data folder is seen inside the app; None outside it."""
    if home_path != DATA_FOLDER and not home_path.startswith(DATA_FOLDER + "/"):
        return None
    return posixpath.join(mount_path(spec), home_path[len(DATA_FOLDER) + 1 :]).rstrip("/")


def beneath(folder_mount: str, data_mount: str) -> str:
    """Where ``data_mount`` lies relative to a folder mounted at ``folder_mount`` (``clowder`` for
    ``/home/jovyan/work`` and ``/home/jovyan/work/clowder``); MOUNT_NAME where it is not beneath it,
    as for an app whose spec mounts no folder (the runtime then shows it at that name in the home)."""
    folder = posixpath.normpath(folder_mount)
    data = posixpath.normpath(data_mount) if data_mount else ""
    if folder and data.startswith(folder.rstrip("/") + "/"):
        return data[len(folder.rstrip("/")) + 1 :]
    return MOUNT_NAME


def folder_in_home(folder: str, mounts: Iterable[tuple[str, str]], *, field: str = "folder") -> str:
    """A folder an app wrote (an export's) as a path of the home.

    An absolute ``folder`` is a path inside an app: it is mapped back through ``mounts`` (each folder
    of the home an app of the user mounts, with where it mounts it; the deepest that holds the path
    wins). A relative one is relative to the data folder (``results``), or names it (``Clowder/…``).
    Anything that would lead out of the home is refused."""
    if not folder.startswith("/"):
        clean = safe_relative(folder, field=field)
        return (
            clean if clean == DATA_FOLDER or clean.startswith(DATA_FOLDER + "/") else f"{DATA_FOLDER}/{clean}"
        )
    path = posixpath.normpath(folder)
    found: dict[str, set[str]] = {}
    for home_path, mount_path in mounts:
        mount = posixpath.normpath(mount_path)
        if path == mount or path.startswith(mount.rstrip("/") + "/"):
            rest = path[len(mount) :].strip("/")
            found.setdefault(mount, set()).add(posixpath.join(home_path, rest) if rest else home_path)
    if not found:
        raise InvalidInput(f"{folder!r} is not a folder any of your apps sees", field=field)
    deepest = max(found, key=len)
    meanings = set().union(*(homes for mount, homes in found.items() if len(mount) == len(deepest)))
    if len(meanings) > 1:
        raise InvalidInput(
            f"{folder!r} is a different folder in each of your stacks; name it relative to your data folder",
            field=field,
        )
    return safe_relative(meanings.pop(), field=field)
