"""The language runner: text sources, scenarios, masking, models, methods on text."""
from __future__ import annotations

import json
import math
import time

import pytest
import torch

from conftest import compose_cfg, selbench
from selbench.datasets.text.examples import IGNORE
from selbench.datasets.text.scenarios import build_text_scenario
from selbench.datasets.text.sources import load_text_source
from selbench.datasets.text.tokenizer import build_tokenizer
from selbench.methods.registry import registered
from selbench.core.cost import CostTracker
from selbench.core.errors import ConfigError, DataError
from selbench.runners.run.job import run_job
from selbench.runners.tasks.language import LanguageAdapter
from selbench.runners.models.language import TinyGPT
from selbench.runners.run.validate import check_config

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")

#: a seconds-long real run: two Shakespeare genres, a very small GPT
TINY_LM = ["runner=language", "dataset.genres=[roman,tragedies]", "scenario.target_domain=roman",
           "scenario.pool_size=64", "scenario.target_size=8", "scenario.test_size=16", "scenario.seq_len=32",
           "model.width=32", "model.depth=1", "model.heads=2", "model.context=32", "model.tokenizer.max_vocab=256",
           "runner.steps=4", "runner.eval_every=4", "runner.batch_size=8", "runner.target_batch_size=4",
           "runner.device=cpu", "runner.threads=1", "progress=false", "scale=debug"]


def _jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def _sc(**kw):
    base = {"name": "t", "kind": "domain_mixture", "seq_len": 32, "target_domain": "a", "target_size": 2,
            "pool_size": None, "test_size": None, "heldout_fraction": 0.3, "min_tokens": 1, "choices": 0}
    base.update(kw)
    return base


PAIRS = [{"prompt": f"What is the capital of {c}?", "response": f"The capital of {c} is {k}.", "domain": d}
         for d, items in {"a": [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Peru", "Lima"),
                                ("Chile", "Santiago"), ("Japan", "Tokyo"), ("Kenya", "Nairobi"), ("Egypt", "Cairo")],
                          "b": [("Norway", "Oslo"), ("Cuba", "Havana"), ("Iran", "Tehran"), ("Iraq", "Baghdad"),
                                ("Mali", "Bamako"), ("Chad", "N'Djamena")]}.items()
         for c, k in items]


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("row,msg", [
    ({"prompt": "hi"}, "missing field 'response'"),
    ({"prompt": "hi", "response": "   "}, "field 'response' is empty"),
    ({"text": ""}, "field 'text' is empty"),
    ({"title": "x"}, "missing field 'text'"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
])
def test_bad_textfile_records_are_one_line_data_errors(tmp_path, row, msg):
    f = _jsonl(tmp_path / "d.jsonl", [{"text": "fine"}, row])
    with pytest.raises(DataError) as e:
        load_text_source("textfile", path=str(f))
    assert msg in str(e.value) and f"{f}:2" in str(e.value) and "\n" not in str(e.value)
    # on_bad_record=skip drops the line instead
    assert len(load_text_source("textfile", path=str(f), on_bad_record="skip")) == 1


def test_empty_or_missing_file_and_unknown_tokenizer(tmp_path):
    (tmp_path / "e.txt").write_text("\n\n   \n")
    with pytest.raises(DataError, match="no usable records"):
        load_text_source("textfile", path=str(tmp_path / "e.txt"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_text_source("textfile", path=str(tmp_path / "nope.jsonl"))
    with pytest.raises(ConfigError, match=r"unknown tokenizer 'bpe99' \(choose from: gpt2, smollm2\)"):
        build_tokenizer({"name": "bpe99"})
    with pytest.raises(ConfigError, match="unknown tokenizer 'bpe99'"):
        check_config(compose_cfg(["runner=language", "model.tokenizer.name=bpe99"]))
    with pytest.raises(ConfigError, match="model=smollm2 needs model.tokenizer.name=smollm2"):
        check_config(compose_cfg(["runner=language", "model=smollm2", "model.tokenizer.name=gpt2"]))
    with pytest.raises(ConfigError, match="exceeds model.context"):
        check_config(compose_cfg(["runner=language", "scenario.seq_len=512"]))
    with pytest.raises(ConfigError, match="is a language config but runner=vision"):
        check_config(compose_cfg(["model=tiny_gpt"]))


@pytest.mark.slow  # ~25 s of process start-up on a loaded 2-core machine; the in-process checks above are fast
def test_bad_textfile_via_cli_is_one_line_and_writes_nothing(tmp_path):
    f = _jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "response": "b"}, {"prompt": "only a prompt"}])
    out = selbench("runner=language", "dataset=textfile", f"dataset.path={f}", "scale=debug", cwd=tmp_path)
    assert out.returncode != 0
    lines = [ln for ln in out.stderr.strip().splitlines() if ln.startswith("selbench: error")]
    assert len(lines) == 1 and "d.jsonl:2: missing field 'response'" in lines[0], out.stderr
    assert "Traceback" not in out.stderr and not list(tmp_path.rglob("record.json"))


def test_overlong_pairs_truncate_drop_or_error(tmp_path):
    rows = [dict(r) for r in PAIRS]
    rows[0]["prompt"] = "Please answer. " * 40 + rows[0]["prompt"]  # ~160 tokens of prompt
    f = _jsonl(tmp_path / "d.jsonl", rows)
    tok = build_tokenizer({"name": "gpt2"})
    ds = {"name": "textfile", "path": str(f)}
    s = build_text_scenario(ds, _sc(kind="instruction_mixture", target_domains=["a", "b"], target_per_domain=1,
                                    heldout_fraction=0.01, split_seed=1), tok, seed=0)
    assert s.info["pairs_truncated"] == 1
    everything = torch.cat([s.pool.x, s.target.x, s.test.x])
    long_row = next(i for i in range(len(everything)) if "Paris" in tok.decode(everything[i][everything[i] != tok.pad_id]))
    text = tok.decode(everything[long_row].tolist())
    assert "The capital of France is Paris." in text and text.count("Please answer.") < 40  # prompt cut from the left
    assert everything.shape[1] == 32
    d = build_text_scenario(ds, _sc(kind="instruction_mixture", target_domains=["a", "b"], target_per_domain=1,
                                    heldout_fraction=0.01, split_seed=1, overlong="drop"), tok, seed=0)
    assert d.info["pairs_dropped"] == 1 and len(d.pool) + len(d.target) + len(d.test) == len(rows) - 1
    with pytest.raises(DataError, match="over scenario.seq_len"):
        build_text_scenario(ds, _sc(kind="instruction_mixture", overlong="error"), tok, seed=0)


# --------------------------------------------------------------------------- masking and the adapter
def test_loss_counts_exactly_the_response_tokens(tmp_path):
    """Adapter loss = hand-computed mean NLL of the independently tokenised response (+ eos)."""
    f = _jsonl(tmp_path / "d.jsonl", PAIRS)
    tok = build_tokenizer({"name": "gpt2"})
    s = build_text_scenario({"name": "textfile", "path": str(f)},
                            _sc(kind="instruction_mixture", target_domains=["a"], target_per_domain=2), tok, seed=0)
    torch.manual_seed(0)
    model = TinyGPT(tok.vocab_size, width=32, depth=1, heads=2, context=32)
    ad = LanguageAdapter(model, tok.vocab_size, CostTracker(), CPU, pad_id=tok.pad_id)
    for i in range(len(s.pool)):
        x, y = s.pool.x[i], s.pool.y[i]
        real = x[: int((y != IGNORE).nonzero().max()) + 1]
        text = tok.decode(real.tolist())
        prompt_text = text[: text.index("### Response:\n") + len("### Response:\n")]
        p_ids = tok.encode(prompt_text)
        r_ids = tok.encode(text[len(prompt_text):]) + [tok.eos_id]
        full = torch.tensor(p_ids + r_ids)
        with torch.no_grad():
            logp = model(full[None, :-1])[0].log_softmax(-1)
        positions = torch.arange(len(p_ids) - 1, len(full) - 1)
        expect = -logp[positions, full[positions + 1]].mean()
        got = ad.per_example_loss(x[None], y[None])[0]
        assert torch.allclose(got, expect, atol=1e-5), (i, got, expect)
        assert int((y != IGNORE).sum()) == len(r_ids)  # nothing from the prompt or the padding counts


def test_chunks_count_every_token_and_padding_never_matters():
    tok = build_tokenizer({"name": "gpt2", "max_vocab": 512})
    s = build_text_scenario({"name": "shakespeare", "genres": ["roman"]},
                            _sc(target_domain="roman", target_size=4, pool_size=50, seq_len=32, min_tokens=8),
                            tok, seed=0)
    y = s.pool.y
    full = (y != IGNORE).all(1)
    assert full.float().mean() > 0.9  # whole-chunk LM targets
    assert torch.equal(s.pool.x[:, 1:][full], y[:, :-1][full])  # y is x shifted by one
    torch.manual_seed(0)
    model = TinyGPT(tok.vocab_size, width=32, depth=2, heads=2, context=32)
    ad = LanguageAdapter(model, tok.vocab_size, CostTracker(), CPU, pad_id=tok.pad_id)
    x, yy = s.pool.x[:4].clone(), s.pool.y[:4].clone()
    yy[:, 20:] = IGNORE
    a = ad.per_example_loss(x, yy)
    x2 = x.clone()
    x2[:, 20:] = tok.pad_id  # what comes after the last target cannot change the loss (causal)
    assert torch.allclose(a, ad.per_example_loss(x2, yy), atol=1e-6)
    e_mean = ad.embed(x2)
    assert e_mean.shape == (4, 32) and torch.isfinite(e_mean).all()


def test_per_example_grads_match_a_loop_and_param_subsets():
    tok_v = 64
    torch.manual_seed(0)
    model = TinyGPT(tok_v, width=16, depth=2, heads=2, context=16)
    ad = LanguageAdapter(model, tok_v, CostTracker(), CPU, pad_id=tok_v - 1)
    x = torch.randint(0, tok_v - 1, (3, 12))
    y = torch.randint(0, tok_v - 1, (3, 12))
    y[:, :4] = IGNORE
    head = ad.param_subset("head")
    assert head and all(k.startswith(("blocks.1.", "ln_f.")) for k in head)
    assert set(ad.param_subset("layers:2")) > set(head)
    with pytest.raises(ConfigError, match="no LoRA adapters"):
        ad.param_subset("lora")
    for fn in ("loss", "output"):
        g = ad.per_example_grads(x, y, which="head", fn=fn)
        params = ad.param_subset("head")
        for i in range(3):
            p = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
            f = ad._single_loss if fn == "loss" else ad.scalar_output
            ref = torch.autograd.grad(f(p, x[i], y[i]), list(p.values()))
            assert torch.allclose(g[i], torch.cat([r.reshape(-1) for r in ref]), atol=1e-5)


def test_tokenizer_and_token_cache_round_trip(tmp_path, monkeypatch):
    from selbench.datasets.text.tokenizer import encode_cached

    monkeypatch.setenv("SELBENCH_CACHE", str(tmp_path))
    tok = build_tokenizer({"name": "gpt2"})
    texts = ["To be, or not to be, that is the question:", "Whether 'tis nobler in the mind to suffer"]
    a = encode_cached(tok, texts)
    assert list((tmp_path / "tokens").glob("*.pt"))
    b = encode_cached(tok, texts)
    assert [t.tolist() for t in a] == [t.tolist() for t in b] == tok.encode_batch(texts)
    assert tok.decode(a[0].tolist()) == texts[0] and tok.vocab_size == 50257


# --------------------------------------------------------------------------- scenarios
def test_domain_mixture_truth_heldout_and_corruptions():
    tok = build_tokenizer({"name": "gpt2", "max_vocab": 512})
    ds = {"name": "shakespeare", "genres": ["roman", "romances"]}
    sc = _sc(target_domain="roman", target_size=8, pool_size=200, seq_len=32, target_share=0.25, test_size=50,
             noise={"kind": "shuffle", "rate": 0.4}, duplication={"rate": 0.1})
    s = build_text_scenario(ds, sc, tok, seed=0)
    roman = s.info["domains"].index("roman")
    assert (s.target.domain == roman).all() and (s.test.domain == roman).all()
    clean = build_text_scenario(ds, {**sc, "noise": None, "duplication": None}, tok, seed=0)
    assert clean.info["pool_domain_counts"] == {"roman": 50, "romances": 150}
    assert clean.truth["is_clean"].all() and not clean.truth["is_duplicate"].any()
    t = s.truth
    assert t["domain"].dtype == torch.long and len(t["domain"]) == len(s.pool) == 200
    assert torch.equal(t["in_target_domain"], t["domain"] == roman)
    assert int(t["is_duplicate"].sum()) == 20
    assert 0.3 < float((~t["is_clean"]).float().mean()) < 0.5
    # shuffled chunks hold the same tokens in another order
    dups = t["is_duplicate"].nonzero().flatten()
    for i in dups[:5]:
        assert any(torch.equal(s.pool.x[i], s.pool.x[j]) for j in range(200) if j != i)
    # the held-out documents are never in the pool: no test chunk appears there
    pool_rows = {tuple(r.tolist()) for r in s.pool.x}
    assert not any(tuple(r.tolist()) in pool_rows for r in s.test.x)
    assert s.info["test_unigram_perplexity"] > 1
    with pytest.raises(ConfigError, match="target_domain='sonnets' is not a domain"):
        build_text_scenario(ds, _sc(target_domain="sonnets"), tok, seed=0)


def test_instruction_mixture_choices_and_swap_noise():
    tok = build_tokenizer({"name": "gpt2", "max_vocab": 2048})
    ds = {"name": "instructions", "sources": ["chatterbot", "pydoc", "wordnet"], "max_per_source": 300}
    s = build_text_scenario(ds, _sc(kind="instruction_mixture", seq_len=64, target_domains=["wordnet", "chatterbot"],
                                    target_per_domain=5, test_per_domain=20, pool_size=300, choices=4,
                                    noise={"kind": "swap_response", "rate": 0.3}), tok, seed=0)
    assert len(s.target) == 10 and len(s.test) == 40
    assert s.test.choice_x.shape == (40, 4, 64) and int(s.test.answer.max()) <= 3
    for n in range(40):  # the correct choice is the test example itself
        a = int(s.test.answer[n])
        assert torch.equal(s.test.choice_y[n, a], s.test.y[n])
    assert 0.25 < float((~s.truth["is_clean"]).float().mean()) <= 0.3 + 1e-6
    with pytest.raises(ConfigError, match="needs instruction pairs"):
        build_text_scenario({"name": "shakespeare", "genres": ["roman"]}, _sc(kind="instruction_mixture"), tok, seed=0)


def test_pretrain_selection_scores_only_the_continuation():
    tok = build_tokenizer({"name": "gpt2", "max_vocab": 2048})
    ds = {"name": "corpus", "sources": ["shakespeare", "pydoc", "fortunes"], "max_docs_per_source": 40}
    s = build_text_scenario(ds, _sc(kind="pretrain_selection", seq_len=48, target_tasks=["pydoc", "shakespeare"],
                                    target_per_task=4, test_per_task=10, cont_tokens=6, pool_size=150, choices=3,
                                    min_tokens=24), tok, seed=0)
    assert ((s.test.y != IGNORE).sum(1) == 6).all() and ((s.target.y != IGNORE).sum(1) == 6).all()
    assert (s.pool.y != IGNORE).float().mean() > 0.8
    assert s.test.choice_x.shape == (len(s.test), 3, 48)
    assert set(s.info["pool_domain_counts"]) == {"shakespeare", "pydoc", "fortunes"}


# --------------------------------------------------------------------------- runs
#: every text method that runs on plain text (ifd needs instruction/response pairs: tests/test_selection_baselines.py)
LANGUAGE_METHODS = sorted(n for n, e in registered().items()
                          if "language" in e.cls.modalities and not getattr(e.cls, "needs_instruction_pairs", False))


@pytest.mark.parametrize("method", LANGUAGE_METHODS)
def test_every_language_method_runs_on_text(tmp_path, method):
    rec = run_job(compose_cfg(TINY_LM + [f"method={method}"], tmp_path))  # each method on its own defaults
    assert rec["status"] == "ok", rec.get("reason")
    m = rec["metrics"]
    for k in ("test_accuracy", "test_nll", "test_perplexity", "test_loss", "test_exact_match"):
        assert math.isfinite(m[k]), k
    assert rec["scenario_info"]["modality"] == "language" and rec["cost"]["forward_examples"] > 0
    shares = rec["selection"]["quality"]["domain_weight_share"]
    assert set(shares) and set(shares) <= set(rec["scenario_info"]["domains"])  # named, not numbered


def _lm_run(tmp_path, *extra):
    args = ["runner=language", "scenario=domain_mixture", "model.width=64", "model.depth=2", "model.context=64",
            "model.tokenizer.max_vocab=2048", "scenario.pool_size=4000", "scenario.test_size=100",
            "runner.steps=400", "runner.eval_every=100", "runner.batch_size=16", "runner.optimizer.lr=6e-3",
            "runner.device=cpu", "runner.threads=1", *extra]
    out = selbench(*args, cwd=tmp_path, timeout=1200)
    assert out.returncode == 0, out.stderr
    rec = json.loads(next((tmp_path / "results").rglob("record.json")).read_text())
    return rec, out


@pytest.mark.slow
@pytest.mark.parametrize("method,budget", [("erm", "b020"), ("random", "b020")])
def test_tiny_gpt_beats_the_unigram_baseline_on_the_target_domain(tmp_path, method, budget):
    rec, out = _lm_run(tmp_path, f"method={method}", f"budget={budget}")
    ppl, uni = rec["metrics"]["test_perplexity"], rec["scenario_info"]["test_unigram_perplexity"]
    print(f"{method}: target-domain perplexity {ppl:.1f} vs unigram {uni:.1f}")
    assert ppl < 0.7 * uni  # measured: erm ~0.45x, random(0.2) ~0.5x the unigram perplexity
    assert rec["curve"][0]["test_perplexity"] > rec["curve"][-1]["test_perplexity"]
    assert rec["selection"]["n_selected"] == (4000 if method == "erm" else 800)


# --------------------------------------------------------------------------- the pretrained model
@pytest.mark.slow
def test_smollm2_loads_offline_and_a_lora_step_lowers_target_nll(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from selbench.runners.tasks import language

    cfg = compose_cfg(["runner=language", "model=smollm2", "dataset=instructions", "scenario=instruction_mixture",
                       "dataset.sources=[chatterbot,wordnet]", "dataset.max_per_source=400",
                       "scenario.pool_size=64", "scenario.test_per_domain=8", "scenario.target_per_domain=8",
                       "scenario.seq_len=64", "runner.device=cpu"])
    check_config(cfg)
    t0 = time.time()
    s = language.build_scenario(cfg, 0)
    ad = language.build_adapter(cfg, s, CostTracker(), CPU)
    load_s = time.time() - t0
    n_params = sum(p.numel() for p in ad.model.parameters())
    trainable = {k: v for k, v in ad.model.named_parameters() if v.requires_grad}
    assert 130e6 < n_params < 140e6 and trainable and all("lora_" in k for k in trainable)
    assert set(ad.param_subset("head")) == set(trainable)
    before = ad.per_example_loss(s.target.x, s.target.y).mean()
    assert 0 < float(before) < 8  # a real pretrained model, far below log(49152) = 10.8
    opt = torch.optim.AdamW(list(trainable.values()), lr=1e-3)
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = ad.per_example_loss(s.target.x, s.target.y).mean()
    m = ad.evaluate(s.test)
    print(f"smollm2: load {load_s:.1f}s, {n_params / 1e6:.1f}M params, target NLL {float(before):.3f} -> "
          f"{float(after):.3f}; test nll {m['nll']:.3f}, choice acc {m['choice_accuracy']:.3f}")
    assert float(after) < float(before)
    assert math.isfinite(m["nll"]) and 0 <= m["choice_accuracy"] <= 1
