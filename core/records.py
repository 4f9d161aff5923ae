"""What a run record is, for the code that writes records and the code that reads them.

- ``RECORD``: the file name (``record.json``), written atomically and last;
- ``NON_SEMANTIC_KEYS``: the config keys that do not change what a run computes
  (bookkeeping and where things are written).  They are left out of the run key and
  never distinguish two settings in a table.  Device and thread count are *not* among
  them: both change floating-point results (thread count was seen to move an AUC);
- :func:`read_record_file`: the one reader, which names what is wrong with a bad file.

**Portable records.**  On disk a record's paths are relative to its results dir
(``run_dir``: ``<dataset>-<scenario>/<method>/s<seed>-<key>``; ``hydra_output_dir`` when it
lies inside the results dir), so a results dir can be moved or copied.  The reader
resolves them against the place the record was read from (:func:`resolve_paths`), so every
reader sees the paths of the copy it reads, never those of the tree it was copied from.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

RECORD = "record.json"
NON_SEMANTIC_KEYS = ("results_dir", "cache_dir", "logger", "resume", "progress", "objective", "experiment_name",
                     "runner.checkpoint_every", "runner.keep_checkpoint")
#: keys a record must have to be a record
REQUIRED = ("method", "status", "seed")


def drop_keys(config: dict, keys=NON_SEMANTIC_KEYS) -> dict:
    """``config`` (a plain nested dict, modified in place) without the dotted ``keys``."""
    for k in keys:
        *parents, leaf = k.split(".")
        node = config
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return config


#: record fields that hold paths (relative to the results dir on disk)
PATH_FIELDS = ("run_dir", "hydra_output_dir")


def _results_root(run_dir: Path, rel_run_dir: str) -> Path:
    """The results dir of a run dir whose results-relative path is ``rel_run_dir``."""
    depth = len(Path(rel_run_dir).parts) if rel_run_dir and not Path(rel_run_dir).is_absolute() else 3
    return run_dir.parents[depth - 1]


def to_portable(record: dict, run_dir: Path, results_dir: Path) -> dict:
    """A copy of ``record`` with its paths relative to ``results_dir`` (what is written to disk)."""
    out = dict(record)
    root = Path(os.path.abspath(results_dir))
    for k in PATH_FIELDS:
        v = out.get(k) if k != "run_dir" else run_dir
        if v is None:
            continue
        p = Path(os.path.abspath(v))
        try:
            out[k] = str(p.relative_to(root))
        except ValueError:  # outside the results dir (a custom hydra.run.dir): kept as it is
            out[k] = str(p)
    return out


def resolve_paths(record: dict, record_path: Path) -> dict:
    """``record`` (read from ``record_path``) with its paths resolved against where it was read from.

    ``run_dir`` is always the folder the record is in; a relative ``hydra_output_dir`` is joined to
    the results dir it is relative to.  Records written before paths were relative (absolute
    paths) get the same ``run_dir``; their other paths are left as written."""
    out = dict(record)
    run_dir = Path(record_path).parent
    rel = record.get("run_dir")
    out["run_dir"] = str(run_dir)
    out["results_dir"] = str(_results_root(run_dir, rel if isinstance(rel, str) else ""))
    for k in PATH_FIELDS:
        v = out.get(k)
        if k != "run_dir" and isinstance(v, str) and not Path(v).is_absolute():
            out[k] = str(Path(out["results_dir"]) / v)
    return out


def read_record_file(path: Path) -> dict:
    """Parse one record; raises ``ValueError`` with a one-line reason if it is not one.  Its paths
    are resolved against ``path`` (:func:`resolve_paths`)."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ValueError(f"unreadable: {e.strerror or e}") from None
    try:
        rec = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"corrupt JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if not isinstance(rec, dict):
        raise ValueError("not a run record (top level is not an object)")
    missing = [k for k in REQUIRED if k not in rec]
    if missing:
        raise ValueError(f"not a run record (missing {', '.join(missing)})")
    return resolve_paths(rec, Path(path))
