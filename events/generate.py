"""Writes events/schemas/<type>.json, the JSON Schema of each event type's data: ``python -m events.generate``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from events.types import DATA_MODELS, dataschema

SCHEMAS = Path(__file__).resolve().parent / "schemas"
DRAFT = "https://json-schema.org/draft/2020-12/schema"


def schema(event_type: str) -> dict[str, Any]:
    """The JSON Schema of the data of one event type, identified by its ``dataschema`` URL."""
    generated = DATA_MODELS[event_type].model_json_schema()
    return {"$schema": DRAFT, "$id": dataschema(event_type), **generated}


def expected_files() -> dict[str, str]:
    """What events/schemas/ should hold: file name → text."""
    return {
        f"{event_type}.json": json.dumps(schema(event_type), indent=2, ensure_ascii=False) + "\n"
        for event_type in sorted(DATA_MODELS)
    }


def differences(directory: Path = SCHEMAS) -> list[str]:
    """The file names in ``directory`` that are stale, missing or not wanted; empty when it is current."""
    expected = expected_files()
    present = {path.name: path for path in directory.glob("*.json")}
    stale = [
        name
        for name, text in expected.items()
        if name not in present or present[name].read_text(encoding="utf-8") != text
    ]
    extra = [name for name in present if name not in expected]
    return sorted(stale + extra)


def write(directory: Path = SCHEMAS) -> list[str]:
    """Bring ``directory`` up to date; returns the names of the files written or removed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = differences(directory)
    expected = expected_files()
    for name in changed:
        path = directory / name
        if name in expected:
            path.write_text(expected[name], encoding="utf-8")
        else:
            path.unlink()
    return changed


def main(argv: list[str] | None = None) -> int:
    command = argparse.ArgumentParser(prog="python -m events.generate", description=__doc__)
    command.add_argument("--check", action="store_true", help="only report stale files; exit 1 if any")
    arguments = command.parse_args(argv)
    if arguments.check:
        stale = differences()
        for name in stale:
            print(f"stale: {SCHEMAS / name}", file=sys.stderr)
        return 1 if stale else 0
    for name in write():
        print(f"{'wrote' if (SCHEMAS / name).exists() else 'removed'} {SCHEMAS / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
