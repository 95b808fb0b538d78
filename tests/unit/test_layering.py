"""The package's import rules, read from the source: a change that breaks the layering fails here, not in review.

Parts are the top-level modules and subpackages of `wattcounts_pipeline` (README "Layout"). Imports inside
functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO

PACKAGE = REPO / "wattcounts_pipeline"
DAGSTER = "dagster"  # stands for dagster and its libraries (dagster_k8s, dagster_celery, ...)
ENTRY_POINTS = {"definitions", "register"}  # the Dagster code location and the CLI that registers partitions


def _imported(node: ast.AST, module_parts: tuple[str, ...]) -> list[str]:
    """Absolute names a node imports, `from x import y` giving x.y too (y may be a module); relative imports
    are resolved against `module_parts`."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = (node.module or "").split(".") if not node.level else [
            "wattcounts_pipeline", *module_parts[: len(module_parts) - node.level], *([node.module] if node.module else [])]
        module = ".".join(p for p in base if p)
        return [module, *(f"{module}.{alias.name}" for alias in node.names)]
    return []


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Part -> the other parts (and `dagster`) it imports."""
    parts = {p.relative_to(package).parts[0].removesuffix(".py") for p in package.rglob("*.py")} - {"__init__"}
    graph: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).with_suffix("").parts
        part = rel[0]
        edges = graph.setdefault(part, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            for name in _imported(node, rel):
                top, _, rest = name.partition(".")
                if top == "wattcounts_pipeline" and rest.split(".")[0] in parts:
                    edges.add(rest.split(".")[0])
                elif top.split("_")[0] == DAGSTER:
                    edges.add(DAGSTER)
        edges.discard(part)
    return graph


GRAPH = import_graph()


def test_graph_sees_the_parts():
    assert {"core", "meters", "backends", "defs", "definitions", "measure"} <= set(GRAPH)
    assert "defs" in GRAPH["definitions"] and DAGSTER in GRAPH["defs"]  # the reader finds real edges


def test_core_imports_no_other_part_and_no_dagster():
    assert GRAPH["core"] <= {"paths"}  # where state lives; paths imports nothing of the package
    assert GRAPH["paths"] == set()


@pytest.mark.parametrize(("part", "other"), [("meters", "backends"), ("backends", "meters")])
def test_meters_and_backends_stay_apart(part, other):
    assert other not in GRAPH[part]


def test_only_measure_joins_meters_and_backends():
    """Orchestration (a spec's idle, warm-up and windows around an engine) lives in the library parts that measure:
    `measure` (batch windows) and `serving` (load sweeps around a server); the asset layer only wires a meter
    resource and resolves model paths for lm-eval. `contribute` (`wattcounts measure`) is measure's front end for one
    configuration from flags; it sits above measure because it also joins submissions and the model catalog."""
    assert {part for part, edges in GRAPH.items() if {"meters", "backends"} <= edges} <= {"measure", "serving", "defs",
                                                                                           "contribute"}


def test_only_entry_points_import_defs():
    assert {part for part, edges in GRAPH.items() if "defs" in edges} <= ENTRY_POINTS


def test_only_the_asset_layer_imports_dagster():
    """Library code stays plain Python, testable and reusable without an instance."""
    assert {part for part, edges in GRAPH.items() if DAGSTER in edges} <= {"defs"} | ENTRY_POINTS


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop of `graph` as a path that returns to its start, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, set()) - {DAGSTER}):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if nxt not in state and (loop := visit(nxt, [*path, node])):
                return loop
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (loop := visit(node, [])):
            return loop
    return None


def test_no_cycles_between_parts():
    assert find_cycle(GRAPH) is None


def test_find_cycle_reports_the_loop():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", DAGSTER}, "b": set()}) is None


def test_the_reader_resolves_relative_imports(tmp_path):
    pkg = tmp_path / "wattcounts_pipeline"
    (pkg / "meters").mkdir(parents=True)
    (pkg / "meters" / "a.py").write_text("from ..backends import x\nimport dagster_k8s\n")
    (pkg / "backends").mkdir()
    (pkg / "backends" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from wattcounts_pipeline import paths, __version__\n")
    (pkg / "paths.py").write_text("")
    assert import_graph(pkg) == {"meters": {"backends", DAGSTER}, "backends": set(), "__init__": {"paths"},
                                 "paths": set()}


def module_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package modules it imports, inside functions too (a lazy import only hides a cycle)."""
    names = {".".join(p.relative_to(package).with_suffix("").parts).removesuffix(".__init__")
             for p in package.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).with_suffix("").parts
        module = ".".join(rel).removesuffix(".__init__")
        edges = graph.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for name in _imported(node, rel):
                top, _, rest = name.partition(".")
                if top != "wattcounts_pipeline" or not rest:
                    continue
                if rest in names and rest != module:
                    edges.add(rest)
    return graph


def test_no_import_cycles_between_modules():
    """The tensor-parallel backend once closed base -> transformers_tp -> base through a lazy import."""
    graph = module_graph()
    assert "backends.base" in graph["backends.transformers_tp"]
    assert find_cycle(graph) is None
