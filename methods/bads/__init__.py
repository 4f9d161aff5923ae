"""BADS (SGLD jointly over the network and per-example weights) and the BADS paper's own baselines:
CDS, ClassAct and Ask-LLM, which share the score-filter reweighter (``docs/methods/bads.md``)."""
