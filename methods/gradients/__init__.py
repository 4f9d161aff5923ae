"""SPICE and the gradient selectors: the gradient features of a warmed-up proxy, the greedy log-det,
``spice``, ``fisher_logdet``, ``less``, ``grad_norm``, and the instruction-data baselines ``ifd`` and
``selectit`` (``docs/methods/spice.md``)."""
