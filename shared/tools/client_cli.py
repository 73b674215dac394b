"""The ``workbench`` commands for people: log in, then steer stacks, catalogs and transfers over the HTTP API."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.core.durable import write_atomically

if TYPE_CHECKING:
    import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
POLL_SECONDS = 0.5
STAGING_SECONDS = 3600.0
"""How long ``POST /api/transfers`` may take: the platform stages the dataset before it answers."""
FINISHED = ("completed", "failed")
PREVIEW = "File preview"
"""How a service's status messages begin when the platform serves its folder for want of a way to run
it (the local runtime's ``PREVIEW``)."""
REAL_APP = (
    "file preview: the service's folder, read-only, not the app itself. For the real app, run Docker or "
    "Podman so that `workbench run` starts the catalog's containers, or set WORKBENCH_LOCAL_COMMANDS."
)
WAITING_MARK = "waiting for a stack"
WAITING_FOR_STACK = (
    "None of your stacks is running: files arrive when one of your stacks starts "
    "(`workbench stacks list`, then `workbench stacks start ID`)."
)

WITHDRAWN_REASONS = {"deleted": "deleted", "access-withdrawn": "access withdrawn"}
"""How a withdrawn copy's reason reads (as on the page)."""

Handler = Callable[[argparse.Namespace], int]


class CommandFailed(Exception):
    """A command could not do its work; the message says why (exit code 1)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- configuration ---------------------------------------------------------------------------------


def config_path() -> Path:
    """``$WORKBENCH_CONFIG``, else ``~/.config/workbench/config.json``."""
    configured = os.environ.get("WORKBENCH_CONFIG")
    if configured:
        return Path(configured)
    return Path.home() / ".config" / "workbench" / "config.json"


def read_config() -> dict[str, str]:
    path = config_path()
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise CommandFailed(f"cannot read the configuration {path}: {error}") from None
    if not isinstance(document, dict):
        raise CommandFailed(f"the configuration {path} is not a JSON object")
    return {key: value for key, value in document.items() if isinstance(value, str)}


def write_config(settings: dict[str, str]) -> Path:
    """Write the configuration readable by its owner only, replacing the old one in one step."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    document = json.dumps(settings, indent=2) + "\n"
    write_atomically(path, document.encode(), mode=0o600, prefix=".config-", suffix="")
    return path


def server_url(explicit: str | None = None) -> str:
    """The API's base URL: the option, ``$WORKBENCH_URL``, the configuration, else the local platform."""
    url = explicit or os.environ.get("WORKBENCH_URL") or read_config().get("url") or DEFAULT_URL
    return url.rstrip("/").removesuffix("/api")


# --- talking to the API ----------------------------------------------------------------------------


@dataclass
class Session:
    """The API at ``url`` as one user (``token``), or anonymously."""

    url: str
    token: str | None

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, str] | None = None,
        read_seconds: float = 30.0,
    ) -> Any:
        """The decoded JSON reply (None when empty); an API error becomes ``CommandFailed``."""
        import httpx

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = httpx.request(
                method,
                f"{self.url}{path}",
                json=body,
                params=query,
                headers=headers,
                timeout=httpx.Timeout(10.0, read=read_seconds),
            )
        except httpx.TransportError as error:
            raise CommandFailed(
                f"cannot reach the Workbench API at {self.url}: {error or type(error).__name__}"
            ) from None
        return self._decode(response)

    def _decode(self, response: httpx.Response) -> Any:
        try:
            document = response.json() if response.content.strip() else None
        except ValueError:
            document = None
        if response.is_success:
            return document
        message = document.get("Error") if isinstance(document, dict) else None
        if not message:
            message = f"HTTP {response.status_code} from {response.request.url}"
        if response.status_code == 401 and self.token:
            message += "; log in again with `workbench login`"
        raise CommandFailed(str(message))


def session() -> Session:
    """A session of the logged-in user; ``$WORKBENCH_TOKEN`` wins over the configuration."""
    url = server_url()
    token = os.environ.get("WORKBENCH_TOKEN") or read_config().get("token")
    if not token:
        raise CommandFailed(
            f"not logged in to {url}: run `workbench login` (or set WORKBENCH_TOKEN); "
            f"the configuration is {config_path()}"
        )
    return Session(url, token)


# --- output ----------------------------------------------------------------------------------------


def print_json(document: Any) -> None:
    print(json.dumps(document, indent=2))


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    lines = [[str(cell) for cell in row] for row in rows]
    widths = [
        max([len(header), *(len(line[index]) for line in lines)]) for index, header in enumerate(headers)
    ]
    for line in [list(headers), *lines]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def is_preview(service: dict[str, Any]) -> bool:
    return any(str(message).startswith(PREVIEW) for message in service.get("statusMessages") or [])


def connect_rows(stacks: Iterable[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """Each Connect URL of the stacks that are not stopped, labelled with its service, and each file
    preview; an internal service's endpoints have no URL, so it gets no row unless it is a preview."""
    rows = []
    for stack in stacks:
        if stack.get("status") == "stopped":
            continue
        for service in stack.get("services") or []:
            note = "file preview" if is_preview(service) else ""
            urls = [endpoint["url"] for endpoint in service.get("endpoints") or [] if endpoint.get("url")]
            rows += [(service.get("id", ""), url, note) for url in urls]
            if not urls and note:
                rows.append((service.get("id", ""), "-", note))
    return rows


# --- login ------------------------------------------------------------------------------------------


def login(arguments: argparse.Namespace) -> int:
    import getpass

    url = server_url(arguments.url)
    interactive = sys.stdin.isatty()
    username = arguments.username
    if not username:
        if not interactive:
            raise CommandFailed("--username is needed when not at a terminal")
        username = input("User name or e-mail: ").strip()
    if arguments.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif interactive:
        password = getpass.getpass("Password: ")
    else:
        raise CommandFailed("--password-stdin is needed when not at a terminal")
    reply = Session(url, None).call(
        "POST", "/api/authenticate", body={"username": username, "password": password}
    )
    path = write_config({"url": url, "token": reply["token"]})
    if arguments.json:
        print_json(reply)
    else:
        print(f"Logged in to {url} as {username} (saved in {path}).")
    return 0


# --- stacks -----------------------------------------------------------------------------------------


def stacks_list(arguments: argparse.Namespace) -> int:
    stacks = session().call("GET", "/api/stacks")
    if arguments.json:
        print_json(stacks)
    elif not stacks:
        print("No stacks yet: `workbench catalog list`, then `workbench stacks create KEY`.")
    else:
        print_table(
            ("ID", "KEY", "NAME", "STATUS"),
            ((stack["id"], stack["key"], stack["name"], stack["status"]) for stack in stacks),
        )
        rows = connect_rows(stacks)
        if rows:
            print()
            print_table(("SERVICE", "CONNECT", ""), rows)
        if any(note for _, _, note in rows):
            print()
            print(REAL_APP)
    return 0


def stacks_create(arguments: argparse.Namespace) -> int:
    body = {"key": arguments.key}
    if arguments.name:
        body["name"] = arguments.name
    stack = session().call("POST", "/api/stacks", body=body)
    if arguments.json:
        print_json(stack)
    else:
        print(
            f"Created stack {stack['id']} ({stack['key']}, {stack['status']}): `workbench stacks start {stack['id']}`."
        )
    return 0


def stacks_start(arguments: argparse.Namespace) -> int:
    stack = session().call("GET", f"/api/start/{arguments.sid}")
    if arguments.json:
        print_json(stack)
    else:
        print(f"Starting stack {arguments.sid}; `workbench stacks list` shows when it is started.")
    return 0


def stacks_stop(arguments: argparse.Namespace) -> int:
    stack = session().call("GET", f"/api/stop/{arguments.sid}")
    if arguments.json:
        print_json(stack)
    else:
        print(f"Stopping stack {arguments.sid}.")
    return 0


def stacks_delete(arguments: argparse.Namespace) -> int:
    reply = session().call("DELETE", f"/api/stacks/{arguments.sid}")
    if arguments.json:
        print_json(reply)
    else:
        print(f"Deleted stack {arguments.sid}.")
    return 0


def stacks_logs(arguments: argparse.Namespace) -> int:
    query = {"lines": str(arguments.lines)} if arguments.lines is not None else None
    logs = session().call("GET", f"/api/logs/{arguments.ssid}", query=query)
    if arguments.json:
        print_json(logs)
    else:
        print(
            logs if isinstance(logs, str) else json.dumps(logs), end="" if str(logs).endswith("\n") else "\n"
        )
    return 0


# --- catalog ----------------------------------------------------------------------------------------


EMPTY_CATALOG = {
    "user": "Your own catalog is empty: `workbench catalog list` shows the system's services.",
    "system": "The system catalog is empty: the admin loads it with `workbench catalog import DIR`.",
    "all": "No services yet: the admin loads the system catalog with `workbench catalog import DIR`.",
}


def catalog_list(arguments: argparse.Namespace) -> int:
    query = {"catalog": arguments.catalog} if arguments.catalog else None
    specs = session().call("GET", "/api/services", query=query) or []
    if arguments.json:
        print_json(specs)
    elif not specs:
        print(EMPTY_CATALOG.get(arguments.catalog or "all", EMPTY_CATALOG["all"]))
    else:
        print_table(
            ("KEY", "LABEL", "DISPLAY", "DESCRIPTION"),
            (
                (
                    spec["key"],
                    spec.get("label", ""),
                    spec.get("display", ""),
                    shorten(spec.get("description", "")),
                )
                for spec in sorted(specs, key=lambda spec: spec["key"])
            ),
        )
    return 0


def shorten(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def catalog_show(arguments: argparse.Namespace) -> int:
    spec = session().call("GET", f"/api/services/{arguments.key}")
    if arguments.json:
        print_json(spec)
        return 0
    image = spec.get("image") or {}
    depends = [
        f"{dependency['key']}{'' if dependency.get('required') else ' (optional)'}"
        for dependency in spec.get("depends") or []
    ]
    ports = [f"{port.get('port')}/{port.get('protocol', '')}" for port in spec.get("ports") or []]
    print_table(
        ("FIELD", "VALUE"),
        [
            ("key", spec["key"]),
            ("label", spec.get("label", "")),
            ("description", spec.get("description", "")),
            ("image", ":".join(filter(None, [image.get("name", ""), ",".join(image.get("tags") or [])]))),
            ("display", spec.get("display", "")),
            ("access", spec.get("access", "")),
            ("depends on", ", ".join(depends) or "-"),
            ("ports", ", ".join(ports) or "-"),
        ],
    )
    return 0


# --- transfers and exports --------------------------------------------------------------------------


def dataset_and_clowder(dataset: str, clowder: str | None) -> tuple[str, str | None]:
    """A dataset id, or a Clowder dataset URL (``…/datasets/<id>``) that also names its Clowder."""
    before, marker, after = dataset.rstrip("/").rpartition("/datasets/")
    if not marker:
        return dataset, clowder
    return after.split("?")[0].split("#")[0], clowder or before


def send(arguments: argparse.Namespace) -> int:
    dataset_id, clowder = dataset_and_clowder(arguments.dataset, arguments.clowder)
    body: dict[str, Any] = {"datasetId": dataset_id}
    if clowder:
        body["clowderUrl"] = clowder
    if arguments.to:
        body["target"] = arguments.to
    current = session()
    if getattr(arguments, "plan", False):  # callers that build the namespace themselves may leave it out
        found = current.call("POST", "/api/transfers", body=body, query={"dry_run": "1"})
        if arguments.json:
            print_json(found)
        else:
            print("\n".join(describe_plan(found)))
        return 0 if found["fits"] else 1
    transfer = current.call("POST", "/api/transfers", body=body, read_seconds=STAGING_SECONDS)
    if not arguments.json:
        print(f"Transfer {transfer['id']}: {describe_transfer(transfer)}")
        if transfer.get("waitingForStack") and not arguments.wait:
            print(WAITING_FOR_STACK)
    if arguments.wait:
        transfer = follow(current, "transfer", transfer, quiet=arguments.json)
    if arguments.json:
        print_json(transfer)
    elif arguments.wait:
        report_transfer(transfer)
    return 1 if transfer["state"] == "failed" else 0


def describe_plan(plan: dict[str, Any]) -> list[str]:
    """A transfer's plan (``POST /api/transfers?dry_run=1``) in lines for a person."""
    name = plan.get("datasetName") or plan["datasetId"]
    lines = [
        f"Plan for {name!r} → {plan['target']} (nothing is sent)",
        f"  files:          {plan['files']} ({human_bytes(plan['bytes'])})",
        f"  already staged: {plan['stagedFiles']} files ({human_bytes(plan['stagedBytes'])}), not fetched again",
        f"  already there:  {plan['inPlaceFiles']} files ({human_bytes(plan['inPlaceBytes'])}) of the same size",
        f"  to fetch:       {human_bytes(plan['fetchBytes'])}; room needed: {human_bytes(plan['neededBytes'])}",
    ]
    if plan.get("refusedFiles"):
        lines.append(f"  refused names:  {plan['refusedFiles']} files (they would fail)")
    if plan.get("quotaBytes") is None:
        lines.append("  quota:          none")
    else:
        fits = "fits" if plan.get("fitsQuota") else "DOES NOT FIT"
        lines.append(
            f"  quota:          {fits}: {human_bytes(plan['usedBytes'] or 0)} used of "
            f"{human_bytes(plan['quotaBytes'])} ({plan.get('usageFrom')})"
        )
    if plan.get("freeBytes") is None:
        lines.append("  free space:     unknown")
    else:
        fits = "fits" if plan.get("fitsFreeSpace") else "DOES NOT FIT"
        lines.append(f"  free space:     {fits}: {human_bytes(plan['freeBytes'])} free on the home's volume")
    if plan.get("estimateSeconds") is None:
        lines.append("  time:           no estimate yet")
    else:
        rate = human_bytes(int(plan.get("throughput") or 0))
        lines.append(f"  time:           about {human_seconds(plan['estimateSeconds'])} (at {rate}/s)")
    lines.extend(f"  note: {note}" for note in plan.get("notes") or [])
    lines.append(
        "It fits: `workbench send` without --plan sends it." if plan["fits"] else "It would be refused."
    )
    return lines


def human_seconds(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def describe_transfer(transfer: dict[str, Any]) -> str:
    name = transfer.get("datasetName") or transfer["datasetId"]
    return (
        f"{name!r} → {transfer.get('target') or '(home)'}: {transfer['state']}, "
        f"{transfer['filesDone']}/{transfer['filesTotal']} files, "
        f"{human_bytes(transfer['bytesDone'])}/{human_bytes(transfer['bytesTotal'])}"
    )


def where_seen(transfer: dict[str, Any]) -> list[str]:
    """Where each running app of the user sees the transfer's folder: ``in s1abcd-jupyter: /home/…``."""
    return [f"in {location['service']}: {location['path']}" for location in transfer.get("locations") or []]


def report_transfer(transfer: dict[str, Any]) -> None:
    if transfer["state"] == "completed":
        print(f"Completed: {transfer['filesDone']} files in {transfer.get('target') or 'the home'}.")
        for line in where_seen(transfer):
            print(f"  {line}")
        return
    print(f"Transfer {transfer['id']} {transfer['state']}", file=sys.stderr)
    if transfer.get("message"):
        print(f"  {transfer['message']}", file=sys.stderr)
    for error in transfer.get("errors") or []:
        print(f"  {error['path']}: {error['error']}", file=sys.stderr)


def progress_bar(transfer: dict[str, Any], width: int) -> str:
    total = transfer["bytesTotal"] or 0
    fraction = transfer["bytesDone"] / total if total else (1.0 if transfer["state"] == "completed" else 0.0)
    counts = (
        f" {transfer['filesDone']}/{transfer['filesTotal']} files "
        f"{human_bytes(transfer['bytesDone'])}/{human_bytes(total)} {transfer['state']}"
    )
    room = max(10, width - len(counts) - 3)
    filled = int(room * min(fraction, 1.0))
    return f"[{'#' * filled}{'-' * (room - filled)}]{counts}"


def follow(current: Session, kind: str, item: dict[str, Any], *, quiet: bool) -> dict[str, Any]:
    """Poll a transfer or an export until it has finished, showing its progress unless ``quiet``."""
    import shutil

    path = f"/api/{kind}s/{item['id']}"
    live = not quiet and sys.stdout.isatty()
    shown = ""
    told = False
    try:
        while True:
            if kind == "transfer" and item.get("waitingForStack") and not told and not quiet:
                # Once: the files stay queued until a stack (and so its shovel) runs.
                print(("\r\033[K" if live and shown else "") + WAITING_FOR_STACK, flush=True)
                told = True
            if kind == "transfer":
                line = (
                    progress_bar(item, shutil.get_terminal_size().columns - 1)
                    if live
                    else describe_transfer(item)
                )
            else:
                line = f"export {item['id']}: {item['state']}"
            if live:
                print("\r" + line, end="", flush=True)
            elif not quiet and line != shown:
                print(line, flush=True)
            shown = line
            if item["state"] in FINISHED:
                break
            time.sleep(POLL_SECONDS)
            item = current.call("GET", path)
    except KeyboardInterrupt:
        raise CommandFailed(
            f"stopped waiting; the {kind} goes on: `workbench {kind}s show {item['id']}`"
        ) from None
    finally:
        if live:
            print()
    return item


def transfers_list(arguments: argparse.Namespace) -> int:
    transfers = session().call("GET", "/api/transfers")
    if arguments.json:
        print_json(transfers)
    elif not transfers:
        print("No transfers yet: `workbench send DATASET`.")
    else:
        print_table(
            ("ID", "DATASET", "TARGET", "STATE", "FILES", "BYTES"),
            (
                (
                    transfer["id"],
                    transfer.get("datasetName") or transfer["datasetId"],
                    transfer.get("target", ""),
                    listed_state(transfer),
                    f"{transfer['filesDone']}/{transfer['filesTotal']}",
                    f"{human_bytes(transfer['bytesDone'])}/{human_bytes(transfer['bytesTotal'])}",
                )
                for transfer in transfers
            ),
        )
    return 0


def listed_state(transfer: dict[str, Any]) -> str:
    """The transfer's state, marked while its files wait for one of the user's stacks to run, and
    once Clowder has withdrawn its dataset."""
    state = str(transfer["state"])
    if transfer.get("waitingForStack"):
        state = f"{state} ({WAITING_MARK})"
    flag = transfer.get("withdrawn")
    if flag:
        state = f"{state} (withdrawn: {WITHDRAWN_REASONS.get(flag['reason'], flag['reason'])})"
    return state


def withdrawn_note(transfer: dict[str, Any]) -> str | None:
    """What Clowder's withdrawal of the transfer's dataset means for its copy; None when it has none."""
    flag = transfer.get("withdrawn")
    if not flag:
        return None
    moment = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(flag["time"]))
    reason = WITHDRAWN_REASONS.get(flag["reason"], flag["reason"])
    said = f": {flag['message']}" if flag.get("message") else ""
    return (
        f"Clowder withdrew this dataset ({reason}) on {moment}{said}. Nothing was deleted: the copy in "
        f"{transfer.get('target') or 'your home'} stays yours."
    )


def transfers_show(arguments: argparse.Namespace) -> int:
    transfer = session().call("GET", f"/api/transfers/{arguments.transfer_id}")
    if arguments.json:
        print_json(transfer)
        return 0
    print(f"Transfer {transfer['id']} from {transfer['source']}")
    print(f"  {describe_transfer(transfer)}")
    note = withdrawn_note(transfer)
    if note:
        print(f"  {note}")
    for line in where_seen(transfer):
        print(f"  {line}")
    if transfer.get("waitingForStack"):
        print(f"  {WAITING_FOR_STACK}")
    if transfer.get("message"):
        print(f"  {transfer['message']}")
    for error in transfer.get("errors") or []:
        print(f"  failed: {error['path']}: {error['error']}")
    return 0


def export(arguments: argparse.Namespace) -> int:
    body = {"folder": arguments.folder, "name": arguments.name, "description": arguments.description}
    current = session()
    item = current.call("POST", "/api/exports", body=body)
    if not arguments.json:
        print(f"Export {item['id']}: {item['folder']} → new dataset {item['name']!r} on {item['source']}")
    if arguments.wait:
        item = follow(current, "export", item, quiet=arguments.json)
    if arguments.json:
        print_json(item)
    elif item["state"] == "completed":
        print(
            f"Completed: dataset {item['datasetId']} with {item['files']} files ({human_bytes(item['bytes'])})."
        )
    elif item["state"] == "failed":
        print(f"Export {item['id']} failed: {item.get('message', '')}", file=sys.stderr)
        for error in item.get("errors") or []:
            print(f"  {error['path']}: {error['error']}", file=sys.stderr)
    return 1 if item["state"] == "failed" else 0


def containers(arguments: argparse.Namespace) -> int:
    listed = session().call("GET", f"/api/containers/{arguments.user}")
    if arguments.json:
        print_json(listed)
    elif not listed:
        print(f"{arguments.user} has no stacks.")
    else:
        print_table(
            ("ID", "KEY", "NAME", "STATUS", "CONNECT"),
            (
                (item["id"], item["key"], item["name"], item["status"], " ".join(item.get("endpoints") or []))
                for item in listed
            ),
        )
    return 0


# --- registration -----------------------------------------------------------------------------------


def handled(handler: Handler) -> Handler:
    """Run a command: its failure is one line on stderr and exit code 1, never a traceback."""

    def run(arguments: argparse.Namespace) -> int:
        import logging

        logging.getLogger("httpx").setLevel(logging.WARNING)  # no request log lines in the output
        try:
            return handler(arguments)
        except CommandFailed as error:
            print(f"workbench: {error.message}", file=sys.stderr)
            return 1

    return run


def _subcommands(
    parser: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the people's commands (login, stacks, catalog list/show, send, transfers, export,
    containers) to the ``workbench`` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print the API's raw JSON reply (for scripts)")

    def command(
        group: argparse._SubParsersAction[argparse.ArgumentParser], name: str, handler: Handler, help: str
    ) -> argparse.ArgumentParser:
        parser = group.add_parser(name, help=help, description=help, parents=[common])
        parser.set_defaults(handler=handled(handler))
        return parser

    def group(name: str, help: str, destination: str) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        parser = commands.add_parser(name, help=help, description=help)
        return parser.add_subparsers(dest=destination, required=True, metavar="ACTION")

    logging_in = command(commands, "login", login, "log in to a Workbench API and remember the token")
    logging_in.add_argument(
        "--url", help=f"the platform's address (default $WORKBENCH_URL, else {DEFAULT_URL})"
    )
    logging_in.add_argument("--username", help="user name or e-mail (asked for at a terminal)")
    logging_in.add_argument(
        "--password-stdin", action="store_true", help="read the password from the first line of stdin"
    )

    stacks = group("stacks", "your stacks: list, create, start, stop, delete, logs", "stacks_command")
    command(stacks, "list", stacks_list, "list your stacks with status and connect URLs")
    creating = command(stacks, "create", stacks_create, "create a stack of a catalog service")
    creating.add_argument("key", help="the service's key (see `workbench catalog list`)")
    creating.add_argument("--name", help="the stack's name (default the service's label)")
    for name, handler, help in (
        ("start", stacks_start, "start a stack (it starts in the background)"),
        ("stop", stacks_stop, "stop a stack"),
        ("delete", stacks_delete, "delete a stopped stack"),
    ):
        command(stacks, name, handler, help).add_argument("sid", help="the stack's id")
    logs = command(stacks, "logs", stacks_logs, "show a service's log")
    logs.add_argument("ssid", help="the stack service's id, <stack id>-<service key>")
    logs.add_argument("--lines", type=int, help="only the last N lines")

    catalog_parser = commands.choices.get("catalog")
    catalog = _subcommands(catalog_parser) if catalog_parser is not None else None
    if catalog is None:
        catalog = group("services", "the service catalogs", "services_command")
    listing = command(catalog, "list", catalog_list, "list the services you can create stacks of")
    listing.add_argument("--catalog", choices=("system", "user", "all"), help="which catalog (default all)")
    command(catalog, "show", catalog_show, "show one service").add_argument("key", help="the service's key")

    sending = command(commands, "send", send, "send a Clowder dataset into your home")
    sending.add_argument("dataset", help="the dataset's id or its Clowder URL (…/datasets/<id>)")
    sending.add_argument("--clowder", help="the Clowder instance's URL (default the paired one)")
    sending.add_argument(
        "--to",
        metavar="FOLDER",
        help="folder inside your data folder, Clowder/ of your home (default Clowder/<dataset name>)",
    )
    sending.add_argument(
        "--wait", action="store_true", help="show the progress until the transfer has finished"
    )
    sending.add_argument(
        "--plan",
        action="store_true",
        help="show what would be sent (files, bytes, quota, free space, time) and send nothing",
    )

    transfers = group("transfers", "your transfers from Clowder", "transfers_command")
    command(transfers, "list", transfers_list, "list your transfers")
    command(transfers, "show", transfers_show, "show one transfer with its errors").add_argument(
        "transfer_id", metavar="ID", help="the transfer's id"
    )

    exporting = command(commands, "export", export, "export a folder of your home to a new Clowder dataset")
    exporting.add_argument("folder", help="folder relative to your home")
    exporting.add_argument("--name", required=True, help="the new dataset's name")
    exporting.add_argument("--description", default="", help="the new dataset's description")
    exporting.add_argument("--wait", action="store_true", help="wait until the dataset is made")

    command(commands, "containers", containers, "list a user's stacks as Clowder sees them").add_argument(
        "user", help="the user's account id"
    )
