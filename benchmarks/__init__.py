"""miq's benchmarks: run each from the repository root as ``python -m benchmarks.NAME``.

Shared helpers (the train / held-out split of ../shared/data, the synthetic test image, the
machine description, timing) live in :mod:`benchmarks.common`.
"""
