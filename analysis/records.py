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
  ``record["budget_use"]``, else ``record["selection"]["budget_use"]``, else — for an older
  record — the registered method's class attribute (``budget_use_from`` says which:
  ``record`` / ``registry`` / empty when unknown; the tables treat unknown as ``hard``);
* ``sel.effective_budget`` — the fraction of the pool the method effectively used;
* ``compute.<key>`` — ``record["compute"]``: ``match_examples``, ``steps``,
  ``train_examples`` (examples whose loss entered a real update, in total),
  ``train_examples_per_step``, ``forward_per_step``, ``backward_per_step``;
* ``n_warnings`` and ``warnings`` (the list as JSON text);
* ``objective.<key>`` — ``record["objective"]`` (the metric, split and value a sweep optimises);
  ``runtime.<key>`` — ``record["runtime"]`` (device, threads).

Two derived labels group runs for the tables:

* ``setting`` — ``<dataset>-<scenario>``, plus the config keys (outside ``method``,
  ``seed`` and ``budget``) that differ between runs of that dataset-scenario, e.g.
  ``digits-sym_noise [scenario.noise.rate=0.8]``, so runs that are not repeats of
  one experiment are never averaged together;
* ``method_label`` — the method name plus the ``method.*`` keys that differ between
  runs of that method in the same setting (a hyperparameter sweep becomes rows);
* ``budget_group`` — the budget the tables group and rank a run at: ``budget`` for a
  method that uses it (hard or soft), empty (NaN, shown "—") for one that ignores it, so
  ``erm`` swept at β = 0.2 is never shown as "erm at 0.2".
"""
from __future__ import annotations

import glob
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from selbench.core.records import NON_SEMANTIC_KEYS, RECORD, read_record_file  # noqa: F401 (re-exported)

#: the values of ``record["budget_use"]`` (``selbench.methods.base.BUDGET_USES``)
BUDGET_USES = ("hard", "soft", "none")
#: phases that are not the method's own cost (loading data, evaluating the model)
NON_METHOD_PHASES = ("data", "eval")
#: config keys that never distinguish settings (bookkeeping, or the sweep axes themselves)
_IGNORED_CFG = ("cfg.seed", *(f"cfg.{k}" for k in NON_SEMANTIC_KEYS))
_IGNORED_CFG_PREFIXES = ("cfg.method.", "cfg.budget.", *(f"cfg.{k}." for k in NON_SEMANTIC_KEYS))


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


def record_row(rec: dict, path: Path | None = None) -> dict:
    """The flat row of one record (see module docstring for the columns)."""
    row = {k: rec.get(k) for k in ("method", "kind", "dataset", "scenario", "model", "runner", "seed",
                                   "budget", "scale", "experiment", "status", "reason", "failed_step",
                                   "run_key", "run_dir", "steps")}
    row["record_path"] = str(path) if path is not None else None
    row["budget_use"], row["budget_use_from"] = budget_use_of(rec)
    warnings = rec.get("warnings")
    warnings = [str(w) for w in warnings] if isinstance(warnings, (list, tuple)) else []
    row["n_warnings"] = len(warnings)
    row["warnings"] = json.dumps(warnings)
    for k, v in (rec.get("compute") or {}).items():
        if not isinstance(v, (list, dict)):
            row[f"compute.{k}"] = v
    for part in ("objective", "runtime"):
        sub = rec.get(part)
        if isinstance(sub, dict):
            for k, v in sub.items():
                if not isinstance(v, (list, dict)):
                    row[f"{part}.{k}"] = v
    for k, v in (rec.get("metrics") or {}).items():
        if not isinstance(v, (list, dict)):
            row[k] = v
    for k, v in (rec.get("scenario_info") or {}).items():
        if not isinstance(v, (list, dict)):
            row[f"scn.{k}"] = v
    sel = rec.get("selection") or {}
    for k, v in sel.items():
        if k != "quality" and not isinstance(v, (list, dict)):
            row[f"sel.{k}"] = v
    q = sel.get("quality") or {}
    for k, v in q.items():
        if k == "domain_weight_share" and isinstance(v, dict):
            for d, share in v.items():
                row[f"q.domain_share.{d}"] = share
        elif not isinstance(v, (list, dict)):
            row[f"q.{k}"] = v
    cost = rec.get("cost") or {}
    for k, v in cost.items():
        if not isinstance(v, dict):
            row[f"cost.{k}"] = v
    phases = cost.get("phases") or {}
    for name, ph in phases.items():
        for k, v in ph.items():
            row[f"cost.{name}.{k}"] = v
    own = {n: ph for n, ph in phases.items() if n not in NON_METHOD_PHASES}
    # the method's own cost: selection/synthesis + training (data loading and evaluation excluded)
    row["cost.method_wall_s"] = sum(_num(ph.get("wall_s")) or 0.0 for ph in own.values()) if own else None
    row["cost.select_wall_s"] = sum(_num(ph.get("wall_s")) or 0.0 for n, ph in own.items() if n != "train") if own else None
    cuda = max((_num(ph.get("peak_cuda_mb")) or 0.0 for ph in own.values()), default=0.0)
    rss = max((_num(ph.get("peak_rss_mb")) or 0.0 for ph in own.values()), default=0.0)
    row["cost.method_peak_mb"] = (cuda if cuda > 0 else rss) if own else None
    row["cost.memory_kind"] = ("cuda" if cuda > 0 else "rss") if own else None
    row["n_evals"] = len(rec.get("curve") or [])
    for k, v in (rec.get("versions") or {}).items():
        row[f"ver.{k}"] = v
    git = rec.get("git") or {}
    row["git.commit"], row["git.dirty"] = git.get("commit"), git.get("dirty")
    argv = (rec.get("host") or {}).get("argv")
    row["command"] = _command(argv) if argv else None
    row.update(flatten(rec.get("config") or {}, "cfg."))
    return row


def budget_use_of(rec: dict) -> tuple[str | None, str | None]:
    """``(budget_use, where it came from)`` for one record; see the module docstring."""
    for v in (rec.get("budget_use"), (rec.get("selection") or {}).get("budget_use")):
        if v in BUDGET_USES:
            return v, "record"
    name = rec.get("method")
    if isinstance(name, str):
        v = _registered_budget_use(name)
        if v is not None:
            return v, "registry"
    return None, None


def _registered_budget_use(name: str) -> str | None:
    try:  # lazily: reading records needs the methods only when a record is too old to say
        from selbench.methods.registry import get_method

        v = get_method(name).cls.budget_use
    except Exception:  # noqa: BLE001 - an unknown or unloadable method: unknown, not an error
        return None
    return v if v in BUDGET_USES else None


def _command(argv: list[str]) -> str:
    import shlex

    return " ".join(["selbench" if i == 0 else shlex.quote(str(a)) for i, a in enumerate(argv)])


def load_runs(paths) -> Runs:
    files = find_record_files(paths)
    rows, recs, errors, ok_files = [], [], [], []
    for f in files:
        try:
            rec = read_record_file(f)
        except ValueError as e:
            errors.append((str(f), str(e)))
            continue
        rows.append(record_row(rec, f))
        recs.append(rec)
        ok_files.append(f)
    df = pd.DataFrame(rows)
    if len(df):
        add_labels(df)
    return Runs(df, recs, errors, ok_files)


def _fmt_value(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _varying(df: pd.DataFrame, cols: list[str]) -> list[str]:
    out = []
    for c in cols:
        vals = df[c].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else repr(v))
        if vals.nunique(dropna=False) > 1:
            out.append(c)
    return out


def add_labels(df: pd.DataFrame) -> None:
    """Add ``setting`` and ``method_label`` (in place); see the module docstring."""
    cfg_cols = [c for c in df.columns if c.startswith("cfg.")]
    setting_cols = [c for c in cfg_cols if c not in _IGNORED_CFG and not c.startswith(_IGNORED_CFG_PREFIXES)]
    method_cols = [c for c in cfg_cols if c.startswith("cfg.method.") and c != "cfg.method.name"]
    base = df["dataset"].astype(str) + "-" + df["scenario"].astype(str)
    df["setting"] = base
    for name, idx in base.groupby(base).groups.items():
        sub = df.loc[idx]
        keys = _varying(sub, setting_cols)
        if keys:
            df.loc[idx, "setting"] = [
                f"{name} [" + ", ".join(f"{k[4:]}={_fmt_value(sub.at[i, k])}" for k in keys) + "]" for i in idx]
    add_budget_group(df)
    df["method_label"] = df["method"].astype(str)
    for (_, m), idx in df.groupby(["setting", "method"]).groups.items():
        sub = df.loc[idx]
        keys = _varying(sub, method_cols)
        if keys:
            df.loc[idx, "method_label"] = [
                f"{m} (" + ", ".join(f"{k[len('cfg.method.'):]}={_fmt_value(sub.at[i, k])}" for k in keys) + ")"
                for i in idx]


def add_budget_group(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``budget_group`` (in place; see the module docstring) and return ``df``."""
    use = df["budget_use"] if "budget_use" in df.columns else pd.Series(None, index=df.index, dtype=object)
    budget = pd.to_numeric(df["budget"], errors="coerce") if "budget" in df.columns else \
        pd.Series(float("nan"), index=df.index)
    df["budget_group"] = budget.where(use.astype(object) != "none", float("nan"))
    return df
