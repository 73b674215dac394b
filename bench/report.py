"""Figures, the table printed at the end of a run, and ``var/bench/results.json``."""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

RESULTS = Path(os.environ.get("WORKBENCH_BENCH_RESULTS", "var/bench/results.json"))


@dataclass(frozen=True)
class Figure:
    """One measured figure: ``value`` against ``baseline`` (same unit, same run), judged by ``target``."""

    key: str
    what: str
    value: float
    unit: str
    baseline: float | None = None
    """The baseline's figure in the same unit, or None where the figure has no baseline (a limit)."""
    higher_is_better: bool = False
    """For throughput: the ratio is value/baseline either way; the target says which side is good."""
    target: float | None = None
    """The limit ``ratio`` (or ``value``, when there is no baseline) must stay on the right side of."""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def judged(self) -> float:
        ratio = self.ratio
        return self.value if ratio is None else ratio

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        if self.higher_is_better:
            return self.judged >= self.target
        return self.judged <= self.target

    @property
    def target_text(self) -> str:
        if self.target is None:
            return "reported"
        return f"{'≥' if self.higher_is_better else '≤'} {self.target:g}"

    def as_json(self) -> dict[str, Any]:
        document = asdict(self)
        document.update(ratio=self.ratio, met=self.met, target_text=self.target_text)
        return document


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` in 0..1) of a non-empty sample."""
    ordered = sorted(samples)
    rank = max(1, round(fraction * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(figures: Iterable[Figure], style: Literal["text", "markdown"] = "text") -> str:
    """The figures as a table: key, value, baseline, ratio, target and whether it is met."""
    rows = [
        (
            figure.key,
            f"{_number(figure.value)} {figure.unit}",
            "—" if figure.baseline is None else f"{_number(figure.baseline)} {figure.unit}",
            _number(figure.ratio),
            figure.target_text,
            {True: "yes", False: "NO", None: "—"}[figure.met],
        )
        for figure in figures
    ]
    header = ("figure", "value", "baseline", "ratio", "target", "met")
    if style == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join((f"`{row[0]}`", *row[1:])) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in (header, *rows)
    )


def write(figures: Sequence[Figure], path: Path = RESULTS) -> Path:
    """Merges the figures into the results file (figures of benchmarks not run this time are kept)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {}
    if path.exists():
        document = json.loads(path.read_text())
    for figure in figures:
        document[figure.key] = figure.as_json()
    document["_run"] = {
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
    }
    temporary = path.with_suffix(".json.partial")
    temporary.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    temporary.replace(path)
    return path


def load(path: Path = RESULTS) -> list[Figure]:
    """The figures of the results file, in file order."""
    if not path.exists():
        return []
    names = {name for name in Figure.__dataclass_fields__}
    return [
        Figure(**{name: value for name, value in entry.items() if name in names})
        for key, entry in json.loads(path.read_text()).items()
        if not key.startswith("_")
    ]
