"""miq against the classical focus measures on the real data of ../shared/data (one table).

Datasets (never a field used in training: see benchmarks/common.py):

* synthetic held-out — every held-out in-focus plane defocused by the simulator to each of the 11
  levels (2 noise seeds): levels, Spearman with defocus, in/out F-score (levels 0–2 = in focus).
* BBBC006 real in/out — the 8 BBBC006 z00 fields (~32 µm out of focus: level 10, out of focus)
  and the 8 held-out in-focus planes (level 0, in focus).
* BBBC006 z10 vs z00 — real, sharper z10 images against z00 (ordering: AUC = P(z10 rated
  sharper than z00)); z10's exact defocus is undocumented, so no level accuracy.
* deconwolf DAPI stack — 40 planes, 0.3 µm apart, best plane 19 (NA 1.45 widefield).
* DFNN microtubule stack — 31 single-plane files, 0.05 µm apart, best plane Abs0051.

The NEUBIAS Golgi stack is left out: its best plane is not documented and the data README's
"plane 8–9" disagrees with every sharpness measure (all peak at 17–18).

Usage: python -m benchmarks.accuracy [--model DIR] [--seeds 2] [--splits 100] [-o OUT]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import miq
from benchmarks.common import SHARED_DATA, held_out_files, shared_data_missing
from miq.evaluation import BEST_FOCUS, MODEL, evaluate
from miq.ground_truth import manifest_items, stack_items, synthetic_items

COMPARED = ("plls", "focus_score", "variance_of_laplacian", "tenengrad")  # focus_score also
# feeds the "miq best-focus" column: miq's in-focus plateau refined by FocusScore (focal stacks).
OTHERS = ("local_focus_score_20", "brenner", "correlation_20")
REAL = SHARED_DATA / "real-defocus"


def _manifest(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def build_items(model, seeds: int, workdir: Path) -> tuple[list, dict]:
    z00 = sorted((REAL / "bbbc006-hoechst-z00").glob("*.tif"))
    z10 = sorted((REAL / "bbbc006-hoechst-z10").glob("*.png"))
    held = held_out_files()
    items, info = [], {}

    name = "synthetic held-out"
    items += synthetic_items(
        held, dataset=name, seeds=seeds, optics=model.optics, levels=model.levels
    )
    info[name] = {"files": [str(f) for f in held], "seeds": seeds}

    name = "BBBC006 real in/out"
    rows = [f"{f},32,0" for f in z00] + [f"{f},0,1" for f in held]
    m = _manifest(workdir / "real_in_out.csv", "file,defocus_um,in_focus", rows)
    items += manifest_items(m, dataset=name, um_per_level=model.um_per_level)
    info[name] = {"manifest": m.read_text()}

    name = "BBBC006 z10 vs z00"
    rows = [f"{f},1" for f in z10] + [f"{f},0" for f in z00]
    m = _manifest(workdir / "z10_vs_z00.csv", "file,in_focus", rows)
    items += manifest_items(m, dataset=name)
    info[name] = {"manifest": m.read_text(), "note": "in_focus = 1 means 'sharper z10'"}

    name = "deconwolf DAPI stack"
    items += stack_items(REAL / "deconwolf-dapi-stack" / "dapi_001.tif", 0.3, 19, dataset=name)
    info[name] = {"z_step_um": 0.3, "best_z": 19}

    name = "DFNN microtubule stack"
    rows = []
    for f in sorted((REAL / "dfnn-microtubules" / "stack").glob("*.tif")):
        index = int(re.search(r"Abs(\d+)", f.name).group(1))
        rows.append(f"{f},{abs(index - 51) * 0.05:.2f},dfnn,{index}")
    m = _manifest(workdir / "dfnn.csv", "file,defocus_um,stack,stack_z", rows)
    items += manifest_items(m, dataset=name)
    info[name] = {"z_step_um": 0.05, "best": "Abs0051"}
    return items, info


# (label, metric key, where it lives: "model" for model-only, else per method, format)
ROWS = (
    ("within-one", "within_one", "model"),
    ("exact", "exact", "model"),
    ("ECE", "ece", "model"),
    ("F, no tuning", "f_fixed", "model"),
    ("F (10/90 split)", "f_mean", "methods"),
    ("ROC-AUC", "roc_auc", "methods"),
    ("Spearman", "spearman", "methods"),
    ("best-plane error", "best_plane_error_mean", "methods"),
)


def _cell(key: str, value, method_metrics: dict) -> str:
    if value is None or value != value:
        return "–"
    if key == "f_mean":
        return f"{value:.3f} ± {method_metrics['f_sd']:.3f}"
    if key == "best_plane_error_mean":
        return f"{value:.0f} planes"
    return f"{value:.3f}"


def table(metrics: dict, methods: tuple[str, ...]) -> str:
    head = f"| data set | metric | {' | '.join(methods)} |"
    lines = [head, "|" + "---|" * (len(methods) + 2)]
    for dataset, m in metrics.items():
        for label, key, where in ROWS:
            if where == "model":
                if key not in m["model"]:
                    continue
                cells = [f"{m['model'][key]:.3f}"] + ["–"] * (len(methods) - 1)
            else:
                values = [m["methods"].get(method, {}).get(key) for method in methods]
                if all(v is None or v != v for v in values):
                    continue
                cells = [_cell(key, v, m["methods"].get(x, {})) for v, x in zip(values, methods)]
            lines.append(f"| {dataset} | {label} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: bundled)")
    parser.add_argument("--seeds", type=int, default=2, help="noise seeds per synthetic level")
    parser.add_argument("--splits", type=int, default=100, help="random 10/90 F-score splits")
    parser.add_argument("-o", "--output", default=None, help="evaluation folder (default: temp)")
    parser.add_argument("--all-measures", action="store_true", help="also LocalFocusScore, ...")
    args = parser.parse_args()
    if shared_data_missing():
        return 2
    model = miq.load_model(args.model, threads=1)
    measures = COMPARED + (OTHERS if args.all_measures else ())
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.output or Path(tmp) / "evaluation")
        items, info = build_items(model, args.seeds, Path(tmp))
        print(f"model {model.name} ({model.path}); {len(items)} images", file=sys.stderr)
        ev = evaluate(
            items, out, model, measures=measures, n_splits=args.splits, datasets_info=info
        )
        print(table(ev.metrics, (MODEL, BEST_FOCUS, *measures)))
        print(
            f"\n(results in {out}; {time.time() - t0:.0f} s)"
            if args.output
            else f"\n({time.time() - t0:.0f} s; pass -o DIR to keep summary.json, plots and CSVs)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
