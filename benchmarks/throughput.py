"""Throughput of miq predict on a folder of images with 1 and more worker processes.

Writes ``--count`` synthetic uint16 TIFFs of ``--side``² px (procedural cells, shifted copies;
``--compression``), then times: miq in this process with the model loaded and no read-ahead
(the baseline for the overlap of reading and rating); then, each in a fresh process as a user
runs it:
  - ``miq predict FOLDER --workers N --no-masks --no-overlays`` for each N of ``--workers``
    (one inference thread per worker), start-up and model loading included;
  - CellProfiler's PLLS over the same files in one process (read + measure), for reference;
and prints images/s and the speed-up over one worker. The CSVs of all runs must be identical.
``--device cuda`` runs every miq row on the GPU (``miq predict --device cuda``) and names the card.

Usage: python -m benchmarks.throughput [--count 200] [--side 2048] [--workers 1 2]
       [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import (
    gpu_description,
    limit_threads,
    machine_description,
    synthetic_image,
)

limit_threads()  # as importing the speed benchmark for these helpers did

PLLS_SCRIPT = """
import sys, tifffile
from pathlib import Path
from miq.measures import power_log_log_slope
for f in sorted(Path(sys.argv[1]).glob("*.tif")):
    power_log_log_slope(tifffile.imread(f))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--compression", default="none", choices=["none", "lzw", "zlib"], help="of the TIFFs"
    )
    parser.add_argument(
        "--model", default="default", help="bundled model name (default, fast) or model folder"
    )
    parser.add_argument(
        "--device", default="cpu", choices=["cpu", "cuda"], help="where miq runs its model"
    )
    args = parser.parse_args()

    import tifffile

    import miq
    from miq.errors import MiqError

    try:
        model = miq.load_model(args.model, threads=1, device=args.device)
    except MiqError as exc:
        sys.exit(f"throughput: {exc}")

    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    print(machine_description())
    print(f"model: {args.model}; device: {args.device}")
    if args.device == "cuda":
        print(f"GPU: {gpu_description()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        base = synthetic_image(args.side, seed=0)
        rng = np.random.default_rng(1)
        for i in range(args.count):  # shifted and flipped copies: distinct images, cheap to make
            image = np.roll(base, tuple(rng.integers(0, args.side, 2)), axis=(0, 1))
            tifffile.imwrite(
                folder / f"field_{i:04d}.tif",
                image[:, ::-1] if i % 2 else image,
                compression=None if args.compression == "none" else args.compression,
            )
        print(f"{args.count} images of {args.side}² uint16 px ({args.compression}) in {folder}")
        print(f"{'what':<44}{'s':>8}{'images/s':>10}{'x 1 worker':>12}")
        csvs = []
        base_rate = None
        # in this process (model already loaded), without reading the next file ahead
        from miq.io import find_images
        from miq.runs import predict_files
        from miq.runs.outputs import OutputOptions

        start = time.perf_counter()
        predict_files(
            find_images([folder]),
            Path(tmp) / "out_no_read_ahead",
            model,
            outputs=OutputOptions(masks="none", overlays="none"),
            read_ahead=False,
            progress=False,
        )
        wall = time.perf_counter() - start
        label = "one process, no read-ahead (API, loaded)"
        print(f"{label:<44}{wall:>8.1f}{args.count / wall:>10.2f}{'':>12}")
        csvs.append((Path(tmp) / "out_no_read_ahead" / "results.csv").read_bytes())
        for n in args.workers:
            out = Path(tmp) / f"out_{n}"
            command = [
                sys.executable,
                "-m",
                "miq",
                "predict",
                str(folder),
                "-o",
                str(out),
                "-q",
                "--no-masks",
                "--no-overlays",
                "--workers",
                str(n),
                "--threads",
                "1",
                "--model",
                args.model,
                "--device",
                args.device,
            ]
            start = time.perf_counter()
            subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - start
            rate = args.count / wall
            base_rate = base_rate or rate
            csvs.append((out / "results.csv").read_bytes())
            label = f"miq predict --workers {n}" + (" (read-ahead)" if n == 1 else "")
            print(f"{label:<44}{wall:>8.1f}{rate:>10.2f}{rate / base_rate:>12.2f}")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", PLLS_SCRIPT, str(folder)], check=True, env=env)
        wall = time.perf_counter() - start
        label = "PLLS (read + measure, one process)"
        print(
            f"{label:<44}{wall:>8.1f}{args.count / wall:>10.2f}{args.count / wall / base_rate:>12.2f}"
        )
        print(f"results.csv identical across all miq runs: {len(set(csvs)) == 1}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
