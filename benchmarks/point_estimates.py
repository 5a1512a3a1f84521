"""Point estimates of the whole-image level, compared on the same distributions.

From each whole-image distribution q (K levels): the arg-max (miq's level until 2026-11-30), the
median, and the arg-max on the side of the in/out call (`miq.assessment.level_on_call_side` with
the default call: levels 0–2 when P(levels 0–2) ≥ 0.5, else 3–10; miq's level since). Each is
scored by exact and within-one accuracy, gross errors (true ≥ 6 rated ≤ 2, or true ≤ 2 rated
≥ 6), images whose level contradicts the default in/out flag, and the ECE and per-file
calibration error of the probability q gives the reported level. docs/lab-notebook/level-rule.md.

Usage: python -m benchmarks.point_estimates PREDICTIONS.csv [...]
  (``predictions.csv`` of a `benchmarks.accuracy` model folder: one table per data set)
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict

import numpy as np

IN_FOCUS_LEVELS = 3


def point_estimates(q: np.ndarray) -> dict[str, np.ndarray]:
    """Candidate whole-image levels (N,) from distributions q (N, K)."""
    from miq.assessment import level_on_call_side

    return {
        "arg-max": q.argmax(axis=1),
        "median": (np.cumsum(q, axis=1) >= 0.5).argmax(axis=1),
        "arg-max on the call's side": level_on_call_side(q, IN_FOCUS_LEVELS),
    }


def print_point_estimates(q: np.ndarray, truth: np.ndarray, files: np.ndarray) -> None:
    """A markdown table: one row per point estimate of distributions q (N, K), true levels (N,),
    images grouped by source file (N,) for the per-file CE."""
    from miq.metrics import calibration, group_calibration_error

    flagged_out = q[:, :IN_FOCUS_LEVELS].sum(axis=1) < 0.5
    print("| level | exact | within-one | gross errors | level ≠ flag | ECE | per-file CE |")
    print("|---|---|---|---|---|---|---|")
    for label, level in point_estimates(q).items():
        right = level == truth
        stated = q[np.arange(len(q)), level]
        gross = int(np.sum((truth >= 6) & (level <= 2)) + np.sum((truth <= 2) & (level >= 6)))
        disagree = int(np.sum((level < IN_FOCUS_LEVELS) == flagged_out))
        print(
            f"| {label} | {right.mean():.3f} | {np.mean(np.abs(level - truth) <= 1):.3f} | "
            f"{gross} | {disagree} | {calibration(stated, right).ece:.3f} | "
            f"{group_calibration_error(stated, right, files):.3f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("predictions", nargs="+", help="predictions.csv of benchmarks.accuracy")
    args = parser.parse_args()
    for path in args.predictions:
        rows = defaultdict(list)
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if not row.get("error") and row.get("true_level") and row.get("prob_0"):
                    rows[row["dataset"]].append(row)
        for dataset, members in rows.items():
            k = sum(1 for key in members[0] if key.startswith("prob_"))
            q = np.array([[float(r[f"prob_{i}"]) for i in range(k)] for r in members])
            truth = np.array([int(r["true_level"]) for r in members])
            files = np.array([r["image"].split(" @")[0].split(" [")[0] for r in members])
            print(f"\n{path}: {dataset} ({len(members)} images)\n")
            print_point_estimates(q, truth, files)


if __name__ == "__main__":
    main()
