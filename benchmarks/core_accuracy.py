"""Accuracy of a miq model on held-out real images (needs ../shared/data).

1. Synthetic-on-real: every held-out in-focus plane (fields never used in training) defocused by
   the simulator to each level (original sensor model, 2 noise seeds) → image-level confusion
   matrix, exact and within-one accuracy.
2. Real defocus: BBBC006 z00 (~32 µm out of focus) should rate ≥ 8; the held-out real in-focus
   planes ≤ 2; every BBBC006 z10 image sharper (lower level_mean) than every z00 image.
3. Invariance: gain ×0.2/×5 and offset +1/+1000 DN change the image level by at most one.

Usage: python benchmarks/core_accuracy.py [--model DIR] [--seeds 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import miq  # noqa: E402
from data_split import SHARED_DATA, held_out_files  # noqa: E402
from miq.io import read_planes  # noqa: E402
from miq.metrics import accuracy_within, confusion_matrix, format_confusion  # noqa: E402
from miq.optics import LevelTable, Optics, degrade  # noqa: E402


def held_out_planes() -> list[tuple[str, np.ndarray]]:
    planes = []
    for f in held_out_files():
        for p in read_planes(f):
            planes.append((f"{f.name}[c{p.c}]", p.data))
    return planes


def synthetic_on_real(model, seeds: int) -> dict:
    table = LevelTable()
    truth, pred = [], []
    per_plane = {}
    for name, data in held_out_planes():
        # 8-bit planes are brought to a 16-bit camera range (max >= 2000 DN) so that the
        # original sensor model (offset 100 DN, 1 photoelectron per DN) does not erase them.
        dn = data.astype(np.float64) * max(1.0, 2000.0 / float(data.max()))
        unit = dn / 65535.0
        for level in range(table.n_levels):
            for seed in range(seeds):
                img = degrade(
                    unit, table.defocus_um[level], optics=Optics(), rng=1000 * level + seed
                )
                a = miq.assess(img, model)
                truth.append(level)
                pred.append(a.level)
                per_plane.setdefault(name, []).append(a.level - level)
    cm = confusion_matrix(truth, pred, table.n_levels)
    return {
        "confusion": cm,
        "exact": accuracy_within(truth, pred, 0),
        "within_one": accuracy_within(truth, pred, 1),
        "n": len(truth),
        "per_plane": per_plane,
    }


def rate_files(model, files) -> list[tuple[str, object]]:
    out = []
    for f in files:
        for p in read_planes(f):
            out.append((f.name, miq.assess(p.data, model)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: bundled)")
    parser.add_argument("--seeds", type=int, default=2, help="noise seeds per plane and level")
    args = parser.parse_args()
    if not SHARED_DATA.exists():
        print(f"shared data not found at {SHARED_DATA}; set MIQ_SHARED_DATA")
        return 2
    model = miq.load_model(args.model)
    print(f"model: {model.path}")
    t0 = time.time()
    syn = synthetic_on_real(model, args.seeds)
    print(
        f"\n## 1. Synthetic defocus of held-out real fields ({syn['n']} images, "
        f"{len(syn['per_plane'])} planes x 11 levels x {args.seeds} seeds)"
    )
    print(f"exact {syn['exact']:.3f}   within-one {syn['within_one']:.3f}")
    print(format_confusion(syn["confusion"]))
    for name, errs in syn["per_plane"].items():
        e = np.abs(np.array(errs))
        print(f"  {name:<55} within-one {np.mean(e <= 1):.2f}  mean |error| {e.mean():.2f}")

    real = SHARED_DATA / "real-defocus"
    z00 = rate_files(model, sorted((real / "bbbc006-hoechst-z00").glob("*.tif")))
    z10 = rate_files(model, sorted((real / "bbbc006-hoechst-z10").glob("*.png")))
    infocus = rate_files(model, held_out_files())
    print("\n## 2. Real images")
    for label, rows, rule in (
        ("BBBC006 z00 (~32 um)", z00, lambda a: a.level >= 8),
        ("BBBC006 z10 (sharper)", z10, None),
        ("held-out in focus", infocus, lambda a: a.level <= 2),
    ):
        ok = sum(rule(a) for _, a in rows) if rule else None
        verdict = f"  pass {ok}/{len(rows)}" if rule else ""
        print(
            f"{label}: levels {[a.level for _, a in rows]}  "
            f"level_mean {[round(a.level_mean, 2) for _, a in rows]}{verdict}"
        )
    worst_z10 = max(a.level_mean for _, a in z10)
    best_z00 = min(a.level_mean for _, a in z00)
    print(
        f"ordering: max z10 level_mean {worst_z10:.2f} < min z00 level_mean {best_z00:.2f}: "
        f"{'PASS' if worst_z10 < best_z00 else 'FAIL'}"
    )

    print("\n## 3. Gain/offset invariance (max |level change| vs the original image)")
    worst = 0
    for name, files in (
        ("z00", sorted((real / "bbbc006-hoechst-z00").glob("*.tif"))),
        ("z10", sorted((real / "bbbc006-hoechst-z10").glob("*.png"))),
        ("in-focus", held_out_files()),
    ):
        changes = []
        for f in files:
            for p in read_planes(f):
                base = miq.assess(p.data, model).level
                for gain in (0.2, 5.0):
                    for offset in (1.0, 1000.0):
                        changes.append(abs(miq.assess(p.data * gain + offset, model).level - base))
        worst = max(worst, max(changes))
        print(
            f"{name}: max change {max(changes)}, mean {np.mean(changes):.2f} over {len(changes)} variants"
        )
    print(f"invariance within one level: {'PASS' if worst <= 1 else 'FAIL'}")
    print(f"\n(total {time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
