"""Stacks: create, change, start, stop and delete a user's stacks, and record what the runtime reports.

The package's modules, each of one concern (none imports this package itself, so that no circle
of imports runs through it):

- ``ports``: the adapters the stack services take (``StackPorts``);
- ``ids``: stack and service ids;
- ``composition``: a request composed into a stack (its services, config, folders, image tags);
- ``crud``: reading, adding, changing and deleting stacks;
- ``planning``: what the runtime needs to run a stack (``plan_for``);
- ``lifecycle``: start, stop, stop all, quickstart;
- ``status``: the runtime's reports recorded, the stack's status derived from its services';
- ``reconciliation``: the stored status checked against the cluster;
- ``connect``: the Connect URLs an owner sees, and the hosts of a user's endpoints;
- ``reads``: a stack or a user's stacks, reconciled and with their Connect URLs;
- ``log_tail``: a service's status messages and log tail;
- ``restoration``: the stacks that were running started again after a restart.

Every public name is importable from here, as from the one module this package was.
"""

from shared.domain.stacks.connect import connectable, endpoint_hosts
from shared.domain.stacks.crud import create, delete, get, rename, update
from shared.domain.stacks.ids import ID_ALPHABET, new_stack_id, random_suffix, stack_id_of
from shared.domain.stacks.lifecycle import quickstart, start, stop, stop_all
from shared.domain.stacks.log_tail import logs
from shared.domain.stacks.planning import plan_for
from shared.domain.stacks.ports import StackPorts
from shared.domain.stacks.reads import SECURE, list_stacks, list_stacks_json, read
from shared.domain.stacks.reconciliation import RECONCILED, reconcile, reconcile_pod
from shared.domain.stacks.restoration import restore
from shared.domain.stacks.status import MAX_STATUS_MESSAGES, RUNNING, record_status, report

__all__ = [
    "ID_ALPHABET",
    "MAX_STATUS_MESSAGES",
    "RECONCILED",
    "RUNNING",
    "SECURE",
    "StackPorts",
    "connectable",
    "create",
    "delete",
    "endpoint_hosts",
    "get",
    "list_stacks",
    "list_stacks_json",
    "logs",
    "new_stack_id",
    "plan_for",
    "quickstart",
    "random_suffix",
    "read",
    "reconcile",
    "reconcile_pod",
    "record_status",
    "rename",
    "report",
    "restore",
    "stack_id_of",
    "start",
    "stop",
    "stop_all",
    "update",
]
