"""Clowder 1.x and 2.x REST client: datasets, files with their folder paths, resumable downloads, streaming uploads.

The client is divided into pieces; this package names what its users import."""

from shared.adapters.clowder.client import (
    DEFAULT_LICENSE_ID,
    MAX_BACKOFF_SECONDS,
    ClowderClient,
    ClowderDataset,
    ClowderFile,
    ClowderUser,
    RestartRequired,
    Source,
    Version,
)

__all__ = [
    "DEFAULT_LICENSE_ID",
    "MAX_BACKOFF_SECONDS",
    "ClowderClient",
    "ClowderDataset",
    "ClowderFile",
    "ClowderUser",
    "RestartRequired",
    "Source",
    "Version",
]
