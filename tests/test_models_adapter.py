"""Models, the task adapter's per-example quantities, and the evaluation metrics."""
import pytest
import torch
import torch.nn.functional as F

from selbench.runners.tasks.vision import VisionAdapter, classification_metrics
from selbench.core.cost import CostTracker
from selbench.runners.models.vision import MODELS, build_model
from selbench.runners.tasks.metrics import auc


@pytest.mark.parametrize("name,shape", [("mlp", (1, 28, 28)), ("lenet5", (1, 28, 28)), ("lenet5", (1, 8, 8)),
                                        ("convnet", (3, 32, 32)), ("resnet32", (3, 32, 32))])
def test_models_forward_and_features(name, shape):
    m = build_model(name, shape, 10)
    x = torch.randn(4, *shape)
    assert m(x).shape == (4, 10)
    assert m.features(x).shape == (4, m.embed_dim)


def test_resnet32_has_the_papers_size():
    n = sum(p.numel() for p in build_model("resnet32", (3, 32, 32), 10).parameters())
    assert 0.45e6 < n < 0.49e6  # He et al. report 0.46M


def _adapter(model="mlp"):
    torch.manual_seed(0)
    m = build_model(model, (1, 8, 8), 3, hidden=16)
    return VisionAdapter(m, 3, CostTracker(), torch.device("cpu"))


def test_per_example_grads_match_autograd_loop():
    a = _adapter()
    x, y = torch.randn(5, 1, 8, 8), torch.tensor([0, 1, 2, 1, 0])
    g = a.per_example_grads(x, y, which="all")
    for i in range(5):
        a.model.zero_grad()
        F.cross_entropy(a.model(x[i:i + 1]), y[i:i + 1]).backward()
        ref = torch.cat([p.grad.flatten() for p in a.model.parameters()])
        torch.testing.assert_close(g[i], ref, rtol=1e-5, atol=1e-6)
    assert a.cost.forward >= 5 and a.cost.backward == 5


def test_scalar_output_is_the_margin():
    a = _adapter()
    x, y = torch.randn(1, 1, 8, 8), torch.tensor(2)
    logits = a.model(x)[0]
    params = dict(a.model.named_parameters())
    expected = logits[2] - torch.logsumexp(logits[:2], 0)
    torch.testing.assert_close(a.scalar_output(params, x[0], y), expected)


def test_head_subset_is_the_last_linear_layer():
    a = _adapter()
    assert set(a.param_subset("head")) == {"head.weight", "head.bias"}
    assert len(a.param_subset("last:1")) == 1


def test_metrics_by_hand():
    logits = torch.tensor([[2., 0], [2., 0], [0, 2.], [2., 0]])
    y = torch.tensor([0, 0, 1, 1])
    m = classification_metrics(logits, y, 2)
    assert m["accuracy"] == 0.75
    assert m["per_class_accuracy"] == [1.0, 0.5]
    assert m["balanced_accuracy"] == 0.75


def test_auc_matches_pairwise_definition_with_ties():
    s = torch.tensor([0.1, 0.4, 0.4, 0.9, 0.3, 0.4])
    pos = torch.tensor([0, 1, 0, 1, 0, 1]).bool()
    pairs = [(1.0 if a > b else 0.5 if a == b else 0.0) for a in s[pos] for b in s[~pos]]
    assert auc(s, pos) == pytest.approx(sum(pairs) / len(pairs))
    assert auc(s, torch.ones(6).bool()) is None


def test_registry_lists_all_required_models():
    assert {"mlp", "lenet5", "convnet", "resnet32"} <= set(MODELS)


def test_selection_quality_scores_every_boolean_ground_truth():
    from selbench.runners.tasks.metrics import selection_quality

    w = torch.tensor([1.0, 1.0, 0.0, 0.0])
    truth = {"is_clean": torch.tensor([True, True, False, False]),
             "in_target_domain": torch.tensor([True, False, True, False]),
             "is_duplicate": torch.tensor([False, False, True, True]),
             "domain": torch.tensor([0, 0, 1, 1])}
    q = selection_quality(w, truth, domain_names=["chatterbot", "wordnet"])
    assert q["auc_clean_vs_corrupted"] == 1.0 and q["auc_duplicate"] == 0.0 and q["auc_in_target_domain"] == 0.5
    assert q["in_target_domain_weight_share"] == 0.5 and q["duplicate_weight_share"] == 0.0
    # domains are named, so a reader sees which source got the weight
    assert q["domain_weight_share"] == {"chatterbot": 1.0, "wordnet": 0.0}
