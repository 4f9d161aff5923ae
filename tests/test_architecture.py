"""The house's layers, checked by walking every import statement (function-level ones too):

    core  <-  datasets, methods  <-  runners  <-  analysis  <-  the CLI (runners/run/cli.py), bench/

``core`` imports nothing of selbench above it; ``methods`` and ``datasets`` import only the
core (and methods nothing of runners); ``analysis`` reads records, never a method module; the
CLI (``runners/run/cli.py``, the one module above ``analysis``: it prints a sweep's summary) and
the benchmarks (``bench/``) sit on top and nothing imports them.  No two modules import each
other, no longer cycle exists either, no module reaches for another's ``_private`` names, and
modules stay small enough to read in one sitting.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = {"core": "core", "methods": "methods", "datasets": "datasets", "runners": "runners", "analysis": "analysis"}
CLI = "selbench.runners.run.cli"
MAX_LINES = 320


def _modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in PACKAGES.items():
        for f in sorted((REPO / folder).rglob("*.py")):
            rel = f.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join(["selbench", pkg, *parts])] = f
    for f in sorted((REPO / "bench").rglob("*.py")):  # run from the repo root as `python -m bench`
        out[".".join(p for p in f.relative_to(REPO).with_suffix("").parts if p != "__init__")] = f
    return out


MODULES = _modules()
OURS = ("selbench.", "bench.")


def _import_nodes(path: Path):
    return [n for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.Import) or (isinstance(n, ast.ImportFrom) and n.module and n.level == 0)]


def _imports(name: str, path: Path) -> set[str]:
    """Our modules ``name`` imports (``from pkg import sub`` resolves to ``pkg.sub`` when that is a module)."""
    out = set()
    for node in _import_nodes(path):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                       for a in node.names]
        out.update(t for t in targets if (t.startswith(OURS) or t == "bench") and t != name)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def test_the_walk_finds_the_layers():
    assert {"selbench.core.errors", "selbench.methods.bads.bads", "selbench.runners.run.job",
            "selbench.datasets.scenarios", "selbench.analysis.tables", CLI, "bench.common", "bench"} <= set(MODULES)
    assert "selbench.core.errors" in GRAPH["selbench.methods.registry"]
    assert "selbench.runners.run.build" in GRAPH["bench.common"] and "bench.common" in GRAPH["bench.methods"]


ABOVE_ALL = ("bench", CLI)


@pytest.mark.parametrize("layer,forbidden", [
    ("selbench.core.", ("selbench.methods", "selbench.datasets", "selbench.runners", "selbench.analysis")),
    ("selbench.methods.", ("selbench.runners", "selbench.analysis", "selbench.datasets")),
    ("selbench.datasets.", ("selbench.runners", "selbench.analysis", "selbench.methods")),
    ("selbench.runners.", ("selbench.analysis",)),
    ("selbench.analysis.", ("selbench.methods",)),  # analysis reads records (and the claims' own registry)
    ("selbench.", ABOVE_ALL),
])
def test_no_module_imports_a_layer_above_it(layer, forbidden):
    bad = {m: sorted(t for t in deps if t.startswith(forbidden))
           for m, deps in GRAPH.items() if m.startswith(layer) and m != CLI}
    assert not {m: d for m, d in bad.items() if d}


def test_only_the_cli_sits_above_analysis_and_bench_is_imported_by_nothing():
    """The CLI is the one runners module above ``analysis`` (its sweep summary); nothing imports it,
    and nothing outside ``bench/`` imports ``bench``."""
    assert {m for m, deps in GRAPH.items() if m.startswith("selbench.runners.")
            and any(t.startswith("selbench.analysis") for t in deps)} <= {CLI}
    assert not [m for m, deps in GRAPH.items() if CLI in deps]
    assert not [m for m, deps in GRAPH.items() if not (m == "bench" or m.startswith("bench."))
                and any(t == "bench" or t.startswith("bench.") for t in deps)]


def _private_imports(name: str, path: Path) -> list[str]:
    """``from <our module> import _name`` and ``<our module alias>._name``: a ``_private`` name used
    outside the module that defines it."""
    tree, aliases, out = ast.parse(path.read_text()), {}, []
    for node in _import_nodes(path):
        for a in node.names:
            if isinstance(node, ast.Import):
                if a.name in MODULES:
                    aliases[a.asname or a.name.split(".")[0]] = a.name
                continue
            full = f"{node.module}.{a.name}"
            if full in MODULES:
                aliases[a.asname or a.name] = full
            elif node.module in MODULES and a.name.startswith("_") and not a.name.startswith("__"):
                out.append(f"line {node.lineno}: from {node.module} import {a.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases \
                and node.attr.startswith("_") and not node.attr.startswith("__") and aliases[node.value.id] != name:
            out.append(f"line {node.lineno}: {aliases[node.value.id]}.{node.attr}")
    return out


def test_no_module_uses_a_private_name_of_another_module():
    """Shared means public: a ``_name`` used by another module is made public where it is shared,
    or moved to its one user (core, methods, datasets, runners, analysis and bench alike)."""
    bad = {m: found for m, p in MODULES.items() if (found := _private_imports(m, p))}
    assert not bad


def test_the_private_import_check_sees_both_forms(tmp_path):
    f = tmp_path / "probe.py"
    f.write_text("from selbench.runners.run.loop import _x\nfrom selbench.runners.run import loop\nloop._y()\n")
    assert _private_imports("probe", f) == ["line 1: from selbench.runners.run.loop import _x",
                                            "line 3: selbench.runners.run.loop._y"]


def test_run_context_is_typed_with_the_one_task_adapter_the_runners_implement():
    """``core.protocols`` is the contract: ``RunContext`` types its adapter and cost with it, the
    runners' adapters and cost tracker satisfy it, and no second ``TaskAdapter`` exists."""
    import typing

    import torch

    from selbench.core import protocols
    from selbench.core.cost import CostTracker
    from selbench.methods.base import RunContext
    from selbench.runners.models.vision import build_model
    from selbench.runners.tasks.vision import VisionAdapter

    hints = typing.get_type_hints(RunContext)
    assert hints["adapter"] is protocols.TaskAdapter and hints["cost"] is protocols.Cost
    cost = CostTracker(torch.device("cpu"))
    adapter = VisionAdapter(build_model("mlp", (1, 8, 8), 3, hidden=4), 3, cost, torch.device("cpu"))
    assert isinstance(adapter, protocols.TaskAdapter) and isinstance(cost, protocols.Cost)
    defined = {m for m, p in MODULES.items() if "class TaskAdapter" in p.read_text()}
    assert defined == {"selbench.core.protocols"}


FAMILIES = sorted(d.name for d in (REPO / "methods").iterdir()
                  if d.is_dir() and (d / "__init__.py").exists() and d.name != "common")
METHODS_BASE = ("selbench.methods.base", "selbench.methods.compute", "selbench.methods.registry", "selbench.methods.catalogue",
                "selbench.methods.common")


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


def test_equal_compute_is_resolved_in_one_place():
    """``methods/compute.py`` is the one reader of the runner's batch sizes and ``match_examples`` and
    holds the one kept-count rule, and with ``RunSettings`` the one reader of the rest of the runner
    config for ``check_config``; ``methods/base.py`` puts its answer on the run context (``ctx.examples``, ``ctx.kept_count`` delegating to it).  No method reads
    ``cfg.runner`` or re-derives either (``ctx.examples``, ``ctx.kept_count``)."""
    import re

    reads = re.compile(r"cfg\.runner|match_examples|train_batch_size|def kept_count|batch_size\s*/\s*max\("
                       r"|(cfg\.runner|\brc)\s*\.\s*(get\(\s*[\"'])?(batch_size|target_batch_size)")
    plumbing = {"selbench.methods.compute", "selbench.methods.base"}  # base: ctx.kept_count delegates to StepExamples
    offenders = sorted(m for m, p in MODULES.items()
                       if m.startswith("selbench.methods.") and m not in plumbing and reads.search(p.read_text()))
    assert offenders == []
    assert reads.search(MODULES["selbench.methods.compute"].read_text())  # the pattern does find the one reader


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
