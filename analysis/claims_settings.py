"""Why each claim's setting lets the paper's mechanism show (``Claim.setting_why``), and the
overrides that build those settings: the claims registry's (``analysis.claims_registry``) choice of
preset, scale and sweep, kept apart from the claims themselves. Chosen by mechanism, never by tuning
toward a claim."""
from __future__ import annotations

#: The denoising setting every noise claim is judged in: the BADS denoising preset with a 2-layer MLP
#: (the model of the issue's memorisation report, a fraction of LeNet5's CPU time) and a pool small
#: enough that scale=small's 600 steps of 120 are ~36 epochs over it — long enough for erm to
#: memorise the flipped labels (its test accuracy falls from its best step; LeNet5 measured here: 77.4%
#: at step 300 → 63.6% at 600), the harm the reweighters and BADS exist to undo; 50 clean targets per
#: class keep the paper's 1:4 target-to-pool ratio; an evaluation every 100 steps finds the best step.
MEMORISE = (("model", "mlp"), ("scenario.pool_size", 2000), ("scenario.target_per_class", 50), ("runner.eval_every", 100))
WHY_MEMORISE = ("Fashion-MNIST + MLP, {rate:.0%} symmetric noise, a 2,000-image pool and 500 clean targets; "
                "scale=small's 600 steps × 120 are ~36 epochs of the pool, where erm memorises the flipped labels "
                "(its final accuracy falls below its best-validation one: the diagnosis checks it), so there is "
                "harm for the method to undo")
WHY_BALANCE = ("MNIST-5k 4-vs-9 with 1% fours in a 320-image pool (β = 0.01 = the minority's share, the paper's "
               "protocol scaled to the data that ships): erm sees ~3 fours and predicts 'nine', so only a "
               "method that finds and up-weights the minority can pass 90%; {t} clean targets per class; "
               "scale=small: 600 of the paper's 15,000 steps at its lr 1e-3")
WHY_TEXT_DOMAINS = ("Shakespeare comedies as the target domain in a mixture with the other plays: the target "
                    "domain is a minority of the pool, so a method that weights by the target finds it; tiny GPT, "
                    "scale=small")
WHY_INSTRUCT = ("instruction mixture of human-written (chatterbot, humaneval) and templated sources with "
                "human-written targets: the source BADS up-weights is observable in the pool weights")


WHY_SPICE_CLEAN = ("digits + MLP with a clean pool (scenario.noise.rate=0): SPICE selects informative, "
                   "non-conflicting gradients from a pool of usable data, as its instruction-tuning pools are; "
                   "under label noise every gradient selector prefers the large (mislabelled) gradients, which "
                   "tests noise robustness, not SPICE's claim")
WHY_SPICE_TEXT = ("tiny GPT on an instruction mixture (a clean pool of real sources), 10% budget: SPICE's own "
                  "regime, selecting instruction data by gradient informativeness")


WHY_DSDM = {"dsdm/digits_noise": "digits + MLP, 40% label noise, clean targets: the pool holds examples that raise "
                                 "the target loss (the mislabelled ones), so a datamodel that predicts each "
                                 "example's effect on the target loss has something to find; β ∈ {0.1, 0.2, 0.5}",
            "dsdm/pretrain_selection": "tiny GPT pretraining-data selection for Shakespeare and pydoc target tasks "
                                       "from a corpus mixture (the paper's LM regime, scaled down); target loss; "
                                       "β ∈ {0.1, 0.2} (the 2× claim's pair; the preset's 0.05 and 0.5 double the "
                                       "pass's longest multirun: 60 runs)"}
#: the claims pass runs the text preset at the budgets its claims compare only
RUNS_WITH_DSDM = {"dsdm/pretrain_selection": (("budget", "b010,b020"),)}
