"""The ``workbench`` command: run the local platform and manage its catalog."""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from shared.core.errors import Conflict, NotFound, WorkbenchError
from shared.tools import client_cli

if TYPE_CHECKING:
    from shared.bootstrap import Platform
    from shared.core.models import Stack

log = logging.getLogger("workbench")


def initialise(platform: Platform) -> None:
    """Bring a fresh or existing installation up to date: schema, admin account, system catalog."""
    from shared.adapters.store import SYSTEM_CATALOG
    from shared.domain import accounts, catalog

    store = platform.store  # applies the schema versions
    password = accounts.ensure_admin(platform)
    if password:
        print(
            f"Created the admin account; its password (shown only this once): {password}",
            flush=True,
        )
    if not store.list_specs(SYSTEM_CATALOG):
        directory = platform.settings.catalog.catalog_dir or catalog.DEFAULT_CATALOG
        contents = catalog.import_catalog(store, directory)
        for warning in contents.warnings:
            log.warning("catalog: %s", warning)
        log.info(
            "loaded %d specs and %d vocabularies from %s",
            len(contents.specs),
            len(contents.vocabularies),
            directory,
        )


def run(arguments: argparse.Namespace) -> int:
    """Serve every function behind one gateway until interrupted."""
    from werkzeug.serving import make_server

    from shared.bootstrap import platform
    from shared.domain import recovery, stacks
    from shared.serving import metrics
    from shared.serving.access_log import RedactingRequestHandler
    from shared.tools.gateway import Gateway
    from shovel.local import attach_shovels

    current = platform()
    settings = current.settings.server
    # The address first: a port in use fails here, before a database or an admin password is made.
    listener = _listen(settings.host, settings.port)
    attach_shovels(current)
    initialise(current)
    restored = stacks.restore(current)
    if restored:
        log.info("starting again the stacks that were running: %s", ", ".join(restored))
    # Claimed before serving, so that what the last process left unfinished is told from new work.
    abandoned = recovery.claim_abandoned(current, restarted=True)
    if abandoned:
        log.info("resuming %d transfers and exports the last run left unfinished", len(abandoned))

    gateway = Gateway(data_dir=current.data_dir)
    with listener:  # the server serves a duplicate of it
        server = make_server(
            settings.host,
            settings.port,
            metrics.wsgi(gateway),  # one /metrics for the whole process
            threaded=True,
            request_handler=RedactingRequestHandler,
            fd=listener.fileno(),
        )
    stop = threading.Event()
    sweeper = recovery.Sweeper(current, abandoned, stop).start()
    jobs = _clowder_jobs(current, stop)

    def shut_down(signum: int, frame: FrameType | None) -> None:
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    print(
        f"Workbench is serving on http://{settings.host}:{settings.port}/ (the management page; the API is "
        f"under /api/, data in {current.data_dir})",
        flush=True,
    )
    print(_runtime_banner(current), flush=True)
    try:
        server.serve_forever()
    finally:
        stop.set()
        sweeper.join(SWEEP_SHUTDOWN_SECONDS)  # work cut off here is resumed by the next run
        if jobs is not None:
            jobs.join(SWEEP_SHUTDOWN_SECONDS)  # a job cut off here stays on Clowder's queue
        server.server_close()
        _end_processes(current)
        current.close()
    return 0


SWEEP_SHUTDOWN_SECONDS = 5.0


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host``:``port``, or ``Conflict`` saying what holds the address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug's own server does
        listener.bind((host, port))
        listener.listen(socket.SOMAXCONN)
    except OSError as error:
        listener.close()
        if error.errno == errno.EADDRINUSE:
            raise Conflict(
                f"cannot serve on {host}:{port}: another program is listening there; stop it, or set "
                "WORKBENCH_PORT to a free port (nothing was changed)"
            ) from error
        raise Conflict(f"cannot serve on {host}:{port}: {error.strerror or error}") from error
    return listener


def _clowder_jobs(current: Platform, stop: threading.Event) -> threading.Thread | None:
    """With Clowder's RabbitMQ set, this process announces the extractors and takes their jobs."""
    from shared.domain import clowder_jobs

    if not current.settings.clowder.amqp_url:
        return None
    consumer = threading.Thread(
        target=clowder_jobs.run, args=(current, stop), name="clowder-jobs", daemon=True
    )
    consumer.start()
    print(
        "Taking Clowder's extractor jobs from "
        f"{current.settings.clowder.extractor_prefix}.send, .start and .stop on Clowder's RabbitMQ",
        flush=True,
    )
    return consumer


def _runtime_banner(current: Platform) -> str:
    """Which runtime runs the stacks, and how to choose another."""
    kind = current.runtime_kind
    if kind == "docker":
        from shared.adapters.runtime.docker_engine import engine_url

        where = engine_url(current.settings.runtime.docker) or "the default socket"
        return f"Stacks run as containers on the engine at {where} (WORKBENCH_RUNTIME=local for processes)"
    if kind == "kubernetes":
        return "Stacks run on Kubernetes"
    if current.settings.runtime.kind == "local":
        return "Stacks run as local processes (WORKBENCH_RUNTIME=local; auto or docker for containers)"
    return (
        "Stacks run as local processes: no Docker or Podman answers (set DOCKER_HOST, or "
        "WORKBENCH_RUNTIME=docker to insist)"
    )


def sweep(arguments: argparse.Namespace) -> int:
    """One pass of the sweep for abandoned work, as ``workbench run`` makes every minute (on a cluster,
    the CronJob ``workbench-sweep`` runs it); with Clowder's RabbitMQ set, also the platform's one
    announcement of its extractors (on a cluster, no process of its own keeps them alive in Clowder)."""
    from shared.bootstrap import platform
    from shared.core.errors import Unavailable
    from shared.domain import clowder_jobs, recovery

    current = platform()
    try:
        taken = recovery.sweep(current)
        if current.settings.clowder.amqp_url:
            try:
                clowder_jobs.announce(current)
            except Unavailable as error:
                log.warning("could not announce the extractors to Clowder: %s", error.message)
    finally:
        current.close()
    print(f"{taken} abandoned transfers and exports taken up")
    return 0


def init(arguments: argparse.Namespace) -> int:
    """What `workbench run` does before serving, for a cluster (run once, as a Job)."""
    from shared.bootstrap import platform

    current = platform()
    initialise(current)
    print(f"Workbench is initialised ({current.settings.store.database_url.split('://', 1)[0]} database).")
    return 0


def _end_processes(current: Platform) -> None:
    """End the local services on the way out; their stacks start again with the next run."""
    from concurrent.futures import ThreadPoolExecutor

    from shared.domain import stacks

    if not current.has("runtime") or current.runtime_kind != "local":
        return  # stacks on a cluster or in containers run on without this process: not ended with it
    runtime = current.runtime
    running = [
        (owner, stack)
        for owner, stack in current.store.list_all_stacks()
        if stack.status in ("starting", "started", "error", "stopping")
    ]

    def end(owner: str, stack: Stack) -> None:
        try:
            runtime.remove(stacks.plan_for(current, owner, stack))
        except WorkbenchError as error:
            log.warning("could not end stack %s: %s", stack.id, error.message)
        except Exception:
            # One stack's failure must not leave the others' processes running.
            log.exception("could not end stack %s", stack.id)

    if not running:
        return
    # All at once: each waits for its processes to end (a shovel takes about a second), and one after
    # another many stacks took longer than a supervisor waits before it kills this process, leaving
    # the rest running.
    with ThreadPoolExecutor(min(len(running), END_WORKERS), thread_name_prefix="end stack") as pool:
        for owner, stack in running:
            pool.submit(end, owner, stack)


END_WORKERS = 64
"""Stacks ended at once on the way out; each worker mostly waits for processes to exit."""


def catalog_import(arguments: argparse.Namespace) -> int:
    from shared.adapters.store import SYSTEM_CATALOG
    from shared.bootstrap import platform
    from shared.domain import catalog

    current = platform()
    owner = SYSTEM_CATALOG if arguments.user is None else arguments.user
    # A catalog is deleted with its account; one imported for a name without an account would be
    # inherited by whoever takes that name later.
    if arguments.user is not None and current.store.get_account(arguments.user) is None:
        raise NotFound(
            "account",
            message=f"account '{arguments.user}' not found; create it before importing into its catalog",
        )
    contents = catalog.import_catalog(current.store, Path(arguments.directory), owner=owner)
    for warning in contents.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    where = "the system catalog" if owner == SYSTEM_CATALOG else f"the catalog of '{owner}'"
    print(f"Imported {len(contents.specs)} specs and {len(contents.vocabularies)} vocabularies into {where}.")
    return 0


def events_send(arguments: argparse.Namespace) -> int:
    """Make an event of a known type from JSON data, sign it when a secret is set, and POST it."""
    import json
    import os

    from events.codec import new_event
    from events.errors import DeliveryError, InvalidEvent, UnknownEventType
    from events.producer import deliver
    from events.types import DATA_MODELS

    # This is a top-level command, so it reads its environment itself, as a composition root does.
    url = arguments.to or os.environ.get("WORKBENCH_EVENTS_URL") or "http://127.0.0.1:8080/events"
    secret = os.environ.get(arguments.secret_env)
    if not secret:
        # On the machine of a local platform, its generated pairing secret signs the event.
        local = Path(os.environ.get("WORKBENCH_DATA_DIR", "var")) / "secrets" / "event-secret"
        if local.is_file():
            secret = local.read_text().strip()
    try:
        data = json.loads(arguments.data)
    except ValueError as error:
        print(f"workbench: --data is not JSON: {error}", file=sys.stderr)
        return 1
    if not isinstance(data, dict):
        print(f"workbench: --data must be a JSON object, not {type(data).__name__}", file=sys.stderr)
        return 1
    try:
        event = new_event(
            arguments.type,
            data,
            source=arguments.source,
            subject=arguments.subject,
            secret=secret.encode("utf-8") if secret else None,
        )
    except UnknownEventType as error:
        print(f"workbench: {error.message}; known types: {', '.join(sorted(DATA_MODELS))}", file=sys.stderr)
        return 1
    except InvalidEvent as error:
        print(f"workbench: {error.message}", file=sys.stderr)
        return 1
    if not secret:
        print(
            f"workbench: ${arguments.secret_env} is not set (nor a local platform's secret); "
            "sending the event unsigned",
            file=sys.stderr,
        )
    try:
        delivery = deliver(event, url, mode="structured" if arguments.structured else "binary")
    except DeliveryError as error:
        print(f"workbench: {error.message}", file=sys.stderr)
        return 1
    print(f"event {event.id}: HTTP {delivery.status}")
    if not delivery.ok:
        print(f"workbench: {url} refused the event: {delivery.reply or 'no reply'}", file=sys.stderr)
        return 1
    return 0


def shovel(arguments: argparse.Namespace) -> int:
    """Run a shovel beside a stack, on RabbitMQ (settings from WORKBENCH_SHOVEL_* and WORKBENCH_AMQP_URL)."""
    from shovel.__main__ import main as run_shovel

    return run_shovel()


def manifests(arguments: argparse.Namespace) -> int:
    """Write ``knative/`` from the function registry, or with --check only say whether it is current."""
    import os

    from shared.tools import manifests as generator

    chosen = {
        name: getattr(arguments, name)
        for name in (
            "namespace",
            "image",
            "gateway",
            "gateway_namespace",
            "rabbitmq_cluster",
            "rabbitmq_namespace",
            "extractor_prefix",
        )
        if getattr(arguments, name) is not None
    }
    prefix = os.environ.get("WORKBENCH_CLOWDER_EXTRACTOR_PREFIX")
    if prefix and "extractor_prefix" not in chosen:
        chosen["extractor_prefix"] = prefix
    target = generator.Target(**chosen)
    files = generator.generate(target)
    directory = Path(arguments.output)
    if arguments.check:
        problems = generator.differences(directory, files)
        for problem in problems:
            print(f"workbench: {directory / problem}; run `workbench manifests`", file=sys.stderr)
        return 1 if problems else 0
    changed = generator.write(directory, files)
    print(f"{directory}: {', '.join(changed) if changed else 'already up to date'}")
    return 0


def deploy(arguments: argparse.Namespace) -> int:
    """Apply a kustomization's manifests (default ``knative/``) with server-side apply."""
    import os

    from shared.adapters.runtime.kube_api import KubeApi
    from shared.tools.deploy import apply_all, read_kustomization

    manifests = read_kustomization(Path(arguments.directory))
    # A top-level command reads its environment itself, as a composition root does.
    api = KubeApi.from_environment(kubeconfig=os.environ.get("KUBECONFIG"))
    try:
        for line in apply_all(api, manifests, dry_run=arguments.dry_run):
            print(line, flush=True)
    finally:
        api.close()
    if arguments.dry_run:
        print(f"{len(manifests)} objects accepted by the server's dry run; nothing was changed")
    else:
        print(f"{len(manifests)} objects applied (field manager workbench)")
    return 0


def verify(arguments: argparse.Namespace) -> int:
    """Standard library only (``shared.core.receipts``), so that it runs wherever the folder is."""
    from shared.core import receipts

    return receipts.main([arguments.folder, *(["--json"] if arguments.json else [])])


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="workbench", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run_command = commands.add_parser("run", help="run the local platform (every function, one process)")
    run_command.set_defaults(handler=run)

    init_command = commands.add_parser(
        "init", help="bring a deployment up to date: schema, admin account, system catalog (idempotent)"
    )
    init_command.set_defaults(handler=init)

    sweep_command = commands.add_parser(
        "sweep", help="resume (or fail, saying why) the accepted transfers and exports whose work stopped"
    )
    sweep_command.set_defaults(handler=sweep)

    catalog_command = commands.add_parser("catalog", help="manage service catalogs")
    catalog_commands = catalog_command.add_subparsers(dest="catalog_command", required=True, metavar="ACTION")
    importer = catalog_commands.add_parser("import", help="load a folder of specs (the ndslabs-specs layout)")
    importer.add_argument("directory", help="folder with spec JSON files (and optionally vocab/)")
    importer.add_argument("--user", help="import into this user's catalog instead of the system's")
    importer.set_defaults(handler=catalog_import)

    events_command = commands.add_parser("events", help="send CloudEvents as Clowder does")
    events_commands = events_command.add_subparsers(dest="events_command", required=True, metavar="ACTION")
    sender = events_commands.add_parser("send", help="make, sign and POST one event of a known type")
    sender.add_argument("type", help="the event type, e.g. org.clowder.workbench.transfer.requested")
    sender.add_argument("--data", required=True, help="the event's data as a JSON object")
    sender.add_argument(
        "--to",
        help="the receiver's URL (default $WORKBENCH_EVENTS_URL, else http://127.0.0.1:8080/events)",
    )
    sender.add_argument("--source", default="urn:workbench:cli", help="the event's source URI")
    sender.add_argument("--subject", help="the event's subject")
    sender.add_argument(
        "--secret-env",
        default="WORKBENCH_EVENT_SECRET",
        metavar="NAME",
        help="the environment variable holding the signing secret (default WORKBENCH_EVENT_SECRET); "
        "unsigned when it is not set",
    )
    sender.add_argument("--structured", action="store_true", help="structured content mode (default binary)")
    sender.set_defaults(handler=events_send)

    verify_command = commands.add_parser(
        "verify",
        help="re-hash a folder against its delivery receipts (.workbench/receipts): list the files "
        "modified, missing or added since; exit 1 if any",
    )
    verify_command.add_argument("folder", help="a transfer's target folder, e.g. ~/Clowder/<dataset>")
    verify_command.add_argument("--json", action="store_true", help="print the outcome as JSON")
    verify_command.set_defaults(handler=verify)

    shovel_command = commands.add_parser("shovel", help="run a stack's shovel (sidecar) on RabbitMQ")
    shovel_command.set_defaults(handler=shovel)

    deploy_command = commands.add_parser(
        "deploy", help="apply knative/ (a kustomization) to the cluster with server-side apply"
    )
    deploy_command.add_argument(
        "--directory", default="knative", help="the kustomization's folder (default knative)"
    )
    deploy_command.add_argument(
        "--dry-run",
        action="store_true",
        help="have the server check every object (dryRun=All); change nothing",
    )
    deploy_command.set_defaults(handler=deploy)

    manifests_command = commands.add_parser(
        "manifests", help="generate the Knative manifests (knative/) from the function registry"
    )
    manifests_command.add_argument(
        "--output", default="knative", help="the folder to write (default knative)"
    )
    manifests_command.add_argument(
        "--check", action="store_true", help="write nothing; fail if the folder is not what would be written"
    )
    for option, default in (
        ("--namespace", "workbench"),
        ("--image", "workbench-functions:latest"),
        ("--gateway", "the Gateway 'workbench'"),
        ("--gateway-namespace", "the namespace"),
        ("--rabbitmq-cluster", "the RabbitmqCluster 'rabbitmq'"),
        ("--rabbitmq-namespace", "the namespace"),
        ("--extractor-prefix", "WORKBENCH_CLOWDER_EXTRACTOR_PREFIX, else 'workbench'"),
    ):
        manifests_command.add_argument(option, help=f"default: {default}")
    manifests_command.set_defaults(handler=manifests)
    client_cli.register(commands)  # login, stacks, catalog list/show, send, transfers, export, …
    return top


def main(argv: list[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(arguments.handler(arguments))
    except WorkbenchError as error:
        print(f"workbench: {error.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
