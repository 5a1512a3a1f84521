"""The memory budget: how much memory reading and rating one input file may take, checked from
what the file declares (shapes, pixel types, storage chunks and tiles, number of planes) and
the resampling factor, before its pixels are read.

The estimates are in bytes and count the image data and the working arrays of rating, not the
interpreter and the model (about 100–300 MB on their own). The per-pixel constants were measured
(peak RSS of `miq.assess` on 4096² uint16 and float32 planes: 7.6 B/px beyond the plane;
resampling 2048² by ×2: 13 B per resampled px) and rounded up. See the documentation page
"Memory" (docs/explanation/memory.md) for the rule and the measured bomb cases.
"""

from __future__ import annotations

import math
import re

import numpy as np

from ..errors import ImageContentError

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "parse_memory_size",
    "format_bytes",
    "plane_bytes",
    "band_bytes",
    "file_bytes",
    "describe",
    "over_budget",
]

DEFAULT_MEMORY_BUDGET = 2 * 2**30
"""Bytes one file may take to read and rate, by default (2 GiB; ``--memory-budget``)."""

WORK_PER_PIXEL = 8
"""Bytes per pixel of a plane held in memory that rating it adds (patch rows mapped to float32,
the content score's temporaries; measured 7.6)."""

RESAMPLED_PER_PIXEL = 16
"""Bytes per pixel of a resampled plane (float32 copy of the input, Pillow's image and result,
the float32 output, its checks; measured 13)."""

PER_PATCH = 16 * 11
"""Bytes per patch of a plane's patch grid kept while it is rated (11 level probabilities in
float32 and float64, certainty and validity)."""

_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_memory_size(text: str) -> int:
    """A memory size as people write it, in bytes: ``"2G"``, ``"512M"``, ``"1.5GB"``,
    ``"8GiB"``, ``"800000000"`` (K, M, G, T are powers of 1024).

    Raises
    ------
    ValueError : (one line) not a size, or under 16 MiB (too little to rate any plane).
    """
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"not a memory size: {text!r}; give e.g. 2G, 512M or 8G")
    value = float(match[1]) * _UNITS[match[2].upper()]
    if not math.isfinite(value) or value < 16 * 2**20:
        raise ValueError(f"memory size {text!r} is too small; give at least 16M")
    return int(value)


def format_bytes(n: float) -> str:
    """A byte count for people: ``"13.0 GiB"``, ``"512 MiB"``, ``"96 KiB"``."""
    n = float(n)
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{n:.0f} B"


def plane_bytes(height: int, width: int, itemsize: int, scale: float = 1.0) -> int:
    """Bytes to rate one plane of ``height`` × ``width`` px held in memory (``itemsize`` bytes
    per pixel), resampled by ``scale`` (output px per input px; 1 = not resampled): the plane,
    rating's working arrays and, when resampled, the resampled plane's; plus its patch grid."""
    pixels = int(height) * int(width)
    need = pixels * (int(itemsize) + WORK_PER_PIXEL)
    rated = pixels
    if scale != 1.0:
        rated = int(round(height * scale)) * int(round(width * scale))
        need += rated * RESAMPLED_PER_PIXEL
    return need + (rated // 84**2 + 1) * PER_PATCH


def file_bytes(
    shape: tuple[int, ...], axes: str, dtype: np.dtype, native_integers: bool, copied: bool
) -> int:
    """Bytes to read every plane of an image of ``shape`` (axes ``axes``, pixel type
    ``dtype``) at once and rate one of them: the pixels, their float32 copy (unless integers
    are kept with ``native_integers``, or they are float32), a float64 copy's, a reader's copy
    (``copied``) or a transposed copy (samples, or Y and X not last), and `plane_bytes`."""
    dtype = np.dtype(dtype)
    pixels = int(np.prod(shape, dtype=np.float64))
    data = pixels * dtype.itemsize
    kept = (dtype.kind in "ui" and native_integers) or dtype == np.float32
    need = data + (0 if kept else pixels * 4) + (data if dtype.itemsize > 4 else 0)
    if copied or axes.replace("S", "")[-2:] != "YX":
        need += data
    h, w = (
        (shape[axes.index("Y")], shape[axes.index("X")])
        if len(axes) == len(shape) and "Y" in axes and "X" in axes
        else shape[-2:]
    )
    return need + plane_bytes(h, w, dtype.itemsize if kept else 4)


def describe(shape: tuple[int, ...], dtype: np.dtype) -> str:
    """``"image of 100000×1×1×256×256 px (uint16, 12.2 GiB)"``."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    return f"image of {'×'.join(str(int(n)) for n in shape)} px ({dtype}, {format_bytes(size)})"


def band_bytes(
    band_rows: int,
    width: int,
    itemsize: int,
    chunk_pixels: int,
    grid_patches: int,
    preview_pixels: int,
) -> int:
    """Bytes to rate a plane in bands (`miq.large.assess_banded`): one band of ``band_rows``
    × ``width`` px and its working arrays, one decoded storage chunk or tile of
    ``chunk_pixels`` px, the plane's patch grid of ``grid_patches`` patches, and its preview of
    ``preview_pixels`` px (kept for the overlay)."""
    band = int(band_rows) * int(width) * (int(itemsize) + WORK_PER_PIXEL)
    decoded = int(chunk_pixels) * int(itemsize)
    preview = int(preview_pixels) * (int(itemsize) * 2 + WORK_PER_PIXEL)
    return band + decoded + int(grid_patches) * PER_PATCH + preview


def suggested_budget(need: int) -> str:
    """The ``--memory-budget`` value that would allow ``need`` bytes (whole GiB, rounded up)."""
    return f"{max(1, math.ceil(need * 1.1 / 2**30))}G"


def over_budget(label: str, what: str, need: int, budget: int, hint: str = "") -> ImageContentError:
    """The one-line error of a file (or plane) ``label`` that cannot be read and rated within
    ``budget`` bytes: ``what`` it is, how much it would need, and the option that would help
    (with ``hint``, another way, e.g. ``"or re-save it with smaller tiles"``)."""
    more = f"; {hint}" if hint else ""
    return ImageContentError(
        f"{label}: {what} needs about {format_bytes(need)} of memory to rate, more than the "
        f"memory budget of {format_bytes(budget)}; give --memory-budget "
        f"{suggested_budget(need)} if the machine has that much{more}"
    )
