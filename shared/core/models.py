"""Pydantic models of the Workbench API, with the field names of the Go apiserver's types."""

# No ``from __future__ import annotations``: the field types are objects when each class is made,
# so that pydantic has no strings to compile and evaluate for every field of every model.

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Model(BaseModel):
    """Base of every API model: unknown fields are ignored and absent ones take Go's zero value.

    Each model builds its validator and serializer on first use (``defer_build``), so that a function
    pays only for the models it uses, not for all of those it imports."""

    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True, defer_build=True)


# --- Service specs -------------------------------------------------------------------------


class ServiceImage(Model):
    registry: str = ""
    name: str = ""
    tags: list[str] | None = None


class Config(Model):
    name: str = ""
    value: str = ""
    label: str = ""
    isPassword: bool = False
    canOverride: bool = False
    useFrom: str = ""
    setTo: str = ""


class ServiceDependency(Model):
    key: str = ""
    required: bool = False
    shareConfig: bool = False


class Port(Model):
    port: int = 0
    protocol: str = ""
    contextPath: str = ""


class VolumeMount(Model):
    type: str = ""
    mountPath: str = ""


class ReadyProbe(Model):
    type: str = ""
    path: str = ""
    port: int = 0
    initialDelay: int = 0
    timeout: int = 0


class ResourceLimits(Model):
    cpuMax: int = 0
    cpuDefault: int = 0
    memMax: int = 0
    memDefault: int = 0


class SecurityContext(Model):
    privileged: bool = False


class Repository(Model):
    url: str = ""
    type: str = ""


class ServiceSpec(Model):
    """A service in a catalog: what runs, on which ports, needing which other services."""

    id: str = ""
    key: str = ""
    label: str = ""
    description: str = ""
    logo: str = ""
    maintainer: str = ""
    image: ServiceImage = Field(default_factory=ServiceImage)
    display: str = ""
    access: str = ""
    depends: list[ServiceDependency] | None = None
    config: list[Config] | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    ports: list[Port] | None = None
    repositories: list[Repository] | None = None
    createdTime: int = 0
    updateTime: int = 0
    readinessProbe: ReadyProbe = Field(default_factory=ReadyProbe)
    volumeMounts: list[VolumeMount] | None = None
    resourceLimits: ResourceLimits = Field(default_factory=ResourceLimits)
    catalog: str = ""
    developerEnvironment: str = ""
    tags: list[str] | None = None
    info: str = ""
    privileged: bool = False
    securityContext: SecurityContext | None = None
    authRequired: bool = False


# --- Accounts ------------------------------------------------------------------------------

AccountStatus = Literal["unverified", "unapproved", "approved", "denied", ""]


class AccountResourceLimits(Model):
    cpuMax: int = 0
    cpuDefault: int = 0
    memMax: int = 0
    memDefault: int = 0
    storageQuota: int = 0


class ResourceUsage(Model):
    cpu: str = ""
    memory: str = ""
    storage: str = ""
    cpuPct: str = ""
    memPct: str = ""


class Account(Model):
    """A Workbench user; ``namespace`` is the user name and ``id`` repeats it."""

    id: str = ""
    name: str = ""
    description: str = ""
    namespace: str = ""
    email: str = ""
    password: str = ""
    resourceLimits: AccountResourceLimits = Field(default_factory=AccountResourceLimits)
    resourceUsage: ResourceUsage = Field(default_factory=ResourceUsage)
    status: AccountStatus = ""
    token: str = ""
    organization: str = ""
    lastLogin: int = 0
    inactiveTimeout: int | None = None
    """Minutes without activity after which the account's running stacks are stopped (0: never);
    stored None follows ``WORKBENCH_INACTIVE_TIMEOUT_MINUTES``. Shown as the limit in force."""
    lastActive: int = 0
    """Shown, not stored here: the account's last activity (login, token refresh, API call)."""


# --- Stacks --------------------------------------------------------------------------------

StackStatus = Literal["stopped", "starting", "started", "stopping", "error"]
ServiceStatus = Literal["", "starting", "ready", "timeout", "error", "stopped"]


class Endpoint(Model):
    host: str = ""
    port: int = 0
    nodePort: int = 0
    protocol: str = ""
    path: str = ""
    url: str = ""


class StackService(Model):
    """One service of a stack; ``id`` is ``<stack id>-<service key>``."""

    id: str = ""
    stack: str = ""
    service: str = ""
    imageTag: str = ""
    status: ServiceStatus = ""
    statusMessages: list[str] = Field(default=[])
    endpoints: list[Endpoint] | None = None
    createdTime: int = 0
    updateTime: int = 0
    config: dict[str, str] | None = None
    volumeMounts: dict[str, str] | None = None
    internalIP: str = ""


class Stack(Model):
    """A user's application: a main service and the services it depends on."""

    id: str = ""
    key: str = ""
    name: str = ""
    services: list[StackService] = Field(default=[])
    status: StackStatus = "stopped"
    createdTime: int = 0
    updateTime: int = 0
    secure: bool = False


# --- Small request and reply bodies --------------------------------------------------------


class Auth(Model):
    username: str
    password: str


class Token(Model):
    token: str


class Term(Model):
    id: str = ""
    name: str = ""
    definition: str = ""


class Vocabulary(Model):
    name: str = ""
    terms: list[Term] = Field(default=[])


class Rename(Model):
    name: str


class Password(Model):
    password: str


class Verify(Model):
    u: str
    t: str


class SupportRequest(Model):
    type: Literal["bug", "wish", "help", "comment"]
    message: str
    anonymous: bool = False


class Contact(Model):
    email: str
    forum: str
    chat: str


class Message(Model):
    message: str


class Health(Model):
    status: Literal["ok", "unavailable"]
    database: str


class LogLevel(Model):
    level: str


class ConsoleCheck(Model):
    """``GET /api/check_console``: the caller's stack service, and whether a shell opens in it now."""

    ssid: str
    available: bool
    reason: str = ""


class ErrorBody(Model):
    """Every error answer: ``{"Error": "..."}`` as the Go apiserver sent it."""

    Error: str


class ExportPackage(Model):
    """An account with its own catalog and stacks, as ``accounts/{id}/export`` writes it."""

    account: Account
    services: list[ServiceSpec] = Field(default=[])
    stacks: list[Stack] = Field(default=[])


# --- Transfers, exports, containers ----------------------------------------------------------

TransferState = Literal["requested", "staging", "syncing", "completed", "failed"]


class FileError(Model):
    path: str
    error: str


class FileLocation(Model):
    """Where a running stack service sees a folder of the home: the path inside its container."""

    service: str = Field(description="The stack service's id, e.g. s1abcd-jupyter")
    path: str = Field(description="The folder's path inside it, e.g. /home/jovyan/work/clowder/Soil samples")


class Withdrawal(Model):
    """Clowder deleted the dataset a transfer copied, or withdrew its owner's access to it. The copy
    stays in the owner's home (it is theirs); the flag tells them."""

    reason: Literal["deleted", "access-withdrawn"]
    time: int = Field(description="When Clowder told the platform (seconds since the epoch)")
    message: str = Field(default="", description="What Clowder said about it")


class Transfer(Model):
    """A Clowder dataset (or part of it) on its way into a user's home."""

    id: str
    user: str
    state: TransferState = "requested"
    source: str = Field(description="The Clowder instance")
    datasetId: str
    datasetName: str = ""
    datasetVersion: str = Field(default="", description="The dataset's version where Clowder has one")
    target: str = Field(default="", description="Folder in the user's home")
    mode: Literal["stage", "link"] = "stage"
    stackId: str = ""
    filesTotal: int = 0
    filesDone: int = 0
    bytesTotal: int = 0
    bytesDone: int = 0
    stagingDone: bool = False
    errors: list[FileError] = Field(default=[])
    message: str = ""
    createdTime: int = 0
    updateTime: int = 0
    withdrawn: Withdrawal | None = Field(
        default=None, description="Set once Clowder deleted the dataset or withdrew the user's access to it"
    )
    waitingForStack: bool = Field(
        default=False,
        description="Its files wait for one of the user's stacks to start: none runs to place them "
        "(worked out when the transfer is read, never stored)",
    )
    locations: list[FileLocation] = Field(
        default=[],
        description="Where each of the user's running stack services sees the target folder, in the "
        "app's own terms (worked out when the transfer is read, from the stacks running then; never "
        "stored)",
    )


class DatasetCopy(Model):
    """A completed transfer of a Clowder dataset: a copy of it in a user's home
    (``GET /api/datasets/<id>/copies``)."""

    transferId: str
    user: str
    datasetId: str
    datasetName: str = ""
    datasetVersion: str = ""
    target: str = Field(description="Folder in the user's home that holds the copy")
    filesDone: int = 0
    bytesDone: int = 0
    completedTime: int = 0
    locations: list[FileLocation] = Field(
        default=[], description="Where each of the user's running stack services sees the copy now"
    )
    withdrawn: Withdrawal | None = Field(
        default=None, description="Set once Clowder deleted the dataset or withdrew the user's access to it"
    )


class ReceiptCheck(Model):
    """A completed transfer's folder re-hashed against its receipts (``POST /api/transfers/<id>/verify``)."""

    transferId: str
    target: str
    receipts: int = Field(description="Receipts found in the folder's .workbench/receipts")
    checked: int
    modified: list[str] = Field(default=[], description="Files whose bytes changed since received")
    missing: list[str] = Field(default=[], description="Files received and gone since")
    added: list[str] = Field(default=[], description="Files no receipt names")
    problems: list[str] = Field(default=[], description="Receipts that could not be read")
    unchanged: bool


TransferCheckState = Literal["requested", "completed", "failed"]


class TransferCheck(Model):
    """One verification of a completed transfer's folder (``GET /api/transfers/<id>/verify``): asked of
    the user's shovel where the platform does not reach the homes (a cluster), done at once where it does."""

    id: str
    transferId: str
    user: str
    target: str = Field(description="The folder of the user's home that is checked")
    state: TransferCheckState = "requested"
    result: ReceiptCheck | None = Field(default=None, description="What changed, once completed")
    counts: dict[str, int] = Field(
        default={},
        description="How many paths of each kind (modified, missing, added, problems) there were, where "
        "the result lists only the first of them",
    )
    message: str = Field(default="", description="Why the check failed")
    createdTime: int = 0
    updateTime: int = 0
    waitingForStack: bool = Field(
        default=False,
        description="Requested while none of the user's stacks runs: no shovel takes it until one starts "
        "(worked out when the check is read, never stored)",
    )


class TransferPlan(Model):
    """What a transfer would move and whether it fits (``POST /api/transfers?dry_run=1``); finding out
    changes nothing."""

    datasetId: str
    datasetName: str = ""
    target: str = Field(description="Folder in the user's home the files would go to")
    files: int = Field(description="Files the transfer would send")
    bytes: int = Field(description="Their bytes, as Clowder lists them")
    refusedFiles: int = Field(default=0, description="Files whose names the home refuses (they would fail)")
    stagedFiles: int = Field(
        default=0,
        description="Files staged before (their content is known to the platform): not fetched again",
    )
    stagedBytes: int = 0
    inPlaceFiles: int = Field(default=0, description="Files already in the target folder with the same size")
    inPlaceBytes: int = 0
    fetchBytes: int = Field(description="Bytes to fetch from Clowder: neither staged before nor in place")
    neededBytes: int = Field(description="Room the transfer takes in the home: bytes not already in place")
    quotaBytes: int | None = Field(default=None, description="The account's storage quota (None: none)")
    usedBytes: int | None = Field(default=None, description="The home's bytes now (None: unknown)")
    usageFrom: str = Field(
        default="",
        description="How usedBytes was found: `home scan` (the platform reads the home), `home scan, "
        "cut short` (a lower bound), or `transfer records` (the bytes the platform placed there)",
    )
    fitsQuota: bool | None = Field(default=None, description="None where there is no quota")
    freeBytes: int | None = Field(
        default=None, description="Free bytes of the home's volume (None: unknown, e.g. on Kubernetes)"
    )
    fitsFreeSpace: bool | None = Field(default=None, description="None where the free space is unknown")
    fits: bool = Field(description="Nothing known stands in the way: a transfer would be accepted")
    throughput: float | None = Field(
        default=None, description="Bytes per second the platform's last completed transfers moved"
    )
    estimateSeconds: int | None = Field(default=None, description="None: no estimate yet")
    notes: list[str] = Field(default=[], description="What the plan could not tell, in words")


class TransferRefusal(Model):
    """A transfer refused up front because it would not fit: ``limit`` names which (409 for the
    quota, 507 for the volume's free space)."""

    Error: str
    limit: Literal["quota", "free space"]
    neededBytes: int
    availableBytes: int


class TransferFile(Model):
    """One file of a transfer, as the manifest records it."""

    path: str
    size: int
    sha256: str | None = None
    clowderId: str
    state: Literal["pending", "staged", "placed", "failed"] = "pending"
    error: str = ""


ExportState = Literal["requested", "uploading", "creating", "completed", "failed"]


class ExportRequest(Model):
    """``POST /api/exports``: make a new Clowder dataset from a folder of the caller's home."""

    folder: str = Field(
        description="The folder as an app sees it (e.g. /home/jovyan/work/clowder/results, mapped back "
        "through the folders your stacks mount) or relative to your data folder, Clowder/ of your home "
        "(results, or Clowder/results)"
    )
    name: str
    description: str = ""
    spaceId: str | None = None


class LineageSource(Model):
    """A Clowder dataset an export derives from: a copy of it the platform delivered to the user."""

    source: str = Field(description="The Clowder instance")
    datasetId: str
    datasetName: str = ""
    datasetVersion: str = ""
    transferId: str = Field(description="The completed transfer that delivered the copy")
    why: Literal["folder", "content", "home"] = Field(
        description="folder: its copy is in the exported folder or holds it; content: the export carries "
        "files of it unchanged; home: neither, but the same home received it"
    )


class Export(Model):
    """A folder of a user's home on its way to a new Clowder dataset."""

    id: str
    user: str
    state: ExportState = "requested"
    folder: str
    name: str
    description: str = ""
    spaceId: str | None = None
    source: str = Field(description="The Clowder instance")
    datasetId: str = ""
    files: int = 0
    bytes: int = 0
    errors: list[FileError] = Field(default=[])
    message: str = ""
    createdTime: int = 0
    updateTime: int = 0
    derivedFrom: list[LineageSource] = Field(
        default=[],
        description="The datasets its RO-Crate (ro-crate-metadata.json in the new dataset) names as sources",
    )


class ContainerService(Model):
    """A service of a stack as Clowder shows it: no configuration, which may hold passwords."""

    id: str
    service: str
    status: ServiceStatus = ""
    endpoints: list[str] = Field(default=[])
    """Its connect URLs."""


class Container(Model):
    """A stack as Clowder shows it: what runs for a user and where to connect, and nothing of the
    services' configuration (the owner reads that from ``/api/stacks``)."""

    id: str
    key: str
    name: str
    status: str
    endpoints: list[str] = Field(default=[])
    services: list[ContainerService] = Field(default=[])


class ShovelHealth(Model):
    """A shovel as its last heartbeat described it; ``stale`` when that was too long ago."""

    user: str
    stackId: str
    version: str = ""
    status: str = ""
    freeBytes: int = 0
    lastSync: str | None = None
    seenTime: int
    stale: bool


# --- Dead letters --------------------------------------------------------------------------


class DeadLetter(Model):
    """One event that could not be delivered, with the reasons Knative attached to it."""

    id: str
    type: str
    eventId: str
    source: str
    subject: str = ""
    eventTime: str = Field(default="", description="The event's own time attribute")
    errorCode: str = Field(default="", description="The last status the destination answered")
    errorData: str = Field(default="", description="The start of the destination's last reply")
    errorDestination: str = Field(default="", description="Where delivery failed (a URL, or a function)")
    data: str = Field(default="", description="The start of the event's data")
    receivedTime: int = 0
