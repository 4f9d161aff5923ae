"""``from_selection``: train on a selection made anywhere — another tool, a notebook, a DataComp-style
filter, or an earlier selbench run — under the same rules as every built-in selector.

``method=from_selection method.path=FILE``.  The file names examples by the **dataset's own
index** (a train example's row in the user's files: ``Source.train_index``; the CIFAR / MNIST
train order, an ``arrays`` file's rows, an ``image_folder``'s sorted file list), not by pool
position, so it does not depend on how a run drew its pool.  Formats:

- ``.npz`` with ``indices`` (``[k]`` integers) and optionally ``weights`` (``[k]``, ≥ 0);
- a selbench ``selection.npz``: its ``pool_index`` (the dataset index of each pool position)
  and ``pool_weights`` (the examples with weight > 0 are the selection, with those weights);
- ``.txt`` / ``.csv``: one ``index`` or ``index,weight`` per line (``#`` comments and a header
  line are skipped).

The run maps the indices onto its pool; indices its pool does not hold (they went to the
target / validation set, or another scenario drew the pool) are dropped with a warning
(``method.on_missing=warn``) or refused (``error``).  The kept examples train like any selector's:
in pool order, ``runner.batch_size`` examples per step (equal compute), weights rescaled to mean 1,
plus the target set once (``method.include_target``, as ``random`` does).  A selection larger than
the budget ⌊β·N_pool⌋ is refused, so a budget means what it says; a smaller one is compared at
its own effective fraction (``budget_use = "soft"``).  Weights all equal to 1 count as no weights,
so a saved 0/1 selection retrains exactly as it was first trained.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from selbench.core.errors import ConfigError, DataError
from selbench.methods.base import MethodConfig, RunContext, Selection, Selector
from selbench.methods.common.choice import Choice
from selbench.methods.registry import register_method


class OnMissing(Choice):
    warn = "warn"
    error = "error"


@dataclass
class FromSelectionConfig(MethodConfig):
    path: Optional[str] = None     # the selection file (see the module docstring for its formats)
    include_target: bool = True    # also train on the target set once, as random (BADS's Random_Select) does
    on_missing: OnMissing = OnMissing.warn


def read_selection(path: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(dataset indices, weights or None) from a selection file; one-line errors name the file."""
    if not path:
        raise ConfigError("method=from_selection needs method.path=<file of dataset indices: .npz, .txt or .csv>")
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"method.path={path!r} does not exist")
    if p.suffix == ".npz":
        idx, w = _read_npz(p)
    elif p.suffix in (".txt", ".csv"):
        idx, w = _read_text(p)
    else:
        raise ConfigError(f"method.path={path!r}: unknown format {p.suffix!r} (choose from: .npz, .txt, .csv)")
    if idx.ndim != 1 or len(idx) == 0:
        raise DataError(f"{p}: the selection is empty or not one-dimensional (shape {list(idx.shape)})")
    if idx.dtype.kind not in "iu" or int(idx.min()) < 0:
        raise DataError(f"{p}: indices must be non-negative integers (dataset indices), not {idx.dtype}")
    dup = np.unique(idx, return_counts=True)
    if (dup[1] > 1).any():
        raise DataError(f"{p}: index {int(dup[0][dup[1] > 1][0])} appears more than once; give it one weight")
    if w is not None:
        if w.shape != idx.shape or not np.isfinite(w).all() or (w < 0).any() or not (w > 0).any():
            raise DataError(f"{p}: weights must be one finite non-negative number per index, not all 0")
        if np.all(w == 1):
            w = None
    return idx.astype(np.int64), w


def _read_npz(p: Path) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with np.load(p, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"cannot read {p} as an .npz: {str(e).splitlines()[0]}") from None
    if "indices" in data:
        w = data.get("weights")
        return data["indices"], None if w is None else w.astype(np.float64)
    if "pool_index" in data and "pool_weights" in data:  # a selbench run's selection.npz
        w = data["pool_weights"].astype(np.float64)
        return data["pool_index"][w > 0], w[w > 0]
    raise DataError(f"{p} has arrays {sorted(data)}; a selection needs 'indices' (and optionally 'weights'), "
                    f"or a selbench selection.npz's 'pool_index' and 'pool_weights'")


def _read_text(p: Path) -> tuple[np.ndarray, np.ndarray | None]:
    rows, first = [], True
    for n, line in enumerate(p.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace(",", " ").split()
        try:
            rows.append((int(parts[0]), float(parts[1]) if len(parts) > 1 else None))
        except ValueError:
            if not first:  # only the first line may be a header
                raise DataError(f"{p}:{n}: {line!r} is not 'index' or 'index,weight'") from None
        first = False
        if len(parts) > 2:
            raise DataError(f"{p}:{n}: {line!r} has {len(parts)} fields; expected 'index' or 'index,weight'")
    if not rows:
        raise DataError(f"{p} holds no indices")
    has_w = {w is not None for _, w in rows}
    if len(has_w) > 1:
        raise DataError(f"{p}: some lines have a weight and some do not")
    idx = np.array([i for i, _ in rows], dtype=np.int64)
    return idx, (np.array([w for _, w in rows], dtype=np.float64) if has_w == {True} else None)


@register_method("from_selection", config=FromSelectionConfig)
class FromSelection(Selector):
    budget_use = "soft"
    modalities = ("vision",)  # text pools are document chunks, with no dataset index to name them by
    needs_input_file = True   # has no defaults that run: it trains on the file given as method.path

    @classmethod
    def check_config(cls, cfg: FromSelectionConfig, run_cfg) -> None:
        read_selection(cfg.path)  # a bad path or file is refused before launch

    def select(self, ctx: RunContext) -> Selection:
        idx, w = read_selection(self.cfg.path)
        pool_index = (ctx.extra or {}).get("pool_index")
        if pool_index is None:
            raise ConfigError("this scenario does not record the dataset's indices of its pool; "
                              "from_selection needs an image scenario built by datasets/scenarios.py")
        pos_of = {int(d): i for i, d in enumerate(pool_index.tolist())}
        found = np.array([i in pos_of for i in idx.tolist()])
        if not found.all():
            msg = (f"{int((~found).sum())} of the {len(idx)} selected dataset indices are not in this run's pool "
                   f"(e.g. {int(idx[~found][0])}); ")
            if str(self.cfg.on_missing) == "error" or not found.any():
                raise ConfigError(msg + "check the scenario and seed the selection was made for")
            ctx.warn(msg + "they are dropped (method.on_missing=error refuses instead)")
        pos = torch.tensor([pos_of[i] for i in idx[found].tolist()], dtype=torch.long)
        if len(pos) > ctx.k_budget:
            raise ConfigError(f"the selection keeps {len(pos)} of {ctx.n_pool} pool examples, more than the budget's "
                              f"{ctx.k_budget} (budget.fraction={ctx.budget}); raise budget.fraction to at least "
                              f"{len(pos) / ctx.n_pool:.4g} or select fewer")
        order = pos.argsort()
        weights = None if w is None else torch.as_tensor(w[found], dtype=torch.float32)[order]
        return Selection(pos[order], weights, target_repeats=int(self.cfg.include_target),
                         info={"n_in_file": int(len(idx)), "n_not_in_pool": int((~found).sum())})
