"""Helpers shared by the benchmarks: the train / held-out split of ../shared/data used for the
bundled model and its evaluation, a synthetic camera image, the machine description and timing.

The split is by field of view: every channel of a held-out field is held out. The bundled model
was trained with ``miq train ../shared/data/in-focus --exclude P ...`` for each pattern P in
``HELD_OUT``.

This module imports numpy only inside its functions, so a script can call
:func:`limit_threads` before numpy loads its BLAS.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

SHARED_DATA = Path(
    os.environ.get(
        "MIQ_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    )
)

# Substrings of held-out file paths (whole fields of view, all channels).
HELD_OUT = [
    "A01_s3",  # BBBC022 Hoechst field A01 site 3
    "E05_s6",  # BBBC022 Hoechst field E05 site 6
    "POS218",  # CellProfiler fly field 218 (DAPI, FITC, rhodamine)
    "nuclear_protein_treated",  # NEUBIAS nuclear protein, treated field
    "nuclei_golgi",  # NEUBIAS nuclei + Golgi (2 channels)
]
# Whole sources held out by laboratory from the next training runs (the bundled v2 and fast-v1
# were trained with only HELD_OUT excluded: they saw cellprofiler-fly POS002 and POS076).
HELD_OUT_LAB = ["cellprofiler-fly"]
# Not a fluorescence image (a label mask): never used.
NOT_IMAGES = ["mask2d"]


def in_focus_files() -> list[Path]:
    root = SHARED_DATA / "in-focus"
    suffixes = (".tif", ".tiff", ".png")
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in suffixes and not any(n in str(p) for n in NOT_IMAGES)
    )


def held_out_files() -> list[Path]:
    return [p for p in in_focus_files() if any(h in str(p) for h in HELD_OUT)]


def training_files() -> list[Path]:
    """In-focus files for training: neither a HELD_OUT field nor a HELD_OUT_LAB source."""
    return [p for p in in_focus_files() if not any(h in str(p) for h in HELD_OUT + HELD_OUT_LAB)]


def held_out_lab_files() -> list[Path]:
    """Every in-focus file of the HELD_OUT_LAB sources (a test held out by laboratory)."""
    return [p for p in in_focus_files() if any(f"/{h}/" in str(p) for h in HELD_OUT_LAB)]


def new_held_out_files() -> list[Path]:
    """In-focus planes under ../shared/data/held-out-fields (no model may train or calibrate on
    them), one folder per source."""
    root = SHARED_DATA / "held-out-fields"
    suffixes = (".tif", ".tiff", ".png")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in suffixes)


def field_of_view(path: str | Path) -> str:
    """The field of view a file belongs to, so that all its channels are grouped together: the
    HELD_OUT pattern it matches, a BBBC013 site (``Channel1-49-E-01`` and ``Channel2-49-E-01``
    are field ``49-E-01``), a CellProfiler fly position (``POS218``), else the file itself (one
    field per file; a multichannel file is one field)."""
    import re

    text = str(path)
    for pattern in HELD_OUT:
        if pattern in text:
            return pattern
    name = Path(text).name
    match = re.match(r"Channel\d+-(\d+-[A-Z]-\d+)\.", name)
    if match:
        return f"{Path(text).parent.name}:{match.group(1)}"
    match = re.search(r"POS\d+", name)
    if match:
        return f"{Path(text).parent.name}:{match.group(0)}"
    return text


def add_first_seed(parser) -> None:
    """``--first-seed`` of the benchmarks that simulate defocus (argparse)."""
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="first noise seed (seeds FIRST … FIRST+SEEDS−1): fresh draws for a rule fixed "
        "after earlier runs used seeds 0 …",
    )


def shared_data_missing() -> bool:
    """True, after one line saying where it was looked for, when ../shared/data is missing."""
    if SHARED_DATA.exists():
        return False
    print(f"shared data not found at {SHARED_DATA}; set MIQ_SHARED_DATA")
    return True


def limit_threads() -> None:
    """One BLAS / OpenMP thread unless the environment says otherwise (call before numpy or
    torch is imported for it to reach them; child processes inherit it)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def synthetic_image(side: int = 2048, seed: int = 0) -> np.ndarray:
    """A 16-bit camera-like image of procedural in-focus cells (offset 100 DN, Poisson noise)."""
    import numpy as np
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    img = np.zeros((side, side), np.float32)
    for _ in range(side * side // 4000):
        cy, cx, r = rng.uniform(0, side), rng.uniform(0, side), rng.uniform(6, 14)
        y0, y1 = int(max(0, cy - 2 * r)), int(min(side, cy + 2 * r))
        x0, x1 = int(max(0, cx - 2 * r)), int(min(side, cx + 2 * r))
        yy, xx = np.mgrid[y0:y1, x0:x1]
        d = np.hypot(yy - cy, xx - cx) / r
        img[y0:y1, x0:x1] += (d < 1) * rng.uniform(300, 2000)
    img = ndimage.gaussian_filter(img, 1.0)
    return (rng.poisson(img + 50) + 100).astype(np.uint16)


def machine_description() -> str:
    """CPU model, logical CPUs, Python and ONNX Runtime versions."""
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"machine: {cpu}; {os.cpu_count()} logical CPUs; Python {platform.python_version()}; "
        f"onnxruntime {onnxruntime.__version__}"
    )


def best_time(fn, repeats: int) -> float:
    """Best of ``repeats`` timings (seconds) after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def gpu_description() -> str:
    """The CUDA card(s) as nvidia-smi (or else torch) names them; "unknown" when neither can."""
    try:
        listed = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
        if listed:
            return "; ".join(listed.splitlines())
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        import torch

        return torch.cuda.get_device_name(0)
    except Exception:
        return "unknown"
