"""Commands the platform sends to a user's shovels over the user's queue (``workbench.shovel.<user>``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class Message(BaseModel):
    # Built on first use: the functions that import these commands send them only now and then.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Queued(Message):
    """What every command on a user's queue carries besides its work."""

    failures: int = Field(
        default=0,
        ge=0,
        description="How often a shovel tried this command and failed: it puts the command back on the "
        "queue with one more, and gives up on it at WORKBENCH_SHOVEL_ATTEMPTS",
    )


def queue_for(user: str) -> str:
    """The durable queue every shovel of ``user`` consumes from."""
    return f"workbench.shovel.{user}"


class SyncFile(Message):
    """One file to place: from a pre-signed URL (stage mode) or a path on mounted Clowder storage (link)."""

    # Bytes travel as base64 in JSON.
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    path: str = Field(description="Relative to the command's target folder")
    size: int
    sha256: str | None = Field(default=None, description="Known for staged files; verified on arrival")
    url: str | None = Field(default=None, description="Pre-signed GET URL of the staged blob")
    content: bytes | None = Field(
        default=None,
        description="A small staged file's bytes, so that it is placed without a download (url still set)",
    )
    source: str | None = Field(default=None, description="Absolute path below a link root (link mode)")
    staged: str | None = Field(
        default=None,
        description="Its name in the transfer's staging folder of the home (``staged_folder``), where the "
        "platform wrote it: placing it is a rename",
    )
    clowder_id: str = ""


class SyncCommand(Queued):
    """Place these files of a transfer under ``target`` in the user's home."""

    kind: Literal["sync"] = "sync"
    transfer_id: str
    user: str
    target: str = Field(description="Folder relative to the user's home")
    files: list[SyncFile]
    link: Literal["copy", "symlink"] = "copy"


class ExportCommand(Queued):
    """Upload every file below ``folder`` of the user's home with the upload grant, then report."""

    kind: Literal["export"] = "export"
    export_id: str
    user: str
    folder: str
    upload_url: str
    upload_fields: dict[str, str]
    key_prefix: str


class StackCommand(Queued):
    """Start or stop one of the user's stacks, through the API, with the token it carries: one that
    starts and stops that stack only, for an hour (so a shovel holds no credential of its user's)."""

    kind: Literal["start", "stop"]
    user: str
    stack_id: str
    token: str = Field(repr=False, description="The stack's control token (scope stack:<sid>:control)")


class ReceiptFile(Message):
    path: str = Field(description="Relative to the command's target folder, where the platform sent it")
    size: int
    sha256: str


class ReceiptCommand(Queued):
    """A transfer completed: write its receipt (``shared.core.receipts``) into ``target`` of the home."""

    kind: Literal["receipt"] = "receipt"
    transfer_id: str
    user: str
    target: str = Field(description="Folder relative to the user's home")
    clowder_url: str
    dataset_id: str
    dataset_name: str = ""
    version: str | None = None
    completed: str = Field(description="When the transfer completed (ISO 8601, UTC)")
    files: list[ReceiptFile]


class VerifyCommand(Queued):
    """Re-hash ``target`` of the home against its receipts and report what changed since
    (``events.types.TransferVerified``): the platform's check ``check_id`` of a completed transfer."""

    kind: Literal["verify"] = "verify"
    check_id: str
    transfer_id: str
    user: str
    target: str = Field(description="Folder relative to the user's home: the transfer's target")


Command = Annotated[
    SyncCommand | ExportCommand | StackCommand | ReceiptCommand | VerifyCommand, Field(discriminator="kind")
]
