"""Classical focus measures, the baselines miq is compared against.

CellProfiler's MeasureImageQuality definitions (Bray et al. 2012, J Biomol Screen 17:266) for
FocusScore, LocalFocusScore and PowerLogLogSlope; the usual definitions (Pertuz et al. 2013,
Pattern Recognition 46:1415) for variance of Laplacian, Tenengrad and Brenner; Haralick H3
correlation as CellProfiler's Correlation. Each is a pure function of a 2D image (any real dtype;
computed in float64). Higher = sharper for all of them except PowerLogLogSlope (negative, more
negative when blurrier) and correlation (higher when blurrier).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "focus_score",
    "local_focus_score",
    "power_log_log_slope",
    "correlation",
    "variance_of_laplacian",
    "tenengrad",
    "brenner",
    "MEASURES",
    "BLURRIER_IS_HIGHER",
    "defocus_score",
    "measure_all",
]


def _as_float(image: np.ndarray) -> np.ndarray:
    data = np.asarray(image, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {data.shape}")
    return data


def focus_score(image: np.ndarray) -> float:
    """Normalised variance Σ(I − μ)² / (N·μ) (CellProfiler FocusScore); 0 when μ ≤ 0."""
    x = _as_float(image)
    mean = x.mean()
    return float(((x - mean) ** 2).sum() / (x.size * mean)) if mean > 0 else 0.0


def local_focus_score(image: np.ndarray, scale: int = 20) -> float:
    """CellProfiler LocalFocusScore at a spatial scale (px).

    The image is split into ⌈H/scale⌉ × ⌈W/scale⌉ near-equal tiles; each tile's normalised
    variance v = Σ(I − μ)²/(n·μ) is computed (tiles with μ = 0 left out), and the score is
    var(v) / median(v). 0 when fewer than two tiles qualify or the median is 0.
    """
    x = _as_float(image)
    h, w = x.shape
    rows, cols = max(1, -(-h // scale)), max(1, -(-w // scale))
    tile_row = (np.arange(h) * rows) // h
    tile_col = (np.arange(w) * cols) // w
    labels = (tile_row[:, None] * cols + tile_col[None, :]).ravel()
    n_tiles = rows * cols
    count = np.bincount(labels, minlength=n_tiles).astype(np.float64)
    total = np.bincount(labels, x.ravel(), minlength=n_tiles)
    mean = total / np.maximum(count, 1)
    sq = np.bincount(labels, ((x.ravel() - mean[labels]) ** 2), minlength=n_tiles)
    keep = (mean != 0) & (count > 0)
    if keep.sum() < 2:
        return 0.0
    v = sq[keep] / (count[keep] * mean[keep])
    median = np.median(v)
    return float(v.var() / median) if median > 0 else 0.0


def power_log_log_slope(image: np.ndarray) -> float:
    """CellProfiler PowerLogLogSlope (PLLS): slope of log radial power vs log radius.

    The image is divided by its median absolute deviation from the mean (intensity invariance),
    its mean removed, and its 2D FFT power summed in integer radial bins (radius measured to the
    nearest corner of the unshifted spectrum, bin = ⌊r⌋ + 1) from 2 up to below min(H, W)/8;
    the least-squares slope of log(power) against log(bin) is returned (0 for a constant image).
    """
    x = _as_float(image)
    if x.max() == x.min():
        return 0.0
    h, w = x.shape
    yy = np.arange(h)[:, None] ** 2
    xx = np.arange(w)[None, :] ** 2
    r2 = yy + xx
    r2 = np.minimum(r2, r2[::-1, :])
    r2 = np.minimum(r2, r2[:, ::-1])
    mad = np.median(np.abs(x - x.mean()))
    if mad > 0:
        x = x / mad
    power = np.abs(np.fft.fft2(x - x.mean())) ** 2
    bins = (np.floor(np.sqrt(r2)) + 1).astype(np.int64).ravel()
    labels = np.arange(2, int(np.floor(min(h, w) / 8.0)))
    if len(labels) < 2:
        return 0.0
    sums = np.bincount(bins, power.ravel(), minlength=labels[-1] + 1)[labels]
    ok = sums > 0
    if ok.sum() < 2:
        return 0.0
    slope, _ = np.polyfit(np.log(labels[ok]), np.log(sums[ok]), 1)
    return float(slope)


def correlation(image: np.ndarray, scale: int = 20, levels: int = 8) -> float:
    """Haralick texture feature H3 (GLCM correlation) at a horizontal offset of ``scale`` px.

    As CellProfiler's ``Correlation_<scale>``: intensities rescaled to [0, 1] over the image and
    quantised to ``levels`` grey levels; co-occurrences of each pixel with the pixel ``scale`` px
    to its right (one direction, not symmetrised), normalised to probabilities P(i, j); then
    (Σ i·j·P − μx·μy) / (σx·σy). Blur raises it (neighbours become alike). 0 if undefined.
    """
    x = _as_float(image)
    if scale < 1 or x.shape[1] <= scale or x.max() == x.min():
        return 0.0
    q = np.minimum((x - x.min()) / (x.max() - x.min()) * levels, levels - 1).astype(np.int64)
    pairs = q[:, :-scale] * levels + q[:, scale:]
    p = np.bincount(pairs.ravel(), minlength=levels * levels).reshape(levels, levels)
    p = p / p.sum()
    i = np.arange(levels)
    px, py = p.sum(axis=1), p.sum(axis=0)
    mx, my = i @ px, i @ py
    sx = np.sqrt(((i - mx) ** 2) @ px)
    sy = np.sqrt(((i - my) ** 2) @ py)
    if sx == 0 or sy == 0:
        return 0.0
    return float((i @ p @ i - mx * my) / (sx * sy))


def variance_of_laplacian(image: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian (LAPV), interior pixels only."""
    x = _as_float(image)
    lap = 4 * x[1:-1, 1:-1] - x[:-2, 1:-1] - x[2:, 1:-1] - x[1:-1, :-2] - x[1:-1, 2:]
    return float(lap.var())


def tenengrad(image: np.ndarray) -> float:
    """Tenengrad (TENG): mean squared Sobel gradient magnitude, interior pixels only."""
    x = _as_float(image)
    gx = (x[:-2, 2:] + 2 * x[1:-1, 2:] + x[2:, 2:]) - (x[:-2, :-2] + 2 * x[1:-1, :-2] + x[2:, :-2])
    gy = (x[2:, :-2] + 2 * x[2:, 1:-1] + x[2:, 2:]) - (x[:-2, :-2] + 2 * x[:-2, 1:-1] + x[:-2, 2:])
    return float((gx * gx + gy * gy).mean())


def brenner(image: np.ndarray) -> float:
    """Brenner (BREN): mean of the larger squared 2-pixel difference, vertical or horizontal."""
    x = _as_float(image)
    dy = np.zeros_like(x)
    dx = np.zeros_like(x)
    dy[:-2, :] = (x[2:, :] - x[:-2, :]) ** 2
    dx[:, :-2] = (x[:, 2:] - x[:, :-2]) ** 2
    return float(np.maximum(dx, dy).mean())


MEASURES = {
    "focus_score": focus_score,
    "local_focus_score_20": lambda image: local_focus_score(image, 20),
    "plls": power_log_log_slope,
    "correlation_20": lambda image: correlation(image, 20),
    "variance_of_laplacian": variance_of_laplacian,
    "tenengrad": tenengrad,
    "brenner": brenner,
}


# Measures whose value grows with blur; every other measure of MEASURES shrinks with blur.
BLURRIER_IS_HIGHER = frozenset({"correlation_20"})


def defocus_score(name: str, value: float) -> float:
    """A measure's value oriented so that higher = blurrier (for ranking and thresholds)."""
    return float(value) if name in BLURRIER_IS_HIGHER else -float(value)


def measure_all(image: np.ndarray) -> dict[str, float]:
    """Every measure of `MEASURES` on one 2D image."""
    return {name: fn(image) for name, fn in MEASURES.items()}
