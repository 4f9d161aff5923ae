"""Paired per-seed differences and their bootstrap CI (analysis/paired.py), and the comparison tables'
paired Δ column: known answers, exact enumeration for tiny n, determinism, coverage."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from selbench.analysis.paired import EXACT_MAX, MIN_CI_SEEDS, bootstrap_ci, paired, per_seed
from test_claims import write_record


def test_constant_differences_give_a_degenerate_interval_at_that_value():
    p = paired({0: 71.0, 1: 55.0, 2: 90.0}, {0: 70.5, 1: 54.5, 2: 89.5})
    assert p.n == 3 and p.mean == pytest.approx(0.5)
    assert p.lo == pytest.approx(0.5) and p.hi == pytest.approx(0.5)
    assert p.excludes(0.0, ">") and not p.excludes(0.0, "<") and not p.excludes(0.5, ">")


def test_fewer_than_three_seeds_get_no_interval_and_never_exclude_a_bound():
    # the percentile bootstrap of (a, b) is little more than [a, b]: calling it a 95% CI would be pretence
    assert MIN_CI_SEEDS == 3
    lo, hi = bootstrap_ci([1.0, 3.0])
    assert np.isnan(lo) and np.isnan(hi)
    p = paired({0: 11.0, 1: 12.0}, {0: 1.0, 1: 2.0})  # +10 on both seeds: still no verdict from 2 seeds
    assert p.n == 2 and p.mean == pytest.approx(10.0) and not p.excludes(0.0, ">")
    assert p.text() == "+10.00 (2 seeds, no CI)"
    three = paired({0: 11.0, 1: 12.0, 2: 13.0}, {0: 1.0, 1: 2.0, 2: 3.0})
    assert three.excludes(0.0, ">") and three.text() == "+10.00 [+10.00, +10.00]"


@pytest.mark.parametrize("x", [[0.3, -1.2, 2.5], [1.0, 4.0, -2.0, 0.5], [3.0, 1.0, 4.0, 1.0, 5.0]])
def test_tiny_n_equals_a_direct_enumeration_of_every_resample(x):
    assert len(x) <= EXACT_MAX
    means = sorted(np.mean(r) for r in itertools.product(x, repeat=len(x)))
    assert len(means) == len(x) ** len(x)
    lo, hi = bootstrap_ci(x)
    assert lo == pytest.approx(np.quantile(means, 0.025)) and hi == pytest.approx(np.quantile(means, 0.975))


def test_monte_carlo_path_is_deterministic_and_close_to_a_large_reference():
    x = np.random.default_rng(3).normal(0.0, 1.0, size=12)
    assert len(x) > EXACT_MAX
    a, b = bootstrap_ci(x), bootstrap_ci(x)
    assert a == b  # seeded
    ref = bootstrap_ci(x, n_boot=400_000, seed=99)
    assert a[0] == pytest.approx(ref[0], abs=0.03) and a[1] == pytest.approx(ref[1], abs=0.03)
    assert bootstrap_ci(x, seed=1) != a  # the seed is used


def test_symmetric_noise_around_zero_is_covered():
    d = [-2.0, -1.0, 0.0, 1.0, 2.0, -0.5, 0.5, -1.5, 1.5]
    p = paired(dict(enumerate(d)))
    assert p.lo < 0 < p.hi and not p.excludes(0.0, ">") and not p.excludes(0.0, "<")


def test_coverage_of_a_known_mean_is_near_nominal():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(150):
        lo, hi = bootstrap_ci(rng.normal(1.0, 1.0, size=25), n_boot=3000, seed=int(rng.integers(1 << 30)))
        hits += lo <= 1.0 <= hi
    assert 0.85 <= hits / 150 <= 0.995


def test_one_seed_has_no_interval_and_says_so():
    p = paired({4: 80.0}, {4: 75.0})
    assert p.n == 1 and p.mean == 5.0 and np.isnan(p.lo) and np.isnan(p.hi)
    assert p.text() == "+5.00 (1 seed)" and not p.excludes(0.0, ">")


def test_only_seeds_present_on_both_sides_count_and_the_rest_are_named():
    p = paired({0: 1.0, 1: 2.0, 2: 3.0, 5: 99.0}, {0: 0.0, 1: 0.0, 2: 0.0, 7: -99.0, 8: float("nan")})
    assert p.n == 3 and p.seeds == (0, 1, 2) and p.mean == pytest.approx(2.0) and p.unpaired == 2
    assert p.text().endswith("(3 seeds paired, 2 unpaired left out)")
    assert paired({0: 1.0}, {1: 1.0}).text() == "— (no shared seeds)"


def test_ratio_and_per_seed_averaging():
    import pandas as pd

    p = paired({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0}, op="ratio")
    assert p.diffs == (2.0, 1.5)
    frame = pd.DataFrame({"seed": [0, 0, 1], "x": [1.0, 3.0, 5.0]})  # seed 0 run twice: one experiment
    assert per_seed(frame, "x") == {0: 2.0, 1: 5.0}


def test_comparison_tables_show_the_paired_delta_beside_mean_and_std(tmp_path):
    from selbench.analysis.comparison import comparison
    from selbench.analysis.comparison_wide import comparison_wide
    from selbench.analysis.records import load_runs

    base = {0: 50.0, 1: 70.0, 2: 90.0}  # seeds differ a lot; the method is +1 on every seed
    for s, a in base.items():
        write_record(tmp_path, "erm", s, a, experiment="x")
        write_record(tmp_path, "random", s, a + 1.0, experiment="x", budget_use="hard")
    write_record(tmp_path, "random", 3, 60.0, experiment="x", budget_use="hard")  # no erm on seed 3
    df = load_runs([tmp_path]).df
    t = comparison(df)
    row = t.data.set_index("method").loc["random"]
    assert row.paired_delta == pytest.approx(1.0) and row.paired_lo == pytest.approx(1.0)
    assert row.paired_seeds == 3 and row.unpaired_seeds == 1
    cols = list(t.text.columns)
    label = "Δ vs erm (paired, 95% CI)"
    # beside the final mean ± std, the mean at best validation and balanced accuracy
    assert cols.index(label) == cols.index("accuracy (%) final") + 3
    assert cols.index("accuracy (%) at best val") == cols.index("accuracy (%) final") + 1
    text = t.text.set_index("method")[label]
    assert text["random"] == "+1.00 [+1.00, +1.00] (3 seeds paired, 1 unpaired left out)" and text["erm"] == "—"
    # the unpaired difference of means would say something else entirely (seed 3 drags it down)
    assert row.test_accuracy_mean - t.data.set_index("method").loc["erm"].test_accuracy_mean < 0
    other = comparison(df, baseline="random").text.set_index("method")["Δ vs random (paired, 95% CI)"]
    assert other["erm"].startswith("-1.00 [-1.00, -1.00]") and other["random"] == "—"
    wide = comparison_wide(t).text.set_index("method")
    cell = [c for c in wide.columns if c not in ("avg rank",)][0]
    assert "Δ +1.00 [+1.00, +1.00]" in wide.loc["random", cell] and "Δ" not in wide.loc["erm", cell]
