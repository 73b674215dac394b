"""Writing a completed transfer's receipt into its target folder, as the platform's receipt command asks."""

from __future__ import annotations

import json
import os
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

from shared.core import receipts
from shared.core.durable import new_durable_file
from shared.domain.messages import ReceiptCommand
from shovel.folders import HomeFolders
from shovel.placing import (
    PARTIAL_FOLDER,
    Ledger,
    PlacementError,
    check_transfer_id,
    folder_in_home,
    relative,
)

LEDGER_SUFFIX = ".ledger"


def write_receipt(home: Path, command: ReceiptCommand) -> Path:
    """``<target>/.workbench/receipts/<transfer id>.json`` and its ``.manifest-sha256.txt``, each
    whole or not at all, through folder descriptors (never through a symbolic link). A file the
    shovel placed under another name (the conflict policy) is listed where it went, as its ledger
    says. Returns the receipt's path in the home."""
    transfer_id = check_transfer_id(command.transfer_id)
    target = folder_in_home(command.target, field="target")
    placed = _placed_names(home, transfer_id)
    files = []
    prefix = f"{target}/" if target else ""
    with HomeFolders(home) as folders:
        for file in command.files:
            path = relative(file.path, field="path")
            where = placed.get(prefix + path, prefix + path)
            shown = where[len(prefix) :] if where.startswith(prefix) else path
            when = _placed_time(folders, prefix + shown) or command.completed
            files.append(receipts.ReceivedFile(path=shown, size=file.size, sha256=file.sha256, placed=when))
    document = receipts.receipt_document(
        transfer_id=transfer_id,
        clowder_url=command.clowder_url,
        dataset_id=command.dataset_id,
        dataset_name=command.dataset_name,
        version=command.version,
        target=target,
        completed=command.completed,
        files=files,
    )
    folder_path = f"{target}/{receipts.RECEIPTS_FOLDER}" if target else receipts.RECEIPTS_FOLDER
    with HomeFolders(home) as folders, folders.folder(folder_path, create=True) as folder:
        _replace(folder, f"{transfer_id}{receipts.MANIFEST_SUFFIX}", receipts.manifest_text(files).encode())
        # The receipt last: a verifier that finds it finds its manifest too.
        _replace(folder, f"{transfer_id}.json", (json.dumps(document, indent=2) + "\n").encode())
    return Path(folder_path) / f"{transfer_id}.json"


def _placed_time(folders: HomeFolders, path: str) -> str | None:
    """When the file at ``path`` (in the home) got its name there: its inode's change time, which
    the rename into place sets; None where it is not a file there (the completion time stands in)."""
    parent, _, name = path.rpartition("/")
    try:
        with folders.folder(parent) as folder:
            status = os.stat(name, dir_fd=folder, follow_symlinks=False)
    except (OSError, PlacementError):
        return None
    moment = datetime.fromtimestamp(status.st_ctime, UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _replace(folder: int, name: str, data: bytes) -> None:
    """``name`` in the open folder replaced by ``data``: written durably under a hidden name, then
    renamed over it (a link of that name is replaced, never followed), and the folder synced."""
    hidden = f".{name}.partial"
    with new_durable_file(folder, hidden, size=len(data)) as output:
        output.write(data)
    try:
        os.replace(hidden, name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException:
        with suppress(OSError):
            os.unlink(hidden, dir_fd=folder)
        raise
    with suppress(OSError):  # some filesystems cannot sync a folder
        os.fsync(folder)


def _placed_names(home: Path, transfer_id: str) -> dict[str, str]:
    """Where each file of the transfer went, by the path it was sent to (both in the home), from
    the transfer's ledger; empty where there is none."""
    with HomeFolders(home) as folders:
        partial = folders.open_partial()
        try:
            with suppress(FileNotFoundError):
                os.stat(f"{transfer_id}{LEDGER_SUFFIX}", dir_fd=partial, follow_symlinks=False)
                ledger_path = home / PARTIAL_FOLDER / f"{transfer_id}{LEDGER_SUFFIX}"
                with Ledger.open(ledger_path, folder=partial) as ledger:
                    return ledger.placed()
            return {}
        finally:
            os.close(partial)
