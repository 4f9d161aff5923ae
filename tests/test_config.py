"""Every option of every config group composes, and Hydra's CLI behaves as usual."""
import pytest

from conftest import compose_cfg, selbench
from selbench.datasets.sources import SOURCES
from selbench.methods.registry import registered
from selbench.runners.run.validate import CONF_DIR, check_config

GROUPS = ["dataset", "scenario", "model", "runner", "budget", "logger", "scale", "experiment"]


def _options(group):
    root = CONF_DIR / group
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_group_option_composes(group, option, tmp_path):
    # text options (`modality: language`) compose with the language runner, whose defaults are text ones
    text = (CONF_DIR / group / f"{option}.yaml").read_text()
    base = ["runner=language"] if "modality: language" in text and group != "runner" else []
    cfg = compose_cfg(base + [f"{group}={option}"])
    if cfg.runner.name == "vision" and SOURCES[cfg.dataset.name].needs_root and not cfg.dataset.get("root"):
        # torchvision datasets (full MNIST, CIFAR) need the user's root: stand one in
        cfg = compose_cfg(base + [f"{group}={option}", f"dataset.root={tmp_path}"])
    check_config(cfg)


@pytest.mark.parametrize("method", sorted(registered()))
def test_every_method_composes(method, tmp_path):
    cls = registered()[method].cls
    on = [] if "vision" in cls.modalities else ["runner=language"]
    if getattr(cls, "needs_instruction_pairs", False):
        on += ["dataset=instructions", "scenario=instruction_mixture"]
    if getattr(cls, "needs_input_file", False):  # from_selection trains on the selection file it is given
        (tmp_path / "sel.txt").write_text("0\n5\n")
        on += [f"method.path={tmp_path / 'sel.txt'}"]
    cfg = compose_cfg(on + [f"method={method}"])
    assert cfg.method.name == method
    check_config(cfg)


def test_every_group_has_options():
    for g in GROUPS:
        assert _options(g), g


def test_help_and_cfg_job(tmp_path):
    h = selbench("--help", cwd=tmp_path)
    assert h.returncode == 0 and "method: " in h.stdout and "Powered by Hydra" in h.stdout
    c = selbench("--cfg", "job", "method=random", "budget=b010", cwd=tmp_path)
    assert c.returncode == 0, c.stderr
    assert "name: random" in c.stdout and "fraction: 0.1" in c.stdout
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").rglob("record.json"))
