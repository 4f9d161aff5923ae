"""AutoPalette and the byte-budgeted synthesizers: at most K colours per stored image, byte
counts that are the sum of their parts and equal across methods, colour losses that spread
colour usage, and a synthesizer run that resumes from its checkpoint to the same result."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from conftest import TINY, compose_cfg
from selbench.methods.common import storage
from selbench.methods.distill.median_cut import median_cut, quantise_batch
from selbench.methods.distill.palette_losses import balance_loss, hard_colours_used, hard_usage_entropy, max_colour_loss
from selbench.methods.distill.palette_net import PaletteNet, colours_used
from selbench.runners.run.job import run_job

FAST = TINY + ["runner.threads=1", "runner.steps=20", "runner.eval_every=10"]


@pytest.mark.parametrize("k", [2, 4, 16])
def test_hard_quantised_images_have_at_most_k_colours(k):
    torch.manual_seed(0)
    x = torch.randn(6, 3, 12, 12)
    _, _, hard = PaletteNet(3, k).hard(x)
    assert (colours_used(hard) <= k).all()
    assert (colours_used(quantise_batch(x, k)) <= k).all()
    idx, pal = median_cut(x[0], k)
    assert idx.max() < k and pal.shape == (k, 3)


def test_autopalette_stores_at_most_k_colours_per_image_in_a_run(tmp_path):
    rec = run_job(compose_cfg(FAST + ["method=autopalette", "method.colours=4", "method.iterations=5",
                                      "method.init_embed_steps=5", "runner.checkpoint_every=0"], tmp_path))
    assert rec["status"] == "ok", rec.get("reason")
    sel = rec["selection"]
    assert sel["colours"] == 4 and 1 <= sel["colours_used_min"] and sel["colours_used_mean"] <= 4


def test_byte_count_is_the_sum_of_its_parts_and_budgets_are_equal():
    shape, classes = (3, 32, 32), 10
    full = storage.full_colour_cost(shape, classes)
    pal = storage.palette_cost(shape, classes, 64)
    assert full.total_bits == 8 * 3 * 32 * 32 + 4
    assert pal.index_bits == 32 * 32 * 6 and pal.palette_bits == 64 * 24 and pal.label_bits == 4
    assert storage.per_class_count(10, shape, classes, pal) == (10 * full.total_bits) // pal.total_bits == 31
    assert storage.palette_cost(shape, classes, 64, "paper").total_bits == full.pixel_bits // 4  # the paper's ×4
    budget = storage.budget_bits_per_class(10, shape, classes) * classes
    b = storage.breakdown([(310, pal)], budget)
    parts = b["pixel_bits"] + b["index_bits"] + b["palette_bits"] + b["label_bits"]
    assert parts == b["total_bits"] == 310 * pal.total_bits
    assert b["storage_bytes"] == math.ceil(parts / 8) and b["within_budget"]
    assert storage.breakdown([(100, full)], budget)["storage_bytes"] == b["budget_bytes"]


@pytest.mark.parametrize("method", ["random_real", "median_cut"])
def test_records_hold_the_byte_breakdown_within_the_same_budget(tmp_path, method):
    rec = run_job(compose_cfg(FAST + [f"method={method}", "method.ipc=4", "method.colours=4"
                                      if method == "median_cut" else "method.ipc=4"], tmp_path))
    assert rec["status"] == "ok", rec.get("reason")
    b = rec["selection"]["bytes"]
    assert b["total_bits"] == b["pixel_bits"] + b["index_bits"] + b["palette_bits"] + b["label_bits"]
    assert rec["selection"]["storage_bytes"] == b["storage_bytes"] == math.ceil(b["total_bits"] / 8)
    assert b["within_budget"] and b["budget_bytes"] == math.ceil(4 * (8 * 64 + 4) * 10 / 8)  # digits: 1×8×8
    assert rec["budget_use"] == "none"


def _fit_head(x: torch.Tensor, losses: bool, seed: int) -> tuple[PaletteNet, torch.Tensor]:
    torch.manual_seed(seed)
    net = PaletteNet(3, 16)
    m0 = net.assign(x).detach()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(40):
        m = net.assign(x)
        loss = max_colour_loss(m) + balance_loss(m) if losses else ((net.soft(x)[0] - x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net, m0


@pytest.mark.parametrize("seed", [0, 1])
def test_colour_losses_move_usage_toward_balance_on_a_fixed_batch(seed):
    """An untrained head collapses onto a few of its K = 16 colours; a few steps on L_maxcolour +
    L_balance spread the argmax usage (what storage sees) to nearly all of them, more than the same
    steps on reconstruction alone."""
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    net, m0 = _fit_head(x, True, seed)
    m1 = net.assign(x).detach()
    plain, _ = _fit_head(x, False, seed)
    m_plain = plain.assign(x).detach()
    assert hard_colours_used(m0).float().mean() <= 4
    assert hard_colours_used(m1).float().mean() >= 15
    assert hard_usage_entropy(m1) > hard_usage_entropy(m0) + 1.0
    assert hard_usage_entropy(m1) > hard_usage_entropy(m_plain) + 0.1


def test_a_synthesizer_run_resumes_from_its_checkpoint_to_the_same_result(tmp_path):
    args = FAST + ["method=autopalette", "method.iterations=4", "method.init_embed_steps=4", "method.colours=8",
                   "runner.checkpoint_every=10", "runner.keep_checkpoint=true", "+runner.eval_repeats=2"]
    full = run_job(compose_cfg(args, tmp_path))
    assert full["status"] == "ok", full.get("reason")
    (Path(full["run_dir"]) / "record.json").unlink()
    resumed = run_job(compose_cfg(args, tmp_path))
    assert resumed["resumed_from_step"] == 10
    assert resumed["metrics"] == full["metrics"] and resumed["evaluators"] == full["evaluators"]
    strip = lambda s: {k: v for k, v in s.items() if k != "quality"}  # noqa: E731
    assert strip(resumed["selection"]) == strip(full["selection"])
    assert full["evaluators"]["repeats"] == 2 and "test_accuracy_std" in full["metrics"]
    assert "synthesize" in full["cost"]["phases"] and "eval_repeats" in full["cost"]["phases"]
