"""Costs that do not depend on sweep order (issue 25 item 4): a run that reads a cached artifact is
charged what it cost to compute, beside what the run paid itself."""
import pytest

from conftest import TINY, compose_cfg
from selbench.runners.run.job import run_job

# gradient features behind a 400-step proxy warm-up dominate the selection; the budget is not part
# of the features' key, so two budgets share them
GRAD = TINY + ["method=grad_norm", "method.proxy_steps=400", "runner.steps=10", "runner.eval_every=10",
               "runner.threads=1"]


def _select(rec: dict) -> dict:
    return rec["cost"]["phases"]["select"]


@pytest.mark.usefixtures("one_thread")
def test_two_runs_reading_the_same_features_are_charged_alike_whichever_ran_first(tmp_path):
    charged = {}
    for order in ([0.1, 0.2], [0.2, 0.1]):
        root = tmp_path / "-".join(map(str, order))
        recs = [run_job(compose_cfg(GRAD + [f"budget.fraction={b}"], root)) for b in order]
        assert all(r["status"] == "ok" for r in recs), [r.get("reason") for r in recs]
        first, second = recs
        arts = [r["cost"]["shared_artifacts"] for r in recs]
        assert [a["name"] for a in arts[0]] == ["grad_features"] == [a["name"] for a in arts[1]]
        assert arts[0][0]["computed_here"] and not arts[1][0]["computed_here"]
        assert arts[0][0]["key"] == arts[1][0]["key"]
        # the reader is charged exactly what the artifact cost the run that computed it
        assert _select(first)["shared_s"] == 0 and _select(second)["shared_s"] == arts[0][0]["compute_s"]
        assert _select(second)["wall_s"] < 0.5 * _select(first)["wall_s"]  # it really did not recompute
        assert abs(_select(first)["charged_s"] - _select(second)["charged_s"]) <= 0.2 * _select(first)["charged_s"] + 0.1
        for b, r in zip(order, recs):
            s = _select(r)
            assert s["charged_s"] == pytest.approx(s["wall_s"] + s["shared_s"])
            charged.setdefault(b, []).append(s["charged_s"])
    for b, (a, c) in charged.items():  # computed in one sweep, read in the other: nearly the same charge
        assert abs(a - c) <= 0.3 * max(a, c) + 0.1, (b, a, c)
