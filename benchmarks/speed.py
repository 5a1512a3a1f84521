"""Speed of miq predict per 2048×2048 image against classical focus measures, in one run.

Times, on the same synthetic 2048² uint16 TIFF (procedural cells, written once):
  - miq end to end per image (read file + tile + model + aggregate; model loaded once; no masks or
    overlays), through the same API the CLI uses, single-threaded;
  - variance of the Laplacian and CellProfiler's PLLS from miq.measures (numpy, single thread);
and prints milliseconds per image and the ratio miq / classical.

Usage: python benchmarks/speed.py [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def synthetic_image(side: int = 2048, seed: int = 0) -> np.ndarray:
    """A 16-bit camera-like image of procedural in-focus cells (offset 100 DN, Poisson noise)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side]
    img = np.zeros((side, side), np.float32)
    for _ in range(side * side // 4000):
        cy, cx, r = rng.uniform(0, side), rng.uniform(0, side), rng.uniform(6, 14)
        y0, y1 = int(max(0, cy - 2 * r)), int(min(side, cy + 2 * r))
        x0, x1 = int(max(0, cx - 2 * r)), int(min(side, cx + 2 * r))
        d = np.hypot(yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx) / r
        img[y0:y1, x0:x1] += (d < 1) * rng.uniform(300, 2000)
    img = ndimage.gaussian_filter(img, 1.0)
    return (rng.poisson(img + 50) + 100).astype(np.uint16)


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads for miq")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()

    import tifffile

    import miq
    from miq.measures import power_log_log_slope, variance_of_laplacian
    from miq.pipeline import assess_file

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    image = synthetic_image()
    model = miq.load_model(args.model, threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench_2048.tif"
        tifffile.imwrite(path, image)
        t_read = best_time(lambda: tifffile.imread(path), args.repeats)
        t_miq = best_time(lambda: assess_file(path, model), args.repeats)
    t_model = best_time(lambda: miq.assess(image, model), args.repeats)
    t_lap = best_time(lambda: variance_of_laplacian(image), args.repeats)
    t_plls = best_time(lambda: power_log_log_slope(image), args.repeats)
    print(
        f"machine: {cpu}; {os.cpu_count()} logical CPUs; miq threads={args.threads}; "
        f"model {model.metadata['architecture']} ({model.metadata['n_parameters']} parameters)"
    )
    print(
        f"image: 2048x2048 uint16, {len(image) // 84 + 1}^2 = {(len(image) // 84 + 1) ** 2} patches; best of {args.repeats}"
    )
    print(f"{'what':<44}{'ms/image':>10}{'x var(Laplacian)':>18}{'x PLLS':>9}")
    for name, t in (
        ("TIFF read (uncompressed)", t_read),
        ("miq end to end (read + assess)", t_miq),
        ("miq assess (array in memory)", t_model),
        ("variance of Laplacian (miq.measures, numpy)", t_lap),
        ("PLLS, CellProfiler definition (miq.measures)", t_plls),
    ):
        print(f"{name:<44}{1000 * t:>10.1f}{t / t_lap:>18.2f}{t / t_plls:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
