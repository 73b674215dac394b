"""Every CloudEvent type the platform receives or emits, with the pydantic model of its data."""

# No ``from __future__ import annotations``: the field types are objects when each class is made,
# so that pydantic has no strings to compile and evaluate for every field of every model.

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from events.ids import CLOWDER_ID_PATTERN

# The type names live in events.names (cheap to import); they are part of this module's interface too.
from events.names import DATASET_WITHDRAWN as DATASET_WITHDRAWN
from events.names import EXPORT_COMPLETED as EXPORT_COMPLETED
from events.names import EXPORT_FAILED as EXPORT_FAILED
from events.names import EXPORT_REQUESTED as EXPORT_REQUESTED
from events.names import EXPORT_UPLOADED as EXPORT_UPLOADED
from events.names import SHOVEL_COMMAND_ABANDONED as SHOVEL_COMMAND_ABANDONED
from events.names import SHOVEL_HEARTBEAT as SHOVEL_HEARTBEAT
from events.names import STACK_FAILED as STACK_FAILED
from events.names import STACK_START_REQUESTED as STACK_START_REQUESTED
from events.names import STACK_STARTED as STACK_STARTED
from events.names import STACK_STOP_REQUESTED as STACK_STOP_REQUESTED
from events.names import STACK_STOPPED as STACK_STOPPED
from events.names import TRANSFER_COMPLETED as TRANSFER_COMPLETED
from events.names import TRANSFER_FAILED as TRANSFER_FAILED
from events.names import TRANSFER_PROGRESS as TRANSFER_PROGRESS
from events.names import TRANSFER_REQUESTED as TRANSFER_REQUESTED
from events.names import TRANSFER_STAGED as TRANSFER_STAGED
from events.names import TRANSFER_VERIFIED as TRANSFER_VERIFIED

SCHEMA_BASE = "https://workbench.ndslabs.org/events/schemas/"
"""``dataschema`` of an event: this base followed by ``<type>.json`` (the files in events/schemas/)."""

ClowderId = Annotated[
    str, Field(pattern=CLOWDER_ID_PATTERN, description="A Clowder id (letters, digits, '-' and '_')")
]
"""An id that goes into a Clowder URL: ``.``, ``..`` and anything else that would name another path are refused."""


class Payload(BaseModel):
    """Base of every event's data: unknown fields are refused, so a typo is a clear 400. Each model is
    built on first use (``defer_build``): a function builds only the payloads it receives or sends."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class TransferRequested(Payload):
    """Send a Clowder dataset (or part of it) into a user's workbench."""

    clowder_url: str = Field(description="Base URL of the Clowder instance, e.g. https://clowder.example.org")
    dataset_id: ClowderId
    email: str = Field(description="The Clowder user's e-mail; it names the Workbench account")
    files: list[ClowderId] | None = Field(default=None, description="Only these Clowder file ids")
    folders: list[str] | None = Field(default=None, description="Only files below these dataset folders")
    stack_id: str | None = Field(default=None, description="A stack of the user's that should receive it")
    target_folder: str | None = Field(
        default=None,
        description="Folder inside the user's data folder (Clowder/ of the home), e.g. `Soil samples` or "
        "`Clowder/Soil samples`; default Clowder/<dataset name>. A folder outside it is refused",
    )
    mode: Literal["stage", "link"] = "stage"
    link: Literal["copy", "symlink"] = Field(
        default="copy", description="In link mode: copy from Clowder's mounted storage, or symlink to it"
    )


class ExportRequested(Payload):
    """Make a new Clowder dataset from a folder of a user's workbench home."""

    clowder_url: str
    email: str
    folder: str = Field(
        description="The folder as one of the user's apps sees it (e.g. /home/jovyan/work/clowder/results) "
        "or relative to the user's data folder, Clowder/ of the home (results, or Clowder/results)"
    )
    dataset_name: str
    description: str = ""
    space_id: ClowderId | None = None


class StackActionRequested(Payload):
    """Start or stop one of a user's stacks."""

    email: str
    stack_id: str


class DatasetWithdrawn(Payload):
    """Clowder deleted a dataset, or withdrew some of its users' access to it: the copies the platform
    placed in their homes are flagged to their owners (nothing is deleted: a copy is its owner's)."""

    clowder_url: str = Field(description="Base URL of the Clowder instance, e.g. https://clowder.example.org")
    dataset_id: ClowderId
    reason: Literal["deleted", "access-withdrawn"]
    emails: list[str] | None = Field(
        default=None,
        min_length=1,
        description="The Clowder users whose access was withdrawn, by e-mail (as they name Workbench "
        "accounts); absent: everyone's. Only with reason access-withdrawn",
    )
    version: str | None = Field(default=None, description="Only the copies of this version of the dataset")
    message: str = Field(default="", max_length=2000, description="What Clowder tells the copies' owners")

    @model_validator(mode="after")
    def _emails_only_for_access(self) -> Self:
        if self.reason == "deleted" and self.emails is not None:
            raise ValueError(
                "emails names whose access was withdrawn: a deleted dataset is gone for everyone"
            )
        return self


class FileProblem(Payload):
    path: str
    error: str


class TransferStaged(Payload):
    transfer_id: str
    user: str
    files_total: int
    bytes_total: int


class TransferProgress(Payload):
    """Sent by a shovel after placing (or failing) the files of one sync command."""

    transfer_id: str
    user: str
    stack_id: str | None = None
    placed: list[str] = Field(default=[], description="Relative paths placed in the volume")
    bytes_placed: int = 0
    errors: list[FileProblem] = Field(default=[])


class FileLocation(Payload):
    """Where a running stack service sees a folder: the path inside its container."""

    service: str = Field(description="The stack service's id, e.g. s1abcd-jupyter")
    path: str = Field(description="The path inside it, e.g. /home/jovyan/work/clowder/Soil samples")


class TransferOutcome(Payload):
    transfer_id: str
    user: str
    dataset_id: str
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    errors: list[FileProblem] = Field(default=[])
    target: str = Field(default="", description="The folder of the user's home the files went to")
    locations: list[FileLocation] = Field(
        default=[],
        description="Where each of the user's stack services running when the transfer ended sees the "
        "folder, in the app's own terms",
    )


class UploadedFile(Payload):
    path: str
    size: int
    sha256: str
    key: str


class ExportUploaded(Payload):
    """Sent by a shovel once a folder's files are in staging."""

    export_id: str
    user: str
    files: list[UploadedFile] = Field(default=[])
    errors: list[FileProblem] = Field(default=[])


class ExportOutcome(Payload):
    export_id: str
    user: str
    dataset_id: str | None = None
    clowder_url: str
    files: int = 0
    error: str | None = None


class StackOutcome(Payload):
    user: str
    stack_id: str
    status: str
    endpoints: list[str] = Field(default=[])
    message: str | None = None


class ShovelHeartbeat(Payload):
    user: str
    stack_id: str
    version: str
    status: Literal["starting", "ready", "syncing", "stopping"]
    free_bytes: int
    last_sync: str | None = None


class CommandAbandoned(Payload):
    """Sent by a shovel that gave up on a command of its user's queue after WORKBENCH_SHOVEL_ATTEMPTS
    failed attempts; the platform keeps it as a dead letter. It names the command, never carries it
    (a command holds pre-signed URLs or a stack's control token)."""

    user: str
    stack_id: str | None = Field(default=None, description="The stack of the shovel that gave up")
    kind: Literal["sync", "export", "start", "stop", "receipt", "verify"] = Field(
        description="The command's kind"
    )
    subject: str = Field(
        description="What the command was about: the transfer's id (sync, receipt), the export's id "
        "(export), the stack's id (start, stop), the check's id (verify)"
    )
    failures: int = Field(ge=1, description="How often the command was tried and failed")
    reason: str = Field(description="The last failure, without a URL's query string")


MAX_LISTED_PATHS = 100
"""Paths a verification report lists of each kind (modified, missing, added, problems); the counts
say how many there were."""
MAX_LISTED_CHARS = 500
"""Characters of one listed path or problem, at most: a report stays far below the event size limit."""

Listed = Annotated[
    list[Annotated[str, Field(max_length=MAX_LISTED_CHARS)]], Field(max_length=MAX_LISTED_PATHS)
]


class TransferVerified(Payload):
    """Sent by a shovel after checking a transfer's folder against its receipts (the platform's verify
    command): what changed since received, the first ``MAX_LISTED_PATHS`` paths of each kind with the
    counts of all, or the error that kept it from checking."""

    check_id: str
    transfer_id: str
    user: str
    stack_id: str | None = None
    receipts: int = Field(default=0, description="Receipts found in the folder's .workbench/receipts")
    checked: int = Field(default=0, description="Files checked against a receipt")
    modified: Listed = Field(default=[], description="Files whose bytes changed since received")
    missing: Listed = Field(default=[], description="Files received and gone since")
    added: Listed = Field(default=[], description="Files no receipt names")
    problems: Listed = Field(default=[], description="Receipts that could not be read")
    modified_count: int = 0
    missing_count: int = 0
    added_count: int = 0
    problems_count: int = 0
    error: str | None = Field(default=None, description="Why the folder could not be checked at all")


DATA_MODELS: dict[str, type[Payload]] = {
    TRANSFER_REQUESTED: TransferRequested,
    EXPORT_REQUESTED: ExportRequested,
    STACK_START_REQUESTED: StackActionRequested,
    STACK_STOP_REQUESTED: StackActionRequested,
    DATASET_WITHDRAWN: DatasetWithdrawn,
    TRANSFER_STAGED: TransferStaged,
    TRANSFER_PROGRESS: TransferProgress,
    TRANSFER_COMPLETED: TransferOutcome,
    TRANSFER_FAILED: TransferOutcome,
    EXPORT_UPLOADED: ExportUploaded,
    EXPORT_COMPLETED: ExportOutcome,
    EXPORT_FAILED: ExportOutcome,
    STACK_STARTED: StackOutcome,
    STACK_STOPPED: StackOutcome,
    STACK_FAILED: StackOutcome,
    SHOVEL_HEARTBEAT: ShovelHeartbeat,
    SHOVEL_COMMAND_ABANDONED: CommandAbandoned,
    TRANSFER_VERIFIED: TransferVerified,
}
"""Every known type and its data model; an event of another type is refused."""

INBOUND = (
    TRANSFER_REQUESTED,
    EXPORT_REQUESTED,
    STACK_START_REQUESTED,
    STACK_STOP_REQUESTED,
    DATASET_WITHDRAWN,
)
FROM_SHOVELS = (
    TRANSFER_PROGRESS,
    EXPORT_UPLOADED,
    SHOVEL_HEARTBEAT,
    SHOVEL_COMMAND_ABANDONED,
    TRANSFER_VERIFIED,
)


def dataschema(event_type: str) -> str:
    return f"{SCHEMA_BASE}{event_type}.json"
