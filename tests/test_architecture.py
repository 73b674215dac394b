"""The import graph: no module imports itself back through others, and shared/ is all in its layers."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import grimp
import pytest

PACKAGES = ("functions", "shared", "events", "shovel")
LAYERS = ("tools", "serving", "domain", "adapters", "core")
"""The layer packages of shared/, besides the composition root (shared.bootstrap)."""
ROOT = Path(__file__).resolve().parent.parent


@cache
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def import_cycles(imports: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative, so
    that a long chain of imports needs no deep recursion), each sorted, in the order of their first
    module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(imports):
        if start in index:
            continue
        work = [(start, iter(sorted(imports.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            module, pending = work[-1]
            step = next(pending, None)
            if step is not None:
                if step not in index:
                    index[step] = low[step] = len(index)
                    stack.append(step)
                    on_stack.add(step)
                    work.append((step, iter(sorted(imports.get(step, ())))))
                elif step in on_stack:
                    low[module] = min(low[module], index[step])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[module])
            if low[module] == index[module]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == module:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def test_cycles_are_found_and_named() -> None:
    """The check itself: a circle of three is named, a module that only imports is not in it."""
    imports = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert import_cycles(imports) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back() -> None:
    """Every import, also one made inside a function or only for the type checker, counts: a circle
    of them means none of its modules can be understood, tested or changed without the others."""
    imports = {module: graph().find_modules_directly_imported_by(module) for module in graph().modules}
    cycles = import_cycles(imports)
    assert not cycles, "modules that import each other in a circle:\n" + "\n".join(
        f"{len(cycle)}: " + ", ".join(cycle) for cycle in cycles
    )


def test_every_module_of_shared_is_in_a_layer() -> None:
    """A module beside the layers would be in none of the layer contracts' checks."""
    outside = sorted(
        module
        for module in graph().modules
        if module.startswith("shared.")
        and module != "shared.bootstrap"
        and module.split(".")[1] not in LAYERS
    )
    assert outside == []


def test_the_graph_holds_every_module_on_disk() -> None:
    """Against a graph that silently missed a package (and so found no cycle in it)."""
    on_disk = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            on_disk.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    missing = sorted(on_disk - graph().modules)
    assert missing == []


@pytest.mark.parametrize("layer", LAYERS)
def test_each_layer_holds_modules(layer: str) -> None:
    assert any(module.startswith(f"shared.{layer}.") for module in graph().modules)
