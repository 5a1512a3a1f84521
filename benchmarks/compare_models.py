"""Paired comparison of models on the same synthetic images, with bootstrap confidence intervals.

Every in-focus plane of a split (benchmarks/common.py) is defocused by the simulator to each of the 11
levels with ``--seeds`` noise seeds, and every model rates the same images (its stored
calibration applied, as ``miq predict`` does). Per model: exact and within-one accuracy of the
whole-image level (miq's, on the side of the default in/out call); ECE of the probability the
distribution gives that level; "field CE", the calibration error per plane
(|accuracy − mean probability of the level| over a plane's images, averaged over planes: unlike the ECE,
over- and under-confidence on different fields do not cancel); and the log loss (NLL) and ranked
probability score (RPS) of the whole-image distribution, proper scores of the probabilities. Per model after the first: the difference to
the first model with a 95 % interval from a paired bootstrap over planes (all levels and seeds of
a plane are resampled together, since they share the plane's content). An interval that
contains 0 means the two models cannot be told apart on these images.

``--split validation`` uses the training fields' validation images (where ``miq calibrate`` fits
the calibration), ``--split held-out`` the fields never used in training.

``--folder DIR ...`` uses every in-focus image under DIR instead of a split: fields of view that
none of the compared models saw in training (your own, or new ones added to ../shared/data).
``--unit file`` resamples whole files (all channels of a multichannel file together) in the
bootstrap instead of single planes; with one field of view per file, that is resampling fields.

After the table, each model after the first gets a verdict against the pre-registered
non-inferiority margins (``NON_INFERIORITY``; docs/lab-notebook/cheap-networks.md, "The rule
for new fields"): non-inferior only if every difference's 95 % interval stays within its
margin, and undecided while there are fewer than ``MIN_UNITS`` planes or files.

``--per-plane`` adds a table of each plane's accuracy and mean probability of its level per model: where
a model's stated certainty does and does not follow its own accuracy, field by field.

**Recipes:** an entry of ``--models`` may name several runs of one training recipe separated by
commas (``runs/a1,runs/a2,runs/a3``); its scores are then the mean of its runs' scores, on the
whole set and on every bootstrap draw, and the differences and the verdict compare recipes.
A single training run differs from another run of its own recipe by about as much as many
candidates differ from the default (docs/lab-notebook/training.md, "seed spread"), so a
decision between recipes should rest on several runs of each.

Usage: python -m benchmarks.compare_models [--models default fast ...] [--split held-out]
       [--folder DIR ...] [--unit plane|file] [--seeds 3] [--first-seed 0] [--bootstrap 2000]
       [--per-plane]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import miq
from benchmarks.common import add_first_seed, held_out_files, training_files
from miq.assessment import level_on_call_side
from miq.ground_truth import synthetic_items
from miq.io import find_images
from miq.metrics import (
    accuracy_within,
    calibration,
    group_calibration_error,
    log_loss,
    ranked_probability_score,
)
from miq.model.lineage import lineage

METRICS = ("exact", "within-one", "ECE", "field CE", "NLL", "RPS")

# Non-inferiority margins for a cheaper model against the first (the default), fixed on
# 2026-11-26 before any of the new fields they are meant for existed. Higher-is-better metrics:
# the lower 95 % bound of (candidate − first) must be ≥ the margin; lower-is-better ones: the
# upper bound must be ≤ it. The pooled ECE is left out (over- and under-confidence on different
# fields cancel in it); field CE stands for calibration.
NON_INFERIORITY = {"exact": -0.03, "within-one": -0.02, "field CE": 0.03, "NLL": 0.05, "RPS": 0.02}
HIGHER_IS_BETTER = {"exact", "within-one"}
MIN_UNITS = 40  # fewer planes / files than this: ±0.05 on exact is out of reach (sd 0.17)


def non_inferiority_verdict(low: np.ndarray, high: np.ndarray, n_units: int, unit: str) -> str:
    """One line: whether the 95 % intervals (``low``, ``high``, one per entry of ``METRICS``) of
    candidate − first stay within every ``NON_INFERIORITY`` margin, given ``n_units`` units."""
    if n_units < MIN_UNITS:
        return f"undecided: {n_units} {unit}s, the rule needs at least {MIN_UNITS}"
    failed = []
    for metric, margin in NON_INFERIORITY.items():
        i = METRICS.index(metric)
        if metric in HIGHER_IS_BETTER and low[i] < margin:
            failed.append(f"{metric} lower bound {low[i]:+.3f} < {margin:+.3f}")
        elif metric not in HIGHER_IS_BETTER and high[i] > margin:
            failed.append(f"{metric} upper bound {high[i]:+.3f} > {margin:+.3f}")
    if failed:
        return "non-inferiority not shown: " + "; ".join(failed)
    return f"non-inferior on all {len(NON_INFERIORITY)} margins ({n_units} {unit}s)"


def model_label(requested: str, model) -> str:
    """How a model is named in the tables: as given to ``--models``, with the name its
    model.json records when that differs (a copied run folder keeps its source's name)."""
    return requested if requested == model.name else f"{requested} ({model.name})"


def rate(models: list, items, labels: list[str]) -> list[np.ndarray]:
    """Whole-image level distributions (M, K) of ``items`` by each model (calibrated); each
    image is loaded (simulated) once for all models. Prints each model's rating time under its
    label."""
    rated = [[] for _ in models]
    seconds = [0.0] * len(models)
    for item in items:
        image = item.load()
        for k, model in enumerate(models):
            start = time.perf_counter()
            rated[k].append(miq.assess(image, model, name=item.name).probabilities)
            seconds[k] += time.perf_counter() - start
    for label, s in zip(labels, seconds):
        print(f"  {label}: {s:.0f} s rating", file=sys.stderr)
    return [np.stack(r) for r in rated]


def scores(probabilities: np.ndarray, truth: np.ndarray, plane: np.ndarray) -> np.ndarray:
    """exact, within-one, ECE, field CE, NLL, RPS of distributions (M, K) against true levels
    (M,), images grouped by ``plane`` (M,)."""
    levels = level_on_call_side(probabilities)  # miq's level, default in/out call
    confidence = probabilities[np.arange(len(levels)), levels]
    return np.array(
        [
            accuracy_within(truth, levels, 0),
            accuracy_within(truth, levels, 1),
            calibration(confidence, levels == truth).ece,
            group_calibration_error(confidence, levels == truth, plane),
            log_loss(probabilities, truth),
            ranked_probability_score(probabilities, truth),
        ]
    )


def recipe_scores(
    rated: list[np.ndarray], truth: np.ndarray, images: np.ndarray, groups: np.ndarray
) -> np.ndarray:
    """The mean over a recipe's runs (their distributions ``rated``, each (M, K)) of `scores` on
    ``images`` (indices) grouped by ``groups``."""
    return np.mean([scores(p[images], truth[images], groups) for p in rated], axis=0)


def print_per_plane(
    names: list[str],
    members: list[np.ndarray],
    model_names: list[str],
    rated: list[np.ndarray],
    truth: np.ndarray,
) -> None:
    """One row per plane: each model's exact accuracy / mean probability of its level."""
    print("\n| plane | " + " | ".join(f"{n}: accuracy / certainty" for n in model_names) + " |")
    print("|---" * (1 + len(model_names)) + "|")
    for name, images in zip(names, members):
        cells = []
        for probabilities in rated:
            p = probabilities[images]
            levels = level_on_call_side(p)
            right = np.mean(levels == truth[images])
            cells.append(f"{right:.2f} / {p[np.arange(len(p)), levels].mean():.2f}")
        print(f"| {Path(name).name} | " + " | ".join(cells) + " |")


def ratable_items(
    paths: list[Path], model, simulate: dict, dataset: str
) -> tuple[list[Path], list[list]]:
    """The in-focus files of ``paths`` and each one's synthetic items (``synthetic_items``
    with the ``simulate`` arguments). Label images (``mask`` in the name) are left out, and so is any
    file that cannot be read or whose sharp planes ``model`` cannot rate (e.g. smaller than a
    patch once brought to its pixel size, as ``miq calibrate`` leaves them out); one line on
    stderr names each and says why. Exits when nothing is left."""
    from miq.errors import MiqError

    files, items_per_file = [], []
    for path in paths:
        if "mask" in path.stem.lower():
            print(f"left out: {path}: a label mask, by its name", file=sys.stderr)
            continue
        try:
            own = synthetic_items([path], dataset=dataset, **simulate)
            for item in own[:: len(simulate["levels"].defocus_um) * simulate["seeds"]]:
                miq.assess(item.load(), model, name=item.name)  # each plane, in focus
        except MiqError as exc:
            print(f"left out: {str(exc).splitlines()[0]}", file=sys.stderr)  # names the file
            continue
        files.append(path)
        items_per_file.append(own)
    if not files:
        sys.exit(f"no ratable in-focus images among {len(paths)} files")
    return files, items_per_file


def trained_on(models, labels: list[str], files) -> dict[str, str]:
    """label → one line naming the files of ``files`` that the model, or a model it was built
    from (`miq.model.lineage`), trained on; only models for which there are such files."""
    lines = {}
    for label, model in zip(labels, models):
        seen = lineage(model.package.path).seen(files)
        if seen:
            by = " and ".join(sorted(set(seen.values())))
            lines[label] = (
                f"{label}: NOT held out: {by} trained on {len(seen)} of these {len(files)} "
                f"files ({', '.join(sorted(seen)[:3])}{' …' if len(seen) > 3 else ''})"
            )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["default", "fast"])
    parser.add_argument("--split", choices=("held-out", "validation"), default="held-out")
    parser.add_argument(
        "--folder",
        nargs="+",
        type=Path,
        help="rate the in-focus images under these folders instead of a split",
    )
    parser.add_argument(
        "--unit",
        choices=("plane", "file"),
        default="plane",
        help="what the bootstrap resamples: single planes, or files with all their planes",
    )
    parser.add_argument("--seeds", type=int, default=3)
    add_first_seed(parser)
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument(
        "--per-plane",
        action="store_true",
        help="also print each plane's accuracy / mean probability of its level per model",
    )
    args = parser.parse_args()

    runs = [entry.split(",") for entry in args.models]  # each entry: one recipe's runs
    models = [miq.load_model(m, threads=1) for recipe in runs for m in recipe]
    run_labels = [model_label(m, model) for m, model in zip(sum(runs, []), models)]
    first = models[0]
    simulate = {
        "seeds": args.seeds,
        "first_seed": args.first_seed,
        "optics": first.optics,
        "levels": first.levels,
    }
    if args.folder:
        files, items_per_file = ratable_items(find_images(args.folder), first, simulate, "folder")
        dataset = "folder"
    else:
        dataset = args.split
        files = held_out_files() if args.split == "held-out" else training_files()
        files, items_per_file = ratable_items(files, first, simulate, dataset)
    items = [item for own in items_per_file for item in own]
    seen = {} if dataset == "validation" else trained_on(models, run_labels, files)
    for line in seen.values():
        print(line, file=sys.stderr)
    for model in models[1:]:
        if model.levels != first.levels:
            sys.exit(f"{model.name}: its levels differ from {first.name}'s; not comparable")
    truth = np.array([item.level for item in items])
    # items run plane by plane: one block of levels × seeds per plane
    plane = np.arange(len(items)) // (first.levels.n_levels * args.seeds)
    last_seed = args.first_seed + args.seeds - 1
    print(
        f"{dataset}: {len(items)} images ({plane.max() + 1} planes of {len(files)} files × "
        f"{first.levels.n_levels} levels × {args.seeds} seeds; noise seeds "
        f"{args.first_seed}–{last_seed})",
        file=sys.stderr,
    )

    rated_runs = rate(models, items, run_labels)
    ends = np.cumsum([len(recipe) for recipe in runs])
    rated = [rated_runs[e - len(r) : e] for e, r in zip(ends, runs)]  # per recipe, its runs
    labels = [
        run_labels[e - 1] if len(r) == 1 else f"{','.join(r)} (mean of {len(r)} runs)"
        for e, r in zip(ends, runs)
    ]

    rng = np.random.default_rng(0)
    members = [np.flatnonzero(plane == p) for p in range(plane.max() + 1)]
    units = members
    if args.unit == "file":  # all planes of one file resampled together
        first_item = np.cumsum([0] + [len(own) for own in items_per_file])
        units = [np.arange(a, b) for a, b in zip(first_item[:-1], first_item[1:])]
    draws = []  # (image indices, plane label of each: a plane drawn twice counts as two planes)
    for _ in range(args.bootstrap):
        picked = rng.integers(0, len(units), len(units))
        images = np.concatenate([units[u] for u in picked])
        # field CE groups by plane; a plane drawn twice counts as two
        copy = np.repeat(np.arange(len(picked)), [len(units[u]) for u in picked])
        draws.append((images, copy * (plane.max() + 1) + plane[images]))
    print(
        f"\n| model | {' | '.join(METRICS)} | "
        + " | ".join(f"Δ {m} (95 % CI)" for m in METRICS)
        + " |"
    )
    print("|---" * (1 + 2 * len(METRICS)) + "|")
    every_image = np.arange(len(items))
    base = recipe_scores(rated[0], truth, every_image, plane)
    # the first recipe's scores on each bootstrap draw, shared by every comparison with it
    base_draws = np.array([recipe_scores(rated[0], truth, d, groups) for d, groups in draws])
    verdicts = []
    for k, (label, recipe) in enumerate(zip(labels, rated)):
        own = recipe_scores(recipe, truth, every_image, plane)
        cells = [f"{v:.3f}" for v in own]
        if k == 0:
            cells += ["–"] * len(METRICS)
        else:
            diff = (
                np.array([recipe_scores(recipe, truth, d, groups) for d, groups in draws])
                - base_draws
            )
            low, high = np.percentile(diff, [2.5, 97.5], axis=0)
            cells += [
                f"{o - b:+.3f} ({lo:+.3f}, {hi:+.3f})" for o, b, lo, hi in zip(own, base, low, high)
            ]
            verdict = non_inferiority_verdict(low, high, len(units), args.unit)
            if any(run_labels[i] in seen for i in range(ends[k] - len(runs[k]), ends[k])):
                verdict += " (void: not held out, see above)"
            elif any(run_labels[i] in seen for i in range(ends[0])):
                verdict += f" (void: {labels[0]} is not held out, see above)"
            verdicts.append(f"{label} against {labels[0]}: {verdict}")
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("\n" + "\n".join(verdicts))
    if args.per_plane:
        names = [items[m[0]].name.rsplit(" @", 1)[0] for m in members]
        print_per_plane(names, members, run_labels, rated_runs, truth)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
