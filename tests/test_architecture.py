"""The house's layers, checked by walking every import statement (function-level ones too):

    core  <-  datasets, methods  <-  runners  <-  analysis  <-  the CLI (runners/run/cli.py)

``core`` imports nothing of selbench above it; ``methods`` and ``datasets`` import only the
core (and methods nothing of runners); no two modules import each other, and no longer cycle
exists either.  Modules stay small enough to read in one sitting.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = {"core": "core", "methods": "methods", "datasets": "datasets", "runners": "runners", "analysis": "analysis"}
MAX_LINES = 320


def _modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in PACKAGES.items():
        for f in sorted((REPO / folder).rglob("*.py")):
            rel = f.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join(["selbench", pkg, *parts])] = f
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """selbench modules ``name`` imports (``from pkg import sub`` resolves to ``pkg.sub`` when that is a module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                       for a in node.names]
        else:
            continue
        out.update(t for t in targets if t.startswith("selbench.") and t != name)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def test_the_walk_finds_the_layers():
    assert {"selbench.core.errors", "selbench.methods.bads.bads", "selbench.runners.run.job",
            "selbench.datasets.scenarios", "selbench.analysis.tables"} <= set(MODULES)
    assert "selbench.core.errors" in GRAPH["selbench.methods.registry"]


@pytest.mark.parametrize("layer,forbidden", [
    ("selbench.core.", ("selbench.methods", "selbench.datasets", "selbench.runners", "selbench.analysis")),
    ("selbench.methods.", ("selbench.runners", "selbench.analysis", "selbench.datasets")),
    ("selbench.datasets.", ("selbench.runners", "selbench.analysis", "selbench.methods")),
    ("selbench.runners.", ("selbench.analysis",)),
])
def test_no_module_imports_a_layer_above_it(layer, forbidden):
    top = "selbench.runners.run.cli"  # the entry point composes everything, the sweep summary included
    bad = {m: sorted(t for t in deps if t.startswith(forbidden))
           for m, deps in GRAPH.items() if m.startswith(layer) and m != top}
    assert not {m: d for m, d in bad.items() if d}


FAMILIES = sorted(d.name for d in (REPO / "methods").iterdir()
                  if d.is_dir() and (d / "__init__.py").exists() and d.name != "common")
METHODS_BASE = ("selbench.methods.base", "selbench.methods.registry", "selbench.methods.catalogue", "selbench.methods.common")


@pytest.mark.parametrize("family", FAMILIES)
def test_a_method_family_imports_only_the_core_the_methods_base_and_itself(family):
    """``methods/<family>/`` is everything about one paper family: what it shares with another
    family lives in the methods base (``base``, ``registry``, ``common/``), never in a family."""
    own = f"selbench.methods.{family}"
    bad = {m: sorted(t for t in deps if t.startswith("selbench.methods.")
                     and not t.startswith((own, *METHODS_BASE)))
           for m, deps in GRAPH.items() if m == own or m.startswith(own + ".")}
    assert not {m: d for m, d in bad.items() if d}


def test_the_methods_base_imports_no_family():
    bad = {m: sorted(t for t in deps if t.startswith("selbench.methods.") and not t.startswith(METHODS_BASE))
           for m, deps in GRAPH.items() if m.startswith(METHODS_BASE)}
    assert not {m: d for m, d in bad.items() if d}


def test_the_catalogue_lists_exactly_the_modules_that_register_a_method():
    from selbench.methods.catalogue import BUILTIN_MODULES

    registering = {m for m, f in MODULES.items()
                   if m.startswith("selbench.methods.") and "@register_method(" in f.read_text()
                   and m != "selbench.methods.registry"}
    assert set(BUILTIN_MODULES) == registering
    assert len(BUILTIN_MODULES) == len(set(BUILTIN_MODULES))


def test_no_import_cycles():
    """Tarjan's strongly connected components over the module graph: every one is a single module."""
    index, low, on, stack, sccs, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in GRAPH.get(v, ()):
            if w not in GRAPH:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            sccs.append(comp)

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert [sorted(c) for c in sccs if len(c) > 1] == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_readable(module):
    n = len(MODULES[module].read_text().splitlines())
    assert n <= MAX_LINES, f"{module} has {n} lines; split it by job"


def test_a_broken_method_module_is_named_and_the_others_still_load(tmp_path):
    from conftest import selbench

    (tmp_path / "brokenplugin.py").write_text("import does_not_exist_anywhere\n")
    env = {"SELBENCH_PLUGINS": "brokenplugin", "PYTHONPATH": str(tmp_path)}
    out = selbench("--help", cwd=tmp_path, env=env)
    assert out.returncode == 0 and "method" in out.stdout
    assert "brokenplugin failed to import (ModuleNotFoundError" in out.stderr
    out = selbench("method=nosuch", cwd=tmp_path, env=env)
    assert out.returncode == 2 and "brokenplugin failed to import" in out.stderr and "erm" in out.stderr
