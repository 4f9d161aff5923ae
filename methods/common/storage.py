"""Byte accounting for synthesizers: what a synthetic set costs to store, and the budget.

**Budget semantics.**  A synthesizer's budget is a *byte* budget, set by ``ipc`` (its
config knob): the bytes of ``ipc`` real full-colour images per class, each 8 bits per
channel value plus its label (``⌈log2 num_classes⌉`` bits).  ``budget.fraction`` is not
used (``budget_use = "none"``).  Every synthesizer fills the same bytes *per class*:

- full colour (``random_real``, ``herding_real``, ``kcenter_real``, ``dm``): ``ipc`` images per class;
- K colours (``autopalette``, ``median_cut``): as many quantised images per class as fit.

**Honest accounting** (``accounting=honest``, the default) of one K-colour image of
``H×W`` pixels and ``C`` channels: ``H·W·⌈log2 K⌉`` index bits + ``K·C·8`` palette bits
+ the label bits.  **Paper accounting** (``accounting=paper``, AutoPalette's code): a
K-colour image costs ``C·H·W·8 / 2^(8−⌈log2 K⌉)`` bits (×4 images for K=64), no palette
and no label bits; it is recorded as a labelled option, never the default.

Language examples (the harness runs every method on text too): one real example costs
``T·⌈log2 V⌉`` bits (its token ids), and the budget is ``ipc`` examples in total (text
scenarios have no classes to count per).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

ACCOUNTINGS = ("honest", "paper")


class Accounting(str, Enum):
    """Typed knob (OmegaConf rejects other values before launch); members equal their strings."""

    honest = "honest"
    paper = "paper"

    def __str__(self) -> str:
        return str(self.value)


def index_bits(k: int) -> int:
    """Bits per stored index into ``k`` values: ``⌈log2 k⌉`` (0 for a single value)."""
    if k < 1:
        raise ValueError(f"need at least one value to index, got {k}")
    return math.ceil(math.log2(k)) if k > 1 else 0


@dataclass(frozen=True)
class Cost:
    """Bits of one stored example, by part."""

    pixel_bits: int = 0    # full-colour pixel values (8 bits each) or token ids
    index_bits: int = 0    # per-pixel palette indices
    palette_bits: int = 0  # the per-image palette (K × C × 8)
    label_bits: int = 0

    @property
    def total_bits(self) -> int:
        return self.pixel_bits + self.index_bits + self.palette_bits + self.label_bits


def full_colour_cost(shape: tuple[int, ...], num_classes: int) -> Cost:
    c, h, w = shape
    return Cost(pixel_bits=8 * c * h * w, label_bits=index_bits(max(num_classes, 1)))


def palette_cost(shape: tuple[int, ...], num_classes: int, colours: int, accounting: str = "honest") -> Cost:
    """One image stored as ``colours`` palette entries plus a per-pixel index."""
    c, h, w = shape
    b, accounting = index_bits(colours), str(accounting)
    if accounting == "paper":  # AutoPalette's count: the full image shrunk by 2^(8-b); no palette, no label
        return Cost(index_bits=(8 * c * h * w) // (2 ** max(8 - b, 0)))
    if accounting != "honest":
        raise ValueError(f"accounting={accounting!r} (choose from: {', '.join(ACCOUNTINGS)})")
    return Cost(index_bits=h * w * b, palette_bits=colours * c * 8, label_bits=index_bits(max(num_classes, 1)))


def token_cost(seq_len: int, vocab: int) -> Cost:
    return Cost(pixel_bits=seq_len * index_bits(max(vocab, 2)))


def budget_bits_per_class(ipc: int, shape: tuple[int, ...], num_classes: int) -> int:
    """The byte budget (in bits) of one class: ``ipc`` full-colour images with labels."""
    return ipc * full_colour_cost(shape, num_classes).total_bits


def per_class_count(ipc: int, shape: tuple[int, ...], num_classes: int, cost: Cost) -> int:
    """How many examples of ``cost`` fit one class's budget (at least 1)."""
    return max(1, budget_bits_per_class(ipc, shape, num_classes) // max(cost.total_bits, 1))


def breakdown(costs: list[tuple[int, Cost]], budget_bits: int, accounting: str = "honest") -> dict:
    """The record's byte breakdown of a synthetic set: ``(count, per-example cost)`` pairs.

    ``total_bits`` is the sum of the parts; ``storage_bytes = ⌈total_bits / 8⌉``.
    """
    parts = {k: sum(n * getattr(c, k) for n, c in costs)
             for k in ("pixel_bits", "index_bits", "palette_bits", "label_bits")}
    total = sum(parts.values())
    return {"accounting": str(accounting), **parts, "total_bits": total, "storage_bytes": math.ceil(total / 8),
            "budget_bytes": math.ceil(budget_bits / 8), "n_examples": sum(n for n, _ in costs),
            "within_budget": total <= budget_bits}
