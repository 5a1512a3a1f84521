"""Post-hoc calibration of a trained model, fitted on synthetic validation images.

Two stages, both stored in ``model.json`` under ``"calibration"`` and applied at inference:

1. Patch level (bias + temperature): p ← softmax((log p + b) / T_patch), with one bias per level
   (b₀ = 0). It removes a systematic shift of the levels (e.g. the top levels read one low).
   Fitted first by the negative log-likelihood of the true level over valid patches, then
   refined by the NLL of the whole-image distributions the calibrated patches aggregate to
   (what `miq predict` reports), so that patches whose level cannot be told (camera background,
   sparse photon counts) do not pull the biases.
2. Image level (temperature): the certainty-weighted whole-image distribution q ← q^(1/T_image),
   renormalised, fitted by the NLL of the images' true levels, so that the probability it gives
   a level is a calibrated confidence. It never changes the most probable level (the reported
   level, on the side of the in/out call, can change where the call does).

Both fits weight the validation images by source folder (`miq.metrics.sqrt_group_weights`, as
`miq train` weights its sources), so that a folder of 96 similar fields does not outweigh every
other kind of content. The validation images are in-focus images defocused by the simulator to
every level (`miq.ground_truth.synthetic_items`); use fields that are *not* in any test set.
"""

from __future__ import annotations

import os
from datetime import date

import numpy as np

from .io.budget import DEFAULT_MEMORY_BUDGET
from .model.package import apply_patch_calibration

__all__ = [
    "apply_patch_calibration",
    "fit_patch_calibration",
    "fit_image_temperature",
    "fit_image_level_patch_calibration",
    "ValidationSet",
    "collect_validation",
    "calibrate_model",
    "MIN_CALIBRATION_PLANES",
]

#: fewer in-focus planes than this and `calibrate_model` warns: on BBBC013, a calibration fitted
#: on 2 planes was less accurate on new fields than the model's own (exact 0.93 against 0.96;
#: docs/lab-notebook/calibration-transfer.md), while 6 planes (3 fields, 2 channels) or more
#: brought the ECE to 0.016
MIN_CALIBRATION_PLANES = 6


def fit_patch_calibration(
    probabilities: np.ndarray, labels, weights=None
) -> tuple[np.ndarray, float]:
    """Per-level bias (first fixed at 0) and temperature minimising the patches' NLL
    (``weights``-weighted, default equal).

    probabilities : (N, K) uncalibrated patch probabilities; labels : (N,) true levels.
    """
    from scipy.optimize import minimize

    y = np.asarray(labels, dtype=int)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    logp = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, None))
    k = logp.shape[1]
    rows = np.arange(len(y))

    def loss(x):
        bias, t = np.r_[0.0, x[: k - 1]], np.exp(x[-1])
        z = (logp + bias) / t
        z -= z.max(axis=1, keepdims=True)
        return float(-np.average(z[rows, y] - np.log(np.exp(z).sum(axis=1)), weights=w))

    result = minimize(loss, np.zeros(k), method="L-BFGS-B")
    return np.r_[0.0, result.x[: k - 1]], float(np.exp(result.x[-1]))


def fit_image_temperature(image_probabilities: np.ndarray, labels, weights=None) -> float:
    """Temperature T minimising the (``weights``-weighted, default equal) NLL of q^(1/T)/Σ for
    whole-image distributions (M, K)."""
    from scipy.optimize import minimize_scalar

    y = np.asarray(labels, dtype=int)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    logq = np.log(np.clip(np.asarray(image_probabilities, dtype=np.float64), 1e-12, None))

    def loss(log_t):
        z = logq / np.exp(log_t)
        z -= z.max(axis=1, keepdims=True)
        nll = -(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(axis=1)))
        return float(np.average(nll, weights=w))

    return float(np.exp(minimize_scalar(loss, bounds=(-3.0, 3.0), method="bounded").x))


def sharpen(image_probabilities: np.ndarray, temperature) -> np.ndarray:
    """q^(1/T) renormalised, for whole-image distributions (M, K) and one temperature or one per
    image (M,)."""
    t = np.broadcast_to(np.asarray(temperature, dtype=np.float64), (len(image_probabilities),))
    z = np.log(np.clip(np.asarray(image_probabilities, dtype=np.float64), 1e-12, None)) / t[:, None]
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def fit_content_image_temperature(
    image_probabilities: np.ndarray, gap, labels, weights=None
) -> tuple[float, float, float]:
    """Image temperature that depends on the image, T = T₀ · exp(slope · (gap − centre)),
    minimising the (``weights``-weighted) NLL of q^(1/T)/Σ for whole-image distributions (M, K);
    ``gap`` (M,): each image's mean patch certainty − the certainty of its aggregate
    (`ValidationSet.certainty_gap`); centre = its weighted mean. Returns (T₀, slope, centre)."""
    from scipy.optimize import minimize

    y = np.asarray(labels, dtype=int)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    g = np.asarray(gap, dtype=np.float64)
    centre = float(np.average(g, weights=w))
    rows = np.arange(len(y))

    def loss(x):
        q = sharpen(image_probabilities, np.exp(x[0] + x[1] * (g - centre)))
        return float(np.average(-np.log(np.clip(q[rows, y], 1e-12, None)), weights=w))

    start = [np.log(fit_image_temperature(image_probabilities, y, w)), 0.0]
    log_t, slope = minimize(loss, start, method="Nelder-Mead").x
    return float(np.exp(log_t)), float(slope), centre


def fit_image_level_patch_calibration(
    data: ValidationSet, start: tuple[np.ndarray, float], weights=None
) -> tuple[np.ndarray, float]:
    """Per-level bias (first fixed at 0) and patch temperature minimising the (weighted) NLL of
    the images' true levels under their whole-image distributions (image temperature 1),
    starting from ``start`` (e.g. `fit_patch_calibration`'s). Images without a valid patch do
    not count."""
    from scipy.optimize import minimize

    rated = data.rated
    y = data.image_labels[rated]
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)[rated]
    k = data.probabilities.shape[1]

    def loss(x):
        q = data.image_distributions(np.r_[0.0, x[: k - 1]], float(np.exp(x[-1])))[rated]
        nll = -np.log(np.clip(q[np.arange(len(y)), y], 1e-12, None))
        return float(np.average(nll, weights=w))

    bias, t = start
    x0 = np.r_[np.asarray(bias, dtype=np.float64)[1:], np.log(t)]
    result = minimize(loss, x0, method="L-BFGS-B")
    return np.r_[0.0, result.x[: k - 1]], float(np.exp(result.x[-1]))


class ValidationSet:
    """Uncalibrated patch probabilities of synthetic validation images.

    ``probabilities`` (N, K), ``valid`` (N,), ``labels`` (N,) true level of each patch's image,
    ``image`` (N,) index of its image; ``foreground`` (N,) content above the noise (all True
    when not given); ``aggregated`` (N,) the patches each image's distribution aggregates, as
    `miq.assessment.assessment_from_probabilities` chooses them (its valid foreground patches,
    or all its valid ones when it has none); ``image_labels`` (M,) true level per image;
    ``image_groups`` (M,) the collection each image comes from (e.g. its source's folder; all
    alike when not given); ``image_names`` (M,) what each image is (e.g. "FILE @4um seed0"; empty
    strings when not given); ``rated`` (M,) images with at least one valid patch.
    """

    def __init__(
        self,
        probabilities,
        valid,
        labels,
        image,
        image_groups=None,
        foreground=None,
        image_names=None,
    ):
        from scipy.sparse import csr_matrix

        self.probabilities = np.asarray(probabilities, dtype=np.float32)
        self.valid = np.asarray(valid, dtype=bool)
        self.labels = np.asarray(labels, dtype=int)
        self.image = np.asarray(image, dtype=int)
        n_images = int(self.image.max()) + 1 if self.image.size else 0
        self.image_labels = np.zeros(n_images, dtype=int)
        self.image_labels[self.image] = self.labels
        self.image_groups = (
            np.zeros(n_images, dtype=int) if image_groups is None else np.asarray(image_groups)
        )
        self.image_names = (
            np.full(n_images, "", dtype=object) if image_names is None else np.asarray(image_names)
        )
        self.foreground = (
            np.ones_like(self.valid) if foreground is None else np.asarray(foreground, dtype=bool)
        )
        with_foreground = np.zeros(n_images, dtype=bool)
        with_foreground[self.image[self.valid & self.foreground]] = True
        self.aggregated = self.valid & (self.foreground | ~with_foreground[self.image])
        members = self.image[self.aggregated]
        # (M, aggregated patches): sums a quantity over each image's aggregated patches
        self._sum = csr_matrix(
            (np.ones(members.size), (members, np.arange(members.size))),
            shape=(n_images, members.size),
        )
        self._count = np.bincount(members, minlength=n_images).astype(np.float64)
        self.rated = self._count > 0

    def image_distributions(self, bias, patch_temperature: float) -> np.ndarray:
        """Whole-image distributions (M, K) after patch calibration (image temperature 1):
        `miq.assessment.aggregate` of each image's ``aggregated`` patches (NaN rows for images
        without a valid patch), computed for all images at once."""
        from .assessment import certainty

        p = apply_patch_calibration(self.probabilities[self.aggregated], bias, patch_temperature)
        p = p.astype(np.float64)
        c = certainty(p)
        total = self._sum @ c
        q = self._sum @ (c[:, None] * p)
        # an image whose patches are all uniform (certainty 0) gets their plain mean
        flat = (total == 0) & self.rated
        if flat.any():
            q[flat] = (self._sum[flat] @ p) / self._count[flat, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            return q / q.sum(axis=1, keepdims=True)

    def certainty_gap(self, bias, patch_temperature: float) -> np.ndarray:
        """Per image (M,): the mean certainty of its aggregated patches after patch calibration
        − the certainty of their aggregate (`image_distributions`), as
        `miq.assessment.aggregate` computes it for a content-dependent image temperature."""
        from .assessment import certainty

        p = apply_patch_calibration(self.probabilities[self.aggregated], bias, patch_temperature)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (self._sum @ certainty(p.astype(np.float64))) / self._count
        return mean - certainty(self.image_distributions(bias, patch_temperature))

    def image_weights(self) -> np.ndarray:
        """Weight per image (M,), mean 1: each group's share ∝ √(its number of images)."""
        from .metrics import sqrt_group_weights

        return sqrt_group_weights(self.image_groups)


def collect_validation(
    model,
    files,
    *,
    seeds: int = 1,
    progress: bool | None = None,
    log=print,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    on_error=None,
):
    """Rate every in-focus plane of ``files`` defocused to every level (``seeds`` noise seeds).
    A plane that cannot be rated (e.g. smaller than one patch once brought to the model's pixel
    size) is left out, with one line through ``log`` per such plane; a file that cannot be read
    (corrupt, or over ``memory_budget`` bytes: `miq.io.budget`, default 2 GiB) is left out with
    one line through ``on_error`` (default ``log``), and the other files are still used."""
    import sys

    from tqdm import tqdm

    from .assessment import prepare_patches
    from .errors import MiqError
    from .ground_truth import synthetic_items

    items = []
    for f in files:  # file by file: one that cannot be read leaves the others in
        try:
            items += synthetic_items(
                [f],
                dataset="calibration",
                seeds=seeds,
                optics=model.optics,
                levels=model.levels,
                memory_budget=memory_budget,
            )
        except MiqError as exc:
            (on_error or log)(f"left out of the calibration: {exc}")
    probs, valid, foreground, labels, image, groups, names = [], [], [], [], [], [], []
    skipped: dict[str, str] = {}  # plane → why (reported once, not once per level and seed)
    for item in tqdm(
        items,
        desc="calibration images",
        file=sys.stderr,
        disable=None if progress is None else not progress,
    ):
        plane = item.name.split(" @")[0]
        if plane in skipped:
            continue
        try:
            _, patches, ok, _, fg = prepare_patches(item.load(), model, name=item.name)
        except MiqError as exc:
            skipped[plane] = str(exc)
            log(f"left out of the calibration: {exc}")
            continue
        probs.append(model.predict(patches, calibrated=False))
        valid.append(ok)
        foreground.append(fg)
        labels.append(np.full(len(ok), item.level))
        image.append(np.full(len(ok), len(image)))
        groups.append(os.path.basename(os.path.dirname(item.source or item.name)))
        names.append(item.name)
    if not probs:
        raise MiqError("no validation image could be rated")
    return ValidationSet(
        *(np.concatenate(x) for x in (probs, valid, labels, image)),
        image_groups=groups,
        foreground=np.concatenate(foreground),
        image_names=names,
    )


def _image_accuracy(q: np.ndarray, labels: np.ndarray) -> dict:
    from .assessment import level_on_call_side
    from .metrics import accuracy_within, calibration, log_loss

    predicted = level_on_call_side(q)
    return {
        "exact": accuracy_within(labels, predicted, 0),
        "within_one": accuracy_within(labels, predicted, 1),
        "ece": calibration(q[np.arange(len(q)), predicted], predicted == labels).ece,
        "nll": log_loss(q, labels),
    }


def calibrate_model(
    model_json: str | os.PathLike,
    files: list[str | os.PathLike],
    *,
    seeds: int = 1,
    content_temperature: bool = False,
    keep_patch_calibration: bool = False,
    log=print,
    on_warning=None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    on_error=None,
) -> dict:
    """Fit both calibration stages on synthetic validation images; update ``model.json``.

    ``content_temperature``: the image temperature depends on each image's certainty gap
    (`fit_content_image_temperature`) instead of being one number. ``keep_patch_calibration``:
    keep the stored per-level biases and patch temperature and refit the image stage only.
    Returns the ``calibration`` entry written (fitted values, validation files, and accuracy on
    the validation images before and after). Fewer than `MIN_CALIBRATION_PLANES` in-focus
    planes: one line through ``on_warning`` (default: `warnings.warn`). ``memory_budget``: bytes
    one file may take to read (`miq.io.budget`; default 2 GiB); a file that cannot be read is
    left out with one line through ``on_error`` (`collect_validation`).
    """
    from .assessment import content_temperature as temperature_of_gap
    from .errors import MiqError
    from .ground_truth import SYNTHETIC_SENSOR
    from .model.package import ModelPackage
    from .model.runtime import FocusModel

    model = FocusModel(ModelPackage.open(model_json), threads=None)
    if keep_patch_calibration and not model.calibrated:
        raise MiqError(f"{model_json}: no stored calibration to keep; calibrate it fully first")
    data = collect_validation(
        model, files, seeds=seeds, log=log, memory_budget=memory_budget, on_error=on_error
    )
    n_planes = len({name.split(" @")[0] for name in data.image_names})
    if n_planes < MIN_CALIBRATION_PLANES:
        message = (
            f"calibrating on {n_planes} in-focus plane(s) only: with fewer than "
            f"{MIN_CALIBRATION_PLANES} the fit can rate new fields worse than the model's own "
            "calibration; give more in-focus fields"
        )
        if on_warning is None:
            import warnings

            warnings.warn(message, stacklevel=2)
        else:
            on_warning(message)
    k = model.n_levels
    rated, labels, weights = data.rated, data.image_labels[data.rated], data.image_weights()
    before = _image_accuracy(data.image_distributions(np.zeros(k), 1.0)[rated], labels)
    if keep_patch_calibration:
        bias, t_patch = np.asarray(model.class_bias), float(model.patch_temperature)
    else:
        patch_weights = weights[data.image][data.valid]
        start = fit_patch_calibration(
            data.probabilities[data.valid], data.labels[data.valid], patch_weights
        )
        bias, t_patch = fit_image_level_patch_calibration(data, start, weights)
    q = data.image_distributions(bias, t_patch)[rated]
    content = {}
    if content_temperature:
        gap = data.certainty_gap(bias, t_patch)[rated]
        t_image, slope, centre = fit_content_image_temperature(q, gap, labels, weights[rated])
        content = {
            "image_temperature_slope": round(slope, 6),
            "image_temperature_centre": round(centre, 6),
        }
        q_cal = sharpen(q, temperature_of_gap(t_image, slope, centre, gap))
    else:
        t_image = fit_image_temperature(q, labels, weights[rated])
        q_cal = sharpen(q, t_image)
    after = _image_accuracy(q_cal, labels)
    entry = {
        "class_bias": [round(float(b), 6) for b in bias],
        "patch_temperature": round(t_patch, 6),
        "image_temperature": round(t_image, 6),
        **content,
        "fitted": str(date.today()),
        "validation": {
            "files": [str(f) for f in files],
            "seeds": seeds,
            "weighting": "images weighted by source folder, sqrt(number of images) each",
            "ground_truth": "in-focus planes defocused to every level; sensor: " + SYNTHETIC_SENSOR,
            "fit": (
                "stored biases and patch T kept"
                if keep_patch_calibration
                else "patch NLL, then whole-image NLL (biases and patch T)"
            )
            + ", then image T"
            + (" by the certainty gap" if content_temperature else ""),
            "n_planes": n_planes,
            "n_images": int(len(data.image_labels)),
            "n_patches": int(data.valid.sum()),
            "before": before,
            "after": after,
        },
    }
    model.package.save_calibration(entry)
    log(
        f"calibration: bias {entry['class_bias']}, patch T {t_patch:.3f}, image T {t_image:.3f}"
        + (
            f" × exp({content['image_temperature_slope']:+.3f} × (gap − "
            f"{content['image_temperature_centre']:.3f}))"
            if content
            else ""
        )
        + "; "
        f"validation exact {before['exact']:.3f} → {after['exact']:.3f}, within-one "
        f"{before['within_one']:.3f} → {after['within_one']:.3f}, ECE {before['ece']:.3f} → "
        f"{after['ece']:.3f}"
    )
    return entry
