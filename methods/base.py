"""The method protocol: three kinds, one context.

- ``Selector.select(ctx) -> Selection``: offline; indices (and optional weights) over
  the pool within ``ctx.budget``; the runner then trains on them.
- ``Reweighter.step(ctx, step, pool_idx, target_idx)``: online; owns the update
  step and evolves per-example weights while the model trains.
- ``Synthesizer.synthesize(ctx) -> Synthesis``: returns a new small training set
  within a storage budget.

Every method exposes its final per-example pool weights (``Selection`` /
``Reweighter.pool_weights``) so the runner can score them against ground truth the
method never sees.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from omegaconf import MISSING
from torch import Tensor

from selbench.core.data import Split
from selbench.core.modes import eval_mode
from selbench.core.protocols import Cost, TaskAdapter
from selbench.methods.compute import RunSettings, StepExamples  # noqa: F401  (RunSettings: methods import it from here)


@dataclass
class MethodConfig:
    """Base of every method's typed config; ``name`` is the registry key."""

    name: str = MISSING


@dataclass
class RunContext:
    """What a method sees.  Deliberately no ground truth and no test set."""

    pool: Split
    target: Split
    num_classes: int
    modality: str
    adapter: TaskAdapter
    budget: float
    seed: int
    generator: torch.Generator
    device: torch.device
    cost: Cost
    steps: int
    #: equal compute, resolved once by the run context: pool / target examples per step, the update's size
    examples: StepExamples
    make_optimizer: Callable[..., torch.optim.Optimizer]
    log: Callable[[int, dict], None] = lambda step, d: None
    #: ``ctx.warn(msg)``: a warning that reaches the record (``record["warnings"]``) and stderr
    warn: Callable[[str], None] = lambda msg: None
    #: ``runners.cache.ArtifactCache``: ``ctx.cache.get_or_compute(name, key, fn)`` for
    #: proxy models / gradient features shared across the runs of a sweep.
    cache: Any = None
    #: ``runner.data_on_device`` resolved: a fixed training set (a selection, a synthetic set) is
    #: moved to ``device`` once and its batches are indexed there, not copied per step
    data_on_device: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def model(self) -> torch.nn.Module:
        return self.adapter.model

    @property
    def batch_size(self) -> int:
        """Pool examples per step (``examples.pool``)."""
        return self.examples.pool

    @property
    def target_batch_size(self) -> int:
        """Target examples per step a reweighter draws (``examples.target``)."""
        return self.examples.target

    def kept_count(self, large_batch: int | None, cap: int, *, with_target: bool = False) -> tuple[int, int]:
        """``(L, k)`` of online batch filtering (:meth:`StepExamples.kept`); a departure from the
        paper's ``round(β·L)`` reaches the record as a warning."""
        L, k, note = self.examples.kept(large_batch, cap, self.n_pool, self.budget, with_target=with_target)
        if note is not None:
            self.warn(note)
        return L, k

    @property
    def n_pool(self) -> int:
        return len(self.pool)

    @property
    def k_budget(self) -> int:
        """Number of pool examples the budget allows: ``⌊β · N_pool⌋``, at least 1."""
        return max(1, int(self.budget * self.n_pool))


@dataclass
class Selection:
    """A training set made of pool examples (optionally weighted) plus the target set.

    ``target_repeats`` copies of the target set are appended (0 = not used).
    ``scores`` optionally holds the method's score for *every* pool example, so the
    analysis can rank-score the selection beyond the chosen subset.  ``info`` holds
    JSON-able numbers about the selection (e.g. its log-det, its gradient time); it lands
    in ``record["selection"]``.
    """

    pool_indices: Tensor
    pool_weights: Tensor | None = None
    target_repeats: int = 0
    scores: Tensor | None = None
    info: dict = field(default_factory=dict)

    def pool_weight_vector(self, n_pool: int) -> Tensor:
        w = torch.zeros(n_pool)
        w[self.pool_indices] = 1.0 if self.pool_weights is None else self.pool_weights.float().cpu()
        return w


@dataclass
class Synthesis:
    """A synthetic (or condensed) training set and the bytes it takes to store."""

    data: Split
    storage_bytes: int
    weights: Tensor | None = None
    info: dict = field(default_factory=dict)


BUDGET_USES = ("hard", "soft", "none")


class Method:
    kind: ClassVar[str] = ""
    #: modalities the method is written for; the runner refuses the others.
    modalities: ClassVar[tuple[str, ...]] = ("vision", "language")
    #: how the method uses ``budget.fraction`` (β):
    #: ``hard`` — it keeps exactly ⌊β·N_pool⌋ pool examples (or β of each scored batch);
    #: ``soft`` — β shapes it (a prior, a target mean weight) but the fraction it ends up
    #:            using is its own; tables compare it at its *effective* fraction;
    #: ``none`` — it ignores β; tables never rank it "at" a budget.
    budget_use: ClassVar[str] = "hard"

    def __init__(self, cfg: Any):
        self.cfg = cfg

    @classmethod
    def check_config(cls, cfg: Any, run_cfg: Any) -> None:
        """Checks that need more than the typed config (cross-field rules, the runner's
        optimiser): raise ``ConfigError`` with one line.  Called for every job of a sweep
        *before* anything launches; ``cfg`` is the method's typed config object, ``run_cfg``
        the whole composed config."""

    def after_training(self, ctx: "RunContext") -> dict:
        """JSON-able numbers about the *trained* model, merged into ``record["selection"]`` after the
        final evaluation (``lds_subset`` reports its per-target losses here).  Default: nothing."""
        return {}

    # Checkpointing.  The default captures every attribute that is a tensor (or a dict of
    # tensors), a module, an optimiser / scheduler, a torch.Generator, a number, or a
    # list / deque of numbers — enough for weights, weight networks, running averages and
    # noise streams.  Override for anything else.
    def state_dict(self) -> dict:
        out = {}
        for k, v in vars(self).items():
            if k == "cfg":
                continue
            if isinstance(v, torch.Tensor):
                out[k] = v.detach().clone()
            elif isinstance(v, torch.Generator):
                out[k] = v.get_state()
            elif isinstance(v, dict) and v and all(isinstance(x, torch.Tensor) for x in v.values()):
                out[k] = {kk: x.detach().clone() for kk, x in v.items()}
            elif hasattr(v, "state_dict") and callable(v.state_dict):
                out[k] = v.state_dict()
            elif isinstance(v, (bool, int, float)) or v is None:
                out[k] = v
            elif isinstance(v, (list, tuple, deque)) and all(isinstance(x, (int, float)) for x in v):
                out[k] = list(v)
        return out

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            cur = getattr(self, k, None)
            if isinstance(cur, torch.Generator):
                cur.set_state(v)
            elif hasattr(cur, "load_state_dict") and callable(cur.load_state_dict):
                cur.load_state_dict(v)
            elif isinstance(cur, torch.Tensor) and cur.shape == v.shape:
                with torch.no_grad():
                    cur.copy_(v)
            elif isinstance(cur, deque):
                setattr(self, k, deque(v, maxlen=cur.maxlen))
            else:
                setattr(self, k, v)


class Selector(Method):
    kind = "selector"

    def select(self, ctx: RunContext) -> Selection:
        raise NotImplementedError


class Reweighter(Method):
    kind = "reweighter"
    #: the real update trains on the target batch too (BADS); under equal examples per step (``methods/compute.py``)
    #: the runner then shrinks the pool batch so that pool + target = ``runner.batch_size``
    target_in_update: ClassVar[bool] = False

    def setup(self, ctx: RunContext, optimizer: torch.optim.Optimizer) -> None:
        """Called once before training with the runner-built optimizer over the model."""
        self.optimizer = optimizer

    def step(self, ctx: RunContext, step: int, pool_idx: Tensor, target_idx: Tensor) -> dict[str, float]:
        """One training iteration; returns scalars to log, including ``loss``."""
        raise NotImplementedError

    def pool_weights(self, ctx: RunContext) -> Tensor:
        """Current weight of every pool example, ``[N_pool]`` on the CPU."""
        raise NotImplementedError

    def effective_budget(self, ctx: RunContext) -> float | None:
        """The fraction of the pool the method effectively trains on (None: not defined for it)."""
        return None


class Synthesizer(Method):
    kind = "synthesizer"

    def synthesize(self, ctx: RunContext) -> Synthesis:
        raise NotImplementedError


def weighted_step(ctx: RunContext, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor,
                  w: Tensor | None = None) -> Tensor:
    """One optimiser step on ``mean_i(w_i · l_i)`` (``w`` = 1 when None); returns the loss."""
    optimizer.zero_grad(set_to_none=True)
    losses = ctx.adapter.per_example_loss(x, y)
    loss = losses.mean() if w is None else (w.to(losses.device) * losses).mean()
    loss.backward()
    ctx.cost.count(backward=len(x), train=len(x))
    optimizer.step()
    return loss.detach()


@torch.no_grad()
def score_pool(ctx: RunContext, score: Callable[[Tensor, Tensor], Tensor], chunk: int = 1024) -> Tensor:
    """``score(x, y)`` over the whole pool in chunks, model in eval mode (BatchNorm running
    statistics, no dropout), concatenated on the CPU.  The one way methods weigh the pool."""
    with eval_mode(ctx.model):
        parts = [score(ctx.pool.x[i:i + chunk], ctx.pool.y[i:i + chunk]).cpu() for i in range(0, ctx.n_pool, chunk)]
    return torch.cat(parts) if parts else torch.zeros(0)
