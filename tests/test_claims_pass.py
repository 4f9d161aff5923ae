"""scripts/claims.sh (``make claims``) end to end with a stand-in ``selbench`` on PATH (the real planner,
the real ``selbench-report``): every planned multirun is launched once, with its preset's overrides,
the joblib launcher and the seeds; the preset patterns are never expanded by the shell; a preset
that needs a dataset root is skipped and named; progress covers the whole pass; the verdicts are
printed; nothing matched or nothing run is an error, and a failed multirun is reported."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO
from selbench.analysis.claims_plan import rows

FAKE = r'''#!PYTHON
"""Stand-in for selbench -m: one ok record per method x seed, the overrides logged."""
import itertools, json, os, sys
args = dict(a.split("=", 1) for a in sys.argv[2:] if "=" in a)
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\n")
if os.environ.get("FAKE_FAIL") and os.environ["FAKE_FAIL"] in args.get("experiment", ""):
    sys.exit(1)
root = args["results_dir"]
for m, s in itertools.product(args["method"].split(","), args["seed"].split(",")):
    d = os.path.join(root, args["experiment"].replace("/", "_"), m, f"s{s}-{abs(hash(str(sorted(args.items())))) % 10**8}")
    os.makedirs(d, exist_ok=True)
    rec = {"method": m, "seed": int(s), "status": "ok", "experiment": args["experiment"], "dataset": "toy",
           "scenario": "x", "budget": 0.1, "budget_use": "hard", "scale": args["scale"],
           "metrics": {"test_accuracy": 0.5}, "config": {"seed": int(s), "experiment_name": args["experiment"]}}
    json.dump(rec, open(os.path.join(d, "record.json"), "w"))
'''


def _pass(tmp_path: Path, **env) -> subprocess.CompletedProcess:
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "selbench").write_text(FAKE.replace("PYTHON", sys.executable))
    (fake / "selbench").chmod(0o755)
    # the shell's cwd holds files a bare `*` would expand to (the bug: `for p in $PRESETS`)
    (tmp_path / "quickstart").write_text("")
    full = {**os.environ, "VENV": str(tmp_path / "no-venv"), "FAKE_LOG": str(tmp_path / "log.jsonl"),
            "PATH": os.pathsep.join([str(fake), str(Path(sys.executable).parent), os.environ["PATH"]]),
            "PROGRESS_S": "1", **env}
    return subprocess.run(["bash", str(REPO / "scripts" / "claims.sh"), str(tmp_path / "results")], cwd=tmp_path,
                          env=full, capture_output=True, text=True, timeout=600)


def _launched(tmp_path: Path) -> list[list[str]]:
    import json

    log = tmp_path / "log.jsonl"
    return [json.loads(ln) for ln in log.read_text().splitlines()] if log.exists() else []


def test_the_default_pass_runs_every_preset_and_prints_verdicts(tmp_path):
    out = _pass(tmp_path, SCALE="debug")
    assert out.returncode == 0, out.stderr[-3000:]
    plan = rows("0,1,2")
    runnable = [r for r in plan if not r["skip"]]
    launched = _launched(tmp_path)
    assert len(launched) == len(runnable) and len(runnable) >= 10
    for r, argv in zip(runnable, launched):
        assert argv[:2] == ["-m", f"experiment={r['preset']}"]
        assert f"method={r['methods']}" in argv and "seed=0,1,2" in argv and "scale=debug" in argv
        assert "launcher=joblib" in argv and "hydra.launcher.n_jobs=2" in argv
        assert all(o in argv for o in r["overrides"].split())
    skipped = [r for r in plan if r["skip"]]
    assert skipped and all(f"skip experiment={r['preset']}" in out.stderr for r in skipped)
    total = sum(r["jobs"] for r in plan)
    assert f"{len(plan)} multiruns, {total} runs" in out.stderr
    assert "claims.sh: progress " in out.stderr and " left" in out.stderr
    assert "# Claims verdict table" not in out.stdout and "| verdict (final) |" in out.stdout
    csv = (tmp_path / "results" / "claims" / "claims.csv").read_text()
    assert "holds" in csv or "does not hold" in csv
    times = (tmp_path / "results" / "claims" / "times.tsv").read_text().splitlines()
    assert len(times) == 1 + len(plan) and times[0].startswith("preset\toverrides")


def test_a_pattern_that_matches_nothing_fails_and_runs_nothing(tmp_path):
    out = _pass(tmp_path, PRESETS="no_such_preset/*")
    assert out.returncode == 2 and "no preset matches" in out.stderr
    assert not _launched(tmp_path)


def test_patterns_select_and_order_the_presets_and_a_failure_is_reported(tmp_path):
    out = _pass(tmp_path, PRESETS="spice/digits* bads/mnist_balance", SEEDS="0", FAKE_FAIL="mnist")
    assert out.returncode == 1, out.stderr[-2000:]
    exps = [a[1] for a in _launched(tmp_path)]
    assert exps == ["experiment=spice/digits_noise"] * 2 + ["experiment=bads/mnist_balance"] * 2
    assert "some runs failed" in out.stderr and "too few seeds" in out.stdout  # 1 seed: never a verdict


def test_the_claims_doc_says_what_ran_how_long_and_what_was_not_reached(tmp_path):
    from selbench.analysis.claims_doc import write_doc

    out = _pass(tmp_path, PRESETS="spice/digits*", SEEDS="0,1,2")
    assert out.returncode == 0, out.stderr[-2000:]
    text = write_doc(tmp_path / "results", tmp_path / "claims.md", "make claims PRESETS=spice/digits*",
                     stopped="the pass was stopped at the deadline")
    assert (tmp_path / "claims.md").read_text() == text
    assert "Produced by `make claims PRESETS=spice/digits*` (scale=small, seeds 0,1,2" in text
    table = [ln for ln in text.splitlines() if ln.startswith("| `experiment=")]
    assert len(table) == len(rows("0,1,2"))
    spice = [ln for ln in table if "spice/digits_noise" in ln]  # a clean pool and the 40% noise of the conflict claim
    assert len(spice) == 2 and all(ln.endswith("| ok |") for ln in spice)
    assert "scenario.noise.rate=0.0` | 18 |" in spice[0] and "scenario.noise.rate=0.4` | 6 |" in spice[1]
    assert sum("not reached: the pass was stopped at the deadline" in ln for ln in table) == \
        sum(1 for r in rows("0,1,2") if not r["skip"] and r["preset"] != "spice/digits_noise")
    assert "| verdict (final) |" in text and "spice-random@spice/digits_noise" not in text  # ids live in the CSV
