"""Certainty, aggregation of patch predictions, and the whole-image assessment.

Semantics follow Yang et al. (2018): certainty = 1 − H(p)/ln K per distribution; the whole-image
distribution is the certainty-weighted mean of the patch distributions; P(in focus) is the
probability of levels 0–2 (as the original Fiji macro), flagged in focus when ≥ 0.5. The
reported level is the most probable level on the side of that call (`level_on_call_side`), so
that the level and the flag never contradict each other.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .tiling import PatchGrid, extract_patches, patch_grid

__all__ = [
    "certainty",
    "aggregate",
    "content_temperature",
    "level_on_call_side",
    "ImageAssessment",
    "assess",
    "AssessOptions",
    "prepare_patches",
]


def certainty(probabilities: np.ndarray) -> np.ndarray:
    """1 − H(p)/ln K along the last axis (natural-log entropy of p normalised to sum 1).

    Uniform p → 0, one-hot p → 1; a distribution summing to 0 gets certainty 0.
    Shape: (..., K) → (...).
    """
    p = np.asarray(probabilities, dtype=np.float64)
    k = p.shape[-1]
    total = p.sum(axis=-1, keepdims=True)
    safe = np.where(total > 0, total, 1.0)
    q = p / safe
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(q > 0, q * np.log(q), 0.0)
    entropy = -plogp.sum(axis=-1)
    out = 1.0 - entropy / np.log(k)
    out = np.where(total[..., 0] > 0, out, 0.0)
    return np.clip(out, 0.0, 1.0)


def content_temperature(temperature: float, slope: float, centre: float, gap):
    """T = ``temperature`` · exp(``slope`` · (``gap`` − ``centre``)), one per ``gap`` (`aggregate`)."""
    return temperature * np.exp(slope * (np.asarray(gap, dtype=np.float64) - centre))


def aggregate(
    probabilities: np.ndarray,
    weights_valid: np.ndarray | None = None,
    *,
    temperature: float = 1.0,
    temperature_slope: float = 0.0,
    temperature_centre: float = 0.0,
) -> dict:
    """Whole-image prediction from patch distributions.

    Parameters
    ----------
    probabilities : (N, K) patch distributions.
    weights_valid : (N,) bool, patches to use (default all).
    temperature : calibration of the whole-image distribution: p ← p^(1/T), renormalised
        (the model's ``image_temperature``; 1 = none). The most probable level never changes.
    temperature_slope, temperature_centre : a temperature that depends on the image:
        T = temperature · exp(slope · (gap − centre)), gap = the patches' mean certainty − the
        certainty of their aggregate before sharpening (high when confident patches disagree);
        slope 0 (default): T = temperature.

    Returns
    -------
    dict with ``probabilities`` (K,), ``level`` (argmax, ties → lowest: the original's level;
    `ImageAssessment.level` is `level_on_call_side` of the same distribution), ``level_mean``
    (expected level), and certainties ``mean``, ``max``, ``aggregate`` (of the aggregated
    distribution) and ``weighted`` (Σc²/Σc).
    """
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1, np.shape(probabilities)[-1])
    if weights_valid is not None:
        p = p[np.asarray(weights_valid, dtype=bool).ravel()]
    k = p.shape[-1]
    if len(p) == 0:
        nan = float("nan")
        return {
            "probabilities": np.full(k, nan),
            "level": -1,
            "level_mean": nan,
            "certainty_mean": nan,
            "certainty_max": nan,
            "certainty_aggregate": nan,
            "certainty_weighted": nan,
        }
    c = certainty(p)
    total = c.sum()
    weights = c / total if total > 0 else np.full(len(c), 1.0 / len(c))
    agg = weights @ p
    if temperature_slope != 0.0:
        gap = float(c.mean() - certainty(agg / agg.sum()))
        temperature = float(
            content_temperature(temperature, temperature_slope, temperature_centre, gap)
        )
    if temperature != 1.0:
        with np.errstate(divide="ignore"):
            agg = np.exp((np.log(agg) - np.log(agg.max())) / temperature)
    agg = agg / agg.sum()
    return {
        "probabilities": agg,
        "level": int(np.argmax(agg)),
        "level_mean": float(agg @ np.arange(k)),
        "certainty_mean": float(c.mean()),
        "certainty_max": float(c.max()),
        "certainty_aggregate": float(certainty(agg)),
        "certainty_weighted": float((c * c).sum() / total) if total > 0 else float(c.mean()),
    }


def level_on_call_side(
    probabilities: np.ndarray, in_focus_levels: int = 3, threshold: float = 0.5
) -> np.ndarray:
    """The reported level of whole-image distributions (..., K): the most probable level among
    those the in/out call allows — levels 0 .. ``in_focus_levels`` − 1 when P(those levels) ≥
    ``threshold``, the others otherwise (ties → the lower level). Returns integer levels of
    shape (...,).

    It differs from the plain arg-max only on distributions with a mode on each side of the
    call (e.g. sharp nuclei on a blurred background): there the arg-max can say "in focus" while
    most of the probability says "out". Chosen on training fields, then checked on held-out ones:
    docs/lab-notebook/level-rule.md.
    """
    q = np.asarray(probabilities, dtype=np.float64)
    in_focus_side = np.arange(q.shape[-1]) < in_focus_levels
    called_in = q[..., in_focus_side].sum(axis=-1) >= threshold
    allowed = in_focus_side == called_in[..., None]
    return np.where(allowed, q, -np.inf).argmax(axis=-1)


@dataclass(frozen=True)
class AssessOptions:
    """Inference options.

    in_focus_levels : levels counted as in focus (0 .. in_focus_levels − 1); default 3 (0–2).
    in_focus_threshold : P(in focus) at or above which an image is flagged in focus.
    pixel_size_um : the image's pixel size in µm; when given and different from the model's
        (0.65 µm for the bundled model), the image is resampled to the model's pixel size before
        rating (see `miq.resampling`), and patch maps refer to the resampled image.
        None: for a file, the pixel size it records (below); for an array, the model's.
    use_file_pixel_size : for files: when ``pixel_size_um`` is None, take the pixel size the
        file records (OME ``PhysicalSizeX``, ImageJ calibration in µm/nm/mm) and resample to the
        model's; False takes every file to be at the model's pixel size.
    """

    in_focus_levels: int = 3
    in_focus_threshold: float = 0.5
    pixel_size_um: float | None = None
    use_file_pixel_size: bool = True

    def for_file(self, recorded_um: float | None, model_pixel_size_um: float):
        """The options to rate a file that records ``recorded_um`` (µm per px, or None) with,
        the pixel size it is taken to have (µm) and where that comes from (``"option"``,
        ``"file"`` or ``"model"``). A recorded size within 2 % of the model's is used as is
        (no resampling)."""
        from .resampling import pixel_size_rule

        size, origin, resample = pixel_size_rule(
            self.pixel_size_um, recorded_um, self.use_file_pixel_size, model_pixel_size_um
        )
        if origin == "file" and resample:
            return dataclasses.replace(self, pixel_size_um=size), size, origin
        return self, size, origin


@dataclass
class ImageAssessment:
    """Focus assessment of one 2D image.

    Patch maps have the grid's shape (rows, cols); ``patch_probabilities`` is (rows, cols, K).
    ``level``: the most probable level on the side of the in/out call (`level_on_call_side`);
    ``patch_level``: each patch's most probable level. ``defocus_um`` = ``level_mean`` × the
    model's µm per level. ``scale``: output px per input px of the resampling to the model's
    pixel size (1.0 = not resampled); ``pixel_size_um``: the input pixel size in µm it assumed
    (None = the model's). A plane rated in bands
    (`miq.large.assess_banded`) has ``banded`` set and keeps ``preview``, the plane
    subsampled by ``preview_factor`` (for drawing its overlay). ``content_score``: how far the
    plane's structure stands above its pixel noise (`miq.content.content_score`); ``empty``:
    below `miq.content.EMPTY_THRESHOLD`, camera background only — its level and in/out call
    mean nothing (results.csv leaves them blank). ``patch_foreground`` (rows, cols): the patches
    with structure above the plane's pixel noise (`miq.content.patch_foreground`), which the
    whole-image distribution aggregates (every valid patch when there is none; None: not
    computed, every patch counts).
    """

    grid: PatchGrid
    patch_probabilities: np.ndarray
    patch_certainty: np.ndarray
    patch_valid: np.ndarray
    probabilities: np.ndarray
    level: int
    level_mean: float
    defocus_um: float
    certainty_mean: float
    certainty_max: float
    certainty_aggregate: float
    certainty_weighted: float
    p_in_focus: float
    in_focus: bool
    scale: float = 1.0
    pixel_size_um: float | None = None
    banded: bool = False
    preview: np.ndarray | None = field(default=None, repr=False)
    preview_factor: int = 1
    content_score: float = float("inf")
    empty: bool = False
    patch_foreground: np.ndarray | None = None

    @property
    def certainty(self) -> float:
        """The headline certainty: that of the aggregated distribution."""
        return self.certainty_aggregate

    @property
    def patch_level(self) -> np.ndarray:
        """Most probable level per patch (rows, cols), −1 where the patch is not valid."""
        return np.where(self.patch_valid, self.patch_probabilities.argmax(-1), -1)

    @property
    def n_patches(self) -> int:
        return int(self.patch_valid.sum())

    @property
    def n_foreground(self) -> int:
        """Valid patches with content above the noise (`miq.content.patch_foreground`)."""
        if self.patch_foreground is None:
            return self.n_patches
        return int((self.patch_valid & self.patch_foreground).sum())

    def set_content(self, plane: np.ndarray, sigma: float | None = None) -> None:
        """Score the plane's content above its noise (H, W) and call it empty or not; ``sigma``:
        the plane's `miq.content.noise_sigma` (DN), when already computed."""
        from .content import EMPTY_THRESHOLD, content_score

        self.content_score = float(content_score(plane, sigma=sigma))
        self.empty = bool(self.content_score < EMPTY_THRESHOLD)

    def summary(self) -> dict:
        """Flat dict of the image-level numbers (as in ``results.csv``)."""
        row = {
            "level": self.level,
            "level_mean": self.level_mean,
            "defocus_um": self.defocus_um,
            "certainty": self.certainty_aggregate,
            "certainty_mean": self.certainty_mean,
            "certainty_max": self.certainty_max,
            "certainty_weighted": self.certainty_weighted,
            "p_in_focus": self.p_in_focus,
            "in_focus": self.in_focus,
            "n_patches": self.n_patches,
            "n_foreground": self.n_foreground,
        }
        row.update({f"prob_{k}": float(p) for k, p in enumerate(self.probabilities)})
        return row


def assess(
    image: np.ndarray,
    model=None,
    *,
    options: AssessOptions = AssessOptions(),
    name: str = "array",
) -> ImageAssessment:
    """Rate the focus of a 2D image, per patch and as a whole.

    Parameters
    ----------
    image : (H, W) array, any real dtype and intensity scale, H and W ≥ the model's patch size
        (84 px). NaN/Inf or a constant image raise `miq.errors.ImageContentError`.
    model : a `miq.FocusModel`; default the bundled model (loaded once and cached).
    options : in-focus definition.
    name : how errors refer to the image (e.g. its file name).

    Returns
    -------
    `ImageAssessment`.
    """
    from .content import noise_sigma
    from .model.runtime import default_model

    model = model or default_model()
    data, scale, (lo, hi) = _checked_plane(image, model, options, name)
    grid = patch_grid(data.shape, model.patch_size)
    content_plane = np.asarray(image) if scale != 1.0 else data  # the camera's pixels
    sigma = noise_sigma(content_plane)  # once, for the foreground and the empty test
    probs, valid, foreground = rate_patch_rows(data, grid.ys, grid.xs, lo, hi, model, sigma * scale)
    result = assessment_from_probabilities(grid, probs, valid, model, options, name, foreground)
    result.scale = scale
    result.pixel_size_um = options.pixel_size_um
    result.set_content(content_plane, sigma)
    return result


def rated_noise_sigma(image: np.ndarray, rated: np.ndarray, scale: float) -> float:
    """Pixel-noise σ (DN) against which the patches of ``rated`` (the plane as rated: ``image``
    resampled by ``scale`` output px per input px, or ``image`` itself when ``scale`` is 1) are
    tested for foreground (`miq.content.patch_foreground`).

    Resampled: ``image``'s σ × ``scale``. Area-averaging by 1/scale divides independent noise by
    1/scale; bicubic upsampling correlates neighbouring pixels (their first differences, and so
    `miq.content.noise_sigma` of the upsampled plane, shrink), but a 7×7-px block of the rated
    plane still averages (7/scale)² input pixels, whose noise is that of independent pixels of
    σ × scale averaged over 7×7. Either way the block test sees the noise it would see on a
    camera at the model's pixel size."""
    from .content import noise_sigma

    return noise_sigma(np.asarray(image) if scale != 1.0 else rated) * scale


def rate_patch_rows(
    band: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    lo: float,
    hi: float,
    model,
    sigma: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rate the patches of ``band`` (H, W) at rows ``ys`` × columns ``xs`` (top-left corners,
    px), a few patch rows at a time: each row is mapped to [0, 1] with the plane's range
    ``lo``–``hi`` (as `miq.io.to_unit_range` maps the whole plane) and rated.

    Returns probabilities (len(ys)·len(xs), K), validity (False for constant patches) and
    foreground (`miq.content.patch_foreground` against the plane's pixel noise ``sigma`` in DN;
    all True when ``sigma`` is None), in row-major order. The rows go to the network in groups
    of as many whole rows as fit in the model's ``batch_size`` patches (at least one): on a CPU
    (64) one or two rows, whose float32 copy stays in cache; on a GPU (8192) a whole 2048² plane
    in one call instead of 25 small ones. Only that group is held in float32, whatever the
    plane's size (what lets large planes be read in bands).
    """
    from .content import patch_validity_and_foreground
    from .io import unit_map
    from .tiling import evenly_spaced_runs as runs

    p = model.patch_size
    windows = np.lib.stride_tricks.sliding_window_view(band, (p, p))  # a view, no copy
    pieces = [(piece, len(range(piece.start, piece.stop, piece.step))) for piece in runs(xs)]
    n_cols = len(xs)
    rows_per_call = max(1, min(len(ys), getattr(model, "batch_size", 1) // n_cols))
    batch = np.empty((rows_per_call * n_cols, p, p), np.float32)  # reused for every group
    probs, valid, foreground = [], [], []
    sigma_unit = None  # σ in the unit range the patches are mapped to
    if sigma is not None:
        sigma_unit = sigma / (hi - lo) if hi > lo else 0.0
    for first in range(0, len(ys), rows_per_call):
        group = ys[first : first + rows_per_call]
        # map each row's patches from the input straight into the contiguous float32 batch (the
        # windows of each evenly spaced run of columns are a strided view: read once, not copied)
        start = 0
        for y in group:
            for piece, n in pieces:
                unit_map(windows[y, piece], lo, hi, out=batch[start : start + n])
                start += n
        patches = batch[:start]
        group_valid, group_foreground = patch_validity_and_foreground(patches, sigma_unit)
        valid.append(group_valid)
        foreground.append(group_foreground)
        probs.append(model.predict(patches, calibrated=False))
    # calibrated once for the whole plane (row-wise, so the same as per group, but one call)
    return model.calibrate(np.concatenate(probs)), np.concatenate(valid), np.concatenate(foreground)


def _checked_plane(
    image: np.ndarray, model, options: AssessOptions, name: str
) -> tuple[np.ndarray, float, tuple[float, float]]:
    """The plane checked (2D, real, finite, not constant, ≥ one patch) and resampled to the
    model's pixel size if ``options`` asks; the resampling factor (1.0 = none); and the (min,
    max) of the plane returned."""
    from .io import check_plane

    data = np.asarray(image)
    if data.dtype.kind == "b":
        data = data.astype(np.float32)
    if data.dtype.kind not in "iuf":
        from .errors import ImageContentError

        raise ImageContentError(f"{name}: unsupported pixel type {data.dtype}")
    scale = 1.0
    if options.pixel_size_um is not None:
        from .errors import ImageContentError
        from .resampling import resample_to_pixel_size, rescale_factor

        check_plane(data, name, 1)
        scale = rescale_factor(options.pixel_size_um, model.pixel_size_um)
        try:
            data = resample_to_pixel_size(data, options.pixel_size_um, model.pixel_size_um)
        except ImageContentError as exc:
            raise ImageContentError(f"{name}: {exc}") from None
    value_range = check_plane(
        data, name if scale == 1.0 else f"{name} (resampled ×{scale:.3g})", model.patch_size
    )
    return data, scale, value_range


def prepare_patches(
    image: np.ndarray, model, *, options: AssessOptions = AssessOptions(), name: str = "array"
) -> tuple[PatchGrid, np.ndarray, np.ndarray, float, np.ndarray]:
    """Check a 2D image, resample it to the model's pixel size if asked, and cut its patches.

    Returns the patch grid, patches (N, P, P) float32 in unit range, a validity mask (N,) (False
    for constant patches), the resampling factor (output px per input px; 1.0 = none) and the
    foreground mask (N,) (`miq.content.patch_foreground`: content above the plane's noise).
    Raises `miq.errors.ImageContentError` for images that cannot be rated.
    (`assess` rates the same patches row by row instead of cutting them all first.)
    """
    from .content import patch_validity_and_foreground
    from .io import unit_map

    data, scale, (lo, hi) = _checked_plane(image, model, options, name)
    unit = unit_map(data, lo, hi)
    grid = patch_grid(unit.shape, model.patch_size)
    patches = extract_patches(unit, grid).reshape(-1, model.patch_size, model.patch_size)
    sigma = rated_noise_sigma(image, data, scale) / (hi - lo)  # in unit range, as the patches
    valid, foreground = patch_validity_and_foreground(patches, sigma)
    return grid, patches, valid, scale, foreground


def assessment_from_probabilities(
    grid: PatchGrid,
    probs: np.ndarray,
    valid: np.ndarray,
    model,
    options: AssessOptions,
    name: str = "array",
    foreground: np.ndarray | None = None,
) -> ImageAssessment:
    """Aggregate per-patch probabilities (N, K), N = grid rows × cols in row-major order,
    validity (N,) and foreground (N,) into an `ImageAssessment`.

    The whole-image distribution aggregates the valid foreground patches (content above the
    noise: focus is defined only where there is something to see; `miq.content.patch_foreground`),
    or every valid patch when none is foreground (``foreground`` None: every patch counts).

    Raises `miq.errors.ImageContentError` (one line naming ``name``) when no patch is valid
    (e.g. a step edge exactly on the patch grid: every patch constant), as there is then
    nothing to rate."""
    if not np.any(valid):
        from .errors import ImageContentError

        p = grid.patch_size
        raise ImageContentError(
            f"{name}: no patch has enough content to rate (all {grid.n_patches} patches of "
            f"{p}×{p} px are constant); nothing to rate"
        )
    k = probs.shape[-1]
    foreground = np.ones_like(valid) if foreground is None else np.asarray(foreground, bool)
    used = valid & foreground if np.any(valid & foreground) else valid
    agg = aggregate(
        probs,
        used,
        temperature=getattr(model, "image_temperature", 1.0),
        temperature_slope=getattr(model, "image_temperature_slope", 0.0),
        temperature_centre=getattr(model, "image_temperature_centre", 0.0),
    )
    p_in = float(agg["probabilities"][: options.in_focus_levels].sum())
    level = int(
        level_on_call_side(
            agg["probabilities"], options.in_focus_levels, options.in_focus_threshold
        )
    )
    patch_cert = np.where(valid, certainty(probs), 0.0)
    return ImageAssessment(
        grid=grid,
        patch_probabilities=probs.reshape(grid.shape + (k,)).astype(np.float32),
        patch_certainty=patch_cert.reshape(grid.shape).astype(np.float32),
        patch_valid=valid.reshape(grid.shape),
        patch_foreground=foreground.reshape(grid.shape),
        probabilities=agg["probabilities"],
        level=level,
        level_mean=agg["level_mean"],
        defocus_um=agg["level_mean"] * model.um_per_level,
        certainty_mean=agg["certainty_mean"],
        certainty_max=agg["certainty_max"],
        certainty_aggregate=agg["certainty_aggregate"],
        certainty_weighted=agg["certainty_weighted"],
        p_in_focus=p_in,
        in_focus=bool(p_in >= options.in_focus_threshold),
    )
