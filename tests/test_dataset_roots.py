"""Presets that need ``dataset.root`` run in the tests: a tiny root written in each dataset's own
on-disk format (``tests/dataset_roots.py``: MNIST's IDX files, CIFAR's pickled python batches)
goes through the same reader a user's real copy does (``datasets/roots.py``).

Every such preset runs with every method it ships settings for (and ``erm``).  ResNet-32 and
ConvNet steps on 32×32 batches of 120–256 take seconds each on 2 cores, so the default suite runs
each preset's selectors and reweighters for 3 steps (config, reader, scenario, model, method, loop
and record all exercised); the slow suite runs every (preset, method) at full ``scale=debug``,
the distillers included."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import compose_cfg, selbench
from dataset_roots import CIFAR10_TRAIN, MNIST_TRAIN, root_dataset, tiny_root, write_cifar10, write_mnist
from selbench.core.errors import DataError
from selbench.datasets.sources import load_source
from selbench.methods.registry import registered
from selbench.runners.run.job import run_job

CONF = Path(__file__).resolve().parent.parent / "conf"


def root_preset_runs(quick: bool) -> list:
    """(preset, method) for every root preset and each method it ships settings for, and erm.
    ``quick``: the selectors and reweighters only (a distiller's synthesis on 10–100 CIFAR classes
    takes minutes of CPU even at 3 iterations: those run in the slow suite, with everything else)."""
    out = []
    for p in sorted((CONF / "experiment").rglob("*.yaml")):
        if root_dataset(p) is None:
            continue
        exp = str(p.relative_to(CONF / "experiment").with_suffix(""))
        methods = {"erm"} | {m.stem for m in (CONF / "method_preset" / exp).glob("*.yaml")}
        for m in sorted(methods):
            if quick and registered()[m].cls.kind == "synthesizer":
                continue
            out.append(pytest.param(exp, m, marks=[] if quick else [pytest.mark.slow]))
    return out


def _run(tmp_path, experiment: str, method: str, extra: list[str]) -> dict:
    name = root_dataset(CONF / "experiment" / f"{experiment}.yaml")
    cfg = compose_cfg([f"experiment={experiment}", f"method={method}", "scale=debug", "runner.device=cpu",
                       "progress=false", f"dataset.root={tiny_root(name)}"] + extra, tmp_path)
    rec = run_job(cfg)
    assert rec["status"] == "ok", rec.get("reason")
    assert rec["dataset"] == name and rec["experiment"] == cfg.experiment_name
    assert rec["steps"] == cfg.scale.max_steps
    return rec


def test_the_root_presets_are_the_ones_the_issue_counts():
    """AutoPalette's four CIFAR tables, BADS denoising on CIFAR-10 and the paper's MNIST 4-vs-9."""
    found = {str(p.relative_to(CONF / "experiment").with_suffix("")) for p in (CONF / "experiment").rglob("*.yaml")
             if root_dataset(p)}
    assert {"autopalette/cifar10_ipc1", "autopalette/cifar10_ipc10", "autopalette/cifar100_ipc1",
            "autopalette/cifar100_ipc10", "bads/denoise_cifar10", "bads/mnist_balance_paper"} <= found
    assert len(root_preset_runs(quick=False)) >= 38 and len(root_preset_runs(quick=True)) >= 14


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("experiment,method", root_preset_runs(quick=True))
def test_every_root_preset_runs_for_a_few_steps(tmp_path, experiment, method):
    _run(tmp_path, experiment, method, ["scale.max_steps=3", "scale.eval_every=3"])


@pytest.mark.parametrize("experiment,method", root_preset_runs(quick=False))
def test_every_root_preset_runs_at_debug_scale(tmp_path, experiment, method):
    _run(tmp_path, experiment, method, [])


def test_a_root_preset_runs_from_the_command_line(tmp_path):
    """The pre-launch checks (which build the scenario) read the root too: exit 0, one record."""
    out = selbench("experiment=bads/mnist_balance_paper", f"dataset.root={tiny_root('mnist')}", "scale=debug",
                   "scale.max_steps=2", "scale.eval_every=2", "runner.device=cpu", "progress=false",
                   f"results_dir={tmp_path / 'results'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert len(list((tmp_path / "results").rglob("record.json"))) == 1


# --------------------------------------------------------------------------- the readers
def test_the_readers_return_the_files_pixels_and_labels(tmp_path):
    """Un-standardised, the loaded tensors are the bytes written, in the files' order."""
    mnist = load_source("mnist", root=str(tiny_root("mnist")))
    counts = torch.bincount(mnist.train.y, minlength=10)
    assert counts.tolist() == [MNIST_TRAIN[c] for c in range(10)]
    raw = (mnist.train.x * 0.3081 + 0.1307) * 255
    assert torch.allclose(raw, raw.round(), atol=1e-3) and mnist.train.x.shape[1:] == (1, 28, 28)

    c10 = load_source("cifar10", root=str(tiny_root("cifar10")))
    assert len(c10.train) == 10 * CIFAR10_TRAIN and c10.class_names[9] == "truck"
    with open(tiny_root("cifar10") / "cifar-10-batches-py" / "data_batch_2", "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    start = len(c10.train) // 5  # batch 2 follows batch 1 (np.array_split of 10,300: 2,060 each)
    assert c10.train.y[start:start + 5].tolist() == batch["labels"][:5]
    mean, std = torch.tensor([0.4914, 0.4822, 0.4465]), torch.tensor([0.2470, 0.2435, 0.2616])
    first = (c10.train.x[start] * std.view(3, 1, 1) + mean.view(3, 1, 1)) * 255
    assert torch.allclose(first.round(), torch.from_numpy(batch["data"][0].reshape(3, 32, 32)).float(), atol=1e-3)

    c100 = load_source("cifar100", root=str(tiny_root("cifar100")))
    assert c100.num_classes == 100 and len(c100.class_names) == 100 and set(c100.test.y.tolist()) == set(range(100))


def test_a_user_root_may_point_at_the_files_folder_itself(tmp_path):
    write_mnist(tmp_path)
    direct = load_source("mnist", root=str(tmp_path / "MNIST" / "raw"))
    assert torch.equal(direct.train.y, load_source("mnist", root=str(tmp_path)).train.y)


class _Evil:
    def __reduce__(self):  # unpickling it would create the file
        return (open, ("/tmp/selbench-pwned", "w"))


@pytest.mark.parametrize("damage,msg", [
    (lambda d: (d / "data_batch_3").unlink(), "data_batch_3 is missing"),
    (lambda d: (d / "data_batch_1").write_bytes(b"\x80\x02garbage"), "cannot read .*data_batch_1"),
    (lambda d: (d / "test_batch").write_bytes(pickle.dumps({"data": _Evil(), "labels": [0]}, protocol=2)),
     "refusing to load"),
    (lambda d: (d / "test_batch").write_bytes(pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]})),
     r"expected uint8 \[N, 3072\]"),
    (lambda d: (d / "test_batch").write_bytes(pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [12]})),
     r"expected 0\.\.9"),
    (lambda d: (d / "batches.meta").unlink(), "CIFAR10 not found"),
])
def test_a_damaged_cifar_root_is_one_line_naming_the_file(tmp_path, damage, msg):
    write_cifar10(tmp_path, per_class_train=2, per_class_test=1)
    Path("/tmp/selbench-pwned").unlink(missing_ok=True)
    damage(tmp_path / "cifar-10-batches-py")
    with pytest.raises(DataError, match=msg) as e:
        load_source("cifar10", root=str(tmp_path))
    assert "\n" not in str(e.value)
    assert not Path("/tmp/selbench-pwned").exists()  # a pickle in a data folder runs no code


def test_a_damaged_mnist_root_is_one_line_naming_the_file(tmp_path):
    write_mnist(tmp_path, train={c: 2 for c in range(10)}, test={c: 1 for c in range(10)})
    (tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05\x01")
    with pytest.raises(DataError, match="train-labels-idx1-ubyte is truncated"):
        load_source("mnist", root=str(tmp_path))


@pytest.mark.parametrize("args,msg", [
    (["dataset=cifar10"], "needs dataset.root"),
    (["dataset=cifar10", "dataset.root=/no/such/dir"], "/no/such/dir"),
    (["dataset=mnist", "dataset.root=EMPTY"], "MNIST not found"),
])
def test_a_missing_root_exits_2_with_one_line_before_launch(tmp_path, args, msg):
    (tmp_path / "EMPTY").mkdir()
    out = selbench(*[a.replace("EMPTY", str(tmp_path / "EMPTY")) for a in args], "method=erm",
                   f"results_dir={tmp_path / 'results'}", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and msg in lines[0], out.stderr
    assert not list(tmp_path.rglob("record.json"))
