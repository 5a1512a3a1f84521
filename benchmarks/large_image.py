"""Peak memory and time of miq predict on one 20000×20000 uint16 image, and identity with whole.

Writes the image (procedural cells, blurred more towards the right so levels vary) tile by tile
as a tiled zlib TIFF, an uncompressed TIFF and, with the io extra, an OME-Zarr; rates each with
``miq predict`` in a child process (one inference thread; no masks or overlays) and reports its
wall time and peak resident memory (the child's ru_maxrss). Then rates the whole plane loaded in
memory, in this process, and checks that every patch probability is identical.

Usage: python -m benchmarks.large_image [--side 20000] [--workdir DIR] [--skip-whole]
"""

from __future__ import annotations

import argparse
import csv
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import limit_threads, machine_description, synthetic_image

limit_threads()  # as importing the speed benchmark for these helpers did

TILE = 2048


def tiles(side: int):
    """Tiles of the image, row-major: procedural content, Gaussian blur growing left → right."""
    from scipy import ndimage

    base = synthetic_image(TILE, seed=1).astype(np.float32)
    n = -(-side // TILE)
    for i in range(n):
        for j in range(n):
            sigma = 8.0 * j / max(n - 1, 1)
            tile = np.roll(base, (331 * i, 517 * j), axis=(0, 1))
            yield np.clip(ndimage.gaussian_filter(tile, sigma) if sigma else tile, 0, 65535).astype(
                np.uint16
            )


def write_tiff(path: Path, side: int, compression: str | None) -> None:
    import tifffile

    n = -(-side // TILE)
    if compression:
        tifffile.imwrite(
            path,
            tiles(side),
            shape=(side, side),
            dtype=np.uint16,
            tile=(TILE, TILE),
            compression=compression,
            bigtiff=True,
        )
        return
    # uncompressed and contiguous (memory-mappable): fill a memory map tile by tile
    data = tifffile.memmap(path, shape=(side, side), dtype=np.uint16, bigtiff=True)
    for k, tile in enumerate(tiles(side)):
        i, j = divmod(k, n)
        block = data[i * TILE : (i + 1) * TILE, j * TILE : (j + 1) * TILE]
        block[:] = tile[: block.shape[0], : block.shape[1]]
    data.flush()
    del data


def write_ome_zarr(path: Path, tiff: Path) -> bool:
    try:
        import dask.array as da
        import tifffile
        import zarr
        from bioio_ome_zarr.writers import OMEZarrWriter
    except ImportError:
        return False
    with tifffile.TiffFile(tiff) as tif:
        source = da.from_zarr(zarr.open(tif.series[0].aszarr(), mode="r"))
        writer = OMEZarrWriter(
            str(path),
            level_shapes=source.shape,
            dtype=source.dtype,
            zarr_format=2,
            chunk_shape=(TILE, TILE),
            axes_names=["y", "x"],
            axes_types=["space", "space"],
        )
        writer.write_full_volume(source.rechunk((TILE, TILE)))
    return True


def run_predict(image: Path, out: Path) -> tuple[float, float, list[dict]]:
    """Wall seconds and peak RSS (GB) of a miq predict child process, and its rows."""
    script = (
        "import resource, sys; from miq.cli import main; code = main(sys.argv[1:]); "
        "print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)"
    )
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            "predict",
            str(image),
            "-o",
            str(out),
            "-q",
            "--threads",
            "1",
            "--no-masks",
            "--no-overlays",
            "--overwrite",
        ],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"miq predict failed on {image}:\n{proc.stderr}")
    peak_kb = int(
        next(ln.split()[1] for ln in proc.stdout.splitlines() if ln.startswith("PEAK_KB"))
    )
    with open(out / "results.csv", encoding="utf-8") as fh:
        return wall, peak_kb / 2**20, list(csv.DictReader(fh))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=20000)
    parser.add_argument("--workdir", default=None, help="where to write the images (~1.5 GB)")
    parser.add_argument("--skip-whole", action="store_true", help="skip the in-memory comparison")
    args = parser.parse_args()

    import miq
    from miq.runs import assess_file

    work = Path(args.workdir or tempfile.mkdtemp(prefix="miq-large-"))
    work.mkdir(parents=True, exist_ok=True)
    print(machine_description())
    side = args.side
    images = {}
    t = time.perf_counter()
    images["TIFF, tiled 2048², zlib"] = work / "large_tiled.tif"
    write_tiff(images["TIFF, tiled 2048², zlib"], side, "zlib")
    images["TIFF, uncompressed (row reads)"] = work / "large_plain.tif"
    write_tiff(images["TIFF, uncompressed (row reads)"], side, None)
    if write_ome_zarr(work / "large.ome.zarr", images["TIFF, tiled 2048², zlib"]):
        images["OME-Zarr, chunks 2048²"] = work / "large.ome.zarr"
    print(f"wrote {len(images)} images of {side}×{side} uint16 in {time.perf_counter() - t:.0f} s")

    print(f"{'input':<38}{'s':>8}{'peak GB':>9}{'level':>7}{'level_mean':>12}")
    rows_of = {}
    for label, image in images.items():
        wall, peak, rows = run_predict(image, work / f"out_{image.stem}")
        rows_of[label] = rows
        print(
            f"{label:<38}{wall:>8.1f}{peak:>9.2f}{rows[0]['level']:>7}{rows[0]['level_mean']:>12}"
        )
    same = len({(r[0]["level"], r[0]["level_mean"]) for r in rows_of.values()}) == 1
    print(f"all inputs give the same row: {same}")

    if not args.skip_whole:
        import tifffile

        model = miq.load_model(threads=1)
        (banded,) = assess_file(images["TIFF, tiled 2048², zlib"], model)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        whole = miq.assess(tifffile.imread(images["TIFF, tiled 2048², zlib"]), model)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        identical = np.array_equal(banded.assessment.patch_probabilities, whole.patch_probabilities)
        print(
            f"whole plane in memory: peak {max(peak, before) / 2**20:.2f} GB; patch probabilities "
            f"identical to the banded run: {identical} "
            f"({whole.patch_probabilities.shape[0]}×{whole.patch_probabilities.shape[1]} patches)"
        )
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
