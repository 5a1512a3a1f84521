"""``--device cuda`` against the CPU: the same ratings, and how fast, for every bundled model.

For each bundled model (`miq.model.package.MODEL_VERSIONS`), rates the same planes with the
model loaded for the CPU (ONNX Runtime, one thread) and for ``--device cuda`` (ONNX Runtime's
CUDA provider where it has one, else torch on the GPU: `miq.model.torch_runner`):
  - a synthetic 2048² uint16 field (procedural cells, camera noise), sharp;
  - the bundled sample field (BBBC022 Hoechst, 8-bit) at 0, 4, 10 and 20 µm of simulated defocus
    (`miq.optics.degrade`, fixed seed);
and prints, per model, the largest difference of any patch probability and of P(in focus), and
whether every plane's level and in/out call agree; then ms per 2048² field end to end
(`miq.assess`, best of ``--repeats`` after a warm-up) on each device. Exits 1 when a
probability differs by more than 1e-4 or a call differs (the project's bound for a network's
outputs against its own reference path), 2 when no CUDA device can be used.

Usage: python -m benchmarks.cuda_agreement [--repeats 5] [--models v2 fast-v2 ...]
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.common import (
    best_time,
    gpu_description,
    limit_threads,
    machine_description,
    synthetic_image,
)

limit_threads()

import numpy as np  # noqa: E402

TOLERANCE = 1e-4


def _planes() -> dict[str, np.ndarray]:
    from miq.data import sample_image
    from miq.optics import degrade

    planes = {"synthetic 2048² sharp": synthetic_image(2048)}
    sample = sample_image().astype(np.float64)
    unit = (sample - sample.min()) / (sample.max() - sample.min())
    for z in (0.0, 4.0, 10.0, 20.0):
        planes[f"sample {z:g} µm"] = degrade(unit, z, rng=7)
    return planes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=None, help="default: every bundled one")
    args = parser.parse_args()

    import miq
    from miq.errors import ModelError
    from miq.model.package import MODEL_VERSIONS

    names = args.models or list(MODEL_VERSIONS)
    planes = _planes()
    print(machine_description())
    worst_overall, failed = 0.0, False
    header = (
        f"{'model':<10}{'max |Δp| patch':>16}{'max |ΔP(in)|':>14}{'calls agree':>13}"
        f"{'cpu ms':>9}{'cuda ms':>9}"
    )
    lines = []
    for name in names:
        cpu = miq.load_model(name, threads=1)
        try:
            gpu = miq.load_model(name, device="cuda")
        except ModelError as exc:
            print(f"no CUDA device: {exc}")
            return 2
        worst_patch = worst_in = 0.0
        agree = True
        for plane in planes.values():
            a, b = miq.assess(plane, cpu), miq.assess(plane, gpu)
            worst_patch = max(
                worst_patch, float(np.abs(a.patch_probabilities - b.patch_probabilities).max())
            )
            worst_in = max(worst_in, abs(a.p_in_focus - b.p_in_focus))
            agree &= a.level == b.level and a.in_focus == b.in_focus
        field = planes["synthetic 2048² sharp"]
        t_cpu = best_time(lambda field=field, m=cpu: miq.assess(field, m), args.repeats)
        t_gpu = best_time(lambda field=field, m=gpu: miq.assess(field, m), args.repeats)
        lines.append(
            f"{name:<10}{worst_patch:>16.2e}{worst_in:>14.2e}{'yes' if agree else 'NO':>13}"
            f"{1000 * t_cpu:>9.1f}{1000 * t_gpu:>9.1f}"
        )
        worst_overall = max(worst_overall, worst_patch, worst_in)
        failed |= not agree
    print(f"device: {gpu_description()}; {len(planes)} planes per model")
    print(header)
    print("\n".join(lines))
    ok = worst_overall <= TOLERANCE and not failed
    print(f"{'PASS' if ok else 'FAIL'}: largest difference {worst_overall:.2e} (bound {TOLERANCE})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
