"""Online BLO: online bilevel data selection (Grangier et al., TMLR 2024), the BLO
baseline of the BADS paper; the shared lookahead machinery is in
:mod:`selbench.methods.bilevel.lookahead`. Equation, knobs, departures and measurements:
``docs/methods/online_blo.md``."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from selbench.core.errors import ConfigError
from selbench.core.modes import frozen_buffers
from selbench.core.sampling import CyclicSampler
from selbench.methods.base import MethodConfig, StepExamples, weighted_step
from selbench.methods.bilevel.lookahead import (Choice, LookaheadReweighter, MetaGrad, check_range, effective_sample_fraction,
                                        one_step_lookahead, param_dtype, pool_batch, step_stats)
from selbench.methods.common.embedding_scorer import EmbeddingScorer, ScorerFeatures
from selbench.methods.registry import register_method


class ScoreFeatures(Choice):
    """The embeddings the large batch is scored on."""

    cached = "cached"  # a pool-sized cache, refreshed by every meta batch (and every refresh_every steps)
    fresh = "fresh"    # embed the L examples at the current θ every step (L extra forwards per step)


class SelectionRule(Choice):
    """How ``k`` of the ``L`` scored examples are kept."""

    top = "top"        # the k highest scores
    sample = "sample"  # k without replacement, probability ∝ softmax(scores) (Gumbel top-k)


@dataclass
class BLOConfig(MethodConfig):
    weight_lr: float = 1e-3         # Adam on φ (BADS's weight-net lr for MNIST; 1e-4 in its CIFAR/NLG runs)
    weight_weight_decay: float = 0.0
    weight_hidden: int = 0          # 0 = linear scorer (as BADS's weight net)
    #: scorer input: embed | embed_label (BADS: embedding ⊕ one-hot) | embed_x_label (per-label linear)
    features: ScorerFeatures = ScorerFeatures.embed_x_label
    #: α of the virtual step; null = the main optimiser's current lr
    inner_lr: Optional[float] = None
    #: parameters the virtual step moves: all | trainable | head | last:<k> (+ lora, layers:<k> for text)
    lookahead_params: str = "all"
    #: top: keep the β·L highest scores of the large batch; sample: draw β·L without
    #: replacement with probability ∝ softmax(scores) (Gumbel top-k)
    selection: SelectionRule = SelectionRule.sample
    #: size L of the scored pool batch; null = ⌈batch_size / β⌉ (so β·L = batch_size), capped
    large_batch: Optional[int] = None
    max_large_batch: int = 2048
    #: also put the target batch into the real step (Grangier et al. train on the filtered pool only)
    include_target_in_step: bool = False
    score_chunk: int = 2000
    #: the large batch's embeddings: cached (filled once, each meta batch's fresh embeddings written
    #: back, so every pool example is re-embedded once per pass of the runner's pool sampler) | fresh
    score_features: ScoreFeatures = ScoreFeatures.cached
    #: with cached features: also re-embed the whole pool every this many steps (0 = never)
    refresh_every: int = 0
    #: the meta-gradient, exact either way: jvp (forward mode, first order) | double_backward
    #: (reverse over reverse, the papers') | auto (jvp when lookahead_params moves every parameter)
    meta_grad: MetaGrad = MetaGrad.auto


@register_method("blo", config=BLOConfig)
class OnlineBLO(LookaheadReweighter):
    """Online bilevel data selection (Grangier, Ablin, Hannun, TMLR 2024; the BLO baseline of BADS).

    A weight model ``s(z; φ)`` scores pool examples from their detached embedding and
    label (:class:`EmbeddingScorer`). Per iteration:

    1. **Meta step** on the runner's uniformly drawn pool batch ``B`` and target batch
       ``M``: soft weights ``w_i = B · softmax_i(s(z_i; φ))`` (mean 1 over the batch),
       ``θ'(φ) = θ − α ∇_θ (1/B) Σ_i w_i l_i(θ)``, and
       ``φ ← Adam(φ, ∇_φ (1/M) Σ_j l_j^m(θ'(φ)))``. The meta-gradient reaches φ only
       through the soft weights of the virtual step: ``∂L_m/∂s_i = (∂L_m/∂w_i)·∂w_i/∂s_i``
       with ``∂L_m/∂w_i = −(α/B) ∇L_m(θ')·∇l_i(θ)`` — the same gradient-alignment signal as
       L2RW, pooled over examples by the shared weight model.
    2. **Selection**: a large pool batch of ``L`` examples (own seeded cyclic sampler)
       is scored under no_grad and ``k = round(β·L)`` are kept (``β`` = budget):
       ``selection=sample`` (default) draws them without replacement with probability
       ∝ softmax(s) (Gumbel top-k), ``selection=top`` keeps the ``k`` highest scores.
    3. **Real step** of the runner's optimiser on the uniform mean loss of the kept
       examples (+ the target batch if ``include_target_in_step``).

    **Kept count.** ``k = round(β·L)`` with ``L = ⌈batch_size / β⌉`` (capped by
    ``max_large_batch`` and the pool), so ``k ≈ batch_size``. Under equal compute
    (``ctx.examples.matched``, the default) ``k`` is the runner's batch (minus the
    target batch if ``include_target_in_step``), whatever the caps did to ``L``: every
    method trains on as many examples per step. When that changes ``k`` (a capped ``L``,
    e.g. a small pool at a tiny β) the run says so through ``ctx.warn``. One rule for every
    batch filter: ``ctx.kept_count`` (``methods/base.py``).

    ``pool_weights``: ``N · softmax(s)`` over the whole pool (mean 1; same ranking as
    the top-k rule), embeddings in eval mode, chunked, forwards counted.

    Step diagnostics (curve ``train_<name>``): ``target_loss_lookahead`` (L_m(θ'(φ)) before
    the meta step), ``weight_ess`` (effective sample fraction of the meta batch's soft
    weights: 1 = the scorer is still uniform), ``n_kept`` (k).

    Departures (the paper's details are thin; see docs/methods/online_blo.md): Grangier
    et al. solve the bilevel problem with SOBA (a running estimate of the inverse-
    Hessian–vector product) rather than a one-step lookahead; here the meta-gradient is
    the one-step lookahead shared with L2RW and MW-Net, as the benchmark's method spec
    asks. The weight model is
    trained on a *uniform* pool batch (unbiased, every example can receive signal),
    while the main model trains on the *filtered* large batch (our reading of the
    paper's big-batch filtering; no official code was found to confirm it). Soft
    weights are a batch softmax.
    Default ``selection=sample``: it keeps the distribution the meta step optimises
    (softmax weights); top-k is scale-free, so from the first update it turns tiny
    score differences into a hard half-space of the embedding — measured here
    (Fashion-MNIST 50% noise, β = 0.5, 300 steps) it collapsed onto one class (test
    accuracy 0.10, chance) at weight lr 1e-3 and 1e-4, where sampling reached 0.71.
    Default ``features=embed_x_label`` (see :class:`EmbeddingScorer`): with BADS's
    ``embedding ⊕ one-hot`` the label enters additively and cannot flag a flipped
    label (measured weight AUC clean-vs-noisy 0.48 vs 0.92 for the per-label scorer).
    """
    budget_use = "hard"  # keeps β of each scored large batch

    @classmethod
    def check_config(cls, cfg, run_cfg) -> None:
        super().check_config(cfg, run_cfg)
        check_range("method.weight_lr", cfg.weight_lr, 0, open_lo=True)
        check_range("method.weight_weight_decay", cfg.weight_weight_decay, 0)
        check_range("method.weight_hidden", cfg.weight_hidden, 0)
        check_range("method.large_batch", cfg.large_batch, 1, optional=True)
        check_range("method.max_large_batch", cfg.max_large_batch, 1)
        check_range("method.refresh_every", cfg.refresh_every, 0)
        if cfg.large_batch is not None and cfg.large_batch > cfg.max_large_batch:
            raise ConfigError(f"method.large_batch={cfg.large_batch} exceeds method.max_large_batch="
                              f"{cfg.max_large_batch} (raise the cap or lower large_batch)")
        if run_cfg is not None:
            StepExamples.of(run_cfg, cls).check_large_batch(cfg.large_batch, with_target=cfg.include_target_in_step)

    def setup(self, ctx, optimizer):
        super().setup(ctx, optimizer)
        cfg = self.cfg
        # Label-conditioned features need class labels; text examples have none, so there the
        # scorer sees the sequence embedding alone (as in the BADS paper's NLG / LLM runs).
        features = cfg.features if ctx.adapter.has_class_labels else ScorerFeatures.embed
        if features != cfg.features:
            ctx.warn(f"blo: method.features={cfg.features} needs class labels; this task has none, so the "
                     f"scorer uses the embedding alone (features=embed)")
        self.scorer = EmbeddingScorer(ctx.adapter.embed_dim, ctx.num_classes, features, cfg.weight_hidden)
        self.scorer.to(ctx.device, param_dtype(ctx.model))
        self.w_opt = torch.optim.Adam(self.scorer.parameters(), lr=cfg.weight_lr, weight_decay=cfg.weight_weight_decay)
        self.L, self.k = ctx.kept_count(cfg.large_batch, cfg.max_large_batch, with_target=cfg.include_target_in_step)
        self.sampler = CyclicSampler(ctx.n_pool, ctx.generator)
        self.emb_cache = None  # [N, d] pool embeddings (score_features=cached), filled on the first step

    def _embed(self, ctx, x) -> Tensor:
        # scoring is not training: in train mode the embedding pass would otherwise fold
        # extra batches into the running statistics that evaluation uses
        with frozen_buffers(ctx.model):
            return ctx.adapter.embed(x)

    def _scores(self, ctx, x, y) -> Tensor:
        return self.scorer(self._embed(ctx, x), y)

    def _refresh_cache(self, ctx) -> None:
        """Embed the whole pool at the current θ (in chunks of L: no larger than a fresh scoring pass)."""
        n, c = ctx.n_pool, max(1, min(int(self.cfg.score_chunk), self.L))
        with torch.no_grad():
            self.emb_cache = torch.cat([self._embed(ctx, ctx.pool.x[i:i + c]) for i in range(0, n, c)])

    def _large_batch_scores(self, ctx, step, big) -> Tensor:
        yb = ctx.pool.y[big]
        if self.cfg.score_features == ScoreFeatures.fresh:
            return self._scores(ctx, ctx.pool.x[big], yb)
        every = int(self.cfg.refresh_every)
        if self.emb_cache is None or (every > 0 and step % every == 0):
            self._refresh_cache(ctx)
        return self.scorer(self.emb_cache[big.to(self.emb_cache.device)], yb)

    def step(self, ctx, step, pool_idx, target_idx):
        cfg = self.cfg
        x, y, xt, yt = self._batches(ctx, pool_idx, target_idx)
        lr = self._inner_lr()

        # 1. meta step on φ through soft weights in the virtual step; the meta batch's embedding comes
        # from the lookahead's own pool forward at θ where the adapter can capture it (else one more pass)
        phi, got = list(self.scorer.parameters()), {}
        capture = getattr(ctx.adapter, "capture_embedding", None)

        def soft_weights(_losses):
            cap = box.value if box is not None else None
            got["emb"] = self._embed(ctx, x) if cap is None else cap
            return len(x) * torch.softmax(self.scorer(got["emb"], y), 0)

        with capture() if capture is not None else nullcontext() as box:
            la = one_step_lookahead(ctx.adapter, x, y, xt, yt, soft_weights, lr, reduction="mean",
                                    params=cfg.lookahead_params, meta_grad=self.meta_grad)
        emb = got["emb"]
        self._meta_step(ctx, la, phi, self.w_opt)

        # 2. score a large pool batch, keep k
        big = self.sampler.next(self.L)
        with torch.no_grad():
            if self.emb_cache is not None:  # the meta batch's embeddings at this θ: a free refresh
                self.emb_cache[pool_idx.to(self.emb_cache.device)] = emb
            sb = self._large_batch_scores(ctx, step, big).float()
        if cfg.selection == SelectionRule.sample:  # noise from the run's (host) generator; no device sync
            u = torch.rand(len(sb), generator=ctx.generator).clamp_(1e-20, 1 - 1e-7)
            sb = sb - torch.log(-torch.log(u)).to(sb.device)  # Gumbel-top-k = sampling without replacement ∝ softmax
        top = torch.topk(sb, self.k).indices
        keep = big.to(top.device)[top].to(ctx.pool.x.device)

        # 3. real step on the kept examples
        xk, yk = pool_batch(ctx, keep)
        if cfg.include_target_in_step:
            xk, yk = torch.cat([xk, xt]), torch.cat([yk, yt])
        loss = weighted_step(ctx, self.optimizer, xk, yk)
        return step_stats(loss=loss, target_loss_lookahead=la.target_loss,
                          weight_ess=effective_sample_fraction(la.weights.detach()), n_kept=float(len(keep)))

    def effective_budget(self, ctx):
        """k/L: the fraction of every scored large batch that is trained on (β unless L was capped)."""
        return self.k / self.L

    def pool_weights(self, ctx):
        s = self._score_pool(ctx, lambda x, y: self._scores(ctx, x, y))
        return (len(s) * torch.softmax(s, 0)).float()
