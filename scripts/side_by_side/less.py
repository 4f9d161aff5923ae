"""LESS side by side with the authors' code, on CPU, same data, model, checkpoints and seed.

    git clone <the fetch tool's mirror of princeton-nlp/LESS> /tmp/less_src
    .venv/bin/python scripts/side_by_side/less.py --authors /tmp/less_src --seed 0

Not part of the project's code or tests: it imports the authors'
``less/data_selection/collect_grad_reps.py`` (``obtain_gradients_with_adam``, ``obtain_gradients``,
``prepare_optimizer_state``, ``merge_and_normalize_info``) and runs their ``matching.py`` as a script,
on the warm-up checkpoints that ``methods/gradients/less.py`` passes through (the same model states
and AdamW moments: the warm-up itself is the HF Trainer on their side).  Adapted, and only these:
the data (the instruction mixture's pool and its target tasks, tiny GPT, ``spice/instructions``
settings at a small pool), the device (CPU), the model call (``model(**batch).loss`` wraps the
tiny GPT's mean token loss of one example), the ``trak`` import (a stub: no projection on either
side, ``method.projection=none``, so their Rademacher projector is not used) and, in
``matching.py``, the benchmark table ``N_SUBTASKS`` (one entry for this target set's task count;
the target gradients are written task by task in equal numbers, the layout their reshape needs).
Prints the agreement (JSON): overlap of the top-k, Spearman of the scores, max |score difference|.
"""
from __future__ import annotations

import argparse
import json
import runpy
import sys
import tempfile
import types
from pathlib import Path

import torch
from omegaconf import OmegaConf
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from conftest import compose_cfg  # noqa: E402

from selbench.core.cost import CostTracker  # noqa: E402
from selbench.methods.gradients import less as L  # noqa: E402
from selbench.methods.registry import get_method  # noqa: E402
from selbench.runners.run.context import make_context  # noqa: E402
from selbench.runners.tasks import language  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--authors", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pool", type=int, default=400)
    a = ap.parse_args()
    here = Path(__file__).resolve().parent   # this file is less.py: keep it from shadowing their package
    sys.path[:] = [a.authors] + [p for p in sys.path if Path(p or ".").resolve() != here]
    stub = types.ModuleType("trak.projectors")   # their projector is not used (projection=none)
    stub.BasicProjector = stub.CudaProjector = stub.ProjectionType = None
    sys.modules.update({"trak": types.ModuleType("trak"), "trak.projectors": stub})
    from less.data_selection import collect_grad_reps as auth

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp())
    cfg = compose_cfg(["experiment=spice/instructions", "method=less", f"scenario.pool_size={a.pool}",
                       "scenario.target_per_domain=8", "method.projection=none", "method.proxy_steps=40",
                       "method.params=linears:head", f"seed={a.seed}", "runner.device=cpu", "progress=false"], tmp)
    torch.manual_seed(a.seed)
    cost = CostTracker()
    scen = language.build_scenario(cfg, a.seed)
    ad = language.build_adapter(cfg, scen, cost, torch.device("cpu"))
    ctx = make_context(cfg, scen, ad, cost, method_cls=get_method("less").cls, steps=10)
    method = get_method("less").cls(OmegaConf.to_object(cfg.method))

    # ours, capturing each checkpoint's model state and AdamW state as our moments are read
    ckpts, real = [], L.moments_of

    def spy(opt, subset):
        names = {id(p): n for n, p in ctx.model.named_parameters()}
        ckpts.append(({k: v.clone() for k, v in ctx.model.state_dict().items()},
                      {names[id(p)]: {k: t.clone() for k, t in opt.state[p].items()} for p in subset.values()}))
        return real(opt, subset)
    L.moments_of = spy
    sel = method.select(ctx)
    L.moments_of = real
    ours = sel.scores.double()
    w = sel.info["checkpoint_weights"]

    # theirs: per-example gradients through their functions at each checkpoint, then their matching.py
    model = ctx.model
    keep = {id(p) for p in ad.param_subset("linears:head").values()}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)   # their gradients: every trainable parameter (LoRA there)

    class HF(torch.nn.Module):  # their model(**batch).loss: one example's mean token loss
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, labels):
            return types.SimpleNamespace(loss=ad.per_example_loss(input_ids, labels).mean())
    hf = HF(model)
    dom = ctx.target.domain.long()
    tasks = dom.unique()
    per = min(int((dom == t).sum()) for t in tasks)
    t_order = torch.cat([(dom == t).nonzero().squeeze(1)[:per] for t in tasks])  # task by task, equal counts
    for c, (state, opt_state) in enumerate(ckpts):
        model.load_state_dict(state)
        m, v = auth.prepare_optimizer_state(model, opt_state, "cpu")
        for kind, x, y in (("train", ctx.pool.x, ctx.pool.y), ("ours", ctx.target.x[t_order], ctx.target.y[t_order])):
            rows = []
            for i in range(len(x)):
                batch = {"input_ids": x[i:i + 1], "labels": y[i:i + 1]}
                g = auth.obtain_gradients_with_adam(hf, batch, m, v) if kind == "train" else \
                    auth.obtain_gradients(hf, batch)
                rows.append(g.detach().clone())
                hf.zero_grad()
            d = tmp / f"{kind}-ckpt{c}"
            d.mkdir()
            torch.save(torch.stack(rows), d / "grads-1.pt")
            auth.merge_and_normalize_info(str(d), prefix="grads")
    src = Path(a.authors, "less/data_selection/matching.py").read_text()
    src = src.replace('N_SUBTASKS = {"mmlu": 57, "bbh": 27, "tydiqa": 9}', f'N_SUBTASKS = {{"ours": {len(tasks)}}}')
    script = tmp / "matching.py"
    script.write_text(src)
    sys.argv = ["matching.py", "--gradient_path", str(tmp / "{1}-ckpt{0}"), "--train_file_names", "train",
                "--ckpts", *[str(c) for c in range(len(ckpts))], "--checkpoint_weights", *[str(x) for x in w],
                "--validation_gradient_path", str(tmp / "{1}-ckpt{0}"), "--target_task_names", "ours",
                "--output_path", str(tmp / "sel")]
    runpy.run_path(str(script), run_name="__main__")
    theirs = torch.load(tmp / "sel/ours/train_influence_score.pt").double()
    k = ctx.k_budget
    top_t = set(torch.sort(theirs, descending=True).indices[:k].tolist())  # write_selected_data: sorted desc
    out = {"seed": a.seed, "n_pool": ctx.n_pool, "k": k, "tasks": len(tasks), "checkpoint_weights": w,
           "overlap_selected_vs_theirs": len(top_t & set(sel.pool_indices.tolist())) / k,
           "spearman_scores": float(spearmanr(ours.numpy(), theirs.numpy()).correlation),
           "max_abs_score_diff": float((ours - theirs).abs().max()),
           "target_examples_per_task_used_by_theirs": per,
           "target_examples_per_task": [int((dom == t).sum()) for t in tasks]}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
