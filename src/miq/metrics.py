"""Accuracy measures for focus ratings: pure functions of true labels and scores.

Levels: confusion matrix, exact and within-one accuracy. Orderings: Spearman correlation and
ROC-AUC. Binary in/out-of-focus: F-score, and the protocol of Bray et al. (2012) used by Yang et
al. (2018) — the threshold that maximises F on a random 10 % validation split is applied to the
other 90 %, repeated over many splits. Calibration: expected calibration error and the
reliability-diagram table, and the calibration error per group of images (e.g. per field).
Probabilistic level predictions: log loss and ranked probability score (proper scores).
Uncertainty: percentile bootstrap intervals that resample whole groups (fields of view), since
the images of one field (its levels, seeds and channels) share its content and are not
independent.

Score convention: every score passed here grows with defocus ("higher = blurrier"); the positive
class of the binary task is *out of focus* (the image a QC run must flag).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "confusion_matrix",
    "accuracy_within",
    "spearman",
    "roc_auc",
    "f_score",
    "best_threshold",
    "SplitFScore",
    "split_f_score",
    "Calibration",
    "calibration",
    "group_calibration_error",
    "CalibrationFloor",
    "calibration_floor",
    "sqrt_group_weights",
    "log_loss",
    "ranked_probability_score",
    "GroupBootstrap",
    "group_resamples",
    "group_bootstrap",
]


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


def spearman(truth, scores) -> float:
    """Spearman rank correlation (ties get average ranks); NaN when either side is constant."""
    from scipy.stats import spearmanr

    t = np.asarray(truth, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if t.size < 2 or np.ptp(t) == 0 or np.ptp(s) == 0:
        return float("nan")
    return float(spearmanr(t, s).statistic)


def roc_auc(positive, scores) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties count ½.

    ``positive``: bool per item; ``scores``: higher = more likely positive. NaN without both
    classes.
    """
    from scipy.stats import rankdata

    y = np.asarray(positive, dtype=bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)  # Mann–Whitney U from average ranks
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def f_score(positive, predicted_positive) -> float:
    """F1 = 2·TP / (2·TP + FP + FN); 1.0 when there is nothing to find and nothing was flagged."""
    y = np.asarray(positive, dtype=bool).ravel()
    p = np.asarray(predicted_positive, dtype=bool).ravel()
    tp = int((y & p).sum())
    denominator = 2 * tp + int((~y & p).sum()) + int((y & ~p).sum())
    return 1.0 if denominator == 0 else 2.0 * tp / denominator


def best_threshold(positive, scores) -> float:
    """The threshold t maximising F of "score ≥ t ⇒ positive" (ties → the highest such t).

    Candidates are the observed scores; the midpoint below the chosen score is returned so that
    the rule generalises to unseen values between the classes.
    """
    y = np.asarray(positive, dtype=bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    values = np.unique(s)
    best_f, best_index = -1.0, 0
    for i, t in enumerate(values):
        f = f_score(y, s >= t)
        if f >= best_f:
            best_f, best_index = f, i
    if best_index == 0:
        return float(values[0]) if values.size else float("nan")
    return float((values[best_index - 1] + values[best_index]) / 2)


@dataclass(frozen=True)
class SplitFScore:
    """F-scores over random validation/test splits: ``mean``, ``sd``, per-split ``values``."""

    mean: float
    sd: float
    values: tuple[float, ...]
    n_splits: int
    validation_fraction: float


def split_f_score(
    positive,
    scores,
    *,
    n_splits: int = 100,
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> SplitFScore:
    """F-score under the Bray et al. (2012) protocol, repeated over ``n_splits`` random splits.

    Each split draws a stratified validation subset (``validation_fraction`` of each class, at
    least one item of each), picks `best_threshold` on it and reports F on the remaining
    items. Needs at least two items of each class.
    """
    y = np.asarray(positive, dtype=bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    if len(pos) < 2 or len(neg) < 2:
        nan = float("nan")
        return SplitFScore(nan, nan, (), 0, validation_fraction)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_splits):
        chosen = []
        for members in (pos, neg):
            k = min(len(members) - 1, max(1, int(round(validation_fraction * len(members)))))
            chosen.append(rng.choice(members, size=k, replace=False))
        validation = np.zeros(y.size, dtype=bool)
        validation[np.concatenate(chosen)] = True
        t = best_threshold(y[validation], s[validation])
        values.append(f_score(y[~validation], s[~validation] >= t))
    v = np.asarray(values)
    return SplitFScore(
        float(v.mean()),
        float(v.std(ddof=1)) if v.size > 1 else 0.0,
        tuple(float(x) for x in v),
        n_splits,
        validation_fraction,
    )


@dataclass(frozen=True)
class Calibration:
    """Reliability of a confidence: per-bin ``count``, mean ``confidence`` and ``accuracy``.

    ``ece`` = Σ_bins (count/N)·|accuracy − confidence| over bins of equal width on [0, 1].
    """

    ece: float
    bin_edges: np.ndarray
    count: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray


def calibration(confidence, correct, n_bins: int = 10) -> Calibration:
    """Expected calibration error of ``confidence`` (in [0, 1]) against ``correct`` (bool)."""
    c = np.clip(np.asarray(confidence, dtype=np.float64).ravel(), 0.0, 1.0)
    ok = np.asarray(correct, dtype=bool).ravel()
    if c.shape != ok.shape:
        raise ValueError(f"{c.size} confidences but {ok.size} outcomes")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, c, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    safe = np.maximum(count, 1)
    mean_conf = np.bincount(index, weights=c, minlength=n_bins) / safe
    accuracy = np.bincount(index, weights=ok.astype(float), minlength=n_bins) / safe
    mean_conf[count == 0] = np.nan
    accuracy[count == 0] = np.nan
    filled = count > 0
    ece = (
        float(np.sum(count[filled] / c.size * np.abs(accuracy[filled] - mean_conf[filled])))
        if c.size
        else float("nan")
    )
    return Calibration(ece, edges, count, mean_conf, accuracy)


def group_calibration_error(confidence, correct, groups) -> float:
    """Mean over groups (e.g. the fields an evaluation's images come from) of
    |accuracy − mean confidence| within the group. Unlike the ECE, whose bins mix groups, a model
    over-confident on one field and under-confident on another does not average out here."""
    c = np.asarray(confidence, dtype=np.float64).ravel()
    ok = np.asarray(correct, dtype=np.float64).ravel()
    _, g = np.unique(np.asarray(groups).ravel(), return_inverse=True)
    if not (c.shape == ok.shape == g.shape):
        raise ValueError(f"{c.size} confidences, {ok.size} outcomes, {g.size} group labels")
    if not c.size:
        return float("nan")
    n = np.bincount(g)
    gap = (np.bincount(g, weights=ok) - np.bincount(g, weights=c)) / n
    return float(np.mean(np.abs(gap)))


@dataclass(frozen=True)
class CalibrationFloor:
    """What ECE and per-group calibration error a *perfectly calibrated* model would score on
    these images by chance alone: the mean and the 2.5 / 97.5 % points over ``n_draws`` draws.
    Fields ``ece``, ``ece_low``, ``ece_high``, ``group``, ``group_low``, ``group_high``."""

    ece: float
    ece_low: float
    ece_high: float
    group: float
    group_low: float
    group_high: float
    n_draws: int


def calibration_floor(
    confidence,
    groups,
    *,
    draws_of=None,
    n_bins: int = 10,
    n_draws: int = 2000,
    seed: int = 0,
) -> CalibrationFloor:
    """The ECE (`calibration`) and per-group calibration error (`group_calibration_error`) that
    a model whose stated ``confidence`` is exactly right would still score on these images.

    Each draw makes every image correct with probability equal to its confidence and scores
    those outcomes against the same confidences. A measured error near this floor cannot be told
    from sampling noise; with few images per group (e.g. 22 per field) the per-group floor is far
    from 0. ``groups``: one label per image (e.g. its field of view); ``confidence`` in [0, 1].

    ``draws_of``: one label per image naming what it is a noise draw of (e.g. one plane
    simulated at one defocus with several noise seeds); images with the same label share their
    outcome (one uniform u per label, image i correct when u < its confidence, so each keeps its
    own probability and they are right or wrong together as far as their confidences allow). A
    model's answer barely changes with the noise seed, so adding seeds adds images but hardly any
    independent outcomes: with independent draws (``draws_of`` None, or every label distinct)
    the floor falls as seeds are added although the real spread does not. Images of one field
    that are not noise draws of one image are still drawn independently, so this too is a lower
    bound on what chance gives.
    """
    c = np.clip(np.asarray(confidence, dtype=np.float64).ravel(), 0.0, 1.0)
    _, g = np.unique(np.asarray(groups).ravel(), return_inverse=True)
    if c.shape != g.shape:
        raise ValueError(f"{c.size} confidences but {g.size} group labels")
    if draws_of is None:
        shared = np.arange(c.size)
    else:
        # numbered in order of first appearance: distinct labels draw as ``draws_of`` None does
        _, first, label = np.unique(np.asarray(draws_of).ravel(), True, True)
        shared = np.argsort(np.argsort(first))[label]
        if shared.shape != c.shape:
            raise ValueError(f"{c.size} confidences but {shared.size} draws_of labels")
    n_shared = int(shared.max()) + 1 if shared.size else 0
    if not c.size:
        nan = float("nan")
        return CalibrationFloor(nan, nan, nan, nan, nan, nan, 0)
    rng = np.random.default_rng(seed)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, c, side="right") - 1, 0, n_bins - 1)
    bin_conf = np.bincount(bins, weights=c, minlength=n_bins)
    group_conf = np.bincount(g, weights=c)
    n_group = np.bincount(g)
    ece, group = np.empty(n_draws), np.empty(n_draws)
    for k in range(n_draws):
        correct = (rng.random(n_shared)[shared] < c).astype(np.float64)
        # Σ_bins (n_b/N)·|acc_b − conf_b| = Σ_bins |Σ correct − Σ conf| / N
        ece[k] = np.abs(np.bincount(bins, weights=correct, minlength=n_bins) - bin_conf).sum()
        group[k] = np.mean(np.abs(np.bincount(g, weights=correct) - group_conf) / n_group)
    ece /= c.size
    e_lo, e_hi = np.quantile(ece, [0.025, 0.975])
    g_lo, g_hi = np.quantile(group, [0.025, 0.975])
    return CalibrationFloor(
        float(ece.mean()),
        float(e_lo),
        float(e_hi),
        float(group.mean()),
        float(g_lo),
        float(g_hi),
        n_draws,
    )


def sqrt_group_weights(groups) -> np.ndarray:
    """A weight per item (mean 1) such that each group's share is proportional to the square
    root of its size (a folder of 96 similar fields counts more than a single image, not 96
    times more): item weight ∝ √n_g / n_g. ``groups``: one label per item."""
    _, g = np.unique(np.asarray(groups).ravel(), return_inverse=True)
    if not g.size:
        return np.zeros(0)
    n = np.bincount(g).astype(np.float64)
    w = (np.sqrt(n) / n)[g]
    return w * (w.size / w.sum())


def log_loss(probabilities, true_levels) -> float:
    """Mean −ln p(true level) of level distributions (M, K) (probabilities clipped at 1e-12)."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(true_levels, dtype=int)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))))


def ranked_probability_score(probabilities, true_levels) -> float:
    """Mean Σₖ (CDF_pred(k) − CDF_true(k))² of level distributions (M, K): 0 for a certain right
    answer, d for a certain answer d levels off (the training loss of Yang et al. 2018)."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(true_levels, dtype=int)
    cdf_true = (np.arange(p.shape[1])[None, :] >= y[:, None]).astype(np.float64)
    return float(np.mean(np.sum((np.cumsum(p, axis=1) - cdf_true) ** 2, axis=1)))


@dataclass(frozen=True)
class GroupBootstrap:
    """A statistic on all images (``value``) and its percentile interval [``low``, ``high``] over
    resamples of whole groups; arrays of one entry per statistic when it returns several."""

    value: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n_groups: int
    n_resamples: int
    level: float


def group_resamples(groups, n_resamples: int = 1000, seed: int = 0):
    """Bootstrap resamples of whole groups: ``n_resamples`` pairs ``(index, label)``.

    ``groups``: a group label per image (e.g. its field of view). Each resample draws as many
    groups as there are, with replacement, and takes every image of each drawn group; ``index``
    are the image indices, ``label`` a group label per resampled image in which a group drawn
    twice counts as two groups (for per-group statistics such as `group_calibration_error`).
    The same ``groups`` and ``seed`` give the same resamples: statistics of several models
    computed on them are paired.
    """
    _, g = np.unique(np.asarray(groups).ravel(), return_inverse=True)
    members = [np.flatnonzero(g == k) for k in range(g.max() + 1)] if g.size else []
    sizes = np.array([len(m) for m in members])
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_resamples):
        picked = rng.integers(0, len(members), len(members))
        index = np.concatenate([members[k] for k in picked])
        out.append((index, np.repeat(np.arange(len(picked)), sizes[picked])))
    return out


def group_bootstrap(
    statistic,
    groups,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    resamples=None,
) -> GroupBootstrap:
    """Percentile bootstrap interval of ``statistic`` over groups (fields of view).

    ``statistic(index, label)`` computes one number or a 1-D array of numbers from the images
    ``index`` (indices into the caller's arrays), grouped by ``label`` (a label per image); it is
    called once on all images with their own groups, then on each of `group_resamples`
    (``resamples``, when given, are used instead: to share them between calls). Resamples where a
    statistic is undefined (NaN, e.g. a ROC-AUC without both classes) are left out of its
    interval. With a single group every resample is the whole set: the interval is the value.
    """
    g = np.asarray(groups).ravel()
    _, own = np.unique(g, return_inverse=True)
    value = np.atleast_1d(np.asarray(statistic(np.arange(g.size), own), dtype=np.float64))
    draws = resamples if resamples is not None else group_resamples(g, n_resamples, seed)
    values = np.array(
        [np.atleast_1d(np.asarray(statistic(i, lab), dtype=np.float64)) for i, lab in draws]
    ).reshape(len(draws), value.size)
    alpha = (1.0 - level) / 2.0
    low, high = np.full(value.size, np.nan), np.full(value.size, np.nan)
    for k in range(value.size):
        v = values[:, k][np.isfinite(values[:, k])]
        if v.size:
            low[k], high[k] = np.quantile(v, [alpha, 1.0 - alpha])
    return GroupBootstrap(value, low, high, int(np.unique(g).size), len(draws), level)
