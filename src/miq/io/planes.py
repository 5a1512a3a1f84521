"""2D planes in memory: splitting an array with named axes into planes, checking that a plane
can be rated, and mapping it to unit range."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ImageContentError

__all__ = [
    "Plane",
    "AXIS_LETTERS",
    "axis_hint",
    "check_plane",
    "fit_axes",
    "parse_axes",
    "plane_pixels",
    "samples_as_planes",
    "to_unit_range",
    "unit_map",
    "split_planes",
]

AXIS_LETTERS = "TZCYXS"
"""Letters of an axis order a user may give: time, z, channel, rows, columns, colour samples."""


@dataclass(frozen=True)
class Plane:
    """One 2D plane of a file: ``data`` (Y, X) in the file's units (DN), float32 (or integers
    of the file's own width when read with ``native_integers``), with its channel ``c``, z-plane
    ``z`` and time point ``t`` indices.

    (Float64 files with values beyond float32's range are scaled by a power of two; as float32,
    32/64-bit integer files with values beyond 2**24 are shifted by their minimum, so that the
    differences between pixels keep their precision.)"""

    data: np.ndarray
    c: int = 0
    z: int = 0
    t: int = 0


def _float32_safe(arr: np.ndarray) -> np.ndarray:
    """Float64 data beyond float32's range (|x| > 1e37 or all |x| < 1e-30) scaled by a power of
    two, so that the float32 planes keep every value finite and distinct; other data unchanged.
    (Ratings do not depend on the intensity scale.)"""
    if arr.dtype.kind != "f" or arr.dtype.itemsize <= 4:
        return arr
    finite = np.abs(arr[np.isfinite(arr)])
    peak = float(finite.max()) if finite.size else 0.0
    if peak == 0.0 or 1e-30 <= peak <= 1e37:
        return arr
    return arr * 2.0 ** -np.round(np.log2(peak))


_FLOAT32_MAX = float(np.finfo(np.float32).max)

_FLOAT32_EXACT = 2**24
"""Integers up to this magnitude are exact in float32 (its 24-bit significand)."""


def _integers_float32_safe(arr: np.ndarray) -> np.ndarray:
    """32/64-bit integer data with values beyond float32's exact range (|x| > 2**24, e.g. an
    offset of 1e8, 4e9 or 1e12 DN) shifted by the array's minimum, in integer arithmetic, so
    that converting to float32 keeps the differences between pixels (exact while the array's
    range is within 2**24; ratings do not depend on an offset); other data unchanged."""
    if arr.dtype.kind not in "ui" or arr.dtype.itemsize <= 2 or arr.size == 0:
        return arr
    lo, hi = int(arr.min()), int(arr.max())
    if max(abs(lo), abs(hi)) <= _FLOAT32_EXACT:
        return arr
    if arr.dtype == np.uint64:
        return arr - np.uint64(lo)  # no overflow: lo is the minimum
    if hi - lo <= np.iinfo(np.int64).max:
        return arr.astype(np.int64, copy=False) - np.int64(lo)
    return arr.astype(np.float64) - float(lo)  # int64 spanning more than int64: 53 bits kept


def parse_axes(axes: str) -> str:
    """An axis order given by a user (e.g. ``"YXZ"``, ``"CZYX"``), upper-cased and checked.

    Raises
    ------
    ValueError : (one line, naming no file) letters other than T, Z, C, Y, X, S, a letter
        given twice, or Y or X missing.
    """
    given = str(axes).strip().upper()
    bad = "".join(sorted({a for a in given if a not in AXIS_LETTERS}))
    if bad or not given:
        what = f"unknown letters {bad!r}" if bad else "no letters"
        raise ValueError(
            f"axes {axes!r}: {what}; use T (time), Z, C (channel), Y, X, S (colour samples), "
            "e.g. ZYX or YXZ"
        )
    twice = sorted({a for a in given if given.count(a) > 1})
    if twice:
        raise ValueError(f"axes {axes!r}: {', '.join(twice)} given twice; name each axis once")
    if "Y" not in given or "X" not in given:
        raise ValueError(f"axes {axes!r}: Y and X (the rows and columns of a plane) are needed")
    return given


def fit_axes(axes: str, shape: tuple[int, ...], path: Path | str) -> str:
    """``axes`` checked by `parse_axes` and against an image's ``shape`` (one letter per
    dimension); `ImageContentError` (one line naming ``path``) otherwise."""
    try:
        given = parse_axes(axes)
    except ValueError as exc:
        raise ImageContentError(f"{path}: {exc}") from None
    if len(given) != len(shape):
        dims = "×".join(str(int(n)) for n in shape)
        raise ImageContentError(
            f"{path}: axes {given!r} name {len(given)} dimensions but the image has "
            f"{len(shape)} ({dims}); give one letter per dimension"
        )
    return given


def samples_as_planes(axes: str, photometric: int, itemsize: int, ome: bool = False) -> str:
    """A TIFF's axes (as tifffile reports them) with samples (S) that are not colours renamed
    to an unnamed plane axis (Q, read as z or time): samples of a grey image (``photometric``
    0 or 1, min-is-white/black), and planar (samples-first) samples of data other than 8-bit
    outside OME-TIFF, which is how tifffile stores an array of shape (3 or 4, Y, X) written
    without ``photometric`` (as RGB, deprecated), e.g. a 3-plane uint16 z-stack. Other samples
    (e.g. 8-bit RGB, samples last) stay colours."""
    if "S" not in axes or "Y" not in axes:
        return axes
    planar = axes.index("S") < axes.index("Y") and not ome  # OME declares its samples
    if photometric in (0, 1) or (planar and itemsize > 1):
        return axes.replace("S", "Q")
    return axes


def axis_hint(shape: tuple[int, ...], axes: str, min_side: int = 84) -> str | None:
    """A likely axis mix-up, as a hint for the user, or None when nothing looks wrong.

    When the planes (Y × X) of an image of ``shape`` with (tifffile-style) ``axes`` are smaller
    than ``min_side`` on a side but two other dimensions are at least ``min_side``, e.g. a
    Z-last stack (512, 512, 40) read as ``"QYX"`` (512 planes of 512 × 40): the axis order
    that makes those two dimensions Y and X, e.g. ``"last axis has 40 planes: is Z last? use
    --axes YXZ"``.
    """
    shape = tuple(int(n) for n in shape)
    n = len(shape)
    if n < 3:
        return None
    axes = str(axes).upper()
    if len(axes) != n or "Y" not in axes or "X" not in axes:
        axes = "Q" * (n - 2) + "YX"
    if shape[axes.index("Y")] >= min_side and shape[axes.index("X")] >= min_side:
        return None
    big = [i for i, size in enumerate(shape) if size >= min_side]
    if len(big) < 2:
        return None  # the image really is small
    new: list[str | None] = [None] * n
    new[big[-2]], new[big[-1]] = "Y", "X"
    used = {"Y", "X"}
    for i, a in enumerate(axes):  # named stack axes keep their letters
        if new[i] is None and a in "TZCS" and a not in used:
            new[i] = a
            used.add(a)
    for i in range(n):
        if new[i] is None:
            free = next((a for a in "ZTC" if a not in used), None)
            if free is None:
                return None
            new[i] = free
            used.add(free)
    suggestion = "".join(a for a in new if a is not None)
    moved = next(i for i in range(n) if axes[i] in "YX" and new[i] not in ("Y", "X"))
    letter = new[moved]
    noun = {"Z": "planes", "T": "time points", "C": "channels", "S": "samples"}[letter]
    if moved == n - 1:
        where, question = "last axis", f"is {letter} last?"
    elif moved == 0:
        where, question = "first axis", f"is {letter} first?"
    else:
        where, question = f"axis {moved + 1} of {n}", f"is it {letter}?"
    return f"{where} has {shape[moved]} {noun}: {question} use --axes {suggestion}"


def split_planes(
    arr: np.ndarray,
    axes: str,
    path: Path,
    native_integers: bool = False,
    *,
    samples_as_channels: bool = False,
) -> list[Plane]:
    """Split an array with tifffile-style axes into 2D planes indexed by (t, c, z): float32, or
    integers (of any width) left as they are with ``native_integers``.

    Colour samples (an S axis of more than one sample: RGB, RGBA) are refused unless
    ``samples_as_channels``, which rates each sample as a channel (c = sample index; refused
    when the image also has a channel axis of more than one channel)."""
    if arr.dtype.kind == "c":
        raise ImageContentError(f"{path}: complex-valued image ({arr.dtype}); give a real image")
    if arr.dtype.kind not in "biuf":
        raise ImageContentError(f"{path}: unsupported pixel type {arr.dtype}")
    axes = axes.upper()
    if len(axes) != arr.ndim:
        axes = "Q" * (arr.ndim - 2) + "YX"
    if "S" in axes and arr.shape[axes.index("S")] > 1:
        samples = arr.shape[axes.index("S")]
        channels = arr.shape[axes.index("C")] if "C" in axes else 1
        if not samples_as_channels:
            raise ImageContentError(_colour_refusal(path, axes, samples))
        if channels > 1:
            raise ImageContentError(
                f"{path}: {channels} channels with {samples} colour samples each; colours are "
                "rated as channels only in a file without a channel axis"
            )
        axes = axes.replace("C", "Q").replace("S", "C")  # a single channel: dropped below
    if "Y" not in axes or "X" not in axes:
        raise ImageContentError(f"{path}: no Y/X axes in {axes!r}")
    # Move Y, X last; the other axes are channel (C), z (Z) or time (T); an unnamed axis
    # (pages, Q, I) is z if the file has no Z, else time.
    lead = [i for i, a in enumerate(axes) if a not in "YX"]
    order = lead + [axes.index("Y"), axes.index("X")]
    arr = np.transpose(arr, order)
    lead_axes = [axes[i] for i in lead]
    shape = arr.shape[: len(lead)]
    non_singleton = [(k, a, n) for k, (a, n) in enumerate(zip(lead_axes, shape)) if n > 1]
    role: dict[str, int] = {}
    for k, a, _ in non_singleton:
        name = {"C": "c", "Z": "z", "T": "t"}.get(a)
        if name and name not in role:
            role[name] = k
    for k, _, _ in non_singleton:
        if k in role.values():
            continue
        free = next((r for r in ("z", "t") if r not in role), None)
        if free is None:
            dims = ", ".join(f"{a}={n}" for _, a, n in non_singleton)
            raise ImageContentError(
                f"{path}: {len(non_singleton) + 2}-D image ({dims}); at most time, channel and z "
                "besides Y and X are supported"
            )
        role[free] = k
    planes: list[Plane] = []
    flat = plane_pixels(arr.reshape((-1,) + arr.shape[-2:]), native_integers)
    for flat_index, index in enumerate(np.ndindex(*shape) if shape else [()]):
        c, z, t = (int(index[role[r]]) if r in role else 0 for r in ("c", "z", "t"))
        planes.append(Plane(flat[flat_index], c=c, z=z, t=t))
    return planes


def plane_pixels(arr: np.ndarray, native_integers: bool = False) -> np.ndarray:
    """Pixels as `Plane` holds them (one plane (Y, X) or a stack of them): float32 (values
    kept finite and distinct, see `Plane`), or integers of any width left as they are with
    ``native_integers``. No copy when nothing changes."""
    if native_integers and arr.dtype.kind in "ui":
        return arr
    return _float32_safe(_integers_float32_safe(arr)).astype(np.float32, copy=False)


def _colour_refusal(path: Path, axes: str, samples: int) -> str:
    """The one-line refusal of a colour image, saying how to rate it anyway."""
    hint = ""
    if "Z" not in axes and axes.index("S") < axes.index("Y"):
        planes = axes.replace("S", "Z")
        if all(a in AXIS_LETTERS for a in planes):
            hint = f"; if they are z-planes, not colours, use --axes {planes}"
    return (
        f"{path}: RGB/colour image ({samples} samples per pixel{hint}); miq rates "
        "single-channel fluorescence; rate one colour with --channel N (e.g. --channel 1 for "
        "green)"
    )


def check_plane(plane: np.ndarray, name: str, min_side: int) -> tuple[float, float]:
    """Raise `ImageContentError` if a plane cannot be rated; else return its (min, max).

    Checks: 2D, at least ``min_side`` px on each side, all values finite, not constant.
    """
    if plane.ndim != 2:
        raise ImageContentError(f"{name}: expected a 2D plane, got shape {plane.shape}")
    h, w = plane.shape
    if h < min_side or w < min_side:
        raise ImageContentError(
            f"{name}: image is {w}×{h} px, smaller than one {min_side}×{min_side} patch"
        )
    if plane.dtype.kind not in "biu":  # integers are always finite
        finite = np.isfinite(plane)
        if not finite.all():
            n_bad = int(plane.size - np.count_nonzero(finite))
            raise ImageContentError(f"{name}: {n_bad} pixels are NaN or infinite")
    lo, hi = float(plane.min()), float(plane.max())
    if lo == hi:
        raise ImageContentError(
            f"{name}: image is constant (every pixel = {lo:g}); nothing to rate"
        )
    return lo, hi


def to_unit_range(plane: np.ndarray) -> np.ndarray:
    """Map a plane linearly to [0, 1] by its min and max (float32).

    The model standardises every patch itself, so this affine map does not change any result; it
    only keeps float32 arithmetic precise for any input scale (8/16/32-bit, floats, large offsets).
    """
    data = np.asarray(plane)
    return unit_map(data, float(data.min()), float(data.max()))


def unit_map(data: np.ndarray, lo: float, hi: float, out: np.ndarray | None = None) -> np.ndarray:
    """(data − lo) / (hi − lo) as float32 (0 where hi == lo): the map of `to_unit_range`
    with a given range, so a plane read in bands maps exactly as when read whole.

    8- and 16-bit integers (exact in float32) and float32 data are mapped in float32 (faster;
    at most an ulp of the result apart from float64); 32/64-bit integers and float64 in float64,
    so large offsets keep their precision; so is float32 data whose range is too small for
    float32's 1 / (hi − lo) (denormals). ``out``: a float32 array of ``data``'s shape to write
    into (``data`` may then be any strided view: it is read once, never copied)."""
    data = np.asarray(data)
    scale = 1.0 / (hi - lo) if hi > lo else 0.0
    kind, size = data.dtype.kind, data.dtype.itemsize
    if out is None:
        out = np.empty(data.shape, np.float32)
    small = (kind in "bui" and size <= 2) or (kind == "f" and size <= 4)
    if small and scale < _FLOAT32_MAX:
        np.subtract(data, np.float32(lo), out=out, dtype=np.float32)
        out *= np.float32(scale)
    else:
        out[...] = (data.astype(np.float64) - lo) * scale
    return out
