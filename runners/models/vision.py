"""Vision models.  Each exposes ``features(x) -> [B, D]`` and ``head`` so the task
adapter can offer embeddings and a last-layer parameter subset uniformly."""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from selbench.core.errors import ConfigError
from selbench.core.registry import Registry

MODELS = Registry("model")
register_model = MODELS.register


def build_model(name: str, in_shape: tuple[int, ...], num_classes: int, **kwargs) -> nn.Module:
    return MODELS.lookup(name)(in_shape=tuple(in_shape), num_classes=num_classes, **kwargs)


class Classifier(nn.Module):
    """``body`` maps inputs to an embedding; ``head`` is the final linear layer."""

    def __init__(self, body: nn.Module, embed_dim: int, num_classes: int):
        super().__init__()
        self.body = body
        self.head = nn.Linear(embed_dim, num_classes)
        self.embed_dim = embed_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@register_model("mlp")
def mlp(in_shape, num_classes, hidden: int = 256, depth: int = 2, **_):
    layers, d = [nn.Flatten()], int(torch.tensor(in_shape).prod())
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    return Classifier(nn.Sequential(*layers), d, num_classes)


@register_model("lenet5")
def lenet5(in_shape, num_classes, **_):
    """LeNet-5 (LeCun et al. 1998) with ReLU and max-pooling, as in the BADS MNIST runs."""
    c, h, w = in_shape
    # 28x28 inputs are padded to LeNet's native 32x32; smaller ones (8x8 digits) keep
    # their size through both convolutions.
    pad1, pad2 = (2, 0) if h >= 28 else (2, 2)
    body = nn.Sequential(
        nn.Conv2d(c, 6, 5, padding=pad1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, padding=pad2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
    )
    with torch.no_grad():
        d = body(torch.zeros(1, *in_shape)).shape[1]
    body.extend([nn.Linear(d, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU()])
    return Classifier(body, 84, num_classes)


@register_model("convnet")
def convnet(in_shape, num_classes, width: int = 128, depth: int = 3, norm: str = "instance", **_):
    """The dataset-distillation evaluator ConvNet-D3 (Zhao & Bilen): [conv3×3–norm–ReLU–avgpool]×depth.

    ``norm=instance`` is GroupNorm with one group per channel and affine parameters,
    the 'instancenorm' of the DC/DM/MTT code.
    """
    c, h, w = in_shape
    layers = []
    for _ in range(depth):
        layers += [nn.Conv2d(c, width, 3, padding=1)]
        if norm == "instance":
            layers += [nn.GroupNorm(width, width, affine=True)]
        elif norm == "batch":
            layers += [nn.BatchNorm2d(width)]
        elif norm != "none":
            raise ConfigError(f"model.norm={norm!r} (choose from: instance, batch, none)")
        layers += [nn.ReLU(), nn.AvgPool2d(2)]
        c, h, w = width, h // 2, w // 2
    layers += [nn.Flatten()]
    return Classifier(nn.Sequential(*layers), width * h * w, num_classes)


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


@register_model("resnet32")
def resnet32(in_shape, num_classes, width: int = 16, **_):
    """CIFAR ResNet-32 (He et al. 2016, §4.2): 3 stages × 5 basic blocks, 16/32/64 channels.

    Uses a 1×1 projection shortcut (option B) where shapes change.
    """
    c = in_shape[0]
    layers = [nn.Conv2d(c, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    cin = width
    for stage, cout in enumerate([width, 2 * width, 4 * width]):
        for b in range(5):
            layers.append(_BasicBlock(cin, cout, 2 if (stage > 0 and b == 0) else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return Classifier(nn.Sequential(*layers), cin, num_classes)
