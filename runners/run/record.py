"""Run records: the single source of truth for every run.

One ``record.json`` per run, written atomically and *last* (it is the completion
marker a relaunched sweep checks); artifacts such as the selection go beside it.
"""
from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from selbench.core.records import NON_SEMANTIC_KEYS, RECORD, drop_keys, read_record_file, to_portable  # noqa: F401
from selbench.core.io import atomic_save_npz, atomic_write_bytes, atomic_write_json  # noqa: F401 (re-exported)


#: runner keys added after runs were keyed: at these values they are left out of the run key, so a
#: run keeps its key (and a relaunched sweep still finds it); any other value is part of the key
DEFAULT_FREE = {"precision": "fp32", "compile": False, "data_on_device": "auto"}


def semantic_config(cfg: DictConfig) -> dict:
    out = drop_keys(OmegaConf.to_container(cfg, resolve=True))
    runner = out.get("runner")
    if isinstance(runner, dict):
        for k, v in DEFAULT_FREE.items():
            if k in runner and runner[k] == v:
                runner.pop(k)
    return out


def run_key(cfg: DictConfig) -> str:
    """Hash of the resolved config minus non-semantic keys: same experiment → same key."""
    blob = json.dumps(semantic_config(cfg), sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


def run_dir_for(cfg: DictConfig) -> Path:
    """``<results_dir>/<dataset>-<scenario>/<method>/s<seed>-<key>``: deterministic, collision-free."""
    group = f"{cfg.dataset.name}-{cfg.scenario.name}"
    return Path(cfg.results_dir) / group / str(cfg.method.name) / f"s{cfg.seed}-{run_key(cfg)}"


def read_record(run_dir: Path) -> dict | None:
    """The run's record, or None when there is none or it is not a record (then the run is redone,
    and this says so: a corrupt record is never trusted, nor rerun without a word)."""
    p = Path(run_dir) / RECORD
    if not p.exists():
        return None
    try:
        return read_record_file(p)
    except ValueError as e:
        print(f"selbench: record {p} is {e}; running it again", file=sys.stderr)
        return None


def write_record(run_dir: Path, record: dict, results_dir: Path) -> None:
    """Write ``record.json`` atomically, with its paths relative to ``results_dir`` (portable results)."""
    atomic_write_json(Path(run_dir) / RECORD, to_portable(record, Path(run_dir), Path(results_dir)))


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
