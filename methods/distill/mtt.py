"""Matching training trajectories (MTT; Cazenavette et al., CVPR 2022) — the GPU distillation base.

Expert trajectories: ``n_experts`` ConvNet-D3s (instance norm, the evaluator's architecture)
trained from random init on the real pool by plain SGD (lr ``lr_teacher``), their parameters
saved after every epoch.  Each distillation iteration draws an expert and a start epoch
``s < max_start_epoch``, starts a student at ``θ*_s`` and takes ``syn_steps`` SGD steps on the
synthetic images with a *learnable* step size ``α`` (differentiably, ``create_graph``); the loss is
the normalised parameter distance

    L = ‖θ̂_{s+N} − θ*_{s+M}‖² / ‖θ*_s − θ*_{s+M}‖²        (M = ``expert_epochs``, N = ``syn_steps``)

optimised over the images (SGD, momentum 0.5) and ``α`` (lr ``lr_lr``).  ``T`` in
``mtt_distill(transform=…)`` is the identity for ``mtt`` and the palette quantiser for
``autopalette`` with ``base=mtt``, exactly as in ``methods/distill/dm.py``.

Experts are cached with ``ctx.cache`` (keyed by the pool, the architecture and the expert
schedule), so every run of a sweep reuses them.  Departures, all for lack of a GPU in CI:
defaults are CPU-sized (2 experts × 4 epochs, width 32, 50 iterations of 10 student steps; the paper: 100 experts × 50
epochs, 20–80 student steps) and no ZCA whitening or DSA augmentation, so the paper's image
learning rates (10²–10⁵ on ZCA'd CIFAR) do not transfer; ``lr_img`` is ours.  The presets'
``method.mtt.*`` overrides give the paper's schedule on a GPU (docs/methods/autopalette.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from selbench.core.errors import ConfigError
from selbench.core.grads import data_fingerprint
from selbench.methods.base import RunContext, Synthesis
from selbench.methods.common.synthesis import BudgetedSynthesizer, SynthConfig, iterations
from selbench.methods.common.feature_net import classifier_step, make_embedder
from selbench.methods.distill.dm import random_init, store_full_colour
from selbench.methods.registry import register_method


@dataclass
class MTTKnobs:
    """The trajectory-matching schedule (shared by ``mtt`` and ``autopalette`` with ``base=mtt``)."""

    n_experts: int = 2           # paper: 100
    expert_epochs_total: int = 4  # epochs each expert is trained (paper: 50)
    expert_epochs: int = 2       # M: target is M epochs past the start (paper CIFAR-10: 2)
    max_start_epoch: int = 2     # start epoch s ~ U{0 … max_start_epoch−1} (paper: 2–20)
    syn_steps: int = 10          # N student steps per iteration (paper: 20–80)
    batch_syn: int = 0           # synthetic images per student step; 0 = all
    lr_teacher: float = 0.01     # expert SGD lr and the initial learnable α (paper)
    lr_lr: float = 1.0e-5        # lr of α (paper, IPC 10)
    expert_batch: int = 256      # real images per expert step (paper: 256)
    width: int = 32              # ConvNet width (paper: 128); CPU-sized, like every default here
    depth: int = 3

    def check(self, prefix: str) -> None:
        for k in ("n_experts", "expert_epochs_total", "expert_epochs", "max_start_epoch", "syn_steps", "expert_batch",
                  "width", "depth"):
            if int(getattr(self, k)) < 1:
                raise ConfigError(f"{prefix}.{k}={getattr(self, k)} must be ≥ 1")
        if int(self.max_start_epoch) + int(self.expert_epochs) > int(self.expert_epochs_total):
            raise ConfigError(f"{prefix}.max_start_epoch + {prefix}.expert_epochs = "
                              f"{int(self.max_start_epoch) + int(self.expert_epochs)} exceeds "
                              f"{prefix}.expert_epochs_total={self.expert_epochs_total} (the saved trajectory)")


def expert_trajectories(ctx: RunContext, k: MTTKnobs) -> list[list[list[Tensor]]]:
    """``[expert][epoch 0…E] → parameter list``, trained on the pool and cached across a sweep."""
    shape = tuple(ctx.pool.x.shape[1:])
    key = {"pool": data_fingerprint(ctx.pool.x, ctx.pool.y), "arch": [int(k.width), int(k.depth), ctx.num_classes],
           "schedule": [int(k.n_experts), int(k.expert_epochs_total), float(k.lr_teacher), int(k.expert_batch)],
           "seed": int(ctx.seed)}

    def train() -> list:
        gen = torch.Generator().manual_seed(7919 * int(ctx.seed) + 3)
        out = []
        for _ in range(int(k.n_experts)):
            net = make_embedder(shape, int(k.width), int(k.depth), gen, ctx.device, ctx.num_classes)
            opt = torch.optim.SGD(net.parameters(), lr=float(k.lr_teacher))
            traj = [[p.detach().cpu().clone() for p in net.parameters()]]
            for _ in range(int(k.expert_epochs_total)):
                order = torch.randperm(ctx.n_pool, generator=gen)
                for i in range(0, ctx.n_pool, int(k.expert_batch)):
                    b = order[i:i + int(k.expert_batch)]
                    classifier_step(ctx, net, opt, ctx.pool.x[b], ctx.pool.y[b])
                traj.append([p.detach().cpu().clone() for p in net.parameters()])
            out.append(traj)
        return out

    return ctx.cache.get_or_compute("mtt_experts", key, train) if ctx.cache is not None else train()


def mtt_distill(ctx: RunContext, syn: Tensor, syn_y: Tensor, *, iters: int, lr_img: float, knobs: MTTKnobs,
                transform: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None,
                extra_params: list | None = None, lr_extra: float = 0.05, wd_extra: float = 0.0,
                on_step: Callable[[int, dict], None] | None = None) -> Tensor:
    """Optimise ``syn`` by trajectory matching; returns it detached.  Same contract as ``dm_distill``:
    ``on_step`` gets the matching loss under ``"dm_loss"`` so callers work with either base."""
    k = knobs
    experts = expert_trajectories(ctx, k)
    shape = tuple(syn.shape[1:])
    net = make_embedder(shape, int(k.width), int(k.depth), ctx.generator, ctx.device, ctx.num_classes)
    syn = syn.detach().to(ctx.device).requires_grad_(True)
    syn_y = syn_y.to(ctx.device)
    # α is learned directly, as the authors do (no clamp): learning log α instead scales α's steps by α²
    # (1e-4 at α = 0.01), which froze it in the side-by-side run (docs/methods/autopalette.md)
    syn_lr = torch.tensor(float(k.lr_teacher), device=ctx.device).requires_grad_(True)
    groups = [{"params": [syn], "lr": lr_img}, {"params": [syn_lr], "lr": float(k.lr_lr)}]
    if extra_params:
        groups.append({"params": list(extra_params), "lr": lr_extra, "weight_decay": wd_extra})
    opt = torch.optim.SGD(groups, momentum=0.5)
    n_batch = len(syn) if int(k.batch_syn) <= 0 else min(int(k.batch_syn), len(syn))
    for it in range(iters):
        e = experts[int(torch.randint(0, len(experts), (1,), generator=ctx.generator))]
        s = int(torch.randint(0, int(k.max_start_epoch), (1,), generator=ctx.generator))
        start = [p.to(ctx.device) for p in e[s]]
        target = [p.to(ctx.device) for p in e[s + int(k.expert_epochs)]]
        img, extra = transform(syn) if transform is not None else (syn, torch.zeros((), device=ctx.device))
        batches = [b.to(ctx.device) for b in student_batches(len(img), n_batch, int(k.syn_steps), ctx.generator)]
        loss_mtt = matching_loss(net, img, syn_y, start, target, syn_lr, batches)
        n_seen = sum(len(b) for b in batches)
        ctx.cost.count(forward=n_seen, backward=n_seen)
        opt.zero_grad(set_to_none=True)
        (loss_mtt + extra).backward()
        opt.step()
        if on_step is not None:
            on_step(it, {"dm_loss": float(loss_mtt.detach()), "extra_loss": float(extra.detach()),
                         "syn_lr": float(syn_lr.detach())})
    return syn.detach()


def student_batches(n: int, batch: int, steps: int, generator: torch.Generator) -> list[Tensor]:
    """The authors' batch order: a permutation of the synthetic set split into chunks of ``batch``,
    taken from the last chunk first; a fresh permutation when the chunks run out (epochs over the set)."""
    out: list[Tensor] = []
    chunks: list[Tensor] = []
    for _ in range(steps):
        if not chunks:
            chunks = list(torch.split(torch.randperm(n, generator=generator), batch))
        out.append(chunks.pop())
    return out


def matching_loss(net, img: Tensor, y: Tensor, start: list[Tensor], target: list[Tensor], lr: Tensor,
                  batches: list[Tensor]) -> Tensor:
    """``‖θ̂_N − θ*_{s+M}‖² / ‖θ*_s − θ*_{s+M}‖²`` after N differentiable SGD steps from ``start``
    on ``img[batches[i]]`` (``net`` supplies only the architecture; its own weights are unused)."""
    names = [n for n, _ in net.named_parameters()]
    params = [p.clone().requires_grad_(True) for p in start]
    for b in batches:
        p = dict(zip(names, params))
        logits = F.linear(functional_call(net, p, (img[b],)), p["head.weight"], p["head.bias"])
        grads = torch.autograd.grad(F.cross_entropy(logits, y[b]), params, create_graph=True)
        params = [q - lr * g for q, g in zip(params, grads)]
    num = sum(((q - t) ** 2).sum() for q, t in zip(params, target))
    den = sum(((a - t) ** 2).sum() for a, t in zip(start, target)).clamp_min(1e-12)
    return num / den


@dataclass
class MTTConfig(SynthConfig):
    iterations: int = 50         # paper: 5k; capped by scale.max_steps
    lr_img: float = 100.0        # ours (no ZCA); the paper's are for ZCA-whitened CIFAR
    mtt: MTTKnobs = field(default_factory=MTTKnobs)


@register_method("mtt", config=MTTConfig)
class TrajectoryMatching(BudgetedSynthesizer):
    """Full-colour MTT at ``ipc`` images per class (the byte budget exactly)."""

    modalities = ("vision",)

    @classmethod
    def check_config(cls, cfg, run_cfg) -> None:
        super().check_config(cfg, run_cfg)
        cfg.mtt.check("method.mtt")

    def synthesize(self, ctx: RunContext) -> Synthesis:
        cfg = self.cfg
        idx = random_init(ctx, int(cfg.ipc))
        n_iter = iterations(ctx, cfg.iterations)
        trace: dict = {}

        def on_step(it: int, stats: dict) -> None:
            trace.setdefault("first_match_loss", stats["dm_loss"])
            trace["last_match_loss"], trace["syn_lr"] = stats["dm_loss"], stats["syn_lr"]

        syn = mtt_distill(ctx, ctx.pool.x[idx].clone(), ctx.pool.y[idx], iters=n_iter, lr_img=float(cfg.lr_img),
                          knobs=cfg.mtt, on_step=on_step)
        return store_full_colour(ctx, int(cfg.ipc), syn, idx, iterations=n_iter,
                                 **{k_: round(v, 6) for k_, v in trace.items()})
