"""MTT (trajectory matching) side by side with the authors' code, on CPU, same data, model, batch order, seed.

    git clone <the fetch tool's mirror of GeorgeCazenavette/mtt-distillation> /tmp/mtt_auth
    .venv/bin/python scripts/side_by_side/mtt.py --authors /tmp/mtt_auth --iters 10

Not part of the project's code or tests: it imports the authors' ``networks.ConvNet`` and
``reparam_module.ReparamModule`` from ``--authors`` and drives them with the per-iteration steps of
their ``distill.py`` main loop (flat parameter vector, ``syn_steps`` differentiable SGD steps on
chunks of a permutation of the synthetic set taken last-first, loss
``mse_sum(θ̂, θ*_{s+M}) / mse_sum(θ*_s, θ*_{s+M})`` with both divided by the parameter count, images
and the learnable step size by SGD with momentum 0.5).  Adapted, and only these: the data
(photo_patches 32×32 RGB instead of CIFAR), the device (CPU), the expert buffer (one trajectory
trained by ``methods/distill/mtt.py`` on that data, shared by both sides) and the random draws (the
expert, the start epoch and every permutation come from one ``torch.Generator`` in the same order).
Prints the per-iteration matching losses and the agreement after ``--iters`` iterations (JSON).
"""
from __future__ import annotations

import argparse
import json
import sys
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn as nn

from selbench.core.data import Split
from selbench.datasets.colour_sources import _patches
from selbench.methods.common.feature_net import make_embedder
from selbench.methods.common.synthesis import class_indices, random_pick
from selbench.methods.distill.mtt import MTTKnobs, expert_trajectories, mtt_distill


def load(per_class_pool: int):
    xtr, ytr, *_ = _patches(32, 8, 0.3)
    u8 = torch.from_numpy(xtr).to(torch.get_default_dtype()) / 255
    x = (u8 - u8.mean((0, 2, 3), keepdim=True)) / u8.std((0, 2, 3), keepdim=True)
    y = torch.from_numpy(ytr)
    keep = torch.cat([torch.nonzero(y == c).flatten()[:per_class_pool] for c in range(int(y.max()) + 1)])
    return Split(x[keep].clone(memory_format=torch.contiguous_format), y[keep]), int(y.max()) + 1


def authors_run(a, experts, syn0, y, num_classes, k: MTTKnobs, args, g):
    sys.path.insert(0, a)
    from networks import ConvNet
    from reparam_module import ReparamModule

    make_embedder((3, 32, 32), k.width, k.depth, g, torch.device("cpu"), num_classes)  # ours draws its architecture net here
    image_syn = syn0.clone().requires_grad_(True)
    syn_lr = torch.tensor(k.lr_teacher).requires_grad_(True)
    optimizer_img = torch.optim.SGD([image_syn], lr=args.lr_img, momentum=0.5)
    optimizer_lr = torch.optim.SGD([syn_lr], lr=k.lr_lr, momentum=0.5)
    criterion = nn.CrossEntropyLoss()
    batch_syn = len(syn0) if k.batch_syn <= 0 else k.batch_syn
    losses = []
    for _ in range(args.iters):
        student_net = ReparamModule(ConvNet(3, num_classes, k.width, k.depth, "relu", "instancenorm", "avgpooling",
                                            (32, 32)))
        student_net.train()
        num_params = sum([np.prod(p.size()) for p in (student_net.parameters())])
        expert_trajectory = experts[int(torch.randint(0, len(experts), (1,), generator=g))]
        start_epoch = int(torch.randint(0, k.max_start_epoch, (1,), generator=g))
        starting_params = expert_trajectory[start_epoch]
        target_params = torch.cat([p.data.reshape(-1) for p in expert_trajectory[start_epoch + k.expert_epochs]], 0)
        student_params = [torch.cat([p.data.reshape(-1) for p in starting_params], 0).requires_grad_(True)]
        starting_params = torch.cat([p.data.reshape(-1) for p in starting_params], 0)
        indices_chunks = []
        for step in range(k.syn_steps):
            if not indices_chunks:
                indices = torch.randperm(len(image_syn), generator=g)
                indices_chunks = list(torch.split(indices, batch_syn))
            these_indices = indices_chunks.pop()
            x = student_net(image_syn[these_indices], flat_param=student_params[-1])
            ce_loss = criterion(x, y[these_indices])
            grad = torch.autograd.grad(ce_loss, student_params[-1], create_graph=True)[0]
            student_params.append(student_params[-1] - syn_lr * grad)
        param_loss = torch.nn.functional.mse_loss(student_params[-1], target_params, reduction="sum")
        param_dist = torch.nn.functional.mse_loss(starting_params, target_params, reduction="sum")
        param_loss /= num_params
        param_dist /= num_params
        param_loss /= param_dist
        optimizer_img.zero_grad()
        optimizer_lr.zero_grad()
        param_loss.backward()
        optimizer_img.step()
        optimizer_lr.step()
        losses.append(float(param_loss.detach()))
    return image_syn.detach(), float(syn_lr.detach()), losses


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--authors", required=True)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--per-class-pool", type=int, default=40)
    ap.add_argument("--ipc", type=int, default=2)
    ap.add_argument("--batch-syn", dest="batch_syn", type=int, default=6)
    ap.add_argument("--lr-img", dest="lr_img", type=float, default=100.0)
    ap.add_argument("--lr-lr", dest="lr_lr", type=float, default=1e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--double", action="store_true", help="float64 on both sides")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.double:
        torch.set_default_dtype(torch.float64)
    pool, num_classes = load(args.per_class_pool)
    k = MTTKnobs(n_experts=2, expert_epochs_total=3, expert_epochs=2, max_start_epoch=1, syn_steps=8,
                 batch_syn=args.batch_syn, lr_lr=args.lr_lr, expert_batch=64, width=16, depth=3)
    g0 = torch.Generator().manual_seed(args.seed)
    losses_ours = []
    ctx = SimpleNamespace(pool=pool, num_classes=num_classes, device=torch.device("cpu"), generator=g0, seed=args.seed,
                          n_pool=len(pool.y), cache=None, cost=SimpleNamespace(count=lambda **_: None))
    experts = expert_trajectories(ctx, k)
    idx = torch.cat([random_pick(ctx, i, args.ipc) for i in class_indices(ctx)])
    syn0, y = pool.x[idx].clone(), pool.y[idx].clone()
    state = g0.get_state()
    g1 = torch.Generator()
    g1.set_state(state.clone())
    t_syn, t_lr, t_losses = authors_run(args.authors, experts, syn0, y, num_classes, k, args, g1)

    ctx.cache = SimpleNamespace(get_or_compute=lambda name, key, fn: experts)  # the same experts, no retraining
    trace = {}

    def on_step(it, st):
        losses_ours.append(st["dm_loss"])
        trace["lr"] = st["syn_lr"]

    o_syn = mtt_distill(ctx, syn0.clone(), y, iters=args.iters, lr_img=args.lr_img, knobs=k, on_step=on_step)
    rel = [abs(a - b) / abs(b) for a, b in zip(losses_ours, t_losses)]
    print(json.dumps({
        "iters": args.iters, "lr_lr": args.lr_lr, "batch_syn": args.batch_syn, "images": len(syn0),
        "loss_authors": [round(v, 6) for v in t_losses], "loss_ours": [round(v, 6) for v in losses_ours],
        "loss_first_rel_diff": rel[0], "loss_max_rel_diff": max(rel),
        "images_max_abs_diff": float((o_syn - t_syn).abs().max()), "images_max_move": float((t_syn - syn0).abs().max()),
        "syn_lr_authors": t_lr, "syn_lr_ours": trace["lr"],
    }, indent=1))


if __name__ == "__main__":
    main()
