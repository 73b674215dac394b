"""The names of the CloudEvent types the platform receives and emits, without their data models.

Importing this module costs nothing, so that what only needs a type's name (the function registry,
its manifests and the local gateway) does not build the models of ``events.types``."""

from __future__ import annotations

# Inbound, from Clowder.
TRANSFER_REQUESTED = "org.clowder.workbench.transfer.requested"
EXPORT_REQUESTED = "org.clowder.workbench.export.requested"
STACK_START_REQUESTED = "org.clowder.workbench.stack.start.requested"
STACK_STOP_REQUESTED = "org.clowder.workbench.stack.stop.requested"
DATASET_WITHDRAWN = "org.clowder.workbench.dataset.withdrawn"

# Outbound, from the platform and its shovels.
TRANSFER_STAGED = "org.ndslabs.workbench.transfer.staged"
TRANSFER_PROGRESS = "org.ndslabs.workbench.transfer.progress"
TRANSFER_COMPLETED = "org.ndslabs.workbench.transfer.completed"
TRANSFER_FAILED = "org.ndslabs.workbench.transfer.failed"
EXPORT_UPLOADED = "org.ndslabs.workbench.export.uploaded"
EXPORT_COMPLETED = "org.ndslabs.workbench.export.completed"
EXPORT_FAILED = "org.ndslabs.workbench.export.failed"
STACK_STARTED = "org.ndslabs.workbench.stack.started"
STACK_STOPPED = "org.ndslabs.workbench.stack.stopped"
STACK_FAILED = "org.ndslabs.workbench.stack.failed"
SHOVEL_HEARTBEAT = "org.ndslabs.workbench.shovel.heartbeat"
SHOVEL_COMMAND_ABANDONED = "org.ndslabs.workbench.shovel.command.abandoned"

# A shovel's answer to the platform's check of a received folder.
TRANSFER_VERIFIED = "org.ndslabs.workbench.transfer.verified"
