"""Coreset selection by embedding geometry: herding and k-center, as selectors (fraction budget) and as
real-image synthesizers under a byte budget (``herding_real``, ``kcenter_real``)."""
