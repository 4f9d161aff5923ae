"""The claims the project documents for the five papers, as data (``analysis.claims`` judges them).

Sources: ``../shared/docs/METHODS.md``, ``docs/paper_numbers.md``, ``docs/findings.md``.  Each
:class:`Claim` says what the paper states, which preset (and why that setting lets the paper's
mechanism show: ``setting_why``) tests it, which quantity measures it and in which direction;
**no verdict is stored here** — ``analysis.claims`` computes it from the records.

Fields:

* ``preset`` — the ``experiment_name`` of the runs (an ``fnmatch`` pattern: ``dsdm/*``); ``where``
  narrows them (config keys, e.g. ``scenario.noise.rate=0.8``);
* ``metric`` — the run column measured: a metric (``test_accuracy``, in points), a cost column
  (``cost.method_wall_s``), a selection-quality column (``q.auc_clean_vs_corrupted``), or several
  joined with ``+`` (summed per run); ``reference`` — a column of the same run subtracted first
  (``q.minority_pool_fraction``);
* ``versus`` — rival methods: per seed, ``method − rival`` (``op="diff"``) or ``method / rival``
  (``op="ratio"``), paired on the seed; every rival must be beaten.  No rival: the method's own
  per-seed values against ``bound``;
* ``direction`` / ``bound`` — "holds" when the 95% CI lies entirely ``>`` (or ``<``) ``bound``;
  a non-zero bound on a difference is the claim's own tolerance, stated in ``claim``;
* ``rival_budget`` — the rival runs at ``rival_budget × β`` (a data multiplier claim);
* ``needs_cuda`` — peak memory means something only on a GPU (CPU: the process RSS);
* ``metric="lds.<key>"`` — the linear datamodeling score of the preset's ``lds_subset`` sweeps
  (``analysis.lds``), per seed.
"""
from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points

from selbench.analysis.claims_settings import (MEMORISE, RUNS_WITH_DSDM, WHY_BALANCE, WHY_DSDM,
                                               WHY_INSTRUCT, WHY_MEMORISE, WHY_SPICE_CLEAN, WHY_SPICE_TEXT,
                                               WHY_TEXT_DOMAINS)

NON_DPS = ("erm", "target_only", "random", "duplicate_target")  # the BADS paper's Mixing, Meta_Only, ...
BADS = "BADS (Xu et al., NeurIPS 2024)"
BLO = "L2RW / MW-Net / online BLO"
SPICE = "SPICE (Chang, Zhang et al., ICLR 2026)"
DSDM = "DsDm (Engstrom et al., ICML 2024)"
AP = "AutoPalette (Yuan et al., NeurIPS 2024)"


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str
    claim: str                      # as the paper states it
    preset: str                     # experiment_name (fnmatch pattern)
    method: str
    versus: tuple[str, ...] = ()
    metric: str = "test_accuracy"
    op: str = "diff"                # diff | ratio
    direction: str = ">"
    bound: float = 0.0
    where: tuple[tuple[str, object], ...] = ()
    reference: str = ""
    rival_budget: float = 1.0
    needs_cuda: bool = False
    source: str = ""
    note: str = ""
    runs_with: tuple[tuple[str, object], ...] = ()  # overrides the claims pass adds (not a filter on records)
    setting_why: str = ""           # why the preset and scale that judge it let the paper's mechanism show
    mechanism: str = ""             # a check the diagnosis runs on the records (analysis.claims_diagnosis)
    same: str = ""                  # a column that must agree across the compared runs, else not measurable

    def methods(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.method, *self.versus)))

    def command(self) -> str:
        """The multirun that produces this claim's records."""
        exp = self.preset.replace("*", "<setting>")
        over = " ".join(f"{k}={v}" for k, v in self.where + self.runs_with)
        extra = " budget.fraction=β,<rival_budget>·β" if self.rival_budget != 1.0 else ""
        return f"selbench -m experiment={exp} {over + ' ' if over else ''}method={','.join(self.methods())} " \
               f"seed=0,1,2{extra}"


def _bads() -> list[Claim]:
    src = "METHODS.md §1; docs/paper_numbers.md (BADS)"
    t25 = (("scenario.target_per_class", 25),)  # the preset's default; 5 is the paper's hard variant
    mem50, mem80 = (("scenario.noise.rate", 0.5), *MEMORISE), (("scenario.noise.rate", 0.8), *MEMORISE)
    why50, why80 = WHY_MEMORISE.format(rate=0.5), WHY_MEMORISE.format(rate=0.8)
    bal = dict(setting_why=WHY_BALANCE.format(t=25), source=src, mechanism="erm_one_class")
    out = [Claim(f"bads-mnist-90-{m}", BADS, "MNIST 4-vs-9 balancing: every method but Mixing and ClassAct "
                 "exceeds 90% test accuracy", "bads/mnist_balance", m, bound=90.0, where=t25, **bal)
           for m in ("bads", "blo", "l2rw", "mwnet", "target_only", "random", "duplicate_target")]
    out += [
        Claim("bads-mnist-bads>blo", BADS, "MNIST balancing: BADS > BLO in accuracy", "bads/mnist_balance", "bads",
              ("blo",), where=t25, **bal),
        Claim("bads-mnist-blo>nondps", BADS, "MNIST balancing: BLO > the non-DPS baselines", "bads/mnist_balance",
              "blo", NON_DPS, where=t25, **bal),
        *(Claim(f"bads-mnist5-90-{m}", BADS, "MNIST balancing with 5 target examples per class: only BADS and BLO "
                "exceed 90%", "bads/mnist_balance", m, bound=90.0, direction=">" if m in ("bads", "blo") else "<",
                where=(("scenario.target_per_class", 5),), **{**bal, "setting_why": WHY_BALANCE.format(t=5)})
          for m in ("bads", "blo", "target_only")),
        Claim("bads-denoise50-best", BADS, "Denoising at 50% noise: BADS is best by a noticeable margin",
              "bads/denoise", "bads", ("blo", "l2rw", "mwnet", *NON_DPS), where=mem50, source=src,
              mechanism="erm_memorises", setting_why=why50),
        Claim("bads-weights-auc", BADS, "BADS weights separate clean from noisy pool examples (clean up-weighted)",
              "bads/denoise", "bads", metric="q.auc_clean_vs_corrupted", bound=0.5, where=mem50,
              source="METHODS.md §1 (weights)", setting_why=why50 + "; the pool's noise labels are the ground truth"),
        Claim("bads-denoise80-blo@bads/denoise_cifar10", BADS, "Denoising at 80% symmetric noise: BADS beats BLO by "
              "~15 points", "bads/denoise_cifar10", "bads", ("blo",), where=(("scenario.noise.rate", 0.8),),
              source=src, mechanism="erm_memorises",
              setting_why="the paper's own setting (CIFAR-10 + ResNet32, 40,000-image pool): needs dataset.root"),
        Claim("bads-denoise80-nondps@bads/denoise_cifar10", BADS, "Denoising at 80% symmetric noise: BADS beats the "
              "non-DPS baselines by ~20 points", "bads/denoise_cifar10", "bads", NON_DPS,
              where=(("scenario.noise.rate", 0.8),), source=src, mechanism="erm_memorises",
              setting_why="the paper's own setting (CIFAR-10 + ResNet32, 40,000-image pool): needs dataset.root"),
        Claim("bads-denoise80-blo@bads/denoise", BADS, "Denoising at 80% symmetric noise: BADS beats BLO by ~15 "
              "points", "bads/denoise", "bads", ("blo",), where=mem80, source=src, mechanism="erm_memorises",
              setting_why=why80, note="Fashion-MNIST + MLP stand-in for CIFAR-10"),
        Claim("bads-denoise80-nondps@bads/denoise", BADS, "Denoising at 80% symmetric noise: BADS beats the non-DPS "
              "baselines by ~20 points", "bads/denoise", "bads", NON_DPS, where=mem80, source=src,
              mechanism="erm_memorises", setting_why=why80, note="Fashion-MNIST + MLP stand-in for CIFAR-10"),
        Claim("bads-nlg-bleu", BADS, "NLG (WebNLG): BADS +2 BLEU over the runner-up Duplicate_Meta", "bads/nlg_domains",
              "bads", ("duplicate_target",), metric="test_bleu", source=src, setting_why=WHY_TEXT_DOMAINS),
        Claim("bads-nlg-loss", BADS, "NLG: BADS beats Duplicate_Meta and the rest (here: target-domain test loss, "
              "lower is better)", "bads/nlg_domains", "bads", ("duplicate_target", "erm", "target_only", "random"),
              metric="test_loss", direction="<", source=src, setting_why=WHY_TEXT_DOMAINS),
        Claim("bads-nlg-domain", BADS, "NLG two-domain control: BADS up-weights the target domain (share > its pool "
              "fraction)", "bads/nlg_domains", "bads", metric="q.in_target_domain_weight_share",
              reference="q.in_target_domain_pool_fraction", source=src, setting_why=WHY_TEXT_DOMAINS),
        Claim("bads-llm-human", BADS, "LLM instruction tuning: BADS prefers human-written sources over generated "
              "ones (weight share of chatterbot + humaneval above erm's uniform share)", "bads/instruction", "bads",
              ("erm",), metric="q.domain_share.chatterbot+q.domain_share.humaneval", source=src,
              setting_why=WHY_INSTRUCT,
              note="human-written here (conf/experiment/bads/instruction.yaml): chatterbot, humaneval; templated: "
                   "wordnet, pydoc, fortunes; erm's share = the pool fraction"),
    ]
    cost_why = {"bads/denoise": "the vision denoising runs above (costs hardly depend on the noise): every method "
                                "at equal examples per step, charged seconds (shared cached artifacts included)",
                "bads/nlg_domains": "the paper measured costs on text (T5-small NLG): the tiny-GPT domain mixture, "
                                    "equal examples per step, charged seconds"}
    for p, where in (("bads/denoise", mem50), ("bads/nlg_domains", ())):
        kw = dict(where=where, source=src, setting_why=cost_why[p])
        out += [
            Claim(f"bads-cost-time@{p}", BADS, "Cost: BADS ≈ the time of plain training (≤ 1.1×)", p, "bads", ("erm",),
                  metric="cost.method_wall_s", op="ratio", direction="<", bound=1.1, **kw),
            Claim(f"bads-cost-vs-blo@{p}", BADS, "Cost: BADS ≈ 1× time, BLO ≈ 2× (BADS faster than BLO)", p, "bads",
                  ("blo",), metric="cost.method_wall_s", op="ratio", direction="<", bound=1.0, **kw),
            Claim(f"bads-cost-mem@{p}", BADS, "Cost: BADS ≈ 1.5× memory, BLO ≈ 2.5× (BADS lighter than BLO)", p,
                  "bads", ("blo",), metric="cost.method_peak_mb", op="ratio", direction="<", bound=1.0,
                  needs_cuda=True, **kw),
        ]
    return out


def _blo() -> list[Claim]:
    src = "METHODS.md §2"
    mem50 = (("scenario.noise.rate", 0.5), *MEMORISE)
    noise = dict(where=mem50, source=src, mechanism="erm_memorises", setting_why=WHY_MEMORISE.format(rate=0.5))
    return [
        Claim("l2rw-imbalance", BLO, "L2RW (Ren et al. 2018): on the MNIST 4-vs-9 imbalance L2RW beats plain "
              "training", "bads/mnist_balance", "l2rw", ("erm",), where=(("scenario.target_per_class", 25),),
              source=src, setting_why=WHY_BALANCE.format(t=25) + " (L2RW's own imbalance experiment is 4-vs-9)"),
        Claim("l2rw-noise", BLO, "L2RW: under uniform label noise L2RW beats plain training", "bads/denoise", "l2rw",
              ("erm",), **noise),
        Claim("mwnet-noise", BLO, "MW-Net (Shu et al. 2019): under uniform label noise MW-Net beats plain training",
              "bads/denoise", "mwnet", ("erm",), **noise),
        Claim("blo-noise", BLO, "Online BLO (Grangier et al. 2024): the bilevel-weighted pool beats plain training "
              "under noise", "bads/denoise", "blo", ("erm",), **noise),
        Claim("blo-cost", BLO, "The one-step lookahead costs ~2-3× the time of plain training (harness expectation, "
              "METHODS.md §2)", "bads/denoise", "blo", ("erm",), metric="cost.method_wall_s", op="ratio", bound=1.5,
              where=mem50, source=src, setting_why="the vision denoising runs: equal examples per step, charged "
                                                   "seconds"),
    ]


def _spice() -> list[Claim]:
    src = "METHODS.md §3; docs/paper_numbers.md (SPICE)"
    out = []
    for p, metric, d, where, why in (
            ("spice/digits_noise", "test_accuracy", ">", (("scenario.noise.rate", 0.0),), WHY_SPICE_CLEAN),
            ("spice/instructions", "test_loss", "<", (), WHY_SPICE_TEXT)):
        kw = dict(metric=metric, direction=d, where=where, source=src, setting_why=why)
        out += [
            Claim(f"spice-random@{p}", SPICE, "With 10% of the data SPICE beats Random", p, "spice", ("random",), **kw),
            Claim(f"spice-baselines@{p}", SPICE, "SPICE beats Fisher log-det, LESS and gradient norm at 10%", p,
                  "spice", ("fisher_logdet", "less", "grad_norm"), **kw),
            Claim(f"spice-full@{p}", SPICE, "With 10% of the data SPICE matches or beats full-data training "
                  "(tolerance here: " + ("1 accuracy point)" if d == ">" else "0.05 nats of test loss)"), p, "spice",
                  ("erm",), bound=-1.0 if d == ">" else 0.05, **kw),
        ]
    clean = dict(where=(("scenario.noise.rate", 0.0),), source=src, setting_why=WHY_SPICE_CLEAN)
    out.append(Claim("spice-logdet", SPICE, "SPICE's subsets have higher log-det than LESS and gradient-norm "
                     "selections", "spice/digits_noise", "spice", ("less", "grad_norm"), metric="sel.logdet",
                     same="sel.logdet_basis", **clean))
    out.append(Claim("spice-conflict", SPICE, "The conflict penalty lowers gradient conflict vs unpenalised Fisher "
                     "log-det", "spice/digits_noise", "spice", ("fisher_logdet",), metric="sel.conflict",
                     same="sel.logdet_basis", direction="<", where=(("scenario.noise.rate", 0.4),), source=src,
                     setting_why="the preset's 40% label noise: mislabelled examples' gradients conflict with the "
                                 "clean ones, so there is conflict for the penalty to lower (the preset's purpose)"))
    return out


def _dsdm() -> list[Claim]:
    src = "METHODS.md §4"
    text, both = "dsdm/pretrain_selection", ("dsdm/digits_noise", "dsdm/pretrain_selection")
    out = []
    for p in both:
        rw = dict(runs_with=RUNS_WITH_DSDM.get(p, ()))
        out += [
            Claim(f"dsdm-random@{p}", DSDM, "DsDm's selection beats random selection on the target (target loss)", p,
                  "dsdm", ("random",), metric="test_loss", direction="<", source=src, setting_why=WHY_DSDM[p], **rw),
            Claim(f"dsdm-2x@{p}", DSDM, "DsDm is a 2× multiplier: at β it beats random at 2β on target loss", p,
                  "dsdm", ("random",), metric="test_loss", direction="<", rival_budget=2.0, source=src,
                  note="data multiplier at fixed steps, not the paper's LM compute multiplier",
                  setting_why=WHY_DSDM[p], **rw),
            Claim(f"dsdm-sim-embed_sim@{p}", DSDM, "Selecting by similarity to 'high-quality' text can match or "
                  "underperform random (not better than random by 0.01 loss)", p, "embed_sim", ("random",),
                  metric="test_loss", direction=">", bound=-0.01, source=src, setting_why=WHY_DSDM[p], **rw),
        ]
    out += [  # DSIR and the quality classifier read text (n-gram features): the text preset only
        Claim("dsdm-baselines", DSDM, "DsDm beats DSIR and the quality classifier", text, "dsdm",
              ("dsir", "classifier"), metric="test_loss", direction="<", source=src, setting_why=WHY_DSDM[text],
              runs_with=RUNS_WITH_DSDM[text]),
        Claim("dsdm-sim-classifier", DSDM, "Selecting by similarity to 'high-quality' text can match or "
              "underperform random (not better than random by 0.01 loss)", text, "classifier", ("random",),
              metric="test_loss", direction=">", bound=-0.01, source=src, setting_why=WHY_DSDM[text],
              runs_with=RUNS_WITH_DSDM[text]),
        Claim("dsdm-lds", DSDM, "The TRAK datamodel predicts retrained target loss (LDS > 0)", "dsdm/digits_noise",
              "lds_subset", metric="lds.lds_loss", bound=0.0, source=src,
              runs_with=(("method.subset", "range(0,20)"), ("budget", "b050")),
              note="LDS over 20 lds_subset retrainings at β = 0.5 per seed (analysis/lds.py; docs/methods/dsdm.md)",
              setting_why="TRAK's own check (§2): 20 random half-pool subsets retrained; digits + MLP trains in "
                          "seconds, so the retrainings fit on 2 cores"),
    ]
    return out


def _autopalette() -> list[Claim]:
    src = "docs/paper_numbers.md (AutoPalette Tables 1, 5, 8)"
    out = []
    why = {"autopalette/colour_fashion_ipc10": "a colour dataset (Fashion-MNIST tinted per class) at 10 images "
                                               "per class of storage: colour carries information, so spending fewer "
                                               "bits per pixel to store more images (the palette's trade) can pay",
           "autopalette/cifar10_ipc10": "the paper's own CIFAR-10 IPC10 setting (ConvNet-3): needs dataset.root"}
    for p in ("autopalette/colour_fashion_ipc10", "autopalette/cifar10_ipc10"):
        kw = dict(source=src, setting_why=why[p], mechanism="palette_trained")
        out += [
            Claim(f"ap-dm@{p}", AP, "AutoPalette improves on its DM base at equal storage (Table 5: +12 points at "
                  "C10 IPC10)", p, "autopalette", ("dm",), **kw),
            Claim(f"ap-coresets@{p}", AP, "AutoPalette beats random, herding and k-center coresets at equal storage "
                  "(Table 1)", p, "autopalette", ("random_real", "herding_real", "kcenter_real"), **kw),
            Claim(f"ap-mediancut@{p}", AP, "The palette network beats median-cut quantisation (Table 8)", p,
                  "autopalette", ("median_cut",), **kw),
        ]
    return out


CLAIMS: list[Claim] = _bads() + _blo() + _spice() + _dsdm() + _autopalette()


def register_claim(claim: Claim) -> Claim:
    """Add a claim to the registry (a plugin's own claims: call it from the module named in
    ``SELBENCH_PLUGINS`` or the ``selbench.plugins`` entry point).  An id already registered is
    refused, so a plugin cannot silently replace a documented claim."""
    if not isinstance(claim, Claim):
        raise TypeError(f"register_claim takes a Claim, not {type(claim).__name__}")
    if any(c.id == claim.id for c in CLAIMS):
        raise ValueError(f"claim id {claim.id!r} is already registered")
    CLAIMS.append(claim)
    return claim


_plugins_loaded = False


def load_plugin_claims() -> list[Claim]:
    """Import the plugin modules (the ``selbench.plugins`` entry point and ``SELBENCH_PLUGINS``, the
    same ones the runner imports for their methods) once, so the claims they register with
    :func:`register_claim` are judged and planned beside the built-in ones; returns the registry.
    A module that fails to import is named in a one-line warning, and the others still count."""
    global _plugins_loaded
    if not _plugins_loaded:
        _plugins_loaded = True
        names = [ep.value for ep in entry_points(group="selbench.plugins")]
        names += [m.strip() for m in os.environ.get("SELBENCH_PLUGINS", "").split(",") if m.strip()]
        for name in dict.fromkeys(names):
            try:
                importlib.import_module(name)
            except Exception as e:  # noqa: BLE001 - one broken plugin must not hide the other claims
                why = f"{type(e).__name__}: {e}".splitlines()[0]
                print(f"selbench: warning: plugin module {name} failed to import ({why}); its claims are "
                      f"not judged", file=sys.stderr)
    return CLAIMS
