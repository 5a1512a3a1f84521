"""PNG plots of evaluation results (needs matplotlib: the ``plot`` extra).

Each function writes one PNG atomically and returns its path.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .io import atomic_write
from .metrics import Calibration

__all__ = ["plots_available", "confusion_png", "reliability_png"]


def plots_available() -> bool:
    """True when matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width_in: float, height_in: float, dpi: int = 120):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=dpi, layout="constrained")


def _save(fig, path: str | os.PathLike) -> Path:
    with atomic_write(path) as fh:
        fig.savefig(fh, format="png")
    return Path(path)


def confusion_png(matrix: np.ndarray, path: str | os.PathLike, title: str = "") -> Path:
    """Confusion matrix (rows true level, columns predicted) as a heat map with counts."""
    m = np.asarray(matrix)
    k = m.shape[0]
    fig = _figure(5.2, 4.6)
    ax = fig.subplots()
    row_sums = np.maximum(m.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(m / row_sums, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if m[i, j]:
                colour = "white" if m[i, j] / row_sums[i, 0] > 0.6 else "black"
                ax.text(j, i, str(int(m[i, j])), ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xlabel("predicted level")
    ax.set_ylabel("true level")
    ax.set_title(title or "confusion matrix", fontsize=9)
    fig.colorbar(image, ax=ax, label="fraction of true level", shrink=0.8)
    return _save(fig, path)


def reliability_png(calib: Calibration, path: str | os.PathLike, title: str = "") -> Path:
    """Reliability diagram: accuracy per confidence bin against the diagonal, with bin counts."""
    fig = _figure(4.6, 4.6)
    ax = fig.subplots()
    edges = calib.bin_edges
    centres = (edges[:-1] + edges[1:]) / 2
    filled = calib.count > 0
    ax.bar(
        centres[filled],
        calib.accuracy[filled],
        width=np.diff(edges)[filled],
        edgecolor="black",
        color="#4c72b0",
        label="accuracy",
    )
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.plot(
        calib.confidence[filled],
        calib.accuracy[filled],
        "o",
        color="#dd8452",
        ms=4,
        label="mean confidence",
    )
    for x, y, n in zip(centres[filled], calib.accuracy[filled], calib.count[filled]):
        ax.text(x, min(y + 0.02, 0.97), str(int(n)), ha="center", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (max class probability)")
    ax.set_ylabel("fraction exactly right")
    ax.set_title(f"{title}  ECE {calib.ece:.3f}".strip(), fontsize=9)
    ax.legend(loc="upper left", fontsize=7)
    return _save(fig, path)
