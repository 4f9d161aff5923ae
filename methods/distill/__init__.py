"""Dataset distillation under a byte budget: AutoPalette and its palette pieces, DM, MTT, median-cut
quantisation and the real-image baseline ``random_real`` (``docs/methods/autopalette.md``)."""
