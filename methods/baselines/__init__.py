"""The cheap baselines every comparison includes: ``erm`` (pool ∪ target), ``pool_only``, ``target_only``,
``random``, ``duplicate_target`` (``docs/methods/baselines.md``)."""
