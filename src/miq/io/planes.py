"""2D planes in memory: splitting an array with named axes into planes, checking that a plane
can be rated, and mapping it to unit range."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ImageContentError

__all__ = ["Plane", "check_plane", "to_unit_range", "unit_map", "split_planes"]


@dataclass(frozen=True)
class Plane:
    """One 2D plane of a file: ``data`` (Y, X) in the file's units (DN), float32 (or 8/16-bit
    integers when read with ``native_integers``), with its channel ``c``, z-plane ``z`` and time
    point ``t`` indices.

    (Float64 files with values beyond float32's range are scaled by a power of two.)"""

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


def split_planes(
    arr: np.ndarray, axes: str, path: Path, native_integers: bool = False
) -> list[Plane]:
    """Split an array with tifffile-style axes into 2D planes indexed by (c, z): float32, or
    8/16-bit integers left as they are with ``native_integers``."""
    if arr.dtype.kind == "c":
        raise ImageContentError(f"{path}: complex-valued image ({arr.dtype}); give a real image")
    if arr.dtype.kind not in "biuf":
        raise ImageContentError(f"{path}: unsupported pixel type {arr.dtype}")
    axes = axes.upper()
    if len(axes) != arr.ndim:
        axes = "Q" * (arr.ndim - 2) + "YX"
    if "S" in axes and arr.shape[axes.index("S")] > 1:
        raise ImageContentError(
            f"{path}: RGB/colour image ({arr.shape[axes.index('S')]} samples per pixel); "
            "miq rates single-channel fluorescence: split the channels first"
        )
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
    flat = arr.reshape((-1,) + arr.shape[-2:])
    keep = native_integers and flat.dtype.kind in "ui" and flat.dtype.itemsize <= 2
    dtype = flat.dtype if keep else np.float32
    flat = flat if keep else _float32_safe(flat)
    for flat_index, index in enumerate(np.ndindex(*shape) if shape else [()]):
        c, z, t = (int(index[role[r]]) if r in role else 0 for r in ("c", "z", "t"))
        planes.append(Plane(flat[flat_index].astype(dtype, copy=False), c=c, z=z, t=t))
    return planes


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
    so large offsets keep their precision. ``out``: a float32 array of ``data``'s shape to write
    into (``data`` may then be any strided view: it is read once, never copied)."""
    data = np.asarray(data)
    scale = 1.0 / (hi - lo) if hi > lo else 0.0
    kind, size = data.dtype.kind, data.dtype.itemsize
    if out is None:
        out = np.empty(data.shape, np.float32)
    if (kind in "bui" and size <= 2) or (kind == "f" and size <= 4):
        np.subtract(data, np.float32(lo), out=out, dtype=np.float32)
        out *= np.float32(scale)
    else:
        out[...] = (data.astype(np.float64) - lo) * scale
    return out
