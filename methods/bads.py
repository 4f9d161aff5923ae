"""BADS — Bayesian data point selection (SGLD-DPS).

Xu, Kim, Lee, Martinez, Hospedales, *A Bayesian Approach to Data Point Selection*,
NeurIPS 2024 (arXiv 2411.03768).  No official code exists; this follows the paper's
equations as summarised in ``docs/METHODS.md`` §1.

Model
-----
Pool ``D_t`` (``N_t`` examples), target ``D_m`` (``N_m``), per-example losses ``l``::

    p(θ | w, D_t) ∝ p(θ) · Π_i exp(-w_i · l(z_i^t; θ))          p(θ) Gaussian = weight decay
    p(D_m | θ)    ∝ Π_j exp(-l(z_j^m; θ))
    p(w)          ∝ exp(-(Σ_i w_i - ⌊N_t β⌋)² / 2σ²)              sparsity prior
    Σ_i w_i       ≈ Σ_{i∈B_t} w_i + (N_t - |B_t|) · w̄            w̄: mean of the last s_avg batch means (no grad)

Weights ``w_i = sigmoid(·)``: either a *weight network* (``weights=net``: one linear
layer on the backbone's detached penultimate embedding, optionally ⊕ one-hot label)
or one free logit per pool example (``weights=per_sample``).  ``w_hidden > 0`` puts
one ReLU layer in the weight net: a *linear* map of ``emb ⊕ onehot(y)`` is
``a·emb + b_y`` and cannot express whether the label agrees with the image (only a
per-label bias), so label-noise detection needs the hidden layer; the paper says
"linear + sigmoid" only for its MNIST runs.

Update (one joint SGLD step per iteration; no lookahead, no second order)::

    θ ← θ + η/2 ∇θ[log p(θ) − ρθt·N_t·mean_{B_t}(w_i l_i) − ρθm·N_m·mean_{B_m}(l_j)] + √η ε
    φ ← φ + η/2 ∇φ[log p(w(φ)) − ρwt·N_t·mean_{B_t}(w_i l_i)]                      + √η ε

``w`` is a constant in θ's step, ``l_i`` a constant in φ's step.

How the equations become code (each choice the paper leaves open is a knob)
--------------------------------------------------------------------------
- **θ step** = the runner's optimiser (its ``weight_decay`` is ``−∇log p(θ)``) on
  ``U_θ / Z_θ`` with ``U_θ = ρθt·N_t·mean(w·l) + ρθm·N_m·mean(l_m)``, then Gaussian
  noise is added to every parameter.  ``theta_norm``: ``total`` (default,
  ``Z_θ = N_t + N_m``, so the learning rate means what it means for plain training —
  the paper's "η = 1 with noise 1e-5", i.e. an ordinary optimiser step plus noise) or
  ``none`` (``Z_θ = 1``, the raw log-posterior gradient; needs a tiny lr).
- **φ step** = SGD (or Adam) with ``lr_w`` on ``U_φ / Z_φ``,
  ``U_φ = ρwt·N_t·mean(w·l) + P(w)``, plus noise.  ``w_norm``: ``mean`` (default,
  ``Z_φ = N_t``: the data term is a batch mean) | ``sum`` (``Z_φ = N_t/|B|``: each
  example's logit sees an O(1) gradient ``ρ·l_i + ∂P``, as in the METHODS.md
  calibration prototype) | ``none``.
- **prior normalisation** ``prior_norm`` with ``S̄ = (Σ_B w + (N_t−|B|)w̄)/N_t``:
  ``fraction`` (default, METHODS.md's "sane reading"): ``P = (S̄ − β)²/2σ²``;
  ``count`` (the paper's formula taken literally): ``P = (N_t·S̄ − ⌊N_t β⌋)²/2σ²``;
  ``per_example``: ``P = (N_t²/|B|)(S̄ − β)²/2σ²`` — with ``w_norm=sum`` each example's
  gradient is ``ρ·l_i + (S̄ − β)/σ²``, the calibration note's form.
- **noise** ``noise``: ``fixed`` (default; std ``noise_std`` = 1e-5, the paper's "noise
  scale") | ``sgld`` (std ``√(2·lr·T/Z)``, the Langevin noise that matches the
  normalised step at temperature ``T``) | ``none``.  ``noise_w`` applies it to φ too.
- ``sum_estimate``: ``running`` (the paper's ``s_avg`` approximation) or ``exact``
  (per-sample weights only: the true ``Σ_i w_i``).
- ``theta_lr``: the paper gives BADS's backbone its own lr (CIFAR: 1e-4 against
  0.1 for the baselines); ``null`` keeps the runner's.
- ``init_weight``: initial ``w`` (sigmoid of the initial logit / of the weight net's
  bias); the paper does not say.  Default ``β``, the prior's mode: starting elsewhere
  (e.g. 0.5 with β = 0.2) makes a tight prior kick every weight into the sigmoid's
  flat tail on the first steps, where it stays.
- Stiffness: for ``weights=net`` the prior's loop gain per step is about
  ``lr_w·|B|·(β(1−β))²·∂²P/∂S̄²/(N_t·Z_φ)`` (``prior_gain`` in the log); above ~1/s_avg
  the running sum oscillates.  With ``prior_norm=fraction`` it shrinks as 1/N_t², so
  the paper's σ = 1e-5 is stable at its pool sizes (40k, β = 0.8, lr_w = 1e-4: ≈ 2e-3)
  but not on a few hundred examples: scaled-down presets widen σ instead.

Departures / implementation details
-----------------------------------
- The pool and target batches go through the model in *one* forward pass (as Mixing
  does with its batch), so BatchNorm sees pool and target together; the embedding
  the weight net reads is captured from that same pass with a hook on ``model.head``
  (no second forward); adapters whose model has no ``head`` fall back to ``embed``.
- ``pool_weights`` (scored at each eval) runs the weight net over the whole pool in
  chunks under ``no_grad`` with the model in eval mode (BatchNorm running stats),
  counted as forward passes.
- Posterior samples (``collect_samples``, off by default as in the paper): after
  ``burn_in`` (fraction of steps) every ``thin``-th iterate of θ (and of the weights)
  is accumulated; on the last training step the sample mean is copied into the model,
  so the runner's final evaluation scores the posterior-mean model and the reported
  weights are the posterior-mean weights.  The eval curve before that uses iterates.
"""
from __future__ import annotations

import math
import sys
from collections import deque
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selbench.methods.base import MethodConfig, Reweighter, RunContext, score_pool
from selbench.methods.registry import register_method
from selbench.core.errors import ConfigError


@dataclass
class BADSConfig(MethodConfig):
    weights: str = "net"                 # net | per_sample
    label_onehot: bool = True            # weight net input: embedding ⊕ one-hot (noisy) label
    w_hidden: int = 0                    # weight net: 0 = linear + sigmoid (paper); >0 = one ReLU hidden layer
    beta: Optional[float] = None         # fraction of the pool believed useful; null = budget.fraction
    sigma: float = 1.0e-5                # prior tightness (paper: 1e-5)
    prior_norm: str = "fraction"         # fraction | count | per_example
    s_avg: int = 10                      # steps in the running mean w̄
    sum_estimate: str = "running"        # running | exact (per_sample only)
    rho_theta_pool: float = 1.0          # ρθt
    rho_theta_target: float = 1.0        # ρθm
    rho_w_pool: float = 1.0              # ρwt
    theta_norm: str = "total"            # total | none
    theta_lr: Optional[float] = None     # backbone lr for BADS; null = runner.optimizer.lr
    lr_w: float = 1.0e-3                 # weight (φ) step size
    w_optimizer: str = "sgd"             # sgd | adam
    w_weight_decay: float = 0.0          # Gaussian prior on φ
    w_norm: str = "mean"                 # mean | sum | none
    init_weight: Optional[float] = None  # initial w; null = β (the prior's mode)
    noise: str = "fixed"                 # fixed | sgld | none
    noise_std: float = 1.0e-5
    temperature: float = 1.0             # for noise=sgld
    noise_w: bool = True                 # inject noise into φ as well
    collect_samples: bool = False        # keep thinned posterior samples, evaluate their mean
    burn_in: float = 0.5
    thin: int = 50
    pool_chunk: int = 1024               # chunk size for pool_weights over the whole pool


_CHOICES = {"weights": ("net", "per_sample"), "prior_norm": ("fraction", "count", "per_example"),
            "sum_estimate": ("running", "exact"), "theta_norm": ("total", "none"),
            "w_optimizer": ("sgd", "adam"), "w_norm": ("mean", "sum", "none"), "noise": ("fixed", "sgld", "none")}


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


@register_method("bads", config=BADSConfig)
class BADS(Reweighter):
    budget_use = "soft"  # β is the sparsity prior's mode
    target_in_update = True  # θ's potential has the target term
    # -- setup -------------------------------------------------------------------------------------
    def setup(self, ctx: RunContext, optimizer: torch.optim.Optimizer) -> None:
        super().setup(ctx, optimizer)
        c = self.cfg
        for key, allowed in _CHOICES.items():
            if getattr(c, key) not in allowed:
                raise ConfigError(f"method.{key}={getattr(c, key)!r} (choose from: {', '.join(allowed)})")
        if c.sigma <= 0 or c.s_avg < 1 or c.thin < 1 or not 0 <= c.burn_in < 1:
            raise ConfigError("method: need sigma > 0, s_avg ≥ 1, thin ≥ 1, 0 ≤ burn_in < 1")
        if c.init_weight is not None and not 0 < c.init_weight < 1:
            raise ConfigError(f"method.init_weight={c.init_weight} must be in (0, 1)")
        if c.sum_estimate == "exact" and c.weights != "per_sample":
            raise ConfigError("method.sum_estimate=exact needs method.weights=per_sample")
        self.beta = float(ctx.budget if c.beta is None else c.beta)
        if not 0 < self.beta <= 1:
            raise ConfigError(f"method.beta={self.beta} must be in (0, 1]")
        self.n_pool, self.n_target, self.num_classes = ctx.n_pool, len(ctx.target), ctx.num_classes
        self._swapped = False
        init = self.beta if c.init_weight is None else float(c.init_weight)
        dev = ctx.device
        dtype = next(ctx.model.parameters()).dtype
        if c.theta_lr is not None:
            for g in optimizer.param_groups:
                if "initial_lr" in g:
                    raise ConfigError("method.theta_lr cannot be combined with a learning-rate schedule "
                                      "(set runner.optimizer.lr instead)")
                g["lr"] = float(c.theta_lr)
        self.use_label = False
        if c.weights == "per_sample":
            self.logits = torch.full((ctx.n_pool,), _logit(init), device=dev, dtype=dtype,
                                     requires_grad=True)
            w_params = [self.logits]
            self.wnet = None
        else:
            # The one-hot label needs class labels; text examples have none, so there the weight
            # net reads the sequence embedding alone (the paper's NLG / LLM setting).
            self.use_label = bool(c.label_onehot) and ctx.adapter.has_class_labels
            d_in = int(ctx.adapter.embed_dim) + (ctx.num_classes if self.use_label else 0)
            if c.w_hidden < 0:
                raise ConfigError(f"method.w_hidden={c.w_hidden} must be ≥ 0")
            self.wnet = (nn.Linear(d_in, 1) if c.w_hidden == 0 else
                         nn.Sequential(nn.Linear(d_in, c.w_hidden), nn.ReLU(), nn.Linear(c.w_hidden, 1)))
            self.wnet.to(device=dev, dtype=dtype)
            with torch.no_grad():
                last = self.wnet if c.w_hidden == 0 else self.wnet[-1]
                last.bias.fill_(_logit(init))
            w_params = list(self.wnet.parameters())
            self.logits = None
        if c.w_optimizer == "sgd":
            self.opt_w = torch.optim.SGD(w_params, lr=c.lr_w, weight_decay=c.w_weight_decay)
        else:
            self.opt_w = torch.optim.Adam(w_params, lr=c.lr_w, weight_decay=c.w_weight_decay)
        B = ctx.batch_size
        p2 = {"fraction": 1.0, "count": float(ctx.n_pool) ** 2, "per_example": float(ctx.n_pool) ** 2 / B}[c.prior_norm]
        z_w = {"mean": ctx.n_pool, "sum": ctx.n_pool / B, "none": 1.0}[c.w_norm]
        self.prior_gain = None if c.weights == "per_sample" else c.lr_w * B * (init * (1 - init)) ** 2 * p2 / (c.sigma ** 2 * ctx.n_pool * z_w)
        if self.prior_gain is not None and self.prior_gain > 1.0 / c.s_avg:
            # gain ∝ 1/σ²: the σ that leaves a 10× margin below the oscillation threshold
            sigma_ok = c.sigma * math.sqrt(self.prior_gain * c.s_avg / 0.1)
            print(f"selbench: warning: bads prior gain {self.prior_gain:.3g} > 1/s_avg at N_pool={ctx.n_pool}: "
                  f"the weights' running sum will oscillate or collapse; widen method.sigma "
                  f"(≈{sigma_ok:.2g} leaves a 10× margin)", file=sys.stderr)
        self.w_hist: deque = deque(maxlen=int(c.s_avg))
        self.noise_gen = torch.Generator(device=dev).manual_seed(int(ctx.seed) * 7919 + 17)
        self.n_samples = 0
        self._theta_sum: dict[str, Tensor] | None = None
        self._w_sum: Tensor | None = None
        self._emb: Tensor | None = None
        head = getattr(ctx.model, "head", None)
        self._hook_ok = isinstance(head, nn.Module)
        if self._hook_ok:
            head.register_forward_pre_hook(self._capture)

    def _capture(self, module, inputs):
        if self._want_emb:
            self._emb = inputs[0].detach()

    _want_emb = False

    # -- the model -----------------------------------------------------------------------------
    def _features(self, emb: Tensor, y: Tensor) -> Tensor:
        if self.use_label:
            emb = torch.cat([emb, F.one_hot(y.to(emb.device), self.num_classes).to(emb.dtype)], 1)
        return emb

    def _weights_of(self, ctx: RunContext, idx: Tensor, emb: Tensor | None) -> Tensor:
        if self.logits is not None:
            return torch.sigmoid(self.logits[idx.to(self.logits.device)])
        return torch.sigmoid(self.wnet(self._features(emb, ctx.pool.y[idx])).squeeze(1))

    def _losses(self, ctx: RunContext, pool_idx: Tensor, target_idx: Tensor):
        """Per-example pool and target losses from one forward pass, and the pool embedding."""
        B = len(pool_idx)
        x = torch.cat([ctx.pool.x[pool_idx], ctx.target.x[target_idx]])
        y = torch.cat([ctx.pool.y[pool_idx], ctx.target.y[target_idx]])
        need_emb = self.wnet is not None
        self._want_emb, self._emb = need_emb and self._hook_ok, None
        try:
            losses = ctx.adapter.per_example_loss(x, y)
        finally:
            self._want_emb = False
        emb = None
        if need_emb:
            emb = self._emb[:B] if self._emb is not None else ctx.adapter.embed(ctx.pool.x[pool_idx])
        return losses[:B], losses[B:], emb

    def _running_mean(self, w: Tensor) -> float:
        return sum(self.w_hist) / len(self.w_hist) if self.w_hist else float(w.detach().mean())

    def _prior(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """``P(w) = −log p(w)`` (up to a constant) and ``S̄`` for the batch weights ``w``."""
        c, N, B = self.cfg, self.n_pool, len(w)
        if c.sum_estimate == "exact":
            all_w = torch.sigmoid(self.logits)
            s = all_w.sum()
        else:
            s = w.sum() + (N - B) * self._running_mean(w)
        s_bar = s / N
        if c.prior_norm == "fraction":
            p = (s_bar - self.beta) ** 2 / (2 * c.sigma ** 2)
        elif c.prior_norm == "count":
            p = (s - math.floor(N * self.beta)) ** 2 / (2 * c.sigma ** 2)
        else:  # per_example
            p = (N * N / B) * (s_bar - self.beta) ** 2 / (2 * c.sigma ** 2)
        return p, s_bar

    def objectives(self, ctx: RunContext, pool_idx: Tensor, target_idx: Tensor) -> dict:
        """The two normalised potentials of one step: ``loss_theta`` (grad → θ only) and
        ``loss_w`` (grad → φ only), with the pieces for logging and tests."""
        c = self.cfg
        l_t, l_m, emb = self._losses(ctx, pool_idx, target_idx)
        w = self._weights_of(ctx, pool_idx, emb)
        N, M, B = self.n_pool, self.n_target, len(pool_idx)
        u_theta = c.rho_theta_pool * N * (w.detach() * l_t).mean() + c.rho_theta_target * M * l_m.mean()
        z_theta = (N + M) if c.theta_norm == "total" else 1.0
        prior, s_bar = self._prior(w)
        u_w = c.rho_w_pool * N * (w * l_t.detach()).mean() + prior
        z_w = {"mean": N, "sum": N / B, "none": 1.0}[c.w_norm]
        return {"loss_theta": u_theta / z_theta, "loss_w": u_w / z_w, "z_theta": z_theta, "z_w": z_w,
                "w": w, "l_pool": l_t, "l_target": l_m, "prior": prior, "s_bar": s_bar}

    # -- SGLD ----------------------------------------------------------------------------------
    def _noise_std(self, lr: float, z: float) -> float:
        c = self.cfg
        if c.noise == "none":
            return 0.0
        if c.noise == "fixed":
            return float(c.noise_std)
        return math.sqrt(2.0 * lr * c.temperature / z)

    @torch.no_grad()
    def _add_noise(self, params, std: float) -> None:
        if std <= 0:
            return
        for p in params:
            p.add_(torch.randn(p.shape, generator=self.noise_gen, device=p.device, dtype=p.dtype), alpha=std)

    def step(self, ctx: RunContext, step: int, pool_idx: Tensor, target_idx: Tensor) -> dict[str, float]:
        o = self.objectives(ctx, pool_idx, target_idx)
        self.optimizer.zero_grad(set_to_none=True)
        self.opt_w.zero_grad(set_to_none=True)
        (o["loss_theta"] + o["loss_w"]).backward()  # disjoint parameters; cross terms are detached
        ctx.cost.count(backward=len(pool_idx) + len(target_idx), train=len(pool_idx) + len(target_idx))
        self.optimizer.step()
        self.opt_w.step()
        theta = [p for g in self.optimizer.param_groups for p in g["params"]]
        self._add_noise(theta, self._noise_std(self.optimizer.param_groups[0]["lr"], o["z_theta"]))
        if self.cfg.noise_w:
            w_params = [p for g in self.opt_w.param_groups for p in g["params"]]
            self._add_noise(w_params, self._noise_std(self.cfg.lr_w, o["z_w"]))
        w = o["w"].detach()
        self.w_hist.append(float(w.mean()))
        if self.cfg.collect_samples:
            self._collect(ctx, step)
        return {"loss": float(o["loss_theta"].detach()), "loss_target": float(o["l_target"].detach().mean()),
                "loss_pool_weighted": float((w * o["l_pool"].detach()).mean()), "w_batch_mean": float(w.mean()),
                "s_bar": float(o["s_bar"].detach()), "prior": float(o["prior"].detach()),
                **({} if self.logits is not None else {"prior_gain": self.prior_gain})}

    # -- posterior samples ---------------------------------------------------------------------
    def _collect(self, ctx: RunContext, step: int) -> None:
        if step > int(self.cfg.burn_in * ctx.steps) and (ctx.steps - step) % self.cfg.thin == 0:
            sd = ctx.model.state_dict()
            with torch.no_grad():
                if self._theta_sum is None:
                    self._theta_sum = {k: v.detach().double().clone() for k, v in sd.items() if v.is_floating_point()}
                    self._w_sum = self._all_weights(ctx).double()
                else:
                    for k in self._theta_sum:
                        self._theta_sum[k] += sd[k].double()
                    self._w_sum += self._all_weights(ctx).double()
            self.n_samples += 1
        if step == ctx.steps and self.n_samples > 0:  # hand the posterior mean to the final evaluation
            sd = ctx.model.state_dict()
            with torch.no_grad():
                for k, v in self._theta_sum.items():
                    sd[k].copy_((v / self.n_samples).to(sd[k].dtype))
            self._swapped = True

    # -- weights of the whole pool -------------------------------------------------------------
    @torch.no_grad()
    def _all_weights(self, ctx: RunContext) -> Tensor:
        if self.logits is not None:
            return torch.sigmoid(self.logits.detach()).cpu()
        return score_pool(ctx, lambda x, y: torch.sigmoid(self.wnet(self._features(ctx.adapter.embed(x), y)).squeeze(1)),
                          self.cfg.pool_chunk)

    def pool_weights(self, ctx: RunContext) -> Tensor:
        if self._swapped:  # after the last step of a run that collected samples: posterior-mean weights
            return (self._w_sum / self.n_samples).float()
        return self._all_weights(ctx)

    def effective_budget(self, ctx: RunContext) -> float:
        """Mean weight Σw/N: the fraction of the pool the weights amount to (the prior pulls it to β)."""
        return float(self.pool_weights(ctx).double().mean())

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        out = super().state_dict()
        out["noise_gen"] = self.noise_gen.get_state()
        out["w_hist"] = list(self.w_hist)
        out["_theta_sum"] = self._theta_sum
        out["_w_sum"] = self._w_sum
        return out

    def load_state_dict(self, state: dict) -> None:
        state = dict(state)
        self.noise_gen.set_state(state.pop("noise_gen"))
        self.w_hist = deque(state.pop("w_hist"), maxlen=int(self.cfg.s_avg))
        self._theta_sum, self._w_sum = state.pop("_theta_sum"), state.pop("_w_sum")
        state.pop("_emb", None)
        super().load_state_dict(state)
