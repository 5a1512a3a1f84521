"""Does miq rate blur by a measured PSF as it rates the simulator's?

Every model is trained and judged on defocus from `miq.optics.defocus_psf`: an aberration-free,
paraxial PSF. A real objective's PSF is neither (`benchmarks.psf_check`: the bead of
``../shared/data/psf`` has a halo on one side of focus only). This blurs real in-focus planes
with the measured bead PSF itself and asks whether the rating follows its blur as it follows the
simulator's.

* **Kernels:** each plane of the bead stack (NA 0.85 air, 130 nm px, 0.3 µm planes; background
  and centre as in `benchmarks.psf_check`, the light within its `RADIUS_PX`, negatives clipped),
  summed over 5 × 5 px to miq's 0.65 µm px: 51 × 51 px kernels.
* **The simulator's equivalent:** for each kernel, the defocus z at which the simulator's kernel
  (NA 0.5, 0.65 µm px) holds 50 % of its light within the same radius as the measured kernel
  (both about their centre pixel), and the same with 80 %: the bead plane's equivalent level
  z / 2 µm by either. Halos weigh in the 80 % radius, not in the 50 %.
* **Images:** every held-out in-focus plane (``held-out-fields/`` and the 8 held-out planes,
  brought to the model's pixel size and a camera's range as `miq.ground_truth.synthetic_items`
  does), blurred by each measured kernel, then exposure and Poisson noise (`miq.optics.degrade`
  with ``psf=``); and, paired (same noise seed), the same plane through the simulator at the
  50 %-radius equivalent z.

Prints per bead plane: its z, the equivalent simulator z and level (50 %; 80 %), the mean
expected level (``level_mean``) rated on the measured-PSF images and on their simulator pairs,
the mean of their difference, and the share of images whose reported level is within one of the
equivalent level (rounded) and within one of its simulator pair's.

Usage: python -m benchmarks.measured_psf [--model default] [--limit-files N] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time

from benchmarks.common import held_out_files, limit_threads, new_held_out_files

limit_threads()

import numpy as np  # noqa: E402

from benchmarks.psf_check import (  # noqa: E402
    BEAD_FILE,
    BEAD_FOCUS_PLANE,
    BEAD_PIXEL_UM,
    BEAD_PLANE_UM,
    _bead,
    encircled_radius,
)

BIN = 5  # bead px (0.13 µm) per miq px (0.65 µm)


def measured_kernels(width_px: int = 51) -> tuple[np.ndarray, np.ndarray]:
    """(z µm of each bead plane (Z,), kernels (Z, width, width) at BIN × the bead's pixel size,
    each summing to 1, centred on the bead's centre pixel; zero beyond the bead's
    `benchmarks.psf_check.RADIUS_PX`)."""
    stack, radius = _bead()
    light = np.where(np.isfinite(radius), stack, 0.0)
    cy, cx = np.unravel_index(np.argmin(radius), radius.shape)  # the pixel nearest the centre
    side = width_px * BIN
    half = side // 2  # the central bin's middle pixel is the centre pixel
    # the light lies within RADIUS_PX of the centre; the rest of the kernel is 0
    crop = np.zeros((len(light), side, side))
    top, left = cy - half, cx - half
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + side, light.shape[1]), min(left + side, light.shape[2])
    crop[:, y0 - top : y1 - top, x0 - left : x1 - left] = light[:, y0:y1, x0:x1]
    kernels = crop.reshape(len(light), width_px, BIN, width_px, BIN).sum(axis=(2, 4))
    kernels /= kernels.sum(axis=(1, 2), keepdims=True)
    z = (np.arange(len(light)) - BEAD_FOCUS_PLANE) * BEAD_PLANE_UM
    return z, kernels


def _centre_radii(width_px: int) -> np.ndarray:
    offsets = np.arange(width_px) - width_px // 2
    return np.hypot(offsets[:, None], offsets[None, :])


def simulator_equivalent_z(kernels: np.ndarray, optics, fraction: float) -> np.ndarray:
    """Per kernel (Z, w, w): the simulator defocus (µm) whose kernel at ``optics`` holds
    ``fraction`` of its light within the same radius. On a pixel grid that radius grows in steps
    (e.g. 50 % within the centre pixel from 0 to ~1.75 µm at 0.65 µm px): a radius on a step
    gets the middle of the step's defocus range, so the equivalent is good to about ±0.4 µm."""
    from miq.optics import defocus_psf

    width = kernels.shape[-1]
    radii = _centre_radii(width)
    grid = np.arange(0.0, 30.25, 0.25)
    simulated = [
        encircled_radius(defocus_psf(z, optics, width_px=width), radii, fraction) for z in grid
    ]
    # the radius grows with z, in steps on a pixel grid: each step's middle z stands for it
    simulated, step = np.unique(np.maximum.accumulate(simulated), return_inverse=True)
    middle = np.bincount(step, grid) / np.bincount(step)
    measured = [encircled_radius(k, radii, fraction) for k in kernels]
    return np.interp(measured, simulated, middle)


def in_focus_planes(model, files) -> list[tuple[str, np.ndarray]]:
    """(name, plane in unit camera range) of every plane of ``files``, at the model's pixel size
    as `miq.ground_truth.synthetic_items` brings them (`miq.ground_truth.camera_plane`)."""
    from miq.ground_truth import camera_plane
    from miq.io import ImageSource

    out = []
    for path in files:
        with ImageSource.open(path) as source:
            planes, recorded = source.planes(native_integers=True), source.pixel_size_um
        for k, plane in enumerate(planes):
            out.append((f"{path.name}[{k}]", camera_plane(plane.data, recorded, model.optics)))
    return out


def main() -> int:
    from miq.assessment import assess
    from miq.model.runtime import load_model
    from miq.optics import degrade

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--limit-files", type=int, default=None, help="first N files only")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (one per image pair)")
    args = parser.parse_args()
    if not BEAD_FILE.exists():
        print(f"bead PSF not found: {BEAD_FILE}")
        return 2
    t0 = time.time()
    model = load_model(args.model, threads=1)
    if abs(model.optics.pixel_size_um - BIN * BEAD_PIXEL_UM) > 1e-6:
        sys.exit(f"{model.name}: pixel size {model.optics.pixel_size_um} µm, not {BIN} bead px")
    z, kernels = measured_kernels(model.optics.psf_width_px)
    z50 = simulator_equivalent_z(kernels, model.optics, 0.5)
    z80 = simulator_equivalent_z(kernels, model.optics, 0.8)
    files = (new_held_out_files() + held_out_files())[: args.limit_files]
    planes = in_focus_planes(model, files)
    um_per_level = model.um_per_level
    print(
        f"{model.name}; {len(planes)} held-out planes of {len(files)} files; bead "
        f"{BEAD_FILE.name}; noise seed {args.seed}"
    )
    print(
        "| bead z µm | simulator z µm (50 %; 80 %) | level (50 %; 80 %) | rated, measured PSF | "
        "rated, simulator | difference | within one of the level | within one of the pair |"
    )
    print("|---|---|---|---|---|---|---|---|")
    summary = []
    for plane in range(len(z)):
        level = int(np.clip(np.rint(z50[plane] / um_per_level), 0, model.n_levels - 1))
        real, simulated, near_level, near_pair = [], [], [], []
        for k, (name, unit) in enumerate(planes):
            seed = 1000 * plane + k + args.seed * 100_000
            a = assess(degrade(unit, 0.0, psf=kernels[plane], rng=seed), model, name=name)
            b = assess(degrade(unit, z50[plane], optics=model.optics, rng=seed), model, name=name)
            real.append(a.level_mean)
            simulated.append(b.level_mean)
            near_level.append(abs(a.level - level) <= 1)
            near_pair.append(abs(a.level - b.level) <= 1)
        diff = np.subtract(real, simulated)
        summary.append((z[plane], diff.mean(), np.mean(near_level), np.mean(near_pair)))
        print(
            f"| {z[plane]:+.1f} | {z50[plane]:.1f}; {z80[plane]:.1f} | "
            f"{z50[plane] / um_per_level:.1f}; {z80[plane] / um_per_level:.1f} | "
            f"{np.mean(real):.2f} | {np.mean(simulated):.2f} | {diff.mean():+.2f} | "
            f"{np.mean(near_level):.3f} | {np.mean(near_pair):.3f} |"
        )
    for side, keep in (("below focus", z < 0), ("above focus", z > 0)):
        rows = [s for s, k in zip(summary, keep) if k]
        print(
            f"{side} ({len(rows)} planes): mean difference {np.mean([r[1] for r in rows]):+.2f} "
            f"levels; within one of the level {np.mean([r[2] for r in rows]):.3f}, of the pair "
            f"{np.mean([r[3] for r in rows]):.3f}"
        )
    print(f"wall time {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
