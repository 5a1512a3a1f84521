"""The default ``miq predict`` as users run it, on a screen-sized folder, beside the bare rating
and PLLS, in one run (issue 19, "What it must show").

Writes ``--count`` different synthetic uint16 TIFFs of ``--side``² px (procedural cells, shifted
and flipped copies; ``--blurred`` of them, drawn with a fixed seed, defocused by a Gaussian of
σ 2-8 px and given fresh shot noise; ``--compression``), then times wall clock, each command in a
fresh process exactly as a user types it, with OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=1 and
``--threads 1``, nothing subtracted:
  (a) ``python -m miq predict FOLDER -o OUT_default -q --threads 1``: the defaults, whatever they
      are when this runs (masks and overlays as the defaults say);
  (b) ``python -m miq predict FOLDER -o OUT_bare -q --threads 1 --no-masks --no-overlays``;
  (c) PLLS alone, in one subprocess with one thread: every file read with
      ``miq.io.read_planes`` and ``miq.measures.MEASURES["plls"]`` called on each plane;
  (d) ``python -m miq --help`` (median of 5), and ``miq --help`` when the console script is found;
  (e) a one-image run ``python -m miq predict ONE_FILE -o OUT_one -q --threads 1`` (median of 3),
      and the same with the ``miq`` console script;
and prints the table (s total, s/image, images/s, MB written per image), the ratios against the
issue's goals with PASS/FAIL, and whether (a) and (b) wrote the same ratings.

Usage: python -m benchmarks.screen [--count 200] [--side 2048] [--repeats 1]
       [--compression none|lzw|zlib] [--blurred 0.4] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from benchmarks.common import limit_threads, machine_description, synthetic_image

limit_threads()

import numpy as np  # noqa: E402

THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

PLLS_SCRIPT = """
import sys
from pathlib import Path
from miq.io import read_planes
from miq.measures import MEASURES
plls = MEASURES["plls"]
for f in sorted(Path(sys.argv[1]).glob("*.tif")):
    for plane in read_planes(f):
        plls(plane.data)
"""

# The goals.
MAX_DEFAULT_OVER_BARE = 1.3
MAX_DEFAULT_OVER_PLLS = 0.5
MAX_MB_PER_IMAGE = 0.5
MAX_HELP_S = 1.0
MAX_ONE_IMAGE_S = 1.0


def git_commit() -> str:
    """Short commit of the checkout, with "+dirty src" when src/ has uncommitted changes."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + (" (+ uncommitted changes in src/)" if dirty else "")


def write_images(
    folder: Path, count: int, side: int, compression: str, blurred: float
) -> list[bool]:
    """``count`` distinct TIFFs in ``folder``; returns which of them were defocused."""
    import tifffile

    is_blurred = []
    for i, image, sigma in screen_images(count, side, blurred):
        is_blurred.append(sigma > 0)
        tifffile.imwrite(
            folder / f"field_{i:04d}.tif",
            np.ascontiguousarray(image),
            compression=None if compression == "none" else compression,
        )
    return is_blurred


def screen_images(count: int, side: int, blurred: float):
    """Yields (index, uint16 image (side, side), σ of its Gaussian blur in px, 0 when sharp):
    shifted and flipped copies of one procedural field (distinct images, cheap to make), a
    ``blurred`` share of them, drawn with a fixed seed, blurred by σ 2–8 px and given fresh
    shot noise."""
    from scipy import ndimage

    base = synthetic_image(side, seed=0)
    rng = np.random.default_rng(1)
    for i in range(count):
        image = np.roll(base, tuple(rng.integers(0, side, 2)), axis=(0, 1))
        if i % 2:
            image = image[:, ::-1]
        sigma = 0.0
        if rng.random() < blurred:  # defocus the scene, then the camera's offset and shot noise
            sigma = rng.uniform(2.0, 8.0)
            signal = ndimage.gaussian_filter(image.astype(np.float32) - 100, sigma)
            image = (rng.poisson(np.clip(signal, 0, None)) + 100).astype(np.uint16)
        yield i, image, sigma


class Timing(NamedTuple):
    wall: float  # seconds of wall clock
    cpu: float  # user + system CPU seconds of the process (robust to a busy machine)


def timed(command: list[str], env: dict[str, str]) -> Timing:
    """Wall and CPU seconds of one run of ``command``; exits with its output when it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        sys.exit(
            f"screen: {' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Timing(wall, cpu)


def median_run(timings: list[Timing]) -> Timing:
    """The run of median wall time (the lower middle one for an even count)."""
    return sorted(timings)[(len(timings) - 1) // 2]


def fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    return path


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def read_ratings(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    return list(reader.fieldnames or []), rows


def same_ratings(default_csv: Path, bare_csv: Path) -> tuple[bool, str]:
    """Whether two results.csv have the same rows, leaving out the overlay column (and any
    column only one of them has, named in the message)."""
    cols_a, rows_a = read_ratings(default_csv)
    cols_b, rows_b = read_ratings(bare_csv)
    compared = [c for c in cols_a if c in cols_b and c != "overlay"]
    only = sorted((set(cols_a) ^ set(cols_b)) - {"overlay"})

    def keyed(rows: list[dict[str, str]]) -> dict[tuple[str, ...], tuple[str, ...]]:
        return {
            tuple(r.get(k, "") for k in ("file", "t", "c", "z")): tuple(r[c] for c in compared)
            for r in rows
        }

    a, b = keyed(rows_a), keyed(rows_b)
    note = (
        f"{len(rows_a)} and {len(rows_b)} rows; {len(compared)} columns compared, overlay left out"
    )
    if only:
        note += f"; columns in only one: {', '.join(only)}"
    differing = sum(a.get(k) != b.get(k) for k in a.keys() | b.keys())
    if differing:
        note += f"; {differing} rows differ"
    return differing == 0 and len(rows_a) == len(rows_b), note


def in_focus_counts(results_csv: Path, folder: Path, is_blurred: list[bool]) -> str:
    """How many sharp and defocused images the run flagged in focus (a sanity check)."""
    _, rows = read_ratings(results_csv)
    flagged = {Path(r["file"]).name: r.get("in_focus") == "1" for r in rows}
    sharp = [flagged.get(f"field_{i:04d}.tif") for i, b in enumerate(is_blurred) if not b]
    blurred = [flagged.get(f"field_{i:04d}.tif") for i, b in enumerate(is_blurred) if b]
    return (
        f"flagged in focus: {sum(map(bool, sharp))}/{len(sharp)} sharp images, "
        f"{sum(map(bool, blurred))}/{len(blurred)} defocused (σ 2-8 px) images"
    )


def console_script() -> str | None:
    found = shutil.which("miq")
    if found:
        return found
    beside = Path(sys.executable).parent / "miq"
    return str(beside) if beside.exists() else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="images (default 200)")
    parser.add_argument("--side", type=int, default=2048, help="image side in px (default 2048)")
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs of (a)-(c), the best kept (default 1)"
    )
    parser.add_argument(
        "--compression", default="none", choices=["none", "lzw", "zlib"], help="of the TIFFs"
    )
    parser.add_argument(
        "--blurred",
        type=float,
        default=0.4,
        help="share of the images defocused (Gaussian σ 2-8 px; default 0.4)",
    )
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="write the images and outputs here and keep them"
    )
    args = parser.parse_args()
    if args.count < 1 or args.repeats < 1:
        parser.error("--count and --repeats must be at least 1")

    import miq

    env = dict(os.environ, **THREAD_ENV)
    python_m = [sys.executable, "-m", "miq"]
    script = console_script()
    print(machine_description())
    print(
        f"miq {miq.__version__} from {Path(miq.__file__).parent}; checkout commit {git_commit()}; "
        f"{sys.executable}"
    )
    print(
        "threads: OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=1 and --threads 1; "
        "every row a fresh process as a user types it (start-up, imports and model loading "
        "included, nothing subtracted); PLLS in one subprocess (read_planes + "
        'MEASURES["plls"] per file)'
    )

    if args.keep:
        if args.keep.exists() and any(args.keep.iterdir()):
            sys.exit(f"screen: --keep {args.keep} is not empty")
        args.keep.mkdir(parents=True, exist_ok=True)
        tmp_context = None
        work = args.keep.resolve()
    else:
        tmp_context = tempfile.TemporaryDirectory(prefix="miq-screen-")
        work = Path(tmp_context.name)
    try:
        folder = work / "images"
        folder.mkdir()
        start = time.perf_counter()
        is_blurred = write_images(folder, args.count, args.side, args.compression, args.blurred)
        print(
            f"{args.count} different {args.side}² uint16 TIFFs ({args.compression}; "
            f"{sum(is_blurred)} defocused) in {folder}, made in "
            f"{time.perf_counter() - start:.0f} s; {folder_bytes(folder) / 1e6 / args.count:.1f} "
            f"MB each"
        )
        n = args.count
        out_default, out_bare = work / "OUT_default", work / "OUT_bare"
        default_cmd = [*python_m, "predict", str(folder), "-o", str(out_default), "-q"]
        default_cmd += ["--threads", "1"]
        bare_cmd = [*python_m, "predict", str(folder), "-o", str(out_bare), "-q"]
        bare_cmd += ["--threads", "1", "--no-masks", "--no-overlays"]
        plls_cmd = [sys.executable, "-c", PLLS_SCRIPT, str(folder)]

        load_before = os.getloadavg()[0]
        timed([*python_m, "--help"], env)  # untimed: the interpreter and miq's files cached
        inf = Timing(float("inf"), float("inf"))
        best = {"default": inf, "bare": inf, "plls": inf}
        for _ in range(args.repeats):  # interleaved, so drifts hit every row alike
            fresh(out_default)
            best["default"] = min(best["default"], timed(default_cmd, env))
            fresh(out_bare)
            best["bare"] = min(best["bare"], timed(bare_cmd, env))
            best["plls"] = min(best["plls"], timed(plls_cmd, env))
        bytes_default, bytes_bare = folder_bytes(out_default), folder_bytes(out_bare)

        helps = {
            "python -m miq --help": median_run(
                [timed([*python_m, "--help"], env) for _ in range(5)]
            )
        }
        one_file = folder / "field_0000.tif"
        out_one = work / "OUT_one"

        def one_run(prefix: list[str]) -> Timing:
            times = []
            for _ in range(3):
                fresh(out_one)
                times.append(
                    timed(
                        [
                            *prefix,
                            "predict",
                            str(one_file),
                            "-o",
                            str(out_one),
                            "-q",
                            "--threads",
                            "1",
                        ],
                        env,
                    )
                )
            return median_run(times)

        ones = {"python -m miq predict ONE_FILE": one_run(python_m)}
        if script:
            helps["miq --help"] = median_run([timed([script, "--help"], env) for _ in range(5)])
            ones["miq predict ONE_FILE"] = one_run([script])

        print()
        best_of = f" (best of {args.repeats})" if args.repeats > 1 else ""
        print(f"{n} images{best_of}; MB = 10^6 bytes written under the output folder / images")
        width = 70
        print(
            f"{'what':<{width}}{'s total':>9}{'s/image':>9}{'images/s':>10}{'MB/image':>10}"
            f"{'CPU s/image':>13}"
        )

        def row(label: str, t: Timing, count: int, mb: float | None = None) -> None:
            rate = f"{count / t.wall:>10.2f}" if count else f"{'':>10}"
            per = f"{t.wall / count:>9.3f}" if count else f"{'':>9}"
            size = f"{mb:>10.3f}" if mb is not None else f"{'':>10}"
            print(f"{label:<{width}}{t.wall:>9.2f}{per}{rate}{size}{t.cpu / max(count, 1):>13.3f}")

        row(
            "(a) miq predict FOLDER -o OUT -q --threads 1 (defaults)",
            best["default"],
            n,
            bytes_default / 1e6 / n,
        )
        row("(b) ... --no-masks --no-overlays (bare rating)", best["bare"], n, bytes_bare / 1e6 / n)
        row("(c) PLLS (read_planes + MEASURES['plls'], 1 subprocess)", best["plls"], n)
        for label, t in helps.items():
            row(f"(d) {label} (median of 5)", t, 0)
        for label, t in ones.items():
            row(f"(e) {label} -o OUT -q --threads 1 (median 3)", t, 1)

        per_default, per_bare, per_plls = (best[k].wall / n for k in ("default", "bare", "plls"))
        cpu = {k: t.cpu for k, t in best.items()}
        mb_default = bytes_default / 1e6 / n
        print(
            f"load average (1 min) {load_before:.1f} before the timed runs, "
            f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs (above ~1 the wall times "
            "are inflated by other work: compare the CPU column)"
        )
        print()
        print("goals (issue 19; wall clock):")

        def goal(text: str, value: str, ok: bool) -> None:
            print(f"  {'PASS' if ok else 'FAIL'}  {text:<48}{value}")

        goal(
            f"default <= {MAX_DEFAULT_OVER_BARE} x bare",
            f"{per_default / per_bare:.2f} x  (CPU time: {cpu['default'] / cpu['bare']:.2f} x)",
            per_default <= MAX_DEFAULT_OVER_BARE * per_bare,
        )
        goal(
            f"default <= {MAX_DEFAULT_OVER_PLLS} x PLLS per image",
            f"{per_default / per_plls:.2f} x  (bare: {per_bare / per_plls:.2f} x; CPU time: "
            f"{cpu['default'] / cpu['plls']:.2f} x, bare {cpu['bare'] / cpu['plls']:.2f} x)",
            per_default <= MAX_DEFAULT_OVER_PLLS * per_plls,
        )
        goal(
            f"default output <= {MAX_MB_PER_IMAGE} MB per image",
            f"{mb_default:.3f} MB  (bare: {bytes_bare / 1e6 / n:.3f} MB)",
            mb_default <= MAX_MB_PER_IMAGE,
        )
        for label, t in helps.items():
            goal(f"{label} < {MAX_HELP_S:g} s", f"{t.wall:.2f} s", t.wall < MAX_HELP_S)
        for label, t in ones.items():
            goal(f"{label} < {MAX_ONE_IMAGE_S:g} s", f"{t.wall:.2f} s", t.wall < MAX_ONE_IMAGE_S)
        if not script:
            print("  (no miq console script on PATH: its rows left out)")

        same, note = same_ratings(out_default / "results.csv", out_bare / "results.csv")
        print()
        print(f"(a) and (b) same ratings: {'yes' if same else 'NO'} ({note})")
        print(in_focus_counts(out_default / "results.csv", folder, is_blurred))
        if args.keep:
            print(f"images and outputs kept in {work}")
    finally:
        if tmp_context is not None:
            tmp_context.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
