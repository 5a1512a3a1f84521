"""Does the rating survive changes that do not change focus? miq vs the classical measures.

Images: every held-out in-focus plane (benchmarks/common.py) defocused by the simulator to levels 0, 3,
6 and 9 (one noise seed), plus the real BBBC006 z00 and z10 images. Each is rated as is and after
one change that leaves its focus alone:

* gain ×0.05 and ×20 (float, no clipping), offset +5000 DN, both at once;
* 8-bit (min–max scaled to 0–255 and rounded), float in unit range, float raw DN;
* uint16 with +5000 DN offset (clipped at 65535);
* a camera with 2× larger pixels (2×2 binning of the image), rated with ``--pixel-size 1.3`` so
  miq resamples it back to its 0.65 µm, and without it;
* a camera with 2× smaller pixels (synthetic images only: the in-focus plane upsampled 2×, then
  defocused and noised by the simulator at 0.325 µm/px), with ``--pixel-size 0.325`` and without.

miq: largest and mean |change of the image level| (target: at most one level). Classical measures:
median relative change of the value, |m' − m| / |m| — a threshold tuned on the original images
no longer applies when that is large. Every image whose level moves by more than one
(pixel size declared) is listed.

Usage: python -m benchmarks.robustness [--model DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np
from PIL import Image

import miq
from benchmarks.common import SHARED_DATA, held_out_files, shared_data_missing
from miq.assessment import AssessOptions
from miq.ground_truth import to_camera_range
from miq.io import read_planes
from miq.measures import MEASURES
from miq.optics import degrade

MEASURED = ("plls", "focus_score", "variance_of_laplacian", "tenengrad")


def _to_8bit(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return np.round((x - lo) / (hi - lo) * 255).astype(np.uint8)


# name → (transform of an image record to the changed image, pixel size to declare or None)
VARIANTS = {
    "gain x0.05": (lambda r: r["dn"] * 0.05, None),
    "gain x20": (lambda r: r["dn"] * 20.0, None),
    "offset +5000 DN": (lambda r: r["dn"] + 5000.0, None),
    "gain x20 + offset 5000": (lambda r: r["dn"] * 20.0 + 5000.0, None),
    "uint16 + 5000 DN (clipped)": (
        lambda r: np.clip(np.round(r["dn"]) + 5000, 0, 65535).astype(np.uint16),
        None,
    ),
    "8-bit": (lambda r: _to_8bit(r["dn"]), None),
    "float, unit range": (
        lambda r: ((r["dn"] - r["dn"].min()) / np.ptp(r["dn"])).astype(np.float32),
        None,
    ),
    "float, raw DN": (lambda r: r["dn"].astype(np.float32), None),
    "2x pixel size (2x2 binning), --pixel-size 1.3": (lambda r: _bin2(r["dn"]), 1.3),
    "0.5x pixel size (finer camera), --pixel-size 0.325": (lambda r: r.get("fine"), 0.325),
    "2x pixel size, no --pixel-size": (lambda r: _bin2(r["dn"]), None),
    "0.5x pixel size, no --pixel-size": (lambda r: r.get("fine"), None),
}


def _bin2(x: np.ndarray) -> np.ndarray:
    h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
    return x[:h, :w].reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3))


def base_images(model) -> list[dict]:
    """Image records: ``name``, ``dn`` (float64 DN) and, for synthetic ones, ``fine``."""
    optics = model.optics
    fine_optics = dataclasses.replace(
        optics, pixel_size_um=optics.pixel_size_um / 2, psf_width_px=2 * optics.psf_width_px - 1
    )
    levels = model.levels
    records = []
    for f in held_out_files():
        for plane in read_planes(f):
            unit = to_camera_range(plane.data)
            h, w = unit.shape
            unit_fine = np.asarray(
                Image.fromarray(unit.astype(np.float32)).resize(
                    (2 * w, 2 * h), Image.Resampling.BICUBIC
                ),
                dtype=np.float64,
            ).clip(0, None)
            for level in (0, 3, 6, 9):
                z = levels.defocus_um[level]
                records.append(
                    {
                        "name": f"{f.name}[c{plane.c}] level {level}",
                        "dn": degrade(unit, z, optics=optics, rng=level) * 65535.0,
                        "fine": degrade(unit_fine, z, optics=fine_optics, rng=level) * 65535.0,
                    }
                )
    real = SHARED_DATA / "real-defocus"
    for f in sorted((real / "bbbc006-hoechst-z00").glob("*.tif")) + sorted(
        (real / "bbbc006-hoechst-z10").glob("*.png")
    ):
        records += [{"name": f.name, "dn": p.data.astype(np.float64)} for p in read_planes(f)]
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: bundled)")
    args = parser.parse_args()
    if shared_data_missing():
        return 2
    model = miq.load_model(args.model, threads=1)
    t0 = time.time()
    images = base_images(model)
    base = []
    for r in images:
        base.append((miq.assess(r["dn"], model).level, {m: MEASURES[m](r["dn"]) for m in MEASURED}))
    print(f"model {model.name}; {len(images)} images (levels 0/3/6/9 synthetic + BBBC006 real)\n")
    print(
        "| change | images | miq max abs Δlevel | miq mean abs Δlevel | "
        + " | ".join(f"{m} median rel. change" for m in MEASURED)
        + " |"
    )
    print("|---|---|---|---|" + "---|" * len(MEASURED))
    worst_with_pixel_size = 0
    moved = []  # (change, image, level before, level after) where the level moved by more than 1
    for name, (transform, pixel_size) in VARIANTS.items():
        changes, rel = [], {m: [] for m in MEASURED}
        options = AssessOptions(pixel_size_um=pixel_size)
        for record, (level, values) in zip(images, base):
            y = transform(record)
            if y is None:  # this change cannot be made for this image
                continue
            after = miq.assess(y, model, options=options).level
            changes.append(abs(after - level))
            if changes[-1] > 1 and "no --pixel-size" not in name:
                moved.append((name, record["name"], level, after))
            for m in MEASURED:
                v = MEASURES[m](y)
                rel[m].append(abs(v - values[m]) / max(abs(values[m]), 1e-12))
        if "no --pixel-size" not in name:
            worst_with_pixel_size = max(worst_with_pixel_size, max(changes))
        cells = " | ".join(f"{np.median(rel[m]):.2f}" for m in MEASURED)
        print(f"| {name} | {len(changes)} | {max(changes)} | {np.mean(changes):.2f} | {cells} |")
    if moved:
        print("\nimages whose level moved by more than one (pixel size declared):")
        for name, image, before, after in moved:
            print(f"  {name}: {image}: {before} → {after}")
    verdict = "PASS" if worst_with_pixel_size <= 1 else "FAIL"
    print(
        f"\nmiq level moves by at most one under every change (pixel size declared): "
        f"{verdict} (worst {worst_with_pixel_size}); {time.time() - t0:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
