"""What the score-based BADS-paper baselines share (``cds``, ``classact``, ``askllm``):
training a proxy in place and putting the run's model back, and *online minibatch
filtering* by a fixed per-example score.

**Proxies in place.**  A method has no model factory (``methods/`` sees the task only
through the adapter), so a proxy is the run's own model trained in place from its
initial state, the way the gradient selectors warm theirs up (one proxy trainer for
both: ``methods/common/proxy.py``): ``snapshot`` the state, train with the runner's
optimiser config (a fresh optimiser), read losses, ``restore`` the exact initial state. A proxy's updates are not the run's
training: they count as forward / backward examples, never as ``train`` examples (the
equal-compute counter is about the model that is evaluated).

**Minibatch filtering** (:class:`ScoreFilter`).  Each step draws a scored batch of ``L``
pool examples (own seeded cyclic sampler, so every example is seen once per ``N/L``
steps), keeps the ``k`` with the highest score and takes one optimiser step on their
plain mean loss. ``L = ⌈B/β⌉`` (capped by ``max_large_batch`` and the pool) for the
runner's batch ``B``; under equal compute (``ctx.examples.matched``, the default) ``k`` is
exactly ``B``, so the harness counts the same training examples per step as for every other
method; otherwise ``k = round(β·L)`` (both: ``ctx.kept_count``, the one rule, in
``methods/base.py``).

``pool_weights``: each example's probability of being kept when it is drawn, exactly
(hypergeometric: at most ``k − 1`` of the other ``L − 1`` drawn examples outrank it),
normalised to mean 1 — the share of the training signal each example gets. Its mean-1
form keeps the record's domain / clean shares comparable with the other reweighters.
"""
from __future__ import annotations

import torch
from torch import Tensor

from selbench.core.errors import ConfigError
from selbench.core.sampling import CyclicSampler
from selbench.methods.base import Reweighter, RunContext, StepExamples, weighted_step


def keep_probability(scores: Tensor, L: int, k: int) -> Tensor:
    """P(example kept | drawn) under "draw L of N without replacement, keep the top k":
    ``Σ_{j<k} C(h, j) C(N−1−h, L−1−j) / C(N−1, L−1)`` with ``h`` the examples ranked above it."""
    n = len(scores)
    if n == 0:
        return torch.zeros(0)
    order = torch.argsort(scores.double(), descending=True, stable=True)
    h = torch.empty(n, dtype=torch.float64)
    h[order] = torch.arange(n, dtype=torch.float64)
    L, k = min(L, n), min(k, L)
    j = torch.arange(k, dtype=torch.float64)[None]
    lc = lambda a, b: torch.lgamma(a + 1) - torch.lgamma(b + 1) - torch.lgamma(a - b + 1)  # noqa: E731
    hh, rest = h[:, None], (n - 1 - h)[:, None]
    ok = (j <= hh) & ((L - 1 - j) <= rest) & ((L - 1 - j) >= 0)
    total = lc(torch.tensor(n - 1.0, dtype=torch.float64), torch.tensor(L - 1.0, dtype=torch.float64))
    terms = lc(hh, j.clamp(max=hh)) + lc(rest, (L - 1 - j).clamp(min=0).minimum(rest)) - total
    return torch.where(ok, terms.exp(), torch.zeros_like(terms)).sum(1).clamp(0, 1)


class ScoreFilter(Reweighter):
    """Online minibatch filtering by a fixed per-example score (module docstring).

    Subclasses implement ``pool_scores(ctx) -> [N_pool]`` (higher = keep); the config needs
    ``large_batch`` (null = ``⌈B/β⌉``) and ``max_large_batch``."""

    budget_use = "hard"  # keeps β of each scored batch

    @staticmethod
    def check_batch_config(cfg, run_cfg) -> None:
        lb, cap = cfg.large_batch, cfg.max_large_batch
        if cap is None or cap < 1:
            raise ConfigError(f"method.max_large_batch={cap!r} must be ≥ 1")
        if lb is not None and not 1 <= lb <= cap:
            raise ConfigError(f"method.large_batch={lb!r} must be in [1, method.max_large_batch={cap}] (or null)")
        if run_cfg is not None:
            StepExamples.of(run_cfg, ScoreFilter).check_large_batch(lb)

    def pool_scores(self, ctx: RunContext) -> Tensor:
        raise NotImplementedError

    def setup(self, ctx, optimizer):
        super().setup(ctx, optimizer)
        with ctx.cost.phase("select"):  # the offline scoring is selection cost, as a selector's
            self.scores = self.pool_scores(ctx).double().cpu()
        self.L, self.k = ctx.kept_count(self.cfg.large_batch, self.cfg.max_large_batch)
        self.weights = keep_probability(self.scores, self.L, self.k)
        self.weights = self.weights * len(self.weights) / self.weights.sum().clamp_min(1e-12)
        self.sampler = CyclicSampler(ctx.n_pool, ctx.generator)

    def step(self, ctx, step, pool_idx, target_idx):
        big = self.sampler.next(self.L)
        s = self.scores[big]
        keep = big[torch.topk(s, self.k).indices]
        loss = weighted_step(ctx, self.optimizer, ctx.pool.x[keep], ctx.pool.y[keep])
        # tensors, summed where they live and read once per eval window (no host read per step)
        return {"loss": loss, "n_kept": float(len(keep)), "kept_score_mean": self.scores[keep].mean(),
                "batch_score_mean": s.mean()}

    def effective_budget(self, ctx):
        """k/L: the fraction of every scored batch that is trained on."""
        return self.k / self.L

    def pool_weights(self, ctx):
        return self.weights.float()
