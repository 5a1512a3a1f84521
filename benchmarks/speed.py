"""Speed of miq against the classical focus measures on the same images, in one run.

For synthetic uint16 images of 512², 2048² and 8192² px (procedural cells, camera noise; written
once as uncompressed TIFFs), times:
  - file read (tifffile);
  - miq end to end (read the file + check + tile + model + aggregate: ``miq.runs.assess_file``,
    the CLI's path; model loaded once; no masks or overlays);
  - miq model only (``FocusModel.predict`` on the image's prepared patches);
  - variance of the Laplacian and CellProfiler's PLLS (``miq.measures``, numpy) on the array;
and prints ms per image, ms per megapixel and the ratio to PLLS, with the machine and threads.

Usage: python -m benchmarks.speed [--repeats 5] [--threads 1] [--sizes 512 2048 8192]
       [--models DEFAULT_OR_DIR ...]   (several models are timed in the same run)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from benchmarks.common import best_time, limit_threads, machine_description, synthetic_image

limit_threads()

import numpy as np  # noqa: E402


class _NoModel:
    """Stands in for a model to time what the rating path does around it (mapping each row of
    patches to float32, validity): predicts zeros."""

    def __init__(self, patch_size: int) -> None:
        self.patch_size = patch_size

    def predict(self, patches: np.ndarray, calibrated: bool = True) -> np.ndarray:
        return np.zeros((len(patches), 11), np.float32)

    def calibrate(self, probabilities: np.ndarray) -> np.ndarray:
        return probabilities


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads for miq")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2048, 8192])
    parser.add_argument(
        "--models",
        nargs="+",
        default=[None],
        metavar="MODEL",
        help="model folders to time (default: the bundled model); all in the same run",
    )
    args = parser.parse_args()

    import tifffile

    import miq
    from miq.assessment import prepare_patches, rate_patch_rows
    from miq.content import noise_sigma
    from miq.measures import power_log_log_slope, variance_of_laplacian
    from miq.runs import assess_file
    from miq.tiling import patch_grid

    models = [miq.load_model(m, threads=args.threads) for m in args.models]
    print(machine_description())
    for model in models:
        print(
            f"miq threads={args.threads}; model {model.name} ({model.package.architecture}, "
            f"{model.package.n_parameters} parameters)"
        )
    print(f"best of {args.repeats} after a warm-up (a third of that at 8192²)")
    header = f"{'size':>6}  {'what':<56}{'ms/image':>10}{'ms/MP':>8}{'x PLLS':>8}"
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for side in args.sizes:
            image = synthetic_image(side)
            path = Path(tmp) / f"bench_{side}.tif"
            tifffile.imwrite(path, image)
            repeats = args.repeats if side <= 2048 else max(1, args.repeats // 3)
            timings = {
                "file read (tifffile, uncompressed)": best_time(
                    lambda path=path: tifffile.imread(path), repeats
                ),
            }
            grid = patch_grid(image.shape, models[0].patch_size)
            lo, hi = float(image.min()), float(image.max())
            timings["miq patch rows mapped to float32 + foreground, no model"] = best_time(
                lambda image=image, grid=grid, lo=lo, hi=hi: rate_patch_rows(
                    image,
                    grid.ys,
                    grid.xs,
                    lo,
                    hi,
                    _NoModel(models[0].patch_size),
                    noise_sigma(image),
                ),
                repeats,
            )
            for model in models:
                tag = f" [{model.name}]" if len(models) > 1 else ""
                patches = prepare_patches(image, model)[1]
                timings[f"miq end to end (read + rate){tag}"] = best_time(
                    lambda path=path, model=model: assess_file(path, model), repeats
                )
                timings[f"miq model only (prepared patches){tag}"] = best_time(
                    lambda patches=patches, model=model: model.predict(patches), repeats
                )
            timings.update(
                {
                    "variance of Laplacian (numpy)": best_time(
                        lambda image=image: variance_of_laplacian(image), repeats
                    ),
                    "PLLS, CellProfiler definition (numpy)": best_time(
                        lambda image=image: power_log_log_slope(image), repeats
                    ),
                }
            )
            plls = timings["PLLS, CellProfiler definition (numpy)"]
            megapixels = side * side / 1e6
            for name, t in timings.items():
                print(
                    f"{side:>5}²  {name:<56}{1000 * t:>10.1f}{1000 * t / megapixels:>8.2f}"
                    f"{t / plls:>8.2f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
