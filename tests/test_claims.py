"""The claims verdict table (analysis/claims.py): verdicts computed from run records — a claim that
clearly holds, clearly fails, has no records, lacks the measured column, has one seed, or was
measured where the quantity means nothing (CPU memory) — and the verdict flips when the data does.
Records are written with the atomic record writer and read with the real reader."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO
from selbench.analysis.claims import FAILS, FEW_SEEDS, HOLDS, UNMEASURABLE, UNMEASURED, VERDICTS, judge
from selbench.analysis.claims_registry import CLAIMS, Claim
from selbench.analysis.records import load_runs
from selbench.core.io import atomic_write_json
from selbench.core.records import RECORD

USES = {"erm": "none", "target_only": "none", "duplicate_target": "none", "l2rw": "none", "mwnet": "none",
        "bads": "soft"}


#: the memorisation setting the registry judges the noise claims in (analysis/claims_settings.py: MEMORISE)
MEM = {"scenario": {"noise": {"rate": 0.5}, "pool_size": 2000, "target_per_class": 50}, "runner": {"eval_every": 100}}


def write_record(root: Path, method: str, seed: int, acc: float, experiment: str = "bads/denoise",
                 budget: float = 0.2, budget_use: str | None = None, wall_s: float = 10.0, peak_mb: float = 500.0,
                 cuda: bool = False, metrics: dict | None = None, quality: dict | None = None,
                 config: dict | None = None, scale: str = "small", status: str = "ok") -> dict:
    """One record with the fields the analysis reads (the runner's layout: record.json, written last)."""
    d = root / f"{experiment.replace('/', '_')}-{method}-b{budget}-s{seed}-{len(list(root.glob('*'))) if root.exists() else 0}"
    use = budget_use or USES.get(method, "hard")
    phase = {"wall_s": wall_s, "peak_rss_mb": 0.0 if cuda else peak_mb, "peak_cuda_mb": peak_mb if cuda else 0.0}
    rec = {"schema": 1, "method": method, "kind": "selector", "dataset": "toy", "scenario": "sym_noise", "model": "mlp",
           "seed": seed, "budget": budget, "budget_use": use, "scale": scale, "experiment": experiment,
           "status": status, "run_dir": str(d), "steps": 10, "warnings": [],
           "metrics": {"test_accuracy": acc / 100, "test_balanced_accuracy": acc / 100, **(metrics or {})},
           "selection": {"budget_use": use, "effective_budget": budget, "quality": quality or {}},
           "cost": {"phases": {"data": {"wall_s": 1.0, "peak_rss_mb": 100.0, "peak_cuda_mb": 0.0},
                               "train": phase}},
           "config": {"seed": seed, "experiment_name": experiment, "method": {"name": method},
                      **MEM, **(config or {})}}
    atomic_write_json(d / RECORD, rec)
    return rec


def _one(df, claim_id: str, claims=CLAIMS) -> pd.Series:
    (c,) = [c for c in claims if c.id == claim_id]
    rows = judge(df, [c])
    assert len(rows) == 1, rows
    return rows.iloc[0]


BASE = {0: 55.0, 1: 72.0, 2: 88.0}  # seeds differ far more than the methods do: only pairing sees it


def _noise_sweep(root: Path, mwnet_delta) -> pd.DataFrame:
    for s, a in BASE.items():
        write_record(root, "erm", s, a)
        write_record(root, "mwnet", s, a + mwnet_delta(s))
    return load_runs([root]).df


def test_claim_that_holds_on_every_seed_holds(tmp_path):
    row = _one(_noise_sweep(tmp_path, lambda s: 2.0 + 0.1 * s), "mwnet-noise")
    assert row.verdict == HOLDS, row.why
    assert row.estimate == pytest.approx(2.1) and row.ci_lo > 0 and row.paired_seeds == 3
    assert row.method_mean == pytest.approx(sum(BASE.values()) / 3 + 2.1) and row.versus == "erm"
    # the unpaired means overlap by far (std ≈ 16 points): only the pairing makes this decidable
    assert row.method_std > 10 and row.versus_std > 10


def test_the_verdict_flips_when_the_data_flips(tmp_path):
    row = _one(_noise_sweep(tmp_path / "a", lambda s: -2.0 - 0.1 * s), "mwnet-noise")
    assert row.verdict == FAILS and row.why.startswith("reversed") and row.ci_hi < 0
    row = _one(_noise_sweep(tmp_path / "b", lambda s: (-1.0, 0.5, 1.0)[s]), "mwnet-noise")
    assert row.verdict == FAILS and "includes 0" in row.why and row.ci_lo < 0 < row.ci_hi


def test_no_records_for_the_preset_is_not_measured(tmp_path):
    df = _noise_sweep(tmp_path, lambda s: 2.0)
    row = _one(df, "bads-nlg-loss")
    assert row.verdict == UNMEASURED and row.why == "no records for preset bads/nlg_domains"
    assert "experiment=bads/nlg_domains" in row.command and "method=bads,duplicate_target" in row.command
    assert _one(df, "bads-denoise80-blo@bads/denoise").why == (
        "no records for preset bads/denoise with scenario.noise.rate=0.8, model=mlp, scenario.pool_size=2000, "
        "scenario.target_per_class=50, runner.eval_every=100")
    assert _one(pd.DataFrame(), "mwnet-noise").verdict == UNMEASURED
    assert _one(df, "blo-noise").why == "no blo runs in preset bads/denoise"


def test_a_missing_rival_or_column_or_second_seed_is_named(tmp_path):
    for s, a in BASE.items():
        write_record(tmp_path, "bads", s, a + 1, experiment="bads/nlg_domains", metrics={"test_loss": 2.0})
        write_record(tmp_path, "duplicate_target", s, a, experiment="bads/nlg_domains", metrics={"test_loss": 2.5})
    clean = {"scenario": {"noise": {"rate": 0.0}}}  # SPICE's claims are judged on a clean pool
    write_record(tmp_path, "spice", 0, 80.0, experiment="spice/digits_noise", budget=0.1, config=clean)
    write_record(tmp_path, "random", 0, 70.0, experiment="spice/digits_noise", budget=0.1, config=clean)
    df = load_runs([tmp_path]).df
    bleu = _one(df, "bads-nlg-bleu")
    assert bleu.verdict == UNMEASURABLE and bleu.why == "the bads records have no `test_bleu`"
    loss = _one(df, "bads-nlg-loss")  # bads beats duplicate_target, but erm … random were never run
    assert loss.verdict == UNMEASURED and loss.why == "no erm runs in this setting"
    one = _one(df, "spice-random@spice/digits_noise")
    assert one.verdict == FEW_SEEDS and one.why.startswith("1 seed") and one.estimate == pytest.approx(10)
    assert pd.isna(one.ci_lo) and pd.isna(one.ci_hi)


def test_every_rival_must_be_beaten_and_the_failing_one_is_shown(tmp_path):
    rivals = ("blo", "l2rw", "mwnet", "erm", "target_only", "random", "duplicate_target")

    def sweep(root, random_delta):
        for s, a in BASE.items():
            write_record(root, "bads", s, a + 3)
            for r in rivals:
                write_record(root, r, s, a + (random_delta if r == "random" else -s - 1))
        return _one(load_runs([root]).df, "bads-denoise50-best")

    row = sweep(tmp_path / "a", 4.0)
    assert row.verdict == FAILS and row.versus == "random" and "6 of 7 rivals beaten" in row.why
    row = sweep(tmp_path / "b", -1.0)  # random falls behind: bads beats all seven
    assert row.verdict == HOLDS and "against all 7 rivals" in row.why
    assert row.versus == "random" and row.estimate == pytest.approx(4.0)  # the weakest margin is shown


def test_cost_claims_use_the_records_cost_fields(tmp_path):
    def sweep(root, bads_wall, cuda):
        for s in BASE:
            write_record(root, "erm", s, 80.0, wall_s=10.0 + s, peak_mb=400.0, cuda=cuda)
            write_record(root, "bads", s, 80.0, wall_s=(10.0 + s) * bads_wall, peak_mb=600.0, cuda=cuda)
            write_record(root, "blo", s, 80.0, wall_s=(10.0 + s) * 2.5, peak_mb=1000.0, cuda=cuda)
        return load_runs([root]).df

    cpu = sweep(tmp_path / "cpu", 1.05, cuda=False)
    t = _one(cpu, "bads-cost-time@bads/denoise")
    assert t.verdict == HOLDS and t.estimate == pytest.approx(1.05) and t.versus == "erm"
    assert _one(cpu, "bads-cost-vs-blo@bads/denoise").verdict == HOLDS
    mem = _one(cpu, "bads-cost-mem@bads/denoise")
    assert mem.verdict == UNMEASURABLE and "CPU" in mem.why
    gpu = sweep(tmp_path / "gpu", 1.3, cuda=True)
    slow = _one(gpu, "bads-cost-time@bads/denoise")
    assert slow.verdict == FAILS  # 1.3× > 1.1×
    assert slow.diagnosis == ("method or implementation (these records cannot tell which): the mean ratio is 1.3 "
                              "against the claimed < 1.1; per-seed ratio vs erm: 1.3, 1.3, 1.3")
    m = _one(gpu, "bads-cost-mem@bads/denoise")
    assert m.verdict == HOLDS and m.estimate == pytest.approx(0.6)


def test_rival_budget_multiplier_pairs_with_the_rival_at_k_times_beta(tmp_path):
    for s in BASE:
        write_record(tmp_path, "dsdm", s, 50.0, experiment="dsdm/digits_noise", budget=0.1, metrics={"test_loss": 3.0 + s / 10})
        write_record(tmp_path, "random", s, 50.0, experiment="dsdm/digits_noise", budget=0.1, metrics={"test_loss": 3.5 + s / 10})
        write_record(tmp_path, "random", s, 50.0, experiment="dsdm/digits_noise", budget=0.2, metrics={"test_loss": 2.9 + s / 10})
    df = load_runs([tmp_path]).df
    assert _one(df, "dsdm-random@dsdm/digits_noise").verdict == HOLDS  # beats random at β
    two = _one(df, "dsdm-2x@dsdm/digits_noise")
    assert two.verdict == FAILS and two.estimate == pytest.approx(0.1) and two.why.startswith("reversed")


def test_registry_names_presets_and_methods_that_exist_or_are_announced():
    from selbench.methods.registry import registered

    presets = {p.relative_to(REPO / "conf" / "experiment").with_suffix("").as_posix()
               for p in (REPO / "conf" / "experiment").rglob("*.yaml")} | {"quickstart"}
    announced_presets = {"bads/nlg_domains", "bads/instruction", "dsdm/*"}  # issue 16 / issue 14, being added
    announced_methods = {"dsdm", "dsir", "classifier", "embed_sim"}
    names = set(registered())
    assert len({c.id for c in CLAIMS}) == len(CLAIMS)
    for c in CLAIMS:
        assert c.preset in presets or c.preset in announced_presets, c.id
        for m in (c.method, *c.versus):
            assert m in names or m in announced_methods, (c.id, m)
        assert c.direction in (">", "<") and c.op in ("diff", "ratio") and c.claim and c.paper
    assert {c.paper.split(" ")[0] for c in CLAIMS} == {"BADS", "L2RW", "SPICE", "DsDm", "AutoPalette"}


def test_one_command_writes_the_table_atomically(tmp_path, capsys):
    from selbench.analysis.report import main

    _noise_sweep(tmp_path / "r", lambda s: 2.0 + s)
    assert main(["--claims", str(tmp_path / "r"), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "claims.md").read_text()
    csv = pd.read_csv(tmp_path / "out" / "claims.csv")
    assert len(csv) >= len(CLAIMS) and set(csv.verdict) <= set(VERDICTS)
    assert csv.set_index("id").loc["mwnet-noise", "verdict"] == HOLDS
    assert "| **holds** |" in md and "no records for preset bads/nlg_domains" in md
    assert not list((tmp_path / "out").glob(".*.tmp"))
    assert "Claims" not in capsys.readouterr().err


def test_custom_claims_can_be_judged_without_the_registry(tmp_path):
    for s, a in BASE.items():
        write_record(tmp_path, "erm", s, a, experiment="quickstart")
        write_record(tmp_path, "random", s, a - 5, experiment="quickstart")
    c = Claim("x", "BADS", "erm beats random", "quickstart", "erm", ("random",))
    assert judge(load_runs([tmp_path]).df, [c]).iloc[0].verdict == HOLDS


def test_lds_claim_is_judged_from_the_lds_subset_sweeps(tmp_path):
    import numpy as np

    def sweep(root, sign):
        rng = np.random.default_rng(0)
        for seed in (0, 1, 2):
            for k in range(5):  # 5 random subsets × 4 targets: retrained loss follows −prediction (or not)
                pred = rng.normal(size=4)
                rec = write_record(root, "lds_subset", seed, 50.0, experiment="dsdm/digits_noise", budget=0.5,
                                   config={"method": {"name": "lds_subset", "subset": k, "n_models": 2, "lam": 0.1}})
                rec["selection"].update(lds_subset=k, lds_predicted=pred.tolist(),
                                        lds_actual_output=(sign * pred).tolist(),
                                        lds_actual_loss=(-sign * pred + 0.01 * rng.normal(size=4)).tolist())
                atomic_write_json(Path(rec["run_dir"]) / RECORD, rec)
        runs = load_runs([root])
        (c,) = [c for c in CLAIMS if c.id == "dsdm-lds"]
        return judge(runs.df, [c], runs.records).iloc[0]

    good = sweep(tmp_path / "good", 1.0)
    assert good.verdict == HOLDS and good.paired_seeds == 3 and good.estimate > 0.5, good.why
    bad = sweep(tmp_path / "bad", -1.0)
    assert bad.verdict == FAILS and bad.estimate < -0.5
    assert _one(pd.DataFrame(), "dsdm-lds").verdict == UNMEASURED


def test_budgeted_rows_name_their_budget(tmp_path):
    from selbench.analysis.claims_table import claims_table

    for s in BASE:
        for b in (0.1, 0.2):
            write_record(tmp_path, "dsdm", s, 50.0, experiment="dsdm/digits_noise", budget=b, metrics={"test_loss": 2.0})
            write_record(tmp_path, "random", s, 50.0, experiment="dsdm/digits_noise", budget=b, metrics={"test_loss": 3.0})
    (c,) = [c for c in CLAIMS if c.id == "dsdm-random@dsdm/digits_noise"]
    t = claims_table(load_runs([tmp_path]).df, [c])
    assert list(t.data.budget) == [0.1, 0.2] and (t.data.verdict == HOLDS).all()
    assert [s.split(" (")[0] for s in t.text["setting (scale)"]] == ["toy-sym_noise @ β=0.1", "toy-sym_noise @ β=0.2"]


def test_a_method_whose_every_run_failed_does_not_hold_with_the_reason(tmp_path):
    for s, a in BASE.items():
        write_record(tmp_path, "erm", s, a, experiment="bads/denoise")
        rec = write_record(tmp_path, "l2rw", s, a, experiment="bads/denoise", status="failed")
        rec.update(reason="loss is NaN at step 708", metrics={})
        atomic_write_json(Path(rec["run_dir"]) / RECORD, rec)
    c = Claim("x", "L2RW", "l2rw beats erm", "bads/denoise", "l2rw", ("erm",))
    row = judge(load_runs([tmp_path]).df, [c]).iloc[0]
    assert row.verdict == FAILS and row.why == "every l2rw run failed (3 of 3)"
    assert row.diagnosis == "implementation: all 3 l2rw runs failed (loss is NaN at step 708)"


def test_two_seeds_never_hold_however_large_the_gap(tmp_path):
    for s in (0, 1):
        write_record(tmp_path, "erm", s, 50.0, experiment="quickstart")
        write_record(tmp_path, "mwnet", s, 90.0, experiment="quickstart")
    c = Claim("x", "MW-Net", "mwnet beats erm", "quickstart", "mwnet", ("erm",))
    row = judge(load_runs([tmp_path]).df, [c]).iloc[0]
    assert row.verdict == FEW_SEEDS and row.estimate == pytest.approx(40.0) and pd.isna(row.ci_lo)
    assert row.why.startswith("2 seeds (per seed: +40, +40): a verdict needs ≥ 3")
    from selbench.analysis.claims_table import claims_table

    t = claims_table(load_runs([tmp_path]).df, [c]).text.iloc[0]
    assert t["final: paired estimate [95% CI]"] == "40 (n=2, no CI)" and t["verdict (final)"] == FEW_SEEDS


def test_log_dets_on_different_gradient_bases_are_not_compared(tmp_path):
    """spice-logdet: a log-det means something only on the gradients it was measured on (SPICE's
    pick-time proxy, LESS's last checkpoint, the static proxy): on different bases the row is
    "not measurable here", naming them; on one basis it is judged."""
    import json

    def sweep(root, bases):
        for s in BASE:
            for m, (basis, ld) in bases.items():
                rec = write_record(root, m, s, 80.0, experiment="spice/digits_noise", budget=0.1,
                                   config={"scenario": {"noise": {"rate": 0.0}}})
                rec["selection"].update(logdet=ld + s, logdet_basis=basis)
                (Path(rec["run_dir"]) / RECORD).write_text(json.dumps(rec))
        return load_runs([root]).df

    apart = _one(sweep(tmp_path / "a", {"spice": ("pick_time", 50.0), "less": ("last_checkpoint_normalised", 10.0),
                                        "grad_norm": ("static_proxy", 5.0)}), "spice-logdet")
    assert apart.verdict == UNMEASURABLE
    assert "pick_time for spice and last_checkpoint_normalised for less" in apart.why
    common = _one(sweep(tmp_path / "b", {"spice": ("static_proxy", 50.0), "less": ("static_proxy", 10.0),
                                         "grad_norm": ("static_proxy", 5.0)}), "spice-logdet")
    assert common.verdict == HOLDS


def test_a_palette_claim_with_an_untrained_palette_reads_mechanism_not_at_work(tmp_path):
    """AutoPalette's claims need a trained palette network: when its images use a handful of the K
    entries (CPU iteration counts) the diagnosis says the mechanism is not at work, with the numbers,
    and passes no judgement on the method; a trained palette is judged on the method."""
    import json

    def sweep(root, used):
        for s in BASE:
            for m, acc in (("autopalette", 30.0 + s), ("dm", 40.0 + s)):
                rec = write_record(root, m, s, acc, experiment="autopalette/colour_fashion_ipc10")
                if m == "autopalette":
                    rec["selection"].update(palette_entries_used_mean=used, colours=64, iterations=600)
                (Path(rec["run_dir"]) / RECORD).write_text(json.dumps(rec))
        return load_runs([root]).df

    idle = _one(sweep(tmp_path / "a", 1.5), "ap-dm@autopalette/colour_fashion_ipc10")
    assert idle.verdict == FAILS
    assert idle.diagnosis.startswith("setting: mechanism not at work — the palette is untrained here (1.5 of 64 "
                                     "palette entries used per image after 600 synthesis iterations")
    assert "method:" not in idle.diagnosis
    trained = _one(sweep(tmp_path / "b", 40.0), "ap-dm@autopalette/colour_fashion_ipc10")
    assert trained.diagnosis.startswith("setting: the palette is trained (40.0 of 64")
