"""Does an image temperature that depends on the image's content carry over to a source it was
not fitted on? Leave-one-source-out on the *training* fields (no held-out field is read).

The model rates every training file of ``benchmarks.common.training_files`` (the fields
`miq calibrate` uses) defocused to every level (one seed), the way `miq calibrate` builds its
validation images, with its stored patch calibration. Each whole-image distribution q then gets
an image temperature log T = a + b·x, x a few standardised features of the image, fitted by the
NLL of the true levels on all sources but one (images weighted as `miq calibrate` weighs them:
each source's share ∝ √its number of images), and judged on the source left out: its ECE and its
mean gap (accuracy − stated confidence of the reported level; > 0: under-confident). One row per
feature set; "one temperature" is what `miq calibrate` fits now.

Features (per image, from its aggregated patches after the patch calibration): the certainty gap
`miq calibrate --content-temperature` uses (mean patch certainty − certainty of the aggregate),
the share of patches whose most probable level is the image's, the mean patch certainty, log of
the number of patches, and the expected level.

Also printed first, on the same images: each source's exact level, stated confidence and gap with
the model's own image temperature (and at levels 0 and 1), and each source's ECE with one
temperature refitted on every image weighted alike. Last, the same leave-one-source-out test for
a temperature with a bias per level, softmax((log q + b) / T) (b₀ = 0, an L2 penalty λ·|b|² on
the biases), each source's exact level beside its ECE since the biases move the reported level.
Then the same test of one temperature for three ways of pooling the patches into the image's
distribution: the certainty-weighted arithmetic mean (`miq.assessment.aggregate`, now) and the
geometric mean (log q = Σ wᵢ log pᵢ / Σ wᵢ, renormalised) with certainty weights or all alike.

Usage: python -m benchmarks.calibration_transfer [--model default]   (~4 min on one core)
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import limit_threads, training_files

limit_threads()

import numpy as np  # noqa: E402
from scipy.optimize import minimize  # noqa: E402

FEATURE_SETS = [
    [],
    ["certainty gap"],
    ["patch agreement"],
    ["mean patch certainty"],
    ["log patches"],
    ["expected level"],
    ["certainty gap", "patch agreement", "mean patch certainty"],
    ["certainty gap", "patch agreement", "mean patch certainty", "log patches"],
]


def image_features(data, model, q: np.ndarray) -> dict[str, np.ndarray]:
    """Per image (M,) features of a `miq.calibration.ValidationSet` ``data`` whose image
    distributions (patch calibration applied, no image temperature) are ``q`` (M, K)."""
    from miq.assessment import certainty
    from miq.model.package import apply_patch_calibration

    p = apply_patch_calibration(
        data.probabilities[data.aggregated], model.class_bias, model.patch_temperature
    )
    image = data.image[data.aggregated]
    count = np.maximum(np.bincount(image, minlength=len(q)), 1)
    agree = p.argmax(axis=1) == np.nan_to_num(q).argmax(axis=1)[image]
    return {
        "certainty gap": data.certainty_gap(model.class_bias, model.patch_temperature),
        "patch agreement": np.bincount(image, agree, minlength=len(q)) / count,
        "mean patch certainty": np.bincount(image, certainty(p), minlength=len(q)) / count,
        "log patches": np.log(count),
        "expected level": np.nan_to_num(q) @ np.arange(q.shape[1]),
    }


def fit_temperature(q, y, w, x, start=None) -> np.ndarray:
    """(a, b…) minimising the NLL of sharpen(q, exp(a + x·b)), images weighted by ``w`` (None:
    alike); x (M, F) standardised; Nelder-Mead from ``start`` (default all 0)."""
    from miq.calibration import sharpen

    rows = np.arange(len(y))

    def nll(theta):
        qq = sharpen(q, np.exp(theta[0] + x @ theta[1:]))
        return float(np.average(-np.log(np.clip(qq[rows, y], 1e-12, None)), weights=w))

    start = np.zeros(1 + x.shape[1]) if start is None else start
    return minimize(nll, start, method="Nelder-Mead").x


def with_level_bias(q: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """softmax((log q + b) / T) per row of q (M, K); theta = (log T, b₁ … b_{K−1}), b₀ = 0."""
    b = np.concatenate([[0.0], theta[1:]])
    z = (np.log(np.clip(q, 1e-12, None)) + b) / np.exp(theta[0])
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_level_bias(q, y, w, penalty: float) -> np.ndarray:
    """theta of `with_level_bias` minimising the weighted NLL of the true levels y + penalty·|b|²."""
    rows = np.arange(len(y))

    def loss(theta):
        qq = with_level_bias(q, theta)
        nll = np.average(-np.log(np.clip(qq[rows, y], 1e-12, None)), weights=w)
        return float(nll) + penalty * float(np.sum(theta[1:] ** 2))

    return minimize(loss, np.zeros(q.shape[1]), method="L-BFGS-B").x


def judge(qq: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(ECE, gap, exact) of image distributions ``qq`` (M, K) against true levels ``y`` (M,):
    the reported level is miq's (`miq.assessment.level_on_call_side`), the gap its accuracy −
    its mean stated confidence (> 0: under-confident)."""
    from miq.assessment import level_on_call_side
    from miq.metrics import calibration

    level = level_on_call_side(qq)
    stated, right = qq[np.arange(len(qq)), level], level == y
    return calibration(stated, right).ece, right.mean() - stated.mean(), right.mean()


def geometric_distributions(data, model, certainty_weighted: bool) -> np.ndarray:
    """Whole-image distributions (M, K) as the normalised weighted geometric mean of each
    image's aggregated patches (patch calibration applied; weights: their certainties, or 1)."""
    from miq.assessment import certainty
    from miq.model.package import apply_patch_calibration

    p = apply_patch_calibration(
        data.probabilities[data.aggregated], model.class_bias, model.patch_temperature
    ).astype(np.float64)
    w = certainty(p) + 1e-12 if certainty_weighted else np.ones(len(p))
    members = data.image[data.aggregated]
    n_images = len(data.image_labels)
    log_p = np.log(np.clip(p, 1e-12, None)) * w[:, None]
    z = np.stack([np.bincount(members, log_p[:, k], n_images) for k in range(p.shape[1])], 1)
    with np.errstate(invalid="ignore"):
        z /= np.bincount(members, w, n_images)[:, None]
        z -= z.max(axis=1, keepdims=True)
        q = np.exp(z)
        return q / q.sum(axis=1, keepdims=True)


def print_pooling(data, model, weights, groups) -> None:
    """Leave one source out, one temperature, for each way of pooling patches into the image."""
    from miq.calibration import fit_image_temperature, sharpen

    rated, y = data.rated, data.image_labels[data.rated]
    pools = {
        "arithmetic, certainty-weighted (now)": data.image_distributions(
            model.class_bias, model.patch_temperature
        ),
        "geometric, certainty-weighted": geometric_distributions(data, model, True),
        "geometric, alike": geometric_distributions(data, model, False),
    }
    sources = sorted(set(groups))
    in_sample = []
    print("ECE (mean gap; exact) of each source when left out, one temperature, by pooling")
    print("| pooling | " + " | ".join(sources) + " | mean ECE |")
    print("|---|" + "---|" * (len(sources) + 1))
    for name, q_all in pools.items():
        q = q_all[rated]
        cells, eces = [], []
        for source in sources:
            fit, test = groups != source, groups == source
            ece, gap, exact = judge(
                sharpen(q[test], fit_image_temperature(q[fit], y[fit], weights[fit])), y[test]
            )
            eces.append(ece)
            cells.append(f"{ece:.3f} ({gap:+.2f}; {exact:.3f})")
        t_all = fit_image_temperature(q, y, weights)
        print(f"| {name} (T {t_all:.3f}) | " + " | ".join(cells) + f" | {np.mean(eces):.3f} |")
        qq = sharpen(q, t_all)  # fitted on every source, as miq calibrate fits
        judged = {s: judge(qq[groups == s], y[groups == s]) for s in sources}
        in_sample.append(
            f"{name}: " + "; ".join(f"{s} {e:.3f} ({g:+.3f})" for s, (e, g, _) in judged.items())
        )
    print("ECE (mean gap) of each source with the temperature fitted on every source:")
    print("\n".join(in_sample))


def print_in_sample(q, y, groups, model, weights) -> None:
    """Per source: exact, mean stated confidence and gap with the model's own image temperature;
    then ECE (gap) per source with one temperature refitted on every image weighted alike."""
    from miq.assessment import level_on_call_side
    from miq.calibration import fit_image_temperature, sharpen
    from miq.metrics import calibration

    def judged(temperature):
        qq = sharpen(q, temperature)
        level = level_on_call_side(qq)
        return level, qq[np.arange(len(qq)), level], level == y

    level, stated, right = judged(model.image_temperature)
    print(f"with the model's image temperature {model.image_temperature:.3f}:")
    print("| source | images | exact | stated | gap |\n|---|---|---|---|---|")
    for source in sorted(set(groups)):
        s = groups == source
        print(
            f"| {source} | {s.sum()} | {right[s].mean():.3f} | {stated[s].mean():.3f} | "
            f"{right[s].mean() - stated[s].mean():+.3f} |"
        )
    for source in sorted(set(groups)):
        low = [(groups == source) & (y == k) for k in (0, 1)]
        print(
            f"{source}, levels 0 and 1: exact "
            + ", ".join(f"{right[s].mean():.2f}" for s in low)
            + " against stated "
            + ", ".join(f"{stated[s].mean():.2f}" for s in low)
        )
    t_alike = fit_image_temperature(q, y, np.ones(len(y)))
    t_sqrt = fit_image_temperature(q, y, weights)
    _, stated, right = judged(t_alike)
    cells = []
    for source in sorted(set(groups)):
        s = groups == source
        ece = calibration(stated[s], right[s]).ece
        cells.append(f"{source} {ece:.3f} ({right[s].mean() - stated[s].mean():+.2f})")
    print(
        f"every image weighted alike: T {t_alike:.3f} (by source, as miq calibrate: {t_sqrt:.3f})"
    )
    print("ECE (gap) per source: " + "; ".join(cells))
    print()


def main() -> None:
    from miq.calibration import collect_validation, sharpen
    from miq.metrics import sqrt_group_weights
    from miq.model.runtime import load_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    t0 = time.time()
    model = load_model(args.model, threads=1)
    data = collect_validation(model, training_files(), progress=False, log=lambda _: None)
    rated = data.rated
    q_all = data.image_distributions(model.class_bias, model.patch_temperature)
    features = {k: v[rated] for k, v in image_features(data, model, q_all).items()}
    q, y = q_all[rated], data.image_labels[rated]
    groups = np.asarray(data.image_groups)[rated]
    weights = sqrt_group_weights(groups)
    sources = sorted(set(groups))
    print(f"{model.name}: {len(y)} images of {len(sources)} sources in {time.time() - t0:.0f} s")
    print_in_sample(q, y, groups, model, weights)
    print("ECE (mean gap) of each source when left out of the fit")
    print("| features | " + " | ".join(sources) + " | mean ECE |")
    print("|---|" + "---|" * (len(sources) + 1))
    for names in FEATURE_SETS:
        x_all = np.stack([features[n] for n in names], axis=1) if names else np.zeros((len(y), 0))
        cells, eces = [], []
        for source in sources:
            fit, test = groups != source, groups == source
            mu, sd = x_all[fit].mean(axis=0), x_all[fit].std(axis=0) + 1e-12
            theta = fit_temperature(q[fit], y[fit], weights[fit], (x_all[fit] - mu) / sd)
            qq = sharpen(q[test], np.exp(theta[0] + (x_all[test] - mu) / sd @ theta[1:]))
            ece, gap, _ = judge(qq, y[test])
            eces.append(ece)
            cells.append(f"{ece:.3f} ({gap:+.2f})")
        label = ", ".join(names) or "one temperature"
        print(f"| {label} | " + " | ".join(cells) + f" | {np.mean(eces):.3f} |")
    print()
    print("ECE (mean gap; exact) of each source when left out, temperature and a bias per level")
    print("| penalty | " + " | ".join(sources) + " | mean ECE |")
    print("|---|" + "---|" * (len(sources) + 1))
    for penalty in (1e-2, 1e-3):
        cells, eces = [], []
        for source in sources:
            fit, test = groups != source, groups == source
            qq = with_level_bias(q[test], fit_level_bias(q[fit], y[fit], weights[fit], penalty))
            ece, gap, exact = judge(qq, y[test])
            eces.append(ece)
            cells.append(f"{ece:.3f} ({gap:+.2f}; {exact:.3f})")
        print(f"| {penalty:g} | " + " | ".join(cells) + f" | {np.mean(eces):.3f} |")
    print()
    print_pooling(data, model, weights, groups)


if __name__ == "__main__":
    main()
