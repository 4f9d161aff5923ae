"""Pieces that more than one family uses: the typed string knob, the proxy trainers, the gradient
spec, the embedding scorer, the feature net, the synthesizer base and byte accounting, and the text
helpers. Nothing here imports a family package."""
