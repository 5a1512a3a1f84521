"""Evaluate the model and the classical focus measures on the same images with known focus.

`run_items` rates every `miq.ground_truth.Item` with the model and every measure;
`dataset_metrics` turns one dataset's results into numbers (see `miq.metrics` for the
definitions); `evaluate` does both and writes a result folder:

``summary.json`` (configuration and every metric), ``predictions.csv`` (one row per image),
``metrics.csv`` (one row per dataset and method), ``confusion_<dataset>.csv|png`` and
``reliability_<dataset>.csv|png`` (model, with true levels), ``best_plane.csv`` (focal stacks).

Every method is scored "higher = blurrier": the model by its expected level (``level_mean``),
each measure by its value, negated when it grows with sharpness.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .assessment import AssessOptions, assess
from .best_focus import best_plane
from .errors import MiqError
from .ground_truth import Item
from .measures import MEASURES, defocus_score
from .metrics import (
    accuracy_within,
    calibration,
    calibration_floor,
    confusion_matrix,
    f_score,
    group_calibration_error,
    roc_auc,
    spearman,
    split_f_score,
)

__all__ = ["ItemResult", "run_items", "dataset_metrics", "Evaluation", "evaluate", "format_table"]

MODEL = "miq"
# `miq best-focus`'s rule (model plateau refined by FocusScore), scored on focal stacks only.
BEST_FOCUS_MEASURE = "focus_score"
BEST_FOCUS = "miq best-focus"
# Measures compared by default (all of miq.measures).
DEFAULT_MEASURES = tuple(MEASURES)
# what a perfectly calibrated model with the model's confidences scores by chance: mean, 97.5 %
CHANCE_COLUMNS = ("ece_chance", "ece_chance_high", "field_ce_chance", "field_ce_chance_high")


@dataclass
class ItemResult:
    """Model summary (``ImageAssessment.summary()``) and measure values for one item."""

    item: Item
    model: dict | None = None
    measures: dict[str, float] = field(default_factory=dict)
    error: str = ""

    def score(self, method: str) -> float:
        """The method's score for this image, higher = blurrier."""
        if method == MODEL:
            return float(self.model["level_mean"])
        return defocus_score(method, self.measures[method])


def run_items(
    items: list[Item],
    model=None,
    *,
    measures: tuple[str, ...] = DEFAULT_MEASURES,
    options: AssessOptions = AssessOptions(),
    progress: bool | None = None,
    on_error: Callable[[str], None] | None = None,
) -> list[ItemResult]:
    """Rate every item with the model and each named measure; a failing item keeps its error."""
    from tqdm import tqdm

    from .model.runtime import default_model
    from .resampling import resample_to_pixel_size

    unknown = [m for m in measures if m not in MEASURES]
    if unknown:
        raise ValueError(f"unknown measure(s) {unknown}; choose from {', '.join(MEASURES)}")
    model = model or default_model()
    results = []
    bar = tqdm(
        items,
        desc="miq evaluate",
        unit="image",
        file=sys.stderr,
        disable=None if progress is None else not progress,
    )
    for item in bar:
        result = ItemResult(item)
        try:
            image = item.load()
            item_options = options.for_file(item.pixel_size_um, model.pixel_size_um)[0]
            result.model = assess(image, model, options=item_options, name=item.name).summary()
            if item_options.pixel_size_um is not None:  # measures see what the model sees
                size = item_options.pixel_size_um
                image = resample_to_pixel_size(image, size, model.pixel_size_um)
            result.measures = {m: MEASURES[m](image) for m in measures}
        except MiqError as exc:
            result.error = str(exc)
            if on_error:
                on_error(result.error)
        results.append(result)
    return results


def dataset_metrics(
    results: list[ItemResult],
    *,
    methods: tuple[str, ...],
    n_levels: int = 11,
    n_splits: int = 100,
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> dict:
    """Metrics of one dataset (JSON-ready dict).

    ``model``: exact and within-one accuracy, confusion matrix and calibration (true levels);
    F-score of the model's own in/out flag with no tuning (``f_fixed``). ``methods``: per method
    (``miq`` first) Spearman correlation with true defocus (µm, or level), ROC-AUC and the
    10 %/90 % split F-score (in/out labels; out of focus = positive), best-plane error in planes
    (focal stacks).
    """
    ok = [r for r in results if not r.error]
    out: dict = {"n": len(results), "n_failed": len(results) - len(ok), "model": {}, "methods": {}}
    if not ok:
        return out
    levels = [r.item.level for r in ok]
    defocus = [r.item.defocus_um for r in ok]
    labels = [r.item.in_focus for r in ok]
    if all(v is not None for v in levels):
        out["model"].update(_level_metrics(ok, np.array(levels), n_levels))
    if all(v is not None for v in defocus):
        rank_truth, out["spearman_with"] = np.array(defocus, dtype=float), "defocus_um"
    elif all(v is not None for v in levels):
        rank_truth, out["spearman_with"] = np.array(levels, dtype=float), "level"
    else:
        rank_truth = None
    have_labels = all(v is not None for v in labels)
    out_of_focus = np.array([not v for v in labels]) if have_labels else None
    if have_labels:
        out["n_out_of_focus"] = int(out_of_focus.sum())
        out["n_in_focus"] = int((~out_of_focus).sum())
        out["model"]["f_fixed"] = f_score(out_of_focus, [not r.model["in_focus"] for r in ok])
    out["best_plane"] = _best_planes(ok, methods)
    if out["best_plane"] and BEST_FOCUS in out["best_plane"][0]:
        errors = [abs(row[BEST_FOCUS] - row["true_z"]) for row in out["best_plane"]]
        out["methods"][BEST_FOCUS] = {
            "best_plane_error_mean": float(np.mean(errors)),
            "best_plane_error_max": int(np.max(errors)),
        }
    for method in methods:
        scores = np.array([r.score(method) for r in ok])
        m: dict = {}
        if rank_truth is not None:
            m["spearman"] = spearman(rank_truth, scores)
        if have_labels:
            split = split_f_score(
                out_of_focus,
                scores,
                n_splits=n_splits,
                validation_fraction=validation_fraction,
                seed=seed,
            )
            m.update(roc_auc=roc_auc(out_of_focus, scores), f_mean=split.mean, f_sd=split.sd)
        if out["best_plane"]:
            errors = [abs(row[method] - row["true_z"]) for row in out["best_plane"]]
            m.update(
                best_plane_error_mean=float(np.mean(errors)),
                best_plane_error_max=int(np.max(errors)),
            )
        out["methods"][method] = m
    return out


def _level_metrics(ok: list[ItemResult], truth: np.ndarray, n_levels: int) -> dict:
    """Exact / within-one accuracy, confusion matrix, ECE and ``field_ce`` (per source file:
    `miq.metrics.group_calibration_error`) of the model's levels, and `CHANCE_COLUMNS`
    (`miq.metrics.calibration_floor`)."""
    predicted = np.array([r.model["level"] for r in ok])
    # the probability the distribution gives the reported level
    confidence = np.array([r.model[f"prob_{r.model['level']}"] for r in ok])
    calib = calibration(confidence, predicted == truth)
    # the source file; real items without one are named "f.tif [c=0, z=1]"
    fields = [r.item.source or re.split(r" \[| @", r.item.name)[0] for r in ok]
    c = calibration_floor(confidence, fields, draws_of=[r.item.image for r in ok])
    return {
        "field_ce": group_calibration_error(confidence, predicted == truth, fields),
        **dict(zip(CHANCE_COLUMNS, (c.ece, c.ece_high, c.group, c.group_high))),
        "exact": accuracy_within(truth, predicted, 0),
        "within_one": accuracy_within(truth, predicted, 1),
        "mean_abs_error": float(np.mean(np.abs(predicted - truth))),
        "ece": calib.ece,
        "confusion": confusion_matrix(truth, predicted, n_levels).tolist(),
        "calibration": {
            "bin_edges": calib.bin_edges.tolist(),
            "count": calib.count.tolist(),
            "confidence": calib.confidence.tolist(),
            "accuracy": calib.accuracy.tolist(),
        },
    }


def _best_planes(ok: list[ItemResult], methods: tuple[str, ...]) -> list[dict]:
    """Per focal stack: the true best plane and each method's pick (its least blurry plane)."""
    stacks: dict[str, list[ItemResult]] = {}
    for r in ok:
        if r.item.stack is not None:
            stacks.setdefault(r.item.stack, []).append(r)
    rows = []
    for stack, members in stacks.items():
        members = sorted(members, key=lambda r: r.item.z)
        row = {"stack": stack, "true_z": members[0].item.best_z, "n_planes": len(members)}
        for method in methods:
            scores = [r.score(method) for r in members]
            row[method] = members[int(np.argmin(scores))].item.z
        if BEST_FOCUS_MEASURE in methods:  # the rule of `miq best-focus`
            index, _ = best_plane(
                [r.score(MODEL) for r in members],
                [-r.score(BEST_FOCUS_MEASURE) for r in members],
            )
            row[BEST_FOCUS] = members[index].item.z
        rows.append(row)
    return rows


@dataclass
class Evaluation:
    """Results and metrics of an evaluation, per dataset (in order of first appearance)."""

    results: list[ItemResult]
    metrics: dict[str, dict]
    out_dir: Path | None = None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "dataset"


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return "" if value != value else f"{value:.6g}"
    return str(value)


def evaluate(
    items: list[Item],
    out_dir: str | os.PathLike,
    model=None,
    *,
    measures: tuple[str, ...] = DEFAULT_MEASURES,
    options: AssessOptions = AssessOptions(),
    n_splits: int = 100,
    seed: int = 0,
    datasets_info: dict[str, dict] | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    on_error: Callable[[str], None] | None = None,
    results: list[ItemResult] | None = None,
) -> Evaluation:
    """Rate ``items``, compute per-dataset metrics and write the result folder (see module doc).

    ``datasets_info``: what each dataset is (source, optics, seeds...), copied into summary.json.
    ``results``: ``items`` already rated by ``model`` (`run_items`): they are not rated again.
    ``out_dir`` follows `miq.io.folder.OutputFolder` (a non-empty folder needs ``overwrite``).
    """
    from .io.folder import OutputFolder
    from .model.runtime import default_model

    model = model or default_model()
    out = Path(out_dir)
    settings = {"measures": list(measures), "n_splits": n_splits, "seed": seed}
    with OutputFolder.prepare(
        out, command="evaluate", settings=settings, overwrite=overwrite
    ) as folder:  # locked until the end
        rate = dict(measures=measures, options=options, progress=progress, on_error=on_error)
        results = run_items(items, model, **rate) if results is None else results
        methods = (MODEL, *measures)
        datasets: dict[str, list[ItemResult]] = {}
        for r in results:
            datasets.setdefault(r.item.dataset, []).append(r)
        metrics = {
            name: dataset_metrics(
                rs, methods=methods, n_levels=model.n_levels, n_splits=n_splits, seed=seed
            )
            for name, rs in datasets.items()
        }
        _write_outputs(
            out, results, metrics, methods, model, options, n_splits, seed, datasets_info or {}
        )
        folder.record_new_files()
        folder.save()
        return Evaluation(results, metrics, out)


def _write_outputs(out, results, metrics, methods, model, options, n_splits, seed, info) -> None:
    from . import __version__
    from .io import atomic_write, write_rows_csv
    from .io.write import json_ready
    from .metrics import Calibration
    from .plots import confusion_png, plots_available, reliability_png

    k = model.n_levels
    measure_names = [m for m in methods if m != MODEL]
    columns = [
        "dataset",
        "image",
        "true_level",
        "true_defocus_um",
        "true_in_focus",
        "stack",
        "z",
        "level",
        "level_mean",
        "certainty",
        "p_in_focus",
        "in_focus",
        *[f"prob_{i}" for i in range(k)],
        *measure_names,
        "error",
    ]
    rows = []
    for r in results:
        it = r.item
        row = {
            "dataset": it.dataset,
            "image": it.name,
            "true_level": it.level,
            "true_defocus_um": it.defocus_um,
            "true_in_focus": it.in_focus,
            "stack": it.stack,
            "z": it.z,
            "error": r.error,
        }
        if r.model:
            row.update({c: r.model[c] for c in columns if c in r.model})
            row.update(r.measures)
        rows.append({c: _fmt(v) for c, v in row.items()})
    write_rows_csv(out / "predictions.csv", columns, rows)

    metric_columns = [  # one row per dataset and method
        *("dataset", "method", "n", "spearman", "roc_auc", "f_mean", "f_sd"),
        *("best_plane_error_mean", "best_plane_error_max", "exact", "within_one"),
        *("mean_abs_error", "ece", "field_ce", "f_fixed", *CHANCE_COLUMNS),  # new ones last
    ]
    metric_rows, plane_rows = [], []
    draw = plots_available()
    for name, m in metrics.items():
        for method, values in m["methods"].items():
            row = {"dataset": name, "method": method, "n": m["n"] - m["n_failed"], **values}
            if method == MODEL:
                row.update(
                    {
                        key: v
                        for key, v in m["model"].items()
                        if key not in ("confusion", "calibration")
                    }
                )
            metric_rows.append({c: _fmt(row.get(c)) for c in metric_columns})
        for row in m.get("best_plane", []):
            plane_rows.append({"dataset": name, **row})
        slug = _slug(name)
        if "confusion" in m["model"]:
            cm = np.array(m["model"]["confusion"])
            write_rows_csv(
                out / f"confusion_{slug}.csv",
                ["true_level", *map(str, range(k))],
                ({"true_level": i, **{str(j): int(cm[i, j]) for j in range(k)}} for i in range(k)),
            )
            cal = m["model"]["calibration"]
            write_rows_csv(
                out / f"reliability_{slug}.csv",
                ["bin_low", "bin_high", "count", "mean_confidence", "accuracy"],
                (
                    {
                        "bin_low": f"{lo:.2f}",
                        "bin_high": f"{hi:.2f}",
                        "count": n,
                        "mean_confidence": _fmt(c),
                        "accuracy": _fmt(a),
                    }
                    for lo, hi, n, c, a in zip(
                        cal["bin_edges"][:-1],
                        cal["bin_edges"][1:],
                        cal["count"],
                        cal["confidence"],
                        cal["accuracy"],
                    )
                ),
            )
            if draw:
                confusion_png(cm, out / f"confusion_{slug}.png", title=f"{name}: miq")
                calib = Calibration(
                    m["model"]["ece"],
                    np.array(cal["bin_edges"]),
                    np.array(cal["count"]),
                    np.array(cal["confidence"], dtype=float),
                    np.array(cal["accuracy"], dtype=float),
                )
                reliability_png(calib, out / f"reliability_{slug}.png", title=f"{name}: miq")
    write_rows_csv(out / "metrics.csv", metric_columns, metric_rows)
    if plane_rows:
        plane_columns = ["dataset", "stack", "true_z", "n_planes", *methods]
        if any(BEST_FOCUS in row for row in plane_rows):
            plane_columns.append(BEST_FOCUS)
        write_rows_csv(out / "best_plane.csv", plane_columns, plane_rows)
    summary = {
        "miq_version": __version__,
        "model": {
            "name": model.name,
            "path": str(model.path),
            "onnx_sha256": model.package.weight_sha256("onnx"),
        },
        "options": {
            "in_focus_levels": options.in_focus_levels,
            "in_focus_threshold": options.in_focus_threshold,
            "pixel_size_um": options.pixel_size_um,
        },
        "protocol": {
            "f_score": "out of focus = positive; threshold maximising F on a stratified "
            "10 % validation split, F on the other 90 %",
            "n_splits": n_splits,
            "seed": seed,
            "score": "higher = blurrier (miq: level_mean)",
        },
        "methods": list(methods),
        "datasets": {name: {"info": info.get(name, {}), **m} for name, m in metrics.items()},
        "plots": draw,
    }
    with atomic_write(out / "summary.json", "w") as fh:
        fh.write(json.dumps(json_ready(summary), indent=2, allow_nan=False))


def format_table(metrics: dict[str, dict]) -> str:
    """Plain-text table: one block per dataset, one line per method."""
    lines = []
    for name, m in metrics.items():
        head = f"{name}: {m['n'] - m['n_failed']} images"
        if m.get("n_failed"):
            head += f" ({m['n_failed']} failed)"
        if "n_out_of_focus" in m:
            head += f", {m['n_in_focus']} in / {m['n_out_of_focus']} out of focus"
        lines.append(head)
        model = m.get("model", {})
        if "exact" in model:
            lines.append(
                f"  miq levels: exact {model['exact']:.3f}  within-one {model['within_one']:.3f}  "
                f"ECE {model['ece']:.3f}  field CE {model['field_ce']:.3f}"
            )
            lines.append(
                f"  a perfectly calibrated model would score by chance: "
                f"ECE {model['ece_chance']:.3f} (97.5 %: {model['ece_chance_high']:.3f}), field CE "
                f"{model['field_ce_chance']:.3f} (97.5 %: {model['field_ce_chance_high']:.3f})"
            )
        if "f_fixed" in model:
            lines.append(f"  miq in/out flag with no tuning: F {model['f_fixed']:.3f}")
        lines.append(
            f"  {'method':<24}{'Spearman':>9}{'ROC-AUC':>9}{'F (10/90 split)':>18}"
            f"{'best-plane err':>16}"
        )
        for method, v in m.get("methods", {}).items():

            def num(key, width, v=v):
                x = v.get(key)
                return f"{x:>{width}.3f}" if x is not None and x == x else f"{'-':>{width}}"

            f = (
                f"{v['f_mean']:.3f} ± {v['f_sd']:.3f}"
                if v.get("f_mean") == v.get("f_mean") and "f_mean" in v
                else "-"
            )
            lines.append(
                f"  {method:<24}{num('spearman', 9)}{num('roc_auc', 9)}{f:>18}"
                f"{num('best_plane_error_mean', 16)}"
            )
        lines.append("")
    return "\n".join(lines)
