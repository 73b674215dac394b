"""Checking a received folder of the home against its receipts, as the platform's verify command asks."""

from __future__ import annotations

from pathlib import Path

from events.types import MAX_LISTED_CHARS, MAX_LISTED_PATHS, TransferVerified
from shared.core import receipts
from shared.domain.messages import VerifyCommand
from shovel.folders import HomeFolders
from shovel.placing import PlacementError, folder_in_home


def verify_target(home: Path, command: VerifyCommand, *, stack_id: str | None = None) -> TransferVerified:
    """The command's target folder re-hashed against its receipts, as a bounded report.

    The folder is reached one name at a time from the home, never through a symbolic link
    (``HomeFolders``), and checked through that open folder (``receipts.verify_open``): neither the
    target the command names nor a link placed in the folder leads the shovel outside the home. A
    target that is no real folder of the home is reported as the check's error."""
    try:
        target = folder_in_home(command.target, field="target")
        with HomeFolders(home) as folders, folders.folder(target) as folder:
            found = receipts.verify_open(folder)
    except PlacementError as error:
        return _report(command, stack_id, error=error.message)
    except OSError as error:
        return _report(command, stack_id, error=f"folder {command.target!r} cannot be read: {error.strerror}")
    return _report(command, stack_id, found=found)


def _report(
    command: VerifyCommand,
    stack_id: str | None,
    *,
    found: receipts.Verification | None = None,
    error: str | None = None,
) -> TransferVerified:
    found = found or receipts.Verification()
    return TransferVerified(
        check_id=command.check_id,
        transfer_id=command.transfer_id,
        user=command.user,
        stack_id=stack_id,
        receipts=found.receipts,
        checked=found.checked,
        modified=_first(found.modified),
        missing=_first(found.missing),
        added=_first(found.added),
        problems=_first(found.problems),
        modified_count=len(found.modified),
        missing_count=len(found.missing),
        added_count=len(found.added),
        problems_count=len(found.problems),
        error=error and error[:MAX_LISTED_CHARS],
    )


def _first(paths: list[str]) -> list[str]:
    """The first paths a report lists, each cut to the length it allows."""
    return [_cut(path) for path in paths[:MAX_LISTED_PATHS]]


def _cut(text: str) -> str:
    return text if len(text) <= MAX_LISTED_CHARS else text[: MAX_LISTED_CHARS - 1] + "…"
