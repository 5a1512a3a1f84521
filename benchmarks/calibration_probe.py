"""Can an image temperature that depends on the image's content make the stated certainty hold per
file? A design probe on *training* fields only (docs/lab-notebook/image-loss.md).

The model rates the BBBC013 training files (``../shared/data/in-focus/bbbc013-u2os-fkhr``, rows
A–D, both channels) defocused by the evaluation's simulator to every level (one seed), with its
stored patch calibration. Each whole-image distribution q then gets an image temperature
log T = a + b·x, x one standardised feature of the image, fitted by the NLL of the true levels on
rows A–B; printed per feature: b, and on rows C–D the per-file and per-field (both channels of a
site) calibration errors (mean over files or fields of |accuracy − mean probability of the
reported level|, miq's level on the side of the in/out call) and the mean gap
(accuracy − confidence) per channel (Channel1 FKHR-GFP, Channel2 DNA). Features: summaries of the
patches' outputs, and of the rated image's pixels (share of pixels within 3 noise σ of its 0.5th
percentile: the dark floor).

A second table compares point estimates of the whole-image level on all of rows A–D (nothing is
fitted for it; `benchmarks.point_estimates`).

Usage: python -m benchmarks.calibration_probe [--model v3]
"""

from __future__ import annotations

import argparse
import os
import time

from benchmarks.common import SHARED_DATA, limit_threads

limit_threads()

import numpy as np  # noqa: E402


def dark_fraction(plane: np.ndarray) -> float:
    """Share of pixels within 3 noise σ of the plane's 0.5th percentile."""
    from miq.content import noise_sigma

    floor = float(np.percentile(plane, 0.5))
    return float(np.mean(plane <= floor + 3.0 * noise_sigma(plane)))


def main() -> None:
    from benchmarks.calibration_transfer import fit_temperature
    from benchmarks.point_estimates import print_point_estimates
    from miq.assessment import certainty, level_on_call_side, prepare_patches
    from miq.calibration import ValidationSet, sharpen
    from miq.ground_truth import synthetic_items
    from miq.metrics import group_calibration_error
    from miq.model.package import apply_patch_calibration
    from miq.model.runtime import load_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="v3")
    args = parser.parse_args()
    t0 = time.time()
    model = load_model(args.model)
    files = sorted((SHARED_DATA / "in-focus" / "bbbc013-u2os-fkhr").glob("*.tif"))
    items = synthetic_items(files, seeds=1, optics=model.optics, levels=model.levels)
    probs, valid, foreground, labels, image, names, dark = [], [], [], [], [], [], []
    for item in items:
        data = item.load()
        _, patches, ok, _, fg = prepare_patches(data, model, name=item.name)
        probs.append(model.predict(patches, calibrated=False))
        valid.append(ok)
        foreground.append(fg)
        labels.append(np.full(len(ok), item.level))
        image.append(np.full(len(ok), len(image)))
        names.append(item.name.split(" @")[0])
        dark.append(dark_fraction(np.asarray(data, dtype=np.float64)))
    vs = ValidationSet(
        *(np.concatenate(x) for x in (probs, valid, labels, image)),
        foreground=np.concatenate(foreground),
    )
    n = len(names)
    print(f"{args.model}: {n} images of {len(files)} files rated in {time.time() - t0:.0f} s")
    q = vs.image_distributions(model.class_bias, model.patch_temperature)
    y = vs.image_labels
    p = apply_patch_calibration(
        vs.probabilities[vs.aggregated], model.class_bias, model.patch_temperature
    )
    img = vs.image[vs.aggregated]
    count = np.maximum(np.bincount(img, minlength=n), 1)
    gap = vs.certainty_gap(model.class_bias, model.patch_temperature)  # what miq calibrate fits
    levels = p @ np.arange(p.shape[1])
    mean_level = np.bincount(img, levels, minlength=n) / count
    spread = np.sqrt(
        np.maximum(np.bincount(img, levels * levels, minlength=n) / count - mean_level**2, 0)
    )
    features = {
        "none (one temperature)": np.zeros(n),
        "mean patch certainty": gap + certainty(q),
        "whole-image certainty": certainty(q),
        "patch − whole-image certainty": gap,
        "sd of patch expected levels": spread,
        "dark-floor share of pixels": np.asarray(dark),
        "patch − whole-image certainty, dark-floor share": np.stack(
            [gap, np.asarray(dark)], axis=1
        ),
    }
    names = np.asarray(names)
    row = np.array([name.rsplit("-", 2)[-2] for name in names])
    channel2 = np.array(["Channel2" in name for name in names])
    fit, test = np.isin(row, ["A", "B"]), ~np.isin(row, ["A", "B"])
    # a field: both channels of a site (Channel1-01-A-01.tif, Channel2-01-A-01.tif)
    field = np.array([os.path.basename(name).split("-", 1)[1] for name in names])
    print(
        "| feature x | b | per-file CE, rows C–D | per-field CE, rows C–D "
        "| mean gap Channel1 / Channel2 | exact C–D |"
    )
    print("|---|---|---|---|---|---|")
    for label, x in features.items():
        x = x.reshape(n, -1)
        x = (x - x[fit].mean(axis=0)) / (x[fit].std(axis=0) + 1e-12)

        start = [np.log(model.image_temperature)] + [0.0] * x.shape[1]
        w = fit_temperature(q[fit], y[fit], None, x[fit], start)
        qq = sharpen(q, np.exp(w[0] + x @ w[1:]))
        level = level_on_call_side(qq)
        stated = qq[np.arange(n), level]
        gaps, second = [], []
        for name in np.unique(names[test]):
            s = names == name
            gaps.append(np.mean(level[s] == y[s]) - stated[s].mean())
            second.append(bool(channel2[s][0]))
        gaps, second = np.asarray(gaps), np.asarray(second)
        exact = np.mean(level[test] == y[test])
        field_ce = group_calibration_error(stated[test], level[test] == y[test], field[test])
        print(
            f"| {label} | {', '.join(f'{b:+.2f}' for b in w[1:])} | {np.abs(gaps).mean():.3f} | "
            f"{field_ce:.3f} | "
            f"{gaps[~second].mean():+.3f} / {gaps[second].mean():+.3f} | {exact:.3f} |"
        )
    print()
    print_point_estimates(q, y, names)


if __name__ == "__main__":
    main()
