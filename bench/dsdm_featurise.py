"""TRAK featurisation throughput: selbench's engine vs ``traker``'s CPU path, side by side.

    python bench/dsdm_featurise.py                       # MLP 784-256-256-10, 1024 examples
    python bench/dsdm_featurise.py --hidden 512 --n 2048 --dim 2048 --threads 1

Both featurise the same model at the same projection dimension ``d`` (ours: the factored LoGra
projection of every ``nn.Linear``, ``d`` = its actual size; ``traker``: fp32 on the CPU with its
block-wise ``BasicProjector``, ``use_half_precision=False`` since its fp16 CPU path is slower
still) and include the ``1 − p`` term.  Also shown: our exact per-example gradients with the
blockwise dense projection (``projection=dense``).  Prints examples / second and the ratios.
The inputs are random (throughput does not depend on their values).
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1024, help="examples to featurise")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--dim", type=int, default=1024, help="requested projection dimension")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2, help="best of this many timings")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from trak import TRAKer
    from trak.projectors import BasicProjector

    from selbench.core.cost import CostTracker
    from selbench.core.grads import FactoredProjector, GradSpec, grad_features, linear_layers
    from selbench.methods.datamodels.trak import one_minus_p
    from selbench.runners.models.vision import build_model
    from selbench.runners.tasks.vision import VisionAdapter

    torch.manual_seed(0)
    model = build_model("mlp", (1, 28, 28), 10, hidden=args.hidden)
    ad = VisionAdapter(model, 10, CostTracker(), torch.device("cpu"))
    x, y = torch.randn(args.n, 1, 28, 28), torch.randint(0, 10, (args.n,))
    P = sum(p.numel() for p in model.parameters())
    d = FactoredProjector(linear_layers(model, dict(model.named_parameters())), args.dim).dim

    def best(fn) -> float:
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return args.n / min(times)

    def ours(proj: str, dim: int):
        spec = GradSpec(params="linears:all", fn="output", proj=proj, dim=dim, chunk=args.batch)
        return lambda: (grad_features(ad, x, y, spec), one_minus_p(ad, x, y))

    def traker():
        with tempfile.TemporaryDirectory() as tmp:
            tr = TRAKer(model=model, task="image_classification", train_set_size=args.n, save_dir=tmp, device="cpu",
                        use_half_precision=False, logging_level=40,
                        projector=BasicProjector(P, d, 0, "normal", "cpu", dtype=torch.float32))
            tr.load_checkpoint(model.state_dict(), model_id=0)
            for i in range(0, args.n, args.batch):
                tr.featurize(batch=(x[i:i + args.batch], y[i:i + args.batch]), num_samples=len(x[i:i + args.batch]))

    rows = [("selbench factored", best(ours("factored", args.dim))),
            ("selbench dense", best(ours("dense", d))),
            ("traker fp32 BasicProjector", best(traker))]
    ref = rows[-1][1]
    print(f"MLP hidden={args.hidden}: {P:,} parameters, projection d={d}, n={args.n}, threads={args.threads}")
    for name, eps in rows:
        print(f"  {name:28s} {eps:10.1f} examples/s   {eps / ref:6.2f}x traker")
    print(f"ratio (selbench factored / traker): {rows[0][1] / ref:.2f}")


if __name__ == "__main__":
    main()
