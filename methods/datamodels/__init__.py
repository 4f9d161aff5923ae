"""DsDm and its baselines: the TRAK datamodel estimator, ``dsdm``, the LDS retrainings (``lds_subset``),
``dsir``, the quality ``classifier``, ``embed_sim`` and ``semdedup`` (``docs/methods/dsdm.md``)."""
