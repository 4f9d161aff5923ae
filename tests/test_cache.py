"""The artifact cache: keyed by config, reused across runs, damage recomputed."""
import torch

from selbench.core.cache import ArtifactCache


def test_same_key_computes_once_other_key_recomputes(tmp_path):
    calls = []

    def compute(v):
        calls.append(v)
        return {"feat": torch.full((3,), float(v))}

    a, b = ArtifactCache(tmp_path), ArtifactCache(tmp_path)  # two runs of one sweep
    x = a.get_or_compute("grads", {"model": "mlp", "seed": 0}, lambda: compute(1))
    y = b.get_or_compute("grads", {"seed": 0, "model": "mlp"}, lambda: compute(2))  # key order irrelevant
    z = b.get_or_compute("grads", {"model": "mlp", "seed": 1}, lambda: compute(3))
    assert calls == [1, 3]
    assert torch.equal(x["feat"], y["feat"]) and z["feat"][0] == 3
    assert (a.hits, a.misses, b.hits, b.misses) == (0, 1, 1, 1)


def test_damaged_entry_is_recomputed(tmp_path, capsys):
    c = ArtifactCache(tmp_path)
    c.get_or_compute("proxy", 1, lambda: torch.ones(2))
    c.path("proxy", 1).write_bytes(b"\x00garbage")
    out = c.get_or_compute("proxy", 1, lambda: torch.zeros(2))
    assert torch.equal(out, torch.zeros(2)) and "unreadable" in capsys.readouterr().err
    assert torch.equal(torch.load(c.path("proxy", 1), weights_only=True), torch.zeros(2))


def test_no_root_means_no_caching(tmp_path):
    c = ArtifactCache(None)
    assert c.get_or_compute("x", 0, lambda: 5) == 5 and c.misses == 1 and not list(tmp_path.iterdir())
