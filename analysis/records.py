"""Run records → one tidy DataFrame (one row per run).

``load_runs(paths)`` accepts run directories, sweep roots, ``record.json`` files and
glob patterns (``results/**/random``), finds every ``record.json`` below them and
returns a :class:`Runs` holding

* ``df`` — one row per readable record, failed runs included (``status``,
  ``reason``); metrics, selection quality and cost flattened into columns, the
  resolved config flattened into ``cfg.<dotted.key>`` columns;
* ``errors`` — ``(path, reason)`` for every record file that could not be read
  (truncated JSON, not a record, …).  Nothing is skipped silently.

Fairness columns (records written before these fields existed load with them empty):

* ``budget_use`` — how the method uses ``budget.fraction``: ``hard`` (keeps exactly β),
  ``soft`` (β shapes it, it ends at its own fraction), ``none`` (ignores β).  From
  ``record["budget_use"]``, else ``record["selection"]["budget_use"]`` (``budget_use_from``: ``record``, or
  empty when a record written before the field does not say; the tables treat unknown as
  ``hard``).  The record is the only source: reading records never imports the methods;
* ``sel.effective_budget`` — the fraction of the pool the method effectively used;
* ``compute.<key>`` — ``record["compute"]``: ``match_examples``, ``steps``,
  ``train_examples`` (examples whose loss entered a real update, in total),
  ``train_examples_per_step``, ``forward_per_step``, ``backward_per_step``;
* ``n_warnings`` and ``warnings`` (the list as JSON text);
* ``best_val.<metric>`` — the test metrics at the eval step with the best validation objective
  (``record["best_val"]``), beside the final ones; ``best_val.step``, ``best_val.objective.metric``
  and ``best_val.objective.value`` say which step and why.  Empty for a run without a validation
  split and for records written before the field existed (shown "—");
* ``cost.method_wall_s`` — the method's charged selection + training seconds: per phase
  ``charged_s`` (its own wall time plus what the cached artifacts it read cost to compute) when the
  record has it, else ``wall_s``; ``cost.method_own_wall_s`` is wall time alone and
  ``cost.shared_s`` the shared part;
* ``objective.<key>`` — ``record["objective"]`` (the metric, split and value a sweep optimises);
  ``runtime.<key>`` — ``record["runtime"]`` (device, threads).

A record that parses but holds a value of the wrong type where the tables read a number (a
non-numeric metric, a string seed, a cost phase that is not an object) is *malformed*: it is left
out of ``df`` and listed in ``errors`` with the field and the value, never passed on to crash a table.

The labels that group runs for the tables (``setting``, ``method_label``, ``budget_group``) are
added by ``analysis.labels``.
"""
from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from selbench.analysis.labels import add_labels
from selbench.core.records import RECORD, read_record_file

#: the values of ``record["budget_use"]``
BUDGET_USES = ("hard", "soft", "none")
#: phases that are not the method's own cost (loading data, evaluating the model)
NON_METHOD_PHASES = ("data", "eval")


@dataclass
class Runs:
    df: pd.DataFrame
    records: list[dict] = field(default_factory=list)  # same order as df rows
    errors: list[tuple[str, str]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> pd.DataFrame:
        return self.df[self.df["status"] == "ok"] if len(self.df) else self.df

    @property
    def failed(self) -> pd.DataFrame:
        return self.df[self.df["status"] != "ok"] if len(self.df) else self.df


def find_record_files(paths) -> list[Path]:
    """Every ``record.json`` under ``paths`` (dirs, files or globs), each once, sorted."""
    found: dict[Path, None] = {}
    for p in paths:
        p = str(p)
        matches = glob.glob(p, recursive=True) if glob.has_magic(p) else [p]
        if not matches:
            raise FileNotFoundError(f"no such file or directory: {p}")
        for m in matches:
            m = Path(m)
            if m.is_file():
                if m.name == RECORD:
                    found[m.resolve()] = None
            elif m.is_dir():
                for f in sorted(m.rglob(RECORD)):
                    if "wandb" not in f.relative_to(m).parts[:-1]:  # never a logger's mirror
                        found[f.resolve()] = None
            else:
                raise FileNotFoundError(f"no such file or directory: {m}")
    return sorted(found)


def flatten(d: dict, prefix: str = "") -> dict:
    """``{'a': {'b': 1}}`` → ``{'a.b': 1}``; lists become their JSON text."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


def _num(x):
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _scalars(d, prefix: str) -> dict:
    """``{prefix + key: value}`` for the scalar entries of a dict (lists and dicts left out)."""
    return {f"{prefix}{k}": v for k, v in d.items() if not isinstance(v, (list, dict))} \
        if isinstance(d, dict) else {}


def malformed(rec: dict) -> str | None:
    """Why a parsed record cannot enter the tables (one line naming the field and value), or None."""
    seed = rec.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, (int, float, type(None))):
        return f"seed is {seed!r} (not a number)"
    for part in ("metrics", "cost", "selection", "config", "compute"):
        if rec.get(part) is not None and not isinstance(rec[part], dict):
            return f"{part} is a {type(rec[part]).__name__} (not an object)"
    bv = rec.get("best_val")
    if bv is not None and not (isinstance(bv, dict) and isinstance(bv.get("metrics") or {}, dict)):
        return "best_val is not an object with a metrics object"
    for where, d in (("metrics", rec.get("metrics")), ("best_val.metrics", (bv or {}).get("metrics"))):
        for k, v in (d or {}).items():
            if not isinstance(v, (list, dict)) and v is not None and _num(v) is None:
                return f"{where}.{k} is {v!r} (not a number)"
    phases = (rec.get("cost") or {}).get("phases") or {}
    if not isinstance(phases, dict) or not all(isinstance(p, dict) for p in phases.values()):
        return "cost.phases is not an object of phase objects"
    for name, ph in phases.items():
        for k in ("wall_s", "charged_s", "shared_s", "peak_rss_mb", "peak_cuda_mb"):
            if ph.get(k) is not None and _num(ph[k]) is None:
                return f"cost.phases.{name}.{k} is {ph[k]!r} (not a number)"
    curve = rec.get("curve")
    if curve is not None and not (isinstance(curve, list) and all(isinstance(p, dict) for p in curve)):
        return "curve is not a list of eval points"
    return None


def record_row(rec: dict, path: Path | None = None) -> dict:
    """The flat row of one record (see module docstring for the columns)."""
    row = {k: rec.get(k) for k in ("method", "kind", "dataset", "scenario", "model", "runner", "seed",
                                   "budget", "scale", "experiment", "status", "reason", "failed_step",
                                   "run_key", "run_dir", "steps")}
    row["record_path"] = str(path) if path is not None else None
    if path is not None:  # where the record was read from: right after a results dir is moved or copied
        row["run_dir"] = str(Path(path).parent)
    row["budget_use"], row["budget_use_from"] = budget_use_of(rec)
    warnings = rec.get("warnings")
    warnings = [str(w) for w in warnings] if isinstance(warnings, (list, tuple)) else []
    row["n_warnings"] = len(warnings)
    row["warnings"] = json.dumps(warnings)
    for part, prefix in (("compute", "compute."), ("objective", "objective."), ("runtime", "runtime."),
                         ("metrics", ""), ("scenario_info", "scn.")):
        row.update(_scalars(rec.get(part), prefix))
    row.update(best_val_columns(rec))
    sel = rec.get("selection") or {}
    row.update(_scalars({k: v for k, v in sel.items() if k != "quality"}, "sel."))
    for k, v in (sel.get("quality") or {}).items():
        if k == "domain_weight_share" and isinstance(v, dict):
            row.update({f"q.domain_share.{d}": share for d, share in v.items()})
        elif not isinstance(v, (list, dict)):
            row[f"q.{k}"] = v
    row.update(cost_columns(rec.get("cost") or {}))
    row["n_evals"] = len(rec.get("curve") or [])
    row.update({f"ver.{k}": v for k, v in (rec.get("versions") or {}).items()})
    git = rec.get("git") or {}
    row["git.commit"], row["git.dirty"] = git.get("commit"), git.get("dirty")
    argv = (rec.get("host") or {}).get("argv")
    row["command"] = _command(argv) if argv else None
    row.update(flatten(rec.get("config") or {}, "cfg."))
    return row


def best_val_columns(rec: dict) -> dict:
    """``best_val.<metric>`` (the test metrics at the best-validation eval step), ``best_val.step`` and
    ``best_val.objective.{metric,value}``; nothing when the record has no ``best_val``."""
    bv = rec.get("best_val")
    if not isinstance(bv, dict):
        return {}
    return {"best_val.step": bv.get("step"), **_scalars(bv.get("objective"), "best_val.objective."),
            **_scalars(bv.get("metrics"), "best_val.")}


def cost_columns(cost: dict) -> dict:
    """Every ``cost.<phase>.<key>`` plus the method's own totals (data loading and evaluation left out):
    ``cost.method_wall_s`` charged (``charged_s`` per phase when present, else ``wall_s``),
    ``cost.method_own_wall_s``, ``cost.shared_s``, ``cost.select_wall_s`` (charged, training left out),
    peak memory and whether it is CUDA memory or the process RSS."""
    out = _scalars(cost, "cost.")
    phases = cost.get("phases") or {}
    for name, ph in phases.items():
        out.update({f"cost.{name}.{k}": v for k, v in ph.items()})
    own = {n: ph for n, ph in phases.items() if n not in NON_METHOD_PHASES}
    if not own:
        return {**out, **dict.fromkeys(("cost.method_wall_s", "cost.method_own_wall_s", "cost.shared_s",
                                        "cost.select_wall_s", "cost.method_peak_mb", "cost.memory_kind"))}

    def charged(ph) -> float:
        c = _num(ph.get("charged_s"))
        return c if c is not None else _num(ph.get("wall_s")) or 0.0

    cuda = max((_num(ph.get("peak_cuda_mb")) or 0.0 for ph in own.values()), default=0.0)
    rss = max((_num(ph.get("peak_rss_mb")) or 0.0 for ph in own.values()), default=0.0)
    return {**out, "cost.method_wall_s": sum(charged(ph) for ph in own.values()),
            "cost.method_own_wall_s": sum(_num(ph.get("wall_s")) or 0.0 for ph in own.values()),
            "cost.shared_s": sum(_num(ph.get("shared_s")) or 0.0 for ph in own.values()),
            "cost.select_wall_s": sum(charged(ph) for n, ph in own.items() if n != "train"),
            "cost.method_peak_mb": cuda if cuda > 0 else rss, "cost.memory_kind": "cuda" if cuda > 0 else "rss"}


def budget_use_of(rec: dict) -> tuple[str | None, str | None]:
    """``(budget_use, "record")`` from the record; ``(None, None)`` when it does not say."""
    for v in (rec.get("budget_use"), (rec.get("selection") or {}).get("budget_use")):
        if v in BUDGET_USES:
            return v, "record"
    return None, None


def _command(argv: list[str]) -> str:
    import shlex

    return " ".join(["selbench" if i == 0 else shlex.quote(str(a)) for i, a in enumerate(argv)])


def read_records(paths) -> tuple[list[tuple[Path, dict]], list[tuple[str, str]]]:
    """``([(file, record)], [(file, problem)])``: every record under ``paths``; the unreadable and the
    malformed ones are named with what is wrong instead of read."""
    good, errors = [], []
    for f in find_record_files(paths):
        try:
            rec = read_record_file(f)
        except ValueError as e:
            errors.append((str(f), str(e)))
            continue
        why = malformed(rec)
        if why:
            errors.append((str(f), f"malformed record: {why}"))
            continue
        good.append((f, rec))
    return good, errors


def load_runs(paths) -> Runs:
    good, errors = read_records(paths)
    df = pd.DataFrame([record_row(rec, f) for f, rec in good])
    if len(df):
        add_labels(df)
    return Runs(df, [rec for _, rec in good], errors, [f for f, _ in good])
