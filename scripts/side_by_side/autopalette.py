"""AutoPalette (DM base) side by side with the authors' code, on CPU, same data, model, batch order, seed.

    git clone <the fetch tool's mirror of KeViNYuAn0314/AutoPalette> /tmp/ap_auth
    .venv/bin/python scripts/side_by_side/autopalette.py --authors /tmp/ap_auth --iters 20

Not part of the project's code or tests: it *imports* the authors' modules from ``--authors``
(``distill/color_networks/color_cnn.py``: ``ColorCNN``; ``color_cnn_plus.py``: ``PixelSimLoss``;
``networks.py``: ``ConvNet``) and drives them with the per-iteration steps of their
``distill/dm_quant.py`` main loop (which itself needs wandb, expert buffers and CIFAR on a GPU, so it
cannot be called as is). Adapted, and only these: the data (photo_patches, 32×32 RGB, standardised
per channel like their CIFAR, so their un-normalise-then-PIL median cut gets this data's mean/std),
the device (CPU) and the random draws (every random number on both sides comes from one
``torch.Generator`` in the same order: the fresh embedder's weights, the real batches, the palette
loss's image subset and, patched into their ``np.random.choice``, the pixel sample).

``--quantiser ours`` swaps their PIL median cut for ours inside their loop, to separate the quantiser
from everything else.  Prints the agreement (JSON) after ``--iters`` iterations.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from types import SimpleNamespace

import numpy as np
import torch

from selbench.core.data import Split
from selbench.datasets.colour_sources import _patches
from selbench.methods.common.feature_net import make_embedder
from selbench.methods.common.synthesis import class_indices, pixel_grid, random_pick
from selbench.methods.distill.autopalette import AutoPaletteConfig, _seeded_palette_net, palette_transform
from selbench.methods.distill.dm import dm_distill
from selbench.methods.distill.palette_losses import median_cut_assignment


def load(per_class_pool: int):
    xtr, ytr, *_ = _patches(32, 8, 0.3)
    u8 = torch.from_numpy(xtr).to(torch.get_default_dtype()) / 255
    mean, std = u8.mean((0, 2, 3)), u8.std((0, 2, 3))
    x = (u8 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    y = torch.from_numpy(ytr)
    keep = torch.cat([torch.nonzero(y == c).flatten()[:per_class_pool] for c in range(int(y.max()) + 1)])
    x = x[keep].clone(memory_format=torch.contiguous_format)  # their ConvNet.embed uses .view
    return Split(x, y[keep]), int(y.max()) + 1, mean.tolist(), std.tolist()


def pil_index_map(images, num_colors, mean, std):
    """Their ``get_index_map`` with this data's mean/std in place of their hard-coded CIFAR ones."""
    from PIL import Image
    import torchvision.transforms as T
    image = copy.deepcopy(images.detach())
    n, c, h, w = image.shape
    for ch in range(c):
        image[:, ch] = image[:, ch] * std[ch] + mean[ch]
    image = image.clamp(0.0, 1.0)
    out = []
    for img in image:
        q = T.ToPILImage()(img).quantize(colors=num_colors, method=0).convert("RGB")
        _, inv = np.unique(np.array(q).reshape([h * w, c]), axis=0, return_inverse=True)
        out.append(torch.from_numpy(inv.reshape(1, h, w).astype(np.int64)))
    return torch.stack(out)


def authors_run(a, pool, num_classes, syn0, y, net0, args, mean, std, lo, hi, g):
    sys.path[:0] = [a, f"{a}/distill"]
    from color_networks.color_cnn import ColorCNN
    from color_networks.color_cnn_plus import PixelSimLoss
    from networks import ConvNet
    import color_networks.color_cnn_plus as ccp

    ccp.np.random.choice = lambda n, s, replace=False: torch.randperm(n, generator=g)[:s].numpy()  # our draws
    k = args.colours
    quant_model = ColorCNN("None", k, in_channel=3)
    for (_, p), q in zip(quant_model.color_mask.named_parameters(), net0.parameters()):
        p.data.copy_(q.data)
    image_syn = syn0.clone().requires_grad_(True)
    optimizer_img = torch.optim.SGD([image_syn], lr=args.lr_img, momentum=0.5)
    optimizer_quant = torch.optim.SGD(quant_model.color_mask.parameters(), lr=0.05, momentum=0.5, weight_decay=5e-4)
    per_class = class_indices(SimpleNamespace(pool=pool, num_classes=num_classes))
    ipc = len(syn0) // num_classes
    entropy = lambda x: (-x * torch.log(x + 1e-16)).sum(dim=1)  # noqa: E731
    for _ in range(args.iters):
        ours_net = make_embedder((3, 32, 32), args.width, 3, g, torch.device("cpu"))
        net = ConvNet(3, num_classes, args.width, 3, "relu", "instancenorm", "avgpooling", (32, 32))
        for p, q in zip(net.features.parameters(), ours_net.parameters()):
            p.data.copy_(q.data)
        for p in net.parameters():
            p.requires_grad = False
        real_idx = [per_class[c][torch.randint(0, len(per_class[c]), (args.batch_real,), generator=g)]
                    for c in range(num_classes)]
        optimizer_img.zero_grad()
        optimizer_quant.zero_grad()
        for c in range(num_classes):  # their per-class DM step, loss / num_classes
            img_real = pool.x[real_idx[c]]
            syn_images, prob, color_palette = quant_model(image_syn[c * ipc:(c + 1) * ipc], training=True)
            loss = torch.sum((net.embed(img_real).detach().mean(0) - net.embed(syn_images).mean(0)) ** 2) / num_classes
            loss.backward()
        sub_indices = torch.randperm(len(image_syn), generator=g)[:64]
        syn_images, prob, color_palette = quant_model(copy.deepcopy(image_syn.detach())[sub_indices], training=True)
        b, _, h, w = syn_images.shape
        color_appear_loss = -prob.view([b, -1, h * w]).max(dim=2)[0].mean()
        conf_loss = entropy(prob).mean()
        info_loss = -entropy(prob.mean(dim=[2, 3])).mean()
        sub = copy.deepcopy(image_syn.detach())[sub_indices]
        pixsim_loss = torch.zeros(())
        if args.pixel_weight:  # with γ = 0 their loss is still computed (times 0); skipped so the draws stay aligned
            if args.quantiser == "pil":
                index_map = pil_index_map(sub, k, mean, std)
            else:
                index_map = median_cut_assignment(sub, k, lo, hi).argmax(1, keepdim=True)
            m_ref = torch.zeros_like(prob).scatter(1, index_map, 1)
            pixsim_loss = PixelSimLoss(sample_ratio=0.3)(prob, m_ref)
        color_loss = color_appear_loss + args.conf * conf_loss + info_loss + args.pixel_weight * pixsim_loss
        optimizer_img.step()
        color_loss.backward()
        optimizer_quant.step()
    with torch.no_grad():
        img, prob, pal = quant_model(image_syn, training=False)
    return image_syn.detach(), prob.argmax(1), pal.squeeze(-1).squeeze(-1).permute(0, 2, 1), img, quant_model


def rand_index(a, b):
    """Share of pixel pairs on which two partitions agree (same cluster in both, or different in both)."""
    a, b = a.flatten(), b.flatten()
    sa, sb = a[:, None] == a[None], b[:, None] == b[None]
    return float((sa == sb).float().mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--authors", required=True)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--colours", type=int, default=64)
    ap.add_argument("--per-class-pool", type=int, default=100)
    ap.add_argument("--ipc", type=int, default=3)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--batch-real", dest="batch_real", type=int, default=32)
    ap.add_argument("--lr-img", dest="lr_img", type=float, default=1.0)
    ap.add_argument("--conf", type=float, default=1.0)
    ap.add_argument("--pixel-weight", dest="pixel_weight", type=float, default=3.0)
    ap.add_argument("--quantiser", choices=["pil", "ours"], default="pil")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--double", action="store_true", help="float64 on both sides: float-order noise ~1e-16, not 1e-7")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.double:
        torch.set_default_dtype(torch.float64)
    pool, num_classes, mean, std = load(args.per_class_pool)
    lo, hi = pixel_grid(pool)
    g0 = torch.Generator().manual_seed(args.seed)
    ctx = SimpleNamespace(pool=pool, num_classes=num_classes, device=torch.device("cpu"), generator=g0,
                          cost=SimpleNamespace(count=lambda **_: None))
    idx = torch.cat([random_pick(ctx, i, args.ipc) for i in class_indices(ctx)])
    syn0, y = pool.x[idx].clone(), pool.y[idx].clone()
    cfg = AutoPaletteConfig(colours=args.colours, confidence_weight=args.conf, pixel_weight=args.pixel_weight)
    net = _seeded_palette_net(3, args.colours, 256, g0)
    net0 = copy.deepcopy(net)
    state = g0.get_state()

    g_theirs = torch.Generator()
    g_theirs.set_state(state.clone())
    t_syn, t_idx, t_pal, t_img, t_net = authors_run(args.authors, pool, num_classes, syn0, y, net0, args, mean, std,
                                                    lo, hi, g_theirs)

    tr = palette_transform(net, cfg, lo, hi, g0, {})
    o_syn = dm_distill(ctx, syn0.clone(), y, iters=args.iters, lr_img=args.lr_img, batch_real=args.batch_real,
                       width=args.width, depth=3, transform=tr, extra_params=list(net.parameters()),
                       lr_extra=0.05, wd_extra=5e-4, class_mean=True)
    o_idx, o_pal, o_img = net.hard(o_syn)

    used = lambda ix: [len(torch.unique(i)) for i in ix]  # noqa: E731
    init_used = float(np.mean(used(net0.assign(syn0).argmax(1))))
    w_diff = max(float((p - q).detach().abs().max()) for p, q in zip(net.parameters(), t_net.color_mask.parameters()))
    moved = float((t_syn - syn0).abs().max())
    mc_ours = median_cut_assignment(syn0, args.colours, lo, hi).argmax(1)
    mc_pil = pil_index_map(syn0, args.colours, mean, std).squeeze(1)
    out = {
        "iters": args.iters, "quantiser_in_authors_loop": args.quantiser, "images": len(syn0),
        "pixels_max_abs_diff": float((o_syn - t_syn).abs().max()), "pixels_max_move_authors": moved, "pixels_max_move_ours": float((o_syn - syn0).abs().max()),
        "palette_net_weights_max_abs_diff": w_diff,
        "argmax_index_agreement": float((o_idx == t_idx).float().mean()),
        "stored_image_max_abs_diff": float((o_img - t_img).abs().max()),
        "colours_used_at_init": init_used, "colours_used_ours": float(np.mean(used(o_idx))), "colours_used_authors": float(np.mean(used(t_idx))),
        "median_cut_rand_index_ours_vs_pil_at_init": float(np.mean([rand_index(a, b) for a, b in zip(mc_ours, mc_pil)])),
        "median_cut_colours_ours_vs_pil": [float(np.mean(used(mc_ours))), float(np.mean(used(mc_pil)))],
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
