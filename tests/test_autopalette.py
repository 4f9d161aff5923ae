"""AutoPalette and the byte-budgeted synthesizers: at most K colours per stored image, byte
counts that are the sum of their parts and equal across methods, colour losses that spread
colour usage and (as the authors compute them) train only the palette network, the confidence
loss, the affinity pixel-similarity loss against an independent reference, the stored palette
recomputed from the argmax, and a synthesizer run that resumes from its checkpoint to the same result."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from conftest import TINY, compose_cfg
from selbench.methods.common import storage
from selbench.methods.distill.autopalette import AutoPaletteConfig, palette_loss, palette_transform
from selbench.methods.distill.median_cut import median_cut, quantise_batch
from selbench.methods.distill.palette_losses import (affinity_loss, balance_loss, confidence_loss, hard_colours_used,
                                                     hard_usage_entropy, max_colour_loss, median_cut_assignment,
                                                     sample_pixels)
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


def test_autopalette_stores_at_most_k_colours_per_image_in_a_run_capped_under_scale_debug(tmp_path):
    cfg = compose_cfg(FAST + ["method=autopalette", "method.colours=4", "method.iterations=50",
                              "method.init_embed_steps=5", "runner.checkpoint_every=0", "scale=debug"], tmp_path)
    cap = int(cfg.scale.max_synth_iterations)
    assert cap < 50
    rec = run_job(cfg)
    assert rec["status"] == "ok", rec.get("reason")
    sel = rec["selection"]
    assert sel["colours"] == 4 and 1 <= sel["colours_used_min"] and sel["colours_used_mean"] <= 4
    assert sel["iterations"] == cap  # scale=debug caps a synthesizer's own iterations (seconds per run)


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
    assert hard_colours_used(m0).float().mean() <= 6
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


def _images(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 10, 10, generator=g), torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)


def test_colour_losses_leave_the_pixels_gradient_unchanged():
    """The authors compute the palette losses on a detached copy: the pixels' gradient is the base
    loss's alone, while the palette net does learn from them. Computed on the live images (the old
    behaviour) the same losses would move the pixels, which this test would see."""
    x, lo, hi = _images()
    torch.manual_seed(0)
    net = PaletteNet(3, 8, hidden=16)
    syn = x.clone().requires_grad_(True)
    transform = palette_transform(net, AutoPaletteConfig(colours=8), lo, hi, torch.Generator().manual_seed(1), {})
    soft, extra = transform(syn)
    base = (soft ** 2).sum()  # any base loss through the soft image
    (g_base,) = torch.autograd.grad(base, syn, retain_graph=True)
    (g_all,) = torch.autograd.grad(base + extra, syn, retain_graph=True)
    assert torch.equal(g_base, g_all)
    g_net = torch.autograd.grad(extra, list(net.parameters()))
    assert sum(float(g.abs().sum()) for g in g_net) > 0
    m_live = net.assign(syn)  # the same losses on the live images do reach the pixels
    live = max_colour_loss(m_live) + balance_loss(m_live) + confidence_loss(m_live)
    assert float(torch.autograd.grad(live, syn)[0].abs().sum()) > 0


def test_the_confidence_loss_is_present_with_the_authors_weight():
    """η = 1 (the authors' --conf_ratio default): the mean per-pixel assignment entropy is part of the palette loss."""
    x, lo, hi = _images()
    torch.manual_seed(0)
    net = PaletteNet(3, 8, hidden=16)
    assert AutoPaletteConfig().confidence_weight == 1.0
    only = AutoPaletteConfig(colours=8, max_colour_weight=0, balance_weight=0, pixel_weight=0)
    m = net.assign(x).detach().double()
    entropy = float(-(m * m.log()).sum(1).mean())  # independent: per pixel, then mean over pixels and images
    got = float(palette_loss(net, x, only, lo, hi, torch.Generator().manual_seed(0)).detach())
    assert got == pytest.approx(entropy, rel=1e-5) and entropy > 0.1
    only.confidence_weight = 0.0
    assert float(palette_loss(net, x, only, lo, hi, torch.Generator().manual_seed(0))) == 0.0


def test_the_stored_palette_is_the_mean_of_the_pixels_each_colour_owns():
    """hard(): argmax per pixel, then each palette entry = the mean of the pixels that chose it (not the soft mean)."""
    x, _, _ = _images()
    torch.manual_seed(0)
    net = PaletteNet(3, 4, hidden=16)
    idx, pal, img = net.hard(x)
    soft_pal = net.palette(x, net.assign(x))
    for i in range(len(x)):
        for k in range(4):
            owned = idx[i] == k
            if owned.any():
                assert torch.allclose(pal[i, k], x[i][:, owned].mean(1), atol=1e-6)
                assert torch.allclose(img[i][:, owned], pal[i, k].unsqueeze(1).expand(-1, int(owned.sum())))
    used = torch.nn.functional.one_hot(idx, 4).sum((1, 2)) > 0
    assert not torch.allclose(pal[used], soft_pal.detach()[used], atol=1e-3)


def _affinity_reference(m, ref, pixels):
    """The pixel-similarity loss written out per image and pixel pair (independent of affinity_loss)."""
    total = 0.0
    for i in range(m.shape[0]):
        f = m[i].flatten(1)[:, pixels[i]].double()
        t = ref[i].flatten(1)[:, pixels[i]].double()
        s = len(pixels[i])
        a_m = torch.tensor([[float(f[:, p] @ f[:, q]) for q in range(s)] for p in range(s)], dtype=torch.float64)
        a_t = torch.tensor([[float(t[:, p] @ t[:, q]) for q in range(s)] for p in range(s)], dtype=torch.float64)
        a_m, a_t = a_m / a_m.norm(dim=0, keepdim=True), a_t / a_t.norm(dim=0, keepdim=True)
        total += float(((a_m - a_t) ** 2).sum()) / s
    return total / m.shape[0]


def test_the_pixel_similarity_is_the_affinity_against_a_median_cut_of_the_current_images():
    x, lo, hi = _images(n=3)
    torch.manual_seed(0)
    m = PaletteNet(3, 8, hidden=16).assign(x).detach()
    ref = median_cut_assignment(x, 8, lo, hi)
    assert torch.equal(ref.argmax(1), torch.stack([median_cut(img, 8)[0] for img in x]))
    pixels = torch.stack([torch.randperm(100, generator=torch.Generator().manual_seed(i))[:30] for i in range(3)])
    assert float(affinity_loss(m, ref, pixels)) == pytest.approx(_affinity_reference(m, ref, pixels), rel=1e-5)
    perm = ref[:, torch.randperm(8)]  # which colour a cluster gets does not matter, only who shares one
    assert float(affinity_loss(perm, ref, pixels)) == pytest.approx(0.0, abs=1e-6)
    assert float(affinity_loss(m, ref, pixels)) > 0.01
    # palette_loss compares with the median cut of the images it is given now (every iteration), not of the initial ones
    net = PaletteNet(3, 8, hidden=16)
    cfg = AutoPaletteConfig(colours=8, max_colour_weight=0, balance_weight=0, confidence_weight=0)
    moved = x.clone()
    moved[:, :, :5] = 1 - moved[:, :, :5]
    g = torch.Generator().manual_seed(3)
    sub = moved[torch.randperm(3, generator=g)[:cfg.palette_batch]]
    px = sample_pixels(3, 100, cfg.pixel_sample, g)
    want = 3.0 * _affinity_reference(net.assign(sub).detach(), median_cut_assignment(sub, 8, lo, hi), px)
    assert float(palette_loss(net, moved, cfg, lo, hi, torch.Generator().manual_seed(3))) == pytest.approx(want, rel=1e-5)
