"""Empty fields and foreground patches: is there anything above the camera's noise?

Per patch, `patch_foreground` (at the end of this module) tells the patches with structure above
the plane's noise σ from camera background; the whole-image level aggregates those
(`miq.assessment.assessment_from_probabilities`). Per plane, the rest of this module:

An empty field (camera background only: offset, shot and read noise, perhaps a smooth
illumination gradient or vignetting) has no focus to rate; without this test it is rated
level 10, "out of focus". `content_score` measures how far the field's structure stands above
its pixel noise:

* **noise σ** (DN): the median absolute first difference, horizontal and vertical, over about
  65 000 evenly spaced pixel pairs, / (0.6745 · √2). Differences ignore smooth structure and
  the median ignores edges. Integer data (integer dtypes, or floats that hold only integers,
  as `miq.io.read_planes` returns 8/16-bit files) get a fixed triangular dither of ±1 DN on the
  differences, so that heavily quantised backgrounds (8-bit, a few DN) give a smooth, non-zero σ
  that includes the quantisation noise.
* **structure** (DN): the plane's means over 8×8-pixel blocks (4–8 px on planes under 128 px
  a side), which average the noise down 8-fold; minus a smooth background, a 2-D polynomial of
  degree ≤ 6 fitted to the block means by least squares and refitted without the blocks more
  than 3 robust σ from the first fit, so that an illumination gradient or vignetting (down to
  30 % in the corners) is not content; then the spread between the 3rd-largest and the
  3rd-smallest residual. Order statistics (not percentiles) keep a single cell in a large field;
  taking the 3rd keeps 2 hot blocks out, and the pixels of the blocks in the tails are first
  clipped at the plane's median + 64 σ so that hot pixels never count.
* **score** = structure / noise σ, a pure number: it does not change when the plane is
  multiplied by a gain or shifted by an offset (any dtype, negative values too). Pure noise
  scores about 2·z₍₃₎/8 ≈ 1 on a 2048² plane (z₍₃₎ ≈ 3.9, the 3rd-largest of 65 536 normal
  values), about 0.8 at 512²; structure adds to it.

Conventions: a plane whose block means are all equal (a constant plane, whatever its dtype)
scores 0 (empty); a plane with structure and no noise at all (σ = 0: non-integer floats with
identical neighbours) scores ``inf`` (content). The caller checks that the plane is finite and
at least 84 px a side.

Threshold (lab notebook: ``docs/lab-notebook/empty-fields.md``, 2026-11-29). Simulated camera
backgrounds (offset 100 / 1000 DN, Poisson backgrounds 0–1000 e⁻, read noise 0–10 DN; flat,
±20 % gradient, vignetting to 76 % in the corners, both, and vignetting to 30 %; 512² and
2048²; uint16 and two 8-bit versions; 720 planes) score at most 1.56 (1.07 without the 30 %
vignetting). Real content scores at least 3.96 (a sharp 8-bit nuclear-pore texture that fills
the field), 7.03 simulated 20 µm out of focus (level 10) at the evaluation's brightness, 77.9
on BBBC006 z00 (~32 µm), 17.0 on the real stacks' planes. The threshold 2.5 sits 1.6× above
the worst empty field and 1.6× below the least real content (2.8× below level 10).
Dimmed 3-fold (exposure factor 0.3) every field stays above it; dimmed 10-, 30- and 100-fold,
2, 5 and 9 of 242 fields fall below it, as their signal sinks into the background noise.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = [
    "EMPTY_THRESHOLD",
    "FOREGROUND_SPREAD",
    "FOREGROUND_STD",
    "content_score",
    "is_empty",
    "noise_sigma",
    "noise_sigma_of_samples",
    "noise_sample_positions",
    "patch_foreground",
    "patch_validity_and_foreground",
]

EMPTY_THRESHOLD = 2.5
"""`is_empty` ⇔ `content_score` < this (structure in units of the pixel noise σ)."""

_NOISE_PAIRS = 1 << 16  # pixel pairs sampled for the noise σ
_MAD_TO_SIGMA = 1.0 / (0.6744897501960817 * np.sqrt(2.0))
_CLIP_SIGMAS = 64.0  # hot pixels are clipped at median + this many σ
_FIT_BLOCKS = 1 << 14  # block means used for the background fit (evenly subsampled)
_ORDER = 3  # spread = 3rd-largest − 3rd-smallest block residual
_CLIP_ROUNDS = 16  # rounds of hot-pixel clipping of the upper tail (64 blocks each)
_MAX_DEGREE = 6


def _block_size(shape: tuple[int, ...]) -> int:
    return int(min(8, max(4, min(shape) // 16)))


@functools.lru_cache(maxsize=4)
def _dither(n: int) -> np.ndarray:
    """A fixed triangular dither on [-1, 1] (difference of two uniform values)."""
    rng = np.random.default_rng(0)
    return (rng.random(n, dtype=np.float32) - rng.random(n, dtype=np.float32)).astype(np.float32)


def noise_sample_positions(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows and columns (indices) whose first differences `noise_sigma` uses: about
    65 000 pixel pairs, evenly spaced."""
    rows = np.linspace(0, height - 1, max(1, min(height, _NOISE_PAIRS // (2 * width))))
    cols = np.linspace(0, width - 1, max(1, min(width, _NOISE_PAIRS // (2 * height))))
    return rows.astype(int), cols.astype(int)


def noise_sigma(plane: np.ndarray) -> float:
    """Robust pixel-noise σ (DN) of a 2-D plane from its horizontal and vertical first
    differences (median absolute difference / (0.6745 · √2)); integer data are dithered first
    (see the module's description)."""
    a = np.asarray(plane)
    rows, cols = noise_sample_positions(*a.shape)
    return noise_sigma_of_samples(a[rows], a[:, cols])


def noise_sigma_of_samples(rows: np.ndarray, cols: np.ndarray) -> float:
    """`noise_sigma` from its sampled rows (r, W) and columns (H, c) of the plane (the
    positions of `noise_sample_positions`), so that a plane read in bands gives the same σ."""
    ft = np.float32 if rows.dtype.itemsize <= 2 else np.float64
    d = np.concatenate(
        [np.diff(rows.astype(ft), axis=1).ravel(), np.diff(cols.astype(ft), axis=0).ravel()]
    )
    integers = rows.dtype.kind in "iub" or bool(
        np.all(rows == np.round(rows)) and np.all(cols == np.round(cols))
    )
    if integers:
        d += _dither(d.size)
    d = np.abs(d)
    mid = d.size // 2
    return float(np.partition(d, mid)[mid]) * _MAD_TO_SIGMA


@functools.lru_cache(maxsize=16)
def _powers(n: int, degree: int) -> np.ndarray:
    """(n, degree + 1): t**0 … t**degree at n points evenly spread over [-1, 1] (read-only; the
    same for every plane of this size, so computed once)."""
    powers = np.linspace(-1.0, 1.0, n)[:, None] ** np.arange(degree + 1)
    powers.setflags(write=False)
    return powers


def _largest(values: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest of the flat ``values`` (1 ≤ n ≤ values.size), in no order;
    among equal values at the boundary, any. The same set as
    ``np.argpartition(values, values.size - n)[-n:]``, at a fraction of its cost on a large plane's
    block residuals: the n-th largest of every 8th value is a threshold that at least n values
    reach (those n themselves), and only the values that reach it (about 8n) are partitioned."""
    sample = values[::8]
    if sample.size <= n:
        return np.argpartition(values, values.size - n)[values.size - n :]
    threshold = np.partition(sample, sample.size - n)[sample.size - n]
    candidates = np.flatnonzero(values >= threshold)
    return candidates[
        np.argpartition(values[candidates], candidates.size - n)[candidates.size - n :]
    ]


def _terms(degree: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i)]


@functools.lru_cache(maxsize=8)
def _fit_design(ny: int, nx: int, step: int, degree: int) -> tuple[np.ndarray, np.ndarray]:
    """Design matrix X of the polynomial x**i · y**j (i + j ≤ degree) on every ``step``-th
    block row and column, one row per block (row-major), and its Gram matrix XᵀX (the same for
    every plane of this shape, so computed once)."""
    py, px = _powers(ny, degree)[::step], _powers(nx, degree)[::step]
    xs = np.stack([np.outer(py[:, j], px[:, i]).ravel() for i, j in _terms(degree)], axis=1)
    xs.setflags(write=False)
    gram = xs.T @ xs
    gram.setflags(write=False)
    return xs, gram


def _background(means: np.ndarray) -> np.ndarray:
    """Smooth background of the block means: robust least-squares 2-D polynomial."""
    ny, nx = means.shape
    degree = min(_MAX_DEGREE, max(1, min(ny, nx) // 4))
    step = max(1, int(np.sqrt(ny * nx / _FIT_BLOCKS)))
    xs, gram = _fit_design(ny, nx, step, degree)
    ms = means[::step, ::step].ravel()
    coef = np.linalg.lstsq(gram, xs.T @ ms, rcond=None)[0]
    rs = ms - xs @ coef
    keep = np.abs(rs) <= 3 * 1.4826 * np.median(np.abs(rs - np.median(rs)))
    n_keep = int(keep.sum())
    if n_keep > 2 * xs.shape[1]:
        if n_keep >= keep.size // 2:  # few outliers: take their rows out of the full Gram matrix
            out = xs[~keep]
            gram_kept = gram - out.T @ out
        else:
            kept = xs[keep]
            gram_kept = kept.T @ kept
        coef = np.linalg.lstsq(gram_kept, xs.T @ np.where(keep, ms, 0.0), rcond=None)[0]
    c = np.zeros((degree + 1, degree + 1))
    for (i, j), value in zip(_terms(degree), coef):
        c[j, i] = value
    return _powers(ny, degree) @ c @ _powers(nx, degree).T


def _clip_tails(blocks: np.ndarray, means: np.ndarray, r: np.ndarray, k: int, hi: float):
    """Recompute the means of the blocks in the upper tail with their pixels clipped at ``hi``
    (hot pixels), 64 of the largest residuals at a time (at most `_CLIP_ROUNDS` times), until
    the k largest residuals are all clipped blocks; ``means`` and ``r`` (flat, one per block)
    are updated in place.

    Only the initially largest 64 × (`_CLIP_ROUNDS` + 1) residuals are searched: clipping only
    lowers a residual, and at most 64 × (`_CLIP_ROUNDS` − 1) blocks are clipped before the last
    round, so at least 64 untouched blocks always stay above any block outside that pool (the
    same blocks are clipped as when searching all, at a fraction of the cost on large planes)."""
    batch = min(r.size, 64)
    pool_size = batch * (_CLIP_ROUNDS + 1)
    if r.size > pool_size:
        pool = _largest(r, pool_size)
    else:
        pool = np.arange(r.size)
    rp = r[pool]  # the pool's residuals, kept in step with r
    done = np.zeros(pool.size, dtype=bool)
    clipped_pool = None  # every pool block's clipped mean, once a second round is needed
    for round_ in range(_CLIP_ROUNDS):
        top = np.argpartition(rp, rp.size - batch)[rp.size - batch :]  # k ≤ batch
        if done[top[np.argpartition(rp[top], batch - k)[batch - k :]]].all():
            return
        todo = top[~done[top]]
        if round_ == 1:  # many bright blocks: clip the rest of the pool at once, not 64 a round
            clipped_pool = _clipped_means(blocks, pool, hi)
        if clipped_pool is None:
            clipped = _clipped_means(blocks, pool[todo], hi)
        else:
            clipped = clipped_pool[todo]
        index = pool[todo]
        drop = means[index] - clipped
        r[index] -= drop
        rp[todo] -= drop
        means[index] = clipped
        done[todo] = True


def _clipped_means(blocks: np.ndarray, index: np.ndarray, hi: float) -> np.ndarray:
    """The means (float64) of the blocks at flat ``index`` of ``blocks`` (ny, b, nx, b), their
    pixels clipped at ``hi``."""
    iy, ix = np.divmod(index, blocks.shape[2])
    return np.minimum(blocks[iy, :, ix, :].astype(np.float64), hi).mean(axis=(1, 2))


def _block_means(a: np.ndarray, b: int) -> np.ndarray:
    """(H // b, W // b) float64: the means of ``a``'s b×b-px blocks (``a`` cropped to whole
    blocks). 8/16-bit unsigned planes are summed exactly in uint32 (b² · 65 535 < 2³² for b ≤
    256), the b columns of each block added one strided slice at a time: numpy's reduction over
    a short last axis is 2 × slower at 2048² px."""
    ny, nx = a.shape[0] // b, a.shape[1] // b
    rows = a.reshape(ny, b, nx * b)
    if a.dtype.kind == "u" and a.dtype.itemsize <= 2 and b <= 256:
        columns = rows.sum(axis=1, dtype=np.uint32).reshape(ny, nx, b)
        sums = columns[:, :, 0].copy()
        for i in range(1, b):
            sums += columns[:, :, i]
        return sums / (b * b)
    return rows.sum(axis=1, dtype=np.float64).reshape(ny, nx, b).sum(axis=2) / (b * b)


def _content_parts(
    plane: np.ndarray, *, block: int | None = None, sigma: float | None = None
) -> tuple[float, float]:
    """(structure, noise σ), both in DN; ``sigma``: the plane's `noise_sigma`, when the caller
    has it already."""
    a = np.asarray(plane)
    if a.ndim != 2:
        raise ValueError(f"content_score expects a 2-D plane, got shape {a.shape}")
    if a.dtype.kind == "b":
        a = a.view(np.uint8)
    if sigma is None:
        sigma = noise_sigma(a)
    b = block or _block_size(a.shape)
    ny, nx = a.shape[0] // b, a.shape[1] // b
    a = a[: ny * b, : nx * b]
    means = _block_means(a, b)
    if means.min() == means.max():
        return 0.0, sigma
    r = (means - _background(means)).ravel()
    k = min(_ORDER, r.size // 2)
    if sigma > 0.0:
        h, w = a.shape
        med = float(np.median(a[:: max(1, h // 128), :: max(1, w // 128)]))
        _clip_tails(a.reshape(ny, b, nx, b), means.ravel().copy(), r, k, med + _CLIP_SIGMAS * sigma)
    kth_largest = r[_largest(r, k)].min()
    kth_smallest = r[_largest(-r, k)].max()
    return float(kth_largest - kth_smallest), sigma


def content_score(plane: np.ndarray, *, sigma: float | None = None) -> float:
    """How far a plane's structure stands above its pixel noise, in units of the noise σ.

    Parameters
    ----------
    plane : 2-D array, any numeric dtype (integers, floats, negative offsets), finite, ≥ 84 px
        a side (the caller checks both).
    sigma : the plane's `noise_sigma` (DN), when the caller has computed it already.

    Returns
    -------
    float ≥ 0: the spread of the plane's 8×8-block means around a smooth background (3rd-largest
    − 3rd-smallest), divided by the robust pixel-noise σ. Camera backgrounds score ≈ 1, content
    far more; 0 for a constant plane, ``inf`` for structure without any noise. Unchanged by gain
    and offset. See the module's description for the method and `EMPTY_THRESHOLD`.
    """
    spread, sigma = _content_parts(plane, sigma=sigma)
    if spread == 0.0:
        return 0.0
    if sigma == 0.0:
        return float("inf")
    return spread / sigma


def is_empty(plane: np.ndarray) -> bool:
    """True when the plane holds nothing above its noise: `content_score` < `EMPTY_THRESHOLD`."""
    return content_score(plane) < EMPTY_THRESHOLD


FOREGROUND_SPREAD = 3.0
"""A patch is foreground when the spread of its 7×7-px block means reaches this many σ …"""
FOREGROUND_STD = 1.5
"""… or its pixels' standard deviation this many σ (fine texture that block means average out)."""
_PATCH_BLOCK = 7


@functools.lru_cache(maxsize=4)
def _block_sum_matrix(p: int) -> np.ndarray:
    """(p // 7, p) float32: row i sums pixels 7i … 7i + 6 (the tail past the last block is left
    out)."""
    nb = p // _PATCH_BLOCK
    a = np.zeros((nb, p), np.float32)
    for i in range(nb):
        a[i, i * _PATCH_BLOCK : (i + 1) * _PATCH_BLOCK] = 1.0
    return a


def patch_foreground(patches: np.ndarray, sigma: float) -> np.ndarray:
    """Which patches hold structure above the camera noise (foreground), and which are
    background only: the patches that carry information on focus.

    Parameters
    ----------
    patches : (N, P, P) in any linear scale (DN, or mapped to unit range).
    sigma : the plane's pixel-noise σ (`noise_sigma`) in the same scale.

    Returns
    -------
    (N,) bool: the spread of the patch's 7×7-px block means (max − min; pure noise gives about
    0.8 σ on an 84-px patch) ≥ `FOREGROUND_SPREAD` σ, or the standard deviation of its pixels
    (pure noise: 1 σ) ≥ `FOREGROUND_STD` σ. With σ = 0 (no noise) every non-constant patch is
    foreground. Both ratios are unchanged by gain and offset.
    """
    return patch_validity_and_foreground(patches, sigma)[1]


def patch_validity_and_foreground(
    patches: np.ndarray, sigma: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """(valid, foreground), each (N,) bool, for patches (N, P, P): valid = not constant (max >
    min); foreground as `patch_foreground` (all True when ``sigma`` is None). One pass over the
    pixels for both: a patch whose block means differ is not constant, so max and min are
    computed only for the patches whose block means (nearly) agree."""
    x = np.asarray(patches, dtype=np.float32)
    n, p = x.shape[0], x.shape[1]
    a = _block_sum_matrix(p)
    means = (a @ x @ a.T).reshape(n, -1) / np.float32(_PATCH_BLOCK * _PATCH_BLOCK)
    top, bottom = means.max(axis=1), means.min(axis=1)
    spread = top - bottom
    # block sums of a constant patch can differ by rounding (≲ 49 float32 ulps of the value):
    # below this bound the pixels themselves decide
    undecided = np.flatnonzero(spread <= 1e-4 * np.maximum(np.abs(top), np.abs(bottom)))
    valid = np.ones(n, dtype=bool)
    if undecided.size:
        flat = x[undecided].reshape(undecided.size, -1)
        valid[undecided] = flat.max(axis=1) > flat.min(axis=1)
    if sigma is None:
        return valid, np.ones(n, dtype=bool)
    if sigma <= 0.0:
        return valid, valid.copy()
    foreground = spread >= FOREGROUND_SPREAD * sigma
    rest = np.flatnonzero(~foreground)  # the pixel spread only where the blocks did not decide
    if rest.size:
        r = x[rest].reshape(rest.size, -1) - means[rest].mean(axis=1)[:, None]
        std = np.sqrt(np.einsum("ij,ij->i", r, r) / r.shape[1])
        foreground[rest] = std >= FOREGROUND_STD * sigma
    return valid, foreground
