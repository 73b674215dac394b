"""``python -m bench [NAME ...]``: runs the benchmarks (all, or those named), prints the table and
writes ``var/bench/results.json``; exits 1 when a figure misses its target."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.profile import DEFAULT_OUTPUT as DEFAULT_PROFILE
from bench.report import RESULTS, Figure, load, table, write

BENCHMARKS = {
    "cold_start": "bench.cold_start",
    "api_throughput": "bench.api_throughput",
    "transfer": "bench.transfer",
    "transfer_concurrent": "bench.transfer_concurrent",
    "stack_start": "bench.stack_start",
    "shovel_rclone": "bench.shovel_rclone",
    "event_latency": "bench.event_latency",
}
"""Each module has ``run() -> list[Figure]``."""


README_BEGIN = "<!-- bench table: python -m bench --readme -->"
README_END = "<!-- end of bench table -->"


def update_readme(readme: Path) -> str:
    """Replaces the table between the README's markers with the results file's; says what it did."""
    text = readme.read_text()
    begin, end = text.find(README_BEGIN), text.find(README_END)
    if begin < 0 or end < begin:
        raise SystemExit(f"{readme} has no '{README_BEGIN}' … '{README_END}' markers")
    figures = [figure for figure in load() if "." not in figure.key]  # per-function figures stay in the file
    if not figures:
        raise SystemExit(f"{RESULTS} holds no figures: run the benchmarks first")
    run = json.loads(RESULTS.read_text()).get("_run", {})
    block = "\n".join(
        (
            README_BEGIN,
            f"Measured {run.get('finished', '')} on {run.get('machine', '')}, Python {run.get('python', '')}:",
            "",
            table(figures, style="markdown"),
            "",
        )
    )
    readme.write_text(text[:begin] + block + text[end:])
    return f"{len(figures)} figures"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: all)"
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print the table of the results file as Markdown"
    )
    parser.add_argument(
        "--readme",
        action="store_true",
        help="put the results file's table into README.md (between its markers)",
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        const=str(DEFAULT_PROFILE),
        metavar="FILE",
        help="profile one small-file transfer round (py-spy on the platform and the shovel) and write "
        "the top entries to FILE (default var/bench/profile.txt); writes no figures",
    )
    arguments = parser.parse_args(argv)
    unknown = [name for name in arguments.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"no benchmark named {', '.join(unknown)}; the benchmarks are {', '.join(BENCHMARKS)}")
    if arguments.profile:
        from bench import profile

        print(profile.run(Path(arguments.profile)))
        return 0
    if arguments.readme:
        print(f"README.md: {update_readme(Path('README.md'))}")
        return 0
    if arguments.markdown:
        print(table(load(), style="markdown"))
        return 0
    figures: list[Figure] = []
    started = time.monotonic()
    for name in arguments.names or list(BENCHMARKS):
        run: Callable[[], list[Figure]] = importlib.import_module(BENCHMARKS[name]).run
        print(f"bench: {name} …", file=sys.stderr, flush=True)
        began = time.monotonic()
        measured = run()
        print(f"bench: {name} done in {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
        print(table(measured), file=sys.stderr, flush=True)
        write(measured)
        figures += measured
    print(table(figures))
    print(f"\nwritten to {RESULTS} after {time.monotonic() - started:.0f} s")
    return 1 if any(figure.met is False for figure in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
