"""The benchmark suite (``python -m bench``) at its tiniest size: it runs every section, writes its
JSON/CSV, computes finite ratios, reports a failing method as a row, and its harness-overhead
regression check can fail.  Nothing here asserts a timing: the speed goals live in the suite."""
from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # bench/ is a script folder at the repo root, not part of the package


def test_loglog_slope_recovers_a_power_law():
    from bench.common import loglog_slope
    assert loglog_slope([1, 2, 4, 8], [3 * x ** 2 for x in (1, 2, 4, 8)]) == pytest.approx(2.0)
    assert math.isnan(loglog_slope([10], [1.0]))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import bench.__main__ as bm
    from selbench.methods.base import Reweighter
    from selbench.methods.registry import register_method, unregister_method

    @register_method("bench_broken_tmp")
    class Broken(Reweighter):
        def step(self, ctx, step, pool_idx, target_idx):
            raise RuntimeError("broken on purpose")

    out = tmp_path_factory.mktemp("bench")
    try:
        rc = bm.main(["--size", "tiny", "--inproc", "--threads", "1", "--out", str(out), "--methods", "erm", "random",
                      "bads", "l2rw", "l2rw:meta_grad=double_backward", "blo", "bench_broken_tmp", "--scaling-methods", "erm", "l2rw",
                      "--check-overhead", "1e9"])
    finally:
        unregister_method("bench_broken_tmp")
    return rc, json.loads((out / "bench.json").read_text()), out


def test_every_section_is_written_with_its_csv(tiny):
    rc, res, out = tiny
    assert set(res) == {"meta", "overhead", "methods", "grads", "scaling"}
    for section in ("overhead", "methods", "grads", "scaling"):
        with open(out / f"{section}.csv") as f:
            rows = list(csv.DictReader(f))
        assert rows and "status" in rows[0] or section == "grads", section


def test_method_rows_have_finite_ratios_at_equal_examples_per_step(tiny):
    _, res, _ = tiny
    rows = {r["method"]: r for r in res["methods"]}
    assert {"erm", "random", "l2rw", "blo", "bench_broken_tmp"} <= set(rows)
    for name in ("erm", "random", "l2rw", "blo"):
        r = rows[name]
        assert r["status"] == "ok", (name, r.get("traceback"))
        assert r["examples_per_step"] == rows["erm"]["examples_per_step"] == res["meta"]["sizes"]["batch"]
        for k in ("ms_per_step", "erm_ms_per_step", "ms_per_example", "time_ratio"):
            assert math.isfinite(r[k]) and r[k] > 0, (name, k, r[k])
        assert r["mem_mb"] >= 0 and r["forward_per_step"] >= r["examples_per_step"]
    assert rows["l2rw"]["backward_per_step"] > rows["erm"]["backward_per_step"]  # the meta step shows
    r = rows["random"]  # a selector: its selection cost and payback
    assert r["setup_s"] >= 0 and math.isfinite(r["select_in_erm_steps"]) and math.isfinite(r["payback_epochs"])


def test_a_method_that_fails_is_a_row_not_a_crash(tiny):
    _, res, _ = tiny
    r = next(r for r in res["methods"] if r["method"] == "bench_broken_tmp")
    assert r["status"].startswith("failed: RuntimeError: broken on purpose")


def test_the_harness_overhead_ratio_is_computed_and_its_check_can_fail(tiny):
    import bench.__main__ as bm
    rc, res, _ = tiny
    ov = res["overhead"]
    assert ov["status"] == "ok" and math.isfinite(ov["speed_ratio"]) and ov["speed_ratio"] > 0
    assert math.isfinite(ov["sync_ratio"])
    assert rc == 1  # --check-overhead 1e9 cannot be met
    assert bm.overhead_check(res, 0.0)[0] and not bm.overhead_check({"overhead": {}}, 0.95)[0]


def test_gradient_throughput_and_scaling_slopes(tiny):
    _, res, _ = tiny
    mlp = next(r for r in res["grads"] if r["model"] == "mlp")
    for k in ("factored_per_s", "vmap_per_s", "loop_per_s"):
        assert isinstance(mlp[k], float) and mlp[k] > 0, (k, mlp[k])
    assert mlp["loop_x_loop"] == pytest.approx(1.0)
    rows = {r["method"]: r for r in res["scaling"]}
    for name in ("erm", "l2rw"):
        r = rows[name]
        assert r["status"] == "ok", r.get("traceback")
        assert len(r["pool_step_ms"]) == len(res["meta"]["sizes"]["pools"])
        assert math.isfinite(r["slope_pool_step_ms"]) and math.isfinite(r["slope_params_step_ms"])


def test_cpu_memory_is_the_peak_of_tensors_held_at_once_in_the_window():
    import torch

    from bench.memory import Memory
    held = [torch.ones(2**18)]  # 1 MiB allocated before the profile: its free is invisible to it

    def step(mib_a: int, mib_b: int):
        a = torch.ones(mib_a * 2**18)  # float32: 2**18 elements = 1 MiB
        b = torch.ones(mib_b * 2**18)
        del a, b
        held[0] = torch.ones(2**18)     # freed and reallocated every step, like a gradient

    with Memory("cpu") as mem:
        step(1, 1)                      # lead-in: outside the window
        with mem.window():
            step(4, 2)                  # 4 + 2 MiB at once (plus the 1 MiB reallocated afterwards)
            step(1, 1)
    assert mem.mb == pytest.approx(6.0, abs=0.05)
    with Memory("cpu") as mem:
        with mem.window():
            step(8, 0)
    assert mem.mb == pytest.approx(8.0, abs=0.05)


def test_language_modality_measures_text_methods_and_skips_image_ones(tmp_path):
    import bench.__main__ as bm
    rc = bm.main(["--size", "tiny", "--inproc", "--threads", "1", "--modality", "language", "--out", str(tmp_path),
                  "--methods", "erm", "dsir", "bads", "dm"])
    res = json.loads((tmp_path / "bench.json").read_text())
    rows = {r["method"]: r for r in res["methods"]}
    assert rc == 0 and res["meta"]["modality"] == "language" and set(res) == {"meta", "methods"}
    for name in ("erm", "dsir", "bads"):
        assert rows[name]["status"] == "ok", rows[name].get("traceback")
        assert rows[name]["examples_per_step"] == res["meta"]["sizes"]["batch"]
        assert math.isfinite(rows[name]["time_ratio"]) and rows[name]["mem_mb"] > 0
    assert rows["dm"]["status"].startswith("skipped: modalities")


def test_a_method_variant_is_measured_as_its_own_row_with_its_overrides(tiny):
    _, res, _ = tiny
    rows = {r["method"]: r for r in res["methods"]}
    r, base = rows["l2rw:meta_grad=double_backward"], rows["l2rw"]
    assert r["status"] == "ok", r.get("traceback")
    # the double backward re-propagates the pool batch through its own graph: more backward examples
    assert r["backward_per_step"] > base["backward_per_step"]
