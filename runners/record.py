"""Run records: the single source of truth for every run.

One ``record.json`` per run, written atomically and *last* (it is the completion
marker a relaunched sweep checks); artifacts such as the selection go beside it.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

RECORD = "record.json"
#: config keys that do not change what a run computes; excluded from the run key.
NON_SEMANTIC_KEYS = ("results_dir", "cache_dir", "logger", "resume", "progress", "objective", "experiment_name",
                     "runner.checkpoint_every", "runner.keep_checkpoint", "runner.device", "runner.threads")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, default=_json_default, allow_nan=True).encode())


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def semantic_config(cfg: DictConfig) -> dict:
    c = OmegaConf.to_container(cfg, resolve=True)
    for k in NON_SEMANTIC_KEYS:
        *parents, leaf = k.split(".")
        node = c
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return c


def run_key(cfg: DictConfig) -> str:
    """Hash of the resolved config minus non-semantic keys: same experiment → same key."""
    blob = json.dumps(semantic_config(cfg), sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


def run_dir_for(cfg: DictConfig) -> Path:
    """``<results_dir>/<dataset>-<scenario>/<method>/s<seed>-<key>``: deterministic, collision-free."""
    group = f"{cfg.dataset.name}-{cfg.scenario.name}"
    return Path(cfg.results_dir) / group / str(cfg.method.name) / f"s{cfg.seed}-{run_key(cfg)}"


def read_record(run_dir: Path) -> dict | None:
    p = Path(run_dir) / RECORD
    if not p.exists():
        return None
    return json.loads(p.read_text())


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("selbench", "torch", "torchvision", "hydra-core", "omegaconf", "numpy", "pandas"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def git_revision() -> dict:
    """The revision of the selbench checkout the code runs from (None outside git)."""
    src = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=src,
                               capture_output=True, text=True, timeout=5)
        return {"commit": rev.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "dirty": None}


def host() -> dict:
    return {"hostname": platform.node(), "platform": platform.platform(), "argv": sys.argv}
