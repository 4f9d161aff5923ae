"""The ConvNet embedder of distribution matching, and a feature net trained on the pool: shared by
the distillers (``methods/distill/``) and the coreset selectors' vision features
(``methods/coresets/``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selbench.methods.base import RunContext


class ConvNetEmbed(nn.Module):
    """ConvNet-D``depth`` (instance norm) without its head: ``[B, C, H, W] → [B, D]``."""

    def __init__(self, channels: int, hw: tuple[int, int], width: int = 128, depth: int = 3, num_classes: int = 0):
        super().__init__()
        layers, (h, w) = [], hw
        for _ in range(depth):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.GroupNorm(width, width, affine=True), nn.ReLU()]
            if h >= 2 and w >= 2:
                layers.append(nn.AvgPool2d(2))
                h, w = h // 2, w // 2
            channels = width
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.dim = width * h * w
        self.head = nn.Linear(self.dim, num_classes) if num_classes else None

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def make_embedder(x_shape: tuple[int, ...], width: int, depth: int, generator: torch.Generator,
                  device: torch.device, num_classes: int = 0) -> ConvNetEmbed:
    """A ConvNet whose initial weights come from ``generator`` (reproducible, independent of torch's global RNG)."""
    net = ConvNetEmbed(x_shape[0], tuple(x_shape[1:]), width, depth, num_classes)
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() > 1:
                bound = (6.0 / (p[0].numel() + p.shape[0] * p[0][0].numel())) ** 0.5
                p.copy_((torch.rand(p.shape, generator=generator) * 2 - 1) * bound)
            else:
                p.zero_()
        for m in net.modules():
            if isinstance(m, nn.GroupNorm):
                m.weight.data.fill_(1.0)
    return net.to(device)


def classifier_step(ctx: RunContext, net: ConvNetEmbed, opt: torch.optim.Optimizer, x: Tensor, y: Tensor) -> None:
    """One cross-entropy step of ``net`` (with its head) on real pool images, counted as cost."""
    loss = F.cross_entropy(net.head(net(x.to(ctx.device))), y.to(ctx.device))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    ctx.cost.count(forward=len(x), backward=len(x))


def trained_features(ctx: RunContext, x: Tensor, steps: int = 100, width: int = 32, batch: int = 64) -> Tensor:
    """Features of ``x`` from a small ConvNet trained ``steps`` steps on the pool (herding, k-center, colour init)."""
    shape = tuple(ctx.pool.x.shape[1:])
    net = make_embedder(shape, width, 3, ctx.generator, ctx.device, ctx.num_classes)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    for _ in range(int(steps)):
        i = torch.randint(0, ctx.n_pool, (min(batch, ctx.n_pool),), generator=ctx.generator)
        classifier_step(ctx, net, opt, ctx.pool.x[i], ctx.pool.y[i])
    with torch.no_grad():
        return torch.cat([net(x[i:i + 512].to(ctx.device)).cpu() for i in range(0, len(x), 512)])
