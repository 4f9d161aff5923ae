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
    assert torch.equal(torch.load(c.path("proxy", 1), weights_only=True)["value"], torch.zeros(2))


def test_no_root_means_no_caching(tmp_path):
    c = ArtifactCache(None)
    assert c.get_or_compute("x", 0, lambda: 5) == 5 and c.misses == 1 and not list(tmp_path.iterdir())


def test_entry_of_other_code_or_wrong_contents_is_recomputed_and_named(tmp_path, capsys):
    c = ArtifactCache(tmp_path)
    path = c.path("scores", {"k": 1})
    path.parent.mkdir(parents=True)
    torch.save({"scores": torch.ones(2)}, path)  # an entry written before entries carried a schema
    out = c.get_or_compute("scores", {"k": 1}, lambda: {"pool": torch.zeros(2)}, expect=("pool",))
    assert torch.equal(out["pool"], torch.zeros(2))
    assert f"cache entry {path} has schema None" in capsys.readouterr().err
    # an entry of the right schema whose value lacks what the caller reads ("KeyError: 'pool'" before)
    entry = torch.load(path, weights_only=True)
    entry["value"] = {"target": torch.ones(1)}
    torch.save(entry, path)
    out = c.get_or_compute("scores", {"k": 1}, lambda: {"pool": torch.full((2,), 3.0)}, expect=("pool",))
    assert out["pool"][0] == 3 and "has the wrong contents (no 'pool')" in capsys.readouterr().err
    assert (c.hits, c.misses) == (0, 2)


def test_a_reader_is_charged_what_the_artifact_cost_whoever_computed_it(tmp_path):
    """Issue 25 item 4: the run that computes and the run that reads are charged alike."""
    import time

    from selbench.core.cost import CostTracker

    def select(cache, cost):
        with cost.phase("select"):
            feats = cache.get_or_compute("feats", {"pool": 1}, lambda: (time.sleep(0.3), torch.ones(3))[1])
            return cache.get_or_compute("proxy", {"pool": 1, "f": feats.sum().item()},
                                        lambda: (time.sleep(0.1), feats * 2)[1])

    costs = []
    for _ in range(2):  # the first run computes both, the second reads both
        cost = CostTracker()
        select(ArtifactCache(tmp_path, cost=cost), cost)
        costs.append(cost.summary(10))
    first, second = (c["phases"]["select"] for c in costs)
    assert first["shared_s"] == 0 and second["shared_s"] >= 0.4
    assert second["wall_s"] < 0.2 and abs(first["charged_s"] - second["charged_s"]) < 0.15
    arts = costs[1]["shared_artifacts"]
    assert [a["name"] for a in arts] == ["feats", "proxy"] and not any(a["computed_here"] for a in arts)
    assert all(a["computed_here"] for a in costs[0]["shared_artifacts"])
    assert costs[1]["total_charged_s"] == costs[1]["total_wall_s"] + costs[1]["shared_s"]


def test_an_artifact_computed_from_a_shared_one_carries_its_cost(tmp_path):
    from selbench.core.cost import CostTracker
    import time

    ArtifactCache(tmp_path).get_or_compute("proxy", 0, lambda: (time.sleep(0.3), torch.ones(1))[1])
    b = ArtifactCache(tmp_path)  # computes the features from the cached proxy
    b.get_or_compute("feats", 0, lambda: b.get_or_compute("proxy", 0, lambda: None) * 2)
    cost = CostTracker()
    with cost.phase("select"):  # a third run reads only the features: charged the proxy too
        ArtifactCache(tmp_path, cost=cost).get_or_compute("feats", 0, lambda: None)
    assert cost.summary(1)["phases"]["select"]["shared_s"] >= 0.3
