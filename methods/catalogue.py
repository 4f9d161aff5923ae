"""The built-in methods: every module that registers one, by family.

An explicit list, not a folder scan: a helper module is never imported as if it were a
plugin, and a new built-in method is one line here (a plugin needs none: ``docs/adding_a_method.md``).
"""

BUILTIN_MODULES: tuple[str, ...] = (
    # bads
    "selbench.methods.bads.askllm",
    "selbench.methods.bads.bads",
    "selbench.methods.bads.cds",
    "selbench.methods.bads.classact",
    # baselines
    "selbench.methods.baselines.cheap",
    "selbench.methods.baselines.from_selection",
    # bilevel
    "selbench.methods.bilevel.l2rw",
    "selbench.methods.bilevel.mwnet",
    "selbench.methods.bilevel.online_blo",
    # coresets
    "selbench.methods.coresets.herding",
    "selbench.methods.coresets.kcenter",
    # datamodels
    "selbench.methods.datamodels.dsdm",
    "selbench.methods.datamodels.dsir",
    "selbench.methods.datamodels.embed_sim",
    "selbench.methods.datamodels.lds_subset",
    "selbench.methods.datamodels.quality_classifier",
    "selbench.methods.datamodels.semdedup",
    # distill
    "selbench.methods.distill.autopalette",
    "selbench.methods.distill.dm",
    "selbench.methods.distill.median_cut",
    "selbench.methods.distill.mtt",
    "selbench.methods.distill.random_real",
    # gradients
    "selbench.methods.gradients.fisher_logdet",
    "selbench.methods.gradients.grad_norm",
    "selbench.methods.gradients.ifd",
    "selbench.methods.gradients.less",
    "selbench.methods.gradients.selectit",
    "selbench.methods.gradients.spice",
)
