"""How fast AutoPalette's palette losses alone (the authors' formulation; SGD lr 0.05, momentum 0.5,
wd 5e-4) spread colour usage on 24 fixed photo-patch images, with and without the confidence loss:
palette entries used (argmax) per image at 0/50/100/200/400 iterations.

    .venv/bin/python scripts/autopalette_usage_curve.py      (docs/methods/autopalette.md, "Measured here")
"""
import torch
torch.set_num_threads(1)
from selbench.datasets.colour_sources import _patches
from selbench.methods.common.synthesis import pixel_grid
from selbench.core.data import Split
from selbench.methods.distill.autopalette import AutoPaletteConfig, _seeded_palette_net, palette_loss  # noqa: E402
from selbench.methods.distill.palette_losses import hard_colours_used
xtr, ytr, *_ = _patches(32, 8, 0.3)
u8 = torch.from_numpy(xtr).float() / 255
x = (u8 - u8.mean((0, 2, 3), keepdim=True)) / u8.std((0, 2, 3), keepdim=True)
lo, hi = pixel_grid(Split(x, torch.from_numpy(ytr)))
g = torch.Generator().manual_seed(0)
syn = x[torch.randperm(len(x), generator=g)[:24]]
for eta in (1.0, 0.0):
    g = torch.Generator().manual_seed(0)
    net = _seeded_palette_net(3, 64, 256, g)
    cfg = AutoPaletteConfig(colours=64, confidence_weight=eta)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.5, weight_decay=5e-4)
    out = []
    for it in range(401):
        if it in (0, 50, 100, 200, 400):
            out.append((it, round(float(hard_colours_used(net.assign(syn).detach()).float().mean()), 2)))
        loss = palette_loss(net, syn, cfg, lo, hi, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    print("eta", eta, out, flush=True)
