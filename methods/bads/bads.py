"""BADS — Bayesian data point selection (SGLD-DPS): Xu, Kim, Lee, Martinez, Hospedales,
NeurIPS 2024 (arXiv 2411.03768); no official code.  ``docs/methods/bads.md`` has the
equations, every knob and its default, the departures, the σ auto rule and the measured
findings with the commands behind them.  Per step: an optimiser step on θ's potential
``[ρθt·N_t·mean_B(w·l) + ρθm·N_m·mean_M(l_m)]/Z_θ`` plus noise on the trainable parameters, and
an SGD/Adam step on φ's ``[ρwt·N_t·mean_B(w·l) + (S̄ − β)²/2σ²]/Z_φ`` plus noise, where
``S̄ = (Σ_B w + (N_t−|B|)·w̄)/N_t`` and ``w = sigmoid(·)`` comes from a weight net on the detached
embedding (``features``, as BLO's scorer) or per-sample logits.  σ auto (``sigma: null``): the
prior is a feedback loop on ``S̄`` with per-step gain ``G = lr_w·p₂·r·‖∂S̄/∂φ‖²/(Z_φ·σ²)`` that
oscillates once ``G`` nears 1/s_avg; σ is set on step 1 to put ``G`` sigma_margin× below that
and only widened afterwards (σ, ``G`` and w̄ stay on the device, ``methods/bads/prior.py``: a step
reads nothing to the host).  Measured: tiny digits, σ = 1e-5 → G ≈ 40, every weight 1.0, σ auto
→ mean weight 0.195 (β = 0.2); text mixture, ``rho_theta_target = N_t/N_m`` → in-target weight
AUC 0.90 → 0.68 (3 seeds), so no target-balanced option.
"""
from __future__ import annotations

import dataclasses
import math
from contextlib import nullcontext
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Iterable, Optional

import torch
from torch import Tensor

from selbench.core.errors import ConfigError
from selbench.methods.bads.prior import PriorGain, WindowMean
from selbench.methods.base import MethodConfig, Reweighter, RunContext, RunSettings, score_pool
from selbench.methods.common.choice import Choice
from selbench.methods.common.embedding_scorer import EmbeddingScorer, ScorerFeatures
from selbench.methods.registry import register_method


def _choice(name: str, *values: str) -> type[Choice]:
    """A typed string knob (members named as their values, so OmegaConf rejects anything else)."""
    return Choice(name, [(v, v) for v in values], module=__name__, qualname=name)


Weights = _choice("Weights", "net", "per_sample")
Features = ScorerFeatures  # the weight net's input: the same choices (and the same scorer) as BLO's
PriorNorm = _choice("PriorNorm", "fraction", "count", "per_example")
SumEstimate = _choice("SumEstimate", "running", "exact")
ThetaNorm = _choice("ThetaNorm", "total", "none")
WOptimizer = _choice("WOptimizer", "sgd", "adam")
WNorm = _choice("WNorm", "mean", "sum", "none")
Noise = _choice("Noise", "fixed", "sgld", "none")


@dataclass
class BADSConfig(MethodConfig):
    weights: Weights = Weights.net        # net | per_sample
    features: Features = Features.embed_x_label  # embed | embed_label (paper) | embed_x_label; text: embed
    w_hidden: int = 0                    # weight net: 0 = linear + sigmoid (paper); >0 = one ReLU hidden layer
    beta: Optional[float] = None         # fraction of the pool believed useful; null = budget.fraction
    sigma: Optional[float] = None        # prior tightness; null = auto (loop gain 10× stable); paper: 1e-5
    sigma_margin: float = 10.0           # σ auto: the loop gain's margin below its oscillation threshold
    prior_norm: PriorNorm = PriorNorm.fraction
    s_avg: int = 10                      # steps in the running mean w̄
    sum_estimate: SumEstimate = SumEstimate.running   # exact needs weights=per_sample
    rho_theta_pool: float = 1.0          # ρθt
    rho_theta_target: float = 1.0        # ρθm
    rho_w_pool: float = 1.0              # ρwt
    theta_norm: ThetaNorm = ThetaNorm.total
    theta_lr: Optional[float] = None     # backbone lr for BADS; null = runner.optimizer.lr
    lr_w: float = 1.0e-3                 # weight (φ) step size
    w_optimizer: WOptimizer = WOptimizer.sgd
    w_weight_decay: float = 0.0          # Gaussian prior on φ
    w_norm: WNorm = WNorm.mean
    init_weight: Optional[float] = None  # initial w; null = β (the prior's mode)
    noise: Noise = Noise.fixed           # sgld needs runner.optimizer = plain SGD (no momentum)
    noise_std: float = 1.0e-5
    temperature: float = 1.0             # for noise=sgld
    noise_w: bool = True                 # inject noise into φ as well
    collect_samples: bool = False        # keep thinned posterior samples, evaluate their mean
    burn_in: float = 0.5
    thin: int = 50
    pool_chunk: int = 1024               # chunk size for pool_weights over the whole pool


_ENUMS = {"weights": Weights, "features": Features, "prior_norm": PriorNorm, "sum_estimate": SumEstimate,
          "theta_norm": ThetaNorm, "w_optimizer": WOptimizer, "w_norm": WNorm, "noise": Noise}
_RANGES = {"sigma": ("> 0 (or null)", lambda v: v is None or v > 0), "sigma_margin": ("≥ 1", lambda v: v >= 1),
           "s_avg": ("≥ 1", lambda v: v >= 1), "thin": ("≥ 1", lambda v: v >= 1),
           "w_hidden": ("≥ 0", lambda v: v >= 0), "pool_chunk": ("≥ 1", lambda v: v >= 1),
           "burn_in": ("in [0, 1)", lambda v: 0 <= v < 1), "beta": ("in (0, 1]", lambda v: v is None or 0 < v <= 1),
           "init_weight": ("in (0, 1)", lambda v: v is None or 0 < v < 1), "lr_w": ("> 0", lambda v: v > 0),
           "noise_std": ("≥ 0", lambda v: v >= 0), "temperature": ("> 0", lambda v: v > 0),
           "theta_lr": ("> 0 (or null)", lambda v: v is None or v > 0)}


def _checked(cfg: BADSConfig) -> BADSConfig:
    """The config with its string knobs as enum members (a config built in Python may hold plain
    strings), after the checks that need only the config itself."""
    updates = {}
    for key, enum in _ENUMS.items():
        try:
            updates[key] = enum(str(getattr(cfg, key)))
        except ValueError:
            raise ConfigError(f"method.{key}={str(getattr(cfg, key))!r} (choose from: "
                              f"{', '.join(e.value for e in enum)})") from None
    c = dataclasses.replace(cfg, **updates)
    for key, (allowed, ok) in _RANGES.items():
        if not ok(getattr(c, key)):
            raise ConfigError(f"method.{key}={getattr(c, key)} must be {allowed}")
    if c.sum_estimate == SumEstimate.exact and c.weights != Weights.per_sample:
        raise ConfigError("method.sum_estimate=exact needs method.weights=per_sample")
    if c.noise == Noise.sgld and c.noise_w and c.w_optimizer != WOptimizer.sgd:
        raise ConfigError("method.noise=sgld with method.noise_w=true needs method.w_optimizer=sgd "
                          "(Langevin noise √(2·lr·T/Z) matches a plain SGD step, not Adam's)")
    return c


def _sgld_refusal(optimizer: str, momentum: float) -> None:
    if optimizer != "sgd" or momentum != 0:
        what = f"name={optimizer}" if optimizer != "sgd" else f"momentum={momentum}"
        raise ConfigError(f"method.noise=sgld assumes plain SGD (its std √(2·lr·T/Z) is the Langevin noise of the "
                          f"step lr·∇U/Z), but runner.optimizer.{what} rescales the step; set "
                          f"runner.optimizer.name=sgd runner.optimizer.momentum=0, or use method.noise=fixed")


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


@register_method("bads", config=BADSConfig)
class BADS(Reweighter):
    budget_use = "soft"  # β is the sparsity prior's mode
    target_in_update = True  # θ's potential has the target term

    @classmethod
    def check_config(cls, cfg: Any, run_cfg: Any) -> None:
        c, run = _checked(cfg), RunSettings.of(run_cfg)
        if c.noise == Noise.sgld:
            _sgld_refusal(run.optimizer, run.momentum)
        if c.theta_lr is not None and run.schedule != "constant":
            raise ConfigError(f"method.theta_lr cannot be combined with runner.schedule={run.schedule}")

    def setup(self, ctx: RunContext, optimizer: torch.optim.Optimizer) -> None:
        super().setup(ctx, optimizer)
        self.cfg = c = _checked(self.cfg)
        if c.noise == Noise.sgld:  # check_config's rule, for an optimiser handed in directly
            _sgld_refusal("sgd" if type(optimizer) is torch.optim.SGD else type(optimizer).__name__.lower(),
                          max(float(g.get("momentum", 0.0) or 0.0) for g in optimizer.param_groups))
        self.beta = float(ctx.budget if c.beta is None else c.beta)  # budget.fraction ∈ (0, 1]: checked before launch
        self.n_pool, self.n_target, self.num_classes = ctx.n_pool, len(ctx.target), ctx.num_classes
        init = self.beta if c.init_weight is None else float(c.init_weight)
        dev, dtype = ctx.device, next(ctx.model.parameters()).dtype
        for g in optimizer.param_groups if c.theta_lr is not None else ():
            if "initial_lr" in g:
                raise ConfigError("method.theta_lr cannot be combined with a learning-rate schedule")
            g["lr"] = float(c.theta_lr)
        self.logits, self.wnet, self.features = None, None, None
        if c.weights == Weights.per_sample:
            self.logits = torch.full((ctx.n_pool,), _logit(init), device=dev, dtype=dtype, requires_grad=True)
            self._w_params = [self.logits]
        else:  # label-conditioned inputs need class labels; text has none (the paper's NLG/LLM: embedding alone)
            self.features = c.features if ctx.adapter.has_class_labels else Features.embed
            if self.features != c.features:
                ctx.warn(f"bads: method.features={c.features} needs class labels; this task has none, so the "
                         f"weight net reads the embedding alone (features=embed)")
            self.wnet = EmbeddingScorer(int(ctx.adapter.embed_dim), ctx.num_classes, self.features, c.w_hidden)
            self.wnet.to(device=dev, dtype=dtype)
            with torch.no_grad():  # output weights start at zero (EmbeddingScorer): every w starts at `init`
                (self.wnet.net if c.w_hidden == 0 else self.wnet.net[-1]).bias.fill_(_logit(init))
            self._w_params = list(self.wnet.parameters())
        opt_cls = torch.optim.SGD if c.w_optimizer == WOptimizer.sgd else torch.optim.Adam
        self.opt_w = opt_cls(self._w_params, lr=c.lr_w, weight_decay=c.w_weight_decay)
        B, N = ctx.batch_size, ctx.n_pool  # p₂ and Z_φ of the loop gain (module docstring)
        self._p2 = {PriorNorm.fraction: 1.0, PriorNorm.count: N * N, PriorNorm.per_example: N * N / B}[c.prior_norm]
        self._zw = {WNorm.mean: float(N), WNorm.sum: N / B, WNorm.none: 1.0}[c.w_norm]
        gain_limit = 1.0 if c.sum_estimate == SumEstimate.exact else 1.0 / c.s_avg  # no delay: ~1
        self.gain = PriorGain(c.sigma, c.sigma_margin, gain_limit, int(c.s_avg), dev)  # σ, G: on the device
        self._w_window, self._swapped = WindowMean(int(c.s_avg), dev), False  # w̄: recent batch means
        self.noise_gen = torch.Generator(device=dev).manual_seed(int(ctx.seed) * 7919 + 17)
        self.n_samples, self._theta_sum, self._w_sum = 0, None, None

    # σ, the last loop gain G and the window behind w̄ (device tensors; σ fixed: a number)
    sigma = property(lambda self: self.gain.sigma)
    prior_gain = property(lambda self: self.gain.gain)

    @property
    def w_hist(self) -> WindowMean:
        return self._w_window

    @w_hist.setter
    def w_hist(self, values: Iterable) -> None:
        self._w_window = WindowMean(self._w_window.size, self._w_window.buf.device, values)

    def _losses(self, ctx: RunContext, pool_idx: Tensor, target_idx: Tensor):
        """Per-example pool and target losses from one forward pass, and the pool embedding, which
        the adapter captures from that pass (``capture_embedding``: the input of a vision model's
        ``head``; a language model's pooled final hidden state) — an extra ``embed`` pass of the
        pool batch only where it cannot (an adapter without the capture; a language model with
        active dropout, whose train-mode hidden state is not ``embed``'s)."""
        B = len(pool_idx)
        x = torch.cat([ctx.pool.x[pool_idx], ctx.target.x[target_idx]])
        y = torch.cat([ctx.pool.y[pool_idx], ctx.target.y[target_idx]])
        capture = getattr(ctx.adapter, "capture_embedding", None)
        with capture() if self.wnet is not None and capture else nullcontext(SimpleNamespace(value=None)) as cap:
            losses = ctx.adapter.per_example_loss(x, y)
        emb = cap.value[:B] if cap.value is not None else None
        if self.wnet is not None and emb is None:
            emb = ctx.adapter.embed(ctx.pool.x[pool_idx])
        return losses[:B], losses[B:], emb

    def _s_bar(self, w: Tensor) -> Tensor:
        """``S̄``: the estimate of the pool's mean weight (through the batch's weights ``w``)."""
        N, B = self.n_pool, len(w)
        if self.cfg.sum_estimate == SumEstimate.exact:
            return torch.sigmoid(self.logits).sum() / N
        w_bar = self._w_window.mean() if len(self._w_window) else w.detach().mean().double()  # float64
        return (w.sum() + ((N - B) * w_bar).to(w.dtype)) / N

    def _gain_times_sigma2(self, s_bar: Tensor) -> Optional[Tensor]:
        """``G·σ²``, the prior's loop gain (module docstring) times σ², from ``‖∂S̄/∂φ‖²`` (a float64
        device tensor; ``None`` without autograd)."""
        grad = torch.autograd.grad
        grads = grad(s_bar, self._w_params, retain_graph=True, allow_unused=True) if s_bar.requires_grad else ()
        sq = [g.double().pow(2).sum() for g in grads if g is not None]
        r = 1.0 if self.logits is not None else self.n_pool / self._batch
        return self.cfg.lr_w * self._p2 * r * sum(sq) / self._zw if sq else None

    def objectives(self, ctx: RunContext, pool_idx: Tensor, target_idx: Tensor) -> dict:
        """The normalised potentials ``loss_theta`` (grad → θ only) and ``loss_w`` (grad → φ only), and parts."""
        c = self.cfg
        l_t, l_m, emb = self._losses(ctx, pool_idx, target_idx)
        w = (torch.sigmoid(self.logits[pool_idx.to(self.logits.device)]) if self.logits is not None
             else torch.sigmoid(self.wnet(emb, ctx.pool.y[pool_idx])))
        N, M, B = self.n_pool, self.n_target, len(pool_idx)
        self._batch = B
        u_theta = c.rho_theta_pool * N * (w.detach() * l_t).mean() + c.rho_theta_target * M * l_m.mean()
        z_theta = (N + M) if c.theta_norm == ThetaNorm.total else 1.0
        s_bar = self._s_bar(w)
        self.gain.update(self._gain_times_sigma2(s_bar), self._step)
        dev = s_bar - self.beta  # P(w) = −log p(w) up to a constant, in the chosen normalisation
        prior = {PriorNorm.fraction: dev ** 2, PriorNorm.count: (N * s_bar - math.floor(N * self.beta)) ** 2,
                 PriorNorm.per_example: (N * N / B) * dev ** 2}[c.prior_norm] / self.gain.two_sigma2(dev)
        u_w = c.rho_w_pool * N * (w * l_t.detach()).mean() + prior
        return {"loss_theta": u_theta / z_theta, "loss_w": u_w / self._zw, "z_theta": z_theta, "z_w": self._zw,
                "w": w, "l_pool": l_t, "l_target": l_m, "prior": prior, "s_bar": s_bar,
                "prior_gain": self.prior_gain, "sigma": self.sigma}

    def _noise_std(self, lr: float, z: float) -> float:
        c = self.cfg
        if c.noise == Noise.sgld:
            return math.sqrt(2.0 * lr * c.temperature / z)
        return float(c.noise_std) if c.noise == Noise.fixed else 0.0

    @torch.no_grad()
    def _add_noise(self, params, std: float) -> None:
        for p in params if std > 0 else ():
            p.add_(torch.randn(p.shape, generator=self.noise_gen, device=p.device, dtype=p.dtype), alpha=std)

    _step = 0  # the step being taken (the gain warning says which one)

    def step(self, ctx: RunContext, step: int, pool_idx: Tensor, target_idx: Tensor) -> dict[str, float]:
        self._step = step
        o = self.objectives(ctx, pool_idx, target_idx)
        self.optimizer.zero_grad(set_to_none=True)
        self.opt_w.zero_grad(set_to_none=True)
        (o["loss_theta"] + o["loss_w"]).backward()  # disjoint parameters; cross terms are detached
        ctx.cost.count(backward=len(pool_idx) + len(target_idx), train=len(pool_idx) + len(target_idx))
        self.optimizer.step()
        self.opt_w.step()
        # θ's noise: trainable parameters only (frozen ones — a LoRA base model — stay bit-identical)
        theta = [p for g in self.optimizer.param_groups for p in g["params"] if p.requires_grad]
        self._add_noise(theta, self._noise_std(self.optimizer.param_groups[0]["lr"], o["z_theta"]))
        if self.cfg.noise_w:
            self._add_noise(self._w_params, self._noise_std(self.cfg.lr_w, o["z_w"]))
        w = o["w"].detach()
        self._w_window.append(w.mean())
        if step == 1:  # σ is measured here; later crossings are reported at the evaluation points
            self.gain.warn_if_over(ctx.warn, self.n_pool, len(pool_idx))
        if self.cfg.collect_samples:
            self._collect(ctx, step)
        return {"loss": o["loss_theta"].detach(), "loss_target": o["l_target"].detach().mean(),  # tensors: no sync
                "loss_pool_weighted": (w * o["l_pool"].detach()).mean(), "w_batch_mean": w.mean(),
                "s_bar": o["s_bar"].detach(), "prior": o["prior"].detach(),
                "prior_gain": self.prior_gain, "sigma": self.sigma}

    def _collect(self, ctx: RunContext, step: int) -> None:
        """Sum the thinned samples of the trainable parameters, floating buffers and pool weights;
        on the last step copy their mean into the model (the final evaluation scores it)."""
        state = {k: p for k, p in ctx.model.named_parameters() if p.requires_grad}
        state.update({k: b for k, b in ctx.model.named_buffers() if b.is_floating_point()})
        with torch.no_grad():
            if step > int(self.cfg.burn_in * ctx.steps) and (ctx.steps - step) % self.cfg.thin == 0:
                if self._theta_sum is None:
                    self._theta_sum = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in state.items()}
                for k in self._theta_sum:
                    self._theta_sum[k] += state[k].detach().double()
                w = self._all_weights(ctx).double()
                self._w_sum = w if self._w_sum is None else self._w_sum + w
                self.n_samples += 1
            if step == ctx.steps and self.n_samples > 0:
                for k, v in self._theta_sum.items():
                    state[k].copy_((v / self.n_samples).to(state[k].dtype))
                self._swapped = True

    @torch.no_grad()
    def _all_weights(self, ctx: RunContext) -> Tensor:
        if self.logits is not None:
            return torch.sigmoid(self.logits.detach()).cpu()
        return score_pool(ctx, lambda x, y: torch.sigmoid(self.wnet(ctx.adapter.embed(x), y)), self.cfg.pool_chunk)

    def pool_weights(self, ctx: RunContext) -> Tensor:  # the runner calls it at every evaluation point
        self.gain.warn_if_over(ctx.warn, self.n_pool, getattr(self, "_batch", ctx.batch_size))
        if self._swapped:  # after the last step of a run that collected samples: posterior-mean weights
            return (self._w_sum / self.n_samples).float()
        return self._all_weights(ctx)

    def effective_budget(self, ctx: RunContext) -> float:  # mean weight Σw/N (the prior pulls it to β)
        return float(self.pool_weights(ctx).double().mean())
    # checkpoints: Method.state_dict covers every piece (noise generator, w̄, φ, σ, the posterior sums)
