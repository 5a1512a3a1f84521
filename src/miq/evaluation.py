"""Accuracy measures for ordered defocus levels: confusion matrix, exact and within-one accuracy."""

from __future__ import annotations

import numpy as np

__all__ = ["confusion_matrix", "accuracy_within", "format_confusion"]


def confusion_matrix(true_levels, predicted_levels, n_levels: int = 11) -> np.ndarray:
    """Counts (n_levels, n_levels): rows = true level, columns = predicted level."""
    t = np.asarray(true_levels, dtype=int).ravel()
    p = np.asarray(predicted_levels, dtype=int).ravel()
    if t.shape != p.shape:
        raise ValueError(f"{t.size} true levels but {p.size} predictions")
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= n_levels):
        raise ValueError(f"levels must lie in 0..{n_levels - 1}")
    matrix = np.zeros((n_levels, n_levels), dtype=np.int64)
    np.add.at(matrix, (t, p), 1)
    return matrix


def accuracy_within(true_levels, predicted_levels, distance: int = 0) -> float:
    """Fraction of predictions with |predicted − true| ≤ ``distance`` (0: exact; 1: within one)."""
    t = np.asarray(true_levels, dtype=int).ravel()
    p = np.asarray(predicted_levels, dtype=int).ravel()
    if t.size == 0:
        return float("nan")
    return float(np.mean(np.abs(p - t) <= distance))


def format_confusion(matrix: np.ndarray) -> str:
    """Plain-text confusion matrix (rows true, columns predicted) for terminals and READMEs."""
    k = matrix.shape[0]
    width = max(3, len(str(int(matrix.max()))) + 1)
    lines = ["true\\pred" + "".join(f"{j:>{width}}" for j in range(k))]
    for i in range(k):
        lines.append(f"{i:>9}" + "".join(f"{int(v):>{width}}" for v in matrix[i]))
    return "\n".join(lines)
