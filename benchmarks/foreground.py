"""Which patches does the whole-image level rest on? The foreground test against camera
backgrounds and real images (`miq.content.patch_foreground`; docs/lab-notebook/foreground.md).

Per 84-px patch: the spread of its 7×7-px block means and the standard deviation of its pixels,
both in units of the plane's pixel-noise σ (`miq.content.noise_sigma`); a patch is foreground
when the first is ≥ `FOREGROUND_SPREAD` or the second ≥ `FOREGROUND_STD`.

* Simulated camera backgrounds (nothing to see): offsets 100 and 1000 DN, Poisson backgrounds
  of 5, 50 and 500 e⁻, read noise 0, 2 and 10 DN, flat, a ±20 % gradient, vignetting to 76 % and
  to 30 % in the corners; 1024² uint16 and the same saved as 8-bit (min–max to 0–255). Printed
  per illumination: the largest and the 99.9th percentile of both ratios, and the share of
  patches called foreground (target: ≈ 0; a strongly vignetted bright background is a ramp of
  several σ across one patch and passes, which leaves those patches counted as before).
* The bundled sample field at 0, 10 and 20 µm of simulated defocus (the evaluation's camera):
  the share of foreground patches (content, however blurred, should stay foreground).
* Real images: the BBBC006 z00 and z10 fields and the in-focus BBBC006 / CellProfiler planes of
  the real in/out set: the share of foreground patches per set.

Usage: python -m benchmarks.foreground
"""

from __future__ import annotations

import sys
import time

import numpy as np

from benchmarks.common import SHARED_DATA, shared_data_missing
from miq.content import FOREGROUND_SPREAD, FOREGROUND_STD, noise_sigma
from miq.io import read_planes

PATCH = 84
BLOCK = 7


def _patches(plane: np.ndarray) -> np.ndarray:
    ny, nx = plane.shape[0] // PATCH, plane.shape[1] // PATCH
    cut = plane[: ny * PATCH, : nx * PATCH].astype(np.float64)
    return cut.reshape(ny, PATCH, nx, PATCH).swapaxes(1, 2).reshape(-1, PATCH, PATCH)


def ratios(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(block-mean spread / σ, pixel std / σ) per whole 84-px patch of the plane."""
    sigma = noise_sigma(plane)
    p = _patches(plane)
    n = len(p)
    means = p.reshape(n, PATCH // BLOCK, BLOCK, PATCH // BLOCK, BLOCK).mean(axis=(2, 4))
    spread = means.max(axis=(1, 2)) - means.min(axis=(1, 2))
    std = p.reshape(n, -1).std(axis=1)
    if sigma == 0:
        return np.full(n, np.inf), np.full(n, np.inf)
    return spread / sigma, std / sigma


def foreground_share(plane: np.ndarray) -> float:
    spread, std = ratios(plane)
    return float(np.mean((spread >= FOREGROUND_SPREAD) | (std >= FOREGROUND_STD)))


def _illumination(n: int, kind: str) -> np.ndarray:
    y, x = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")
    gradient = 1 + 0.2 * (x + y) / 2
    if kind == "flat":
        return np.ones((n, n))
    if kind == "gradient":
        return gradient
    strength = 0.38 if kind == "vignetting 76 %" else 0.95
    return np.cos(np.arctan(np.sqrt((x**2 + y**2) / 2) * strength)) ** 4 * gradient


ILLUMINATIONS = ("flat", "gradient", "vignetting 76 %", "vignetting 30 %")


def backgrounds(n: int = 1024):
    """(illumination, plane) for every simulated camera background."""
    rng = np.random.default_rng(0)
    for offset in (100.0, 1000.0):
        for photons in (5.0, 50.0, 500.0):
            for read in (0.0, 2.0, 10.0):
                for kind in ILLUMINATIONS:
                    v = rng.poisson(photons * _illumination(n, kind)).astype(np.float64) + offset
                    v += rng.normal(0.0, read, v.shape) if read else 0.0
                    raw = np.clip(np.round(v), 0, 65535).astype(np.uint16)
                    yield kind, raw
                    yield kind, np.round((raw - raw.min()) / np.ptp(raw) * 255).astype(np.uint8)


def main() -> int:
    if shared_data_missing():
        return 2
    t0 = time.time()
    print(
        f"thresholds: block-mean spread ≥ {FOREGROUND_SPREAD} σ or pixel std ≥ {FOREGROUND_STD} σ"
    )
    found: dict[str, list] = {kind: [] for kind in ILLUMINATIONS}
    for kind, plane in backgrounds():
        found[kind].append(ratios(plane))
    for kind, planes in found.items():
        s = np.concatenate([p[0] for p in planes])
        d = np.concatenate([p[1] for p in planes])
        shares = [np.mean((a >= FOREGROUND_SPREAD) | (b >= FOREGROUND_STD)) for a, b in planes]
        print(
            f"backgrounds, {kind:<16} {len(planes)} planes: spread/σ max {s.max():.2f} "
            f"(99.9 % {np.quantile(s, 0.999):.2f}), std/σ max {d.max():.2f} "
            f"(99.9 % {np.quantile(d, 0.999):.2f}); foreground {np.mean(shares):.1%} of patches, "
            f"worst plane {max(shares):.0%}"
        )

    from miq.data import sample_image
    from miq.optics import Optics, degrade

    unit = sample_image() / 65535.0
    for um in (0.0, 10.0, 20.0):
        blurred = np.round(degrade(unit, um, optics=Optics(), rng=0) * 65535).astype(np.uint16)
        print(
            f"sample field at {um:4.1f} µm: foreground {foreground_share(blurred):.0%} of patches"
        )

    real = SHARED_DATA / "real-defocus"
    sets = {
        "BBBC006 z00 (~32 µm)": sorted((real / "bbbc006-hoechst-z00").glob("*.tif")),
        "BBBC006 z10": sorted((real / "bbbc006-hoechst-z10").glob("*.png")),
    }
    for name, files in sets.items():
        per_file = [foreground_share(p.data) for f in files for p in read_planes(f)]
        print(
            f"{name}: {len(per_file)} planes, foreground {np.mean(per_file):.0%} of patches "
            f"(range {min(per_file):.0%}–{max(per_file):.0%})"
        )
    print(f"{time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
