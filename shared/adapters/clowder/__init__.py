"""Clowder 1.x and 2.x REST client: datasets, files with their folder paths, resumable downloads, streaming uploads.

The client (``client``) maps each version's API (``v1``, ``v2``) over one ``transport`` (requests, retries,
errors, the API-key header); ``download`` streams and resumes files, ``multipart`` encodes uploads. This
package names what the client's users import."""

from shared.adapters.clowder.client import DEFAULT_LICENSE_ID, ClowderClient, Version
from shared.adapters.clowder.download import RestartRequired
from shared.adapters.clowder.multipart import Source
from shared.adapters.clowder.records import ClowderDataset, ClowderFile, ClowderUser

__all__ = [
    "DEFAULT_LICENSE_ID",
    "ClowderClient",
    "ClowderDataset",
    "ClowderFile",
    "ClowderUser",
    "RestartRequired",
    "Source",
    "Version",
]
