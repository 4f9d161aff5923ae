"""What a run record is, for the code that writes records and the code that reads them.

- ``RECORD``: the file name (``record.json``), written atomically and last;
- ``NON_SEMANTIC_KEYS``: the config keys that do not change what a run computes
  (bookkeeping and where things are written).  They are left out of the run key and
  never distinguish two settings in a table.  Device and thread count are *not* among
  them: both change floating-point results (thread count was seen to move an AUC);
- :func:`read_record_file`: the one reader, which names what is wrong with a bad file.
"""
from __future__ import annotations

import json
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


def read_record_file(path: Path) -> dict:
    """Parse one record; raises ``ValueError`` with a one-line reason if it is not one."""
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
    return rec
