"""Bilevel reweighting by a one-step lookahead: L2RW, Meta-Weight-Net and online BLO, with the shared
lookahead and the exact forward-mode meta-gradient (``docs/methods/l2rw.md``, ``mwnet.md``, ``online_blo.md``)."""
