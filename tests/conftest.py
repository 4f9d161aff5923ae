"""Shared helpers: compose the real configs (shrunk) and run jobs in-process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from hydra import compose, initialize_config_dir

from selbench.methods.registry import load_builtin_methods
from selbench.runners.run.validate import CONF_DIR

REPO = Path(__file__).resolve().parent.parent
FASHION = Path("/usr/share/datasets/fashion-mnist")

load_builtin_methods()

needs_fashion = pytest.mark.skipif(not FASHION.exists(), reason="Fashion-MNIST (dataset-fashion-mnist) not installed")


class HostRead(NamedTuple):
    name: str   #: the Tensor method: __float__, __int__, __index__, item, tolist, __bool__
    where: str  #: ``file:line`` of the code that made the read


@pytest.fixture
def host_reads(monkeypatch) -> list[HostRead]:
    """Records every tensor → host read (``float``, ``int``, ``item``, ``tolist``, ``bool`` …) and
    where it was made: on a GPU each is a synchronisation (``tests/test_loop_sync.py``,
    ``tests/test_method_sync.py``)."""
    reads: list[HostRead] = []
    for name in ("__float__", "__int__", "__index__", "item", "tolist", "__bool__"):
        orig = getattr(torch.Tensor, name)

        def wrapped(self, *a, _orig=orig, _name=name, **k):
            f = sys._getframe(1)
            reads.append(HostRead(_name, f"{f.f_code.co_filename}:{f.f_lineno}"))
            return _orig(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, wrapped)
    return reads


def compose_cfg(overrides: list[str], results_dir: Path | None = None):
    extra = [f"results_dir={results_dir}"] if results_dir is not None else []
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides) + extra)


#: a seconds-long real run on sklearn digits
TINY = ["dataset=digits", "scenario=sym_noise", "scenario.pool_size=600", "scenario.target_per_class=10",
        "model=mlp", "model.hidden=64", "runner.steps=60", "runner.eval_every=30", "runner.batch_size=64",
        "runner.target_batch_size=32", "progress=false", "runner.device=cpu"]


def selbench(*args: str, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the real console script in a subprocess."""
    exe = Path(sys.executable).parent / "selbench"
    e = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run([str(exe), *args], cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread avoids oversubscription stalls."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
