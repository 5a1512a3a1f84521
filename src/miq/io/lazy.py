"""Planes read on demand: windows onto a file's lazily read array (explicit row reads of plain
TIFF data, tifffile's zarr view of compressed or tiled TIFFs, bioio's dask arrays for OME-Zarr).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["LazyPlane", "main_series", "tiff_lazy_array", "split_lazy_planes"]


@dataclass
class LazyPlane:
    """One plane of a file, read on demand: ``data[y0:y1, x0:x1]`` returns a numpy array."""

    data: object  # 2D array-like supporting slicing
    shape: tuple[int, int]
    dtype: np.dtype
    c: int = 0
    z: int = 0
    t: int = 0


class _PlaneView:
    """A 2D window onto an N-D lazy array at fixed leading indices; ``chunk_rows`` is the
    height of the array's storage chunks or tiles (rows decoded together), 1 when rows are
    independent, ``chunk_cols`` their width; ``chunk_pixels`` the pixels one chunk holds (decoded at once; a chunk may span
    several planes)."""

    def __init__(self, array, lead: tuple[int, ...]) -> None:
        self.array, self.lead = array, lead
        chunks = getattr(array, "chunksize", None) or getattr(array, "chunks", None)
        chunks = tuple(chunks) if chunks else ()
        if len(chunks) >= 2 and all(isinstance(n, (int, np.integer)) for n in chunks[-2:]):
            self.chunk_rows, self.chunk_cols = int(chunks[-2]), int(chunks[-1])
            self.chunk_pixels = int(np.prod([int(n) for n in chunks], dtype=np.float64))
        else:
            self.chunk_rows, self.chunk_cols = 1, int(array.shape[-1])
            self.chunk_pixels = self.chunk_cols

    def __getitem__(self, index) -> np.ndarray:
        return np.asarray(self.array[self.lead + tuple(index)])


class _ContiguousArray:
    """An N-D array stored uncompressed and contiguously in a file, read by explicit reads of
    whole rows (not memory-mapped, so only the rows asked for occupy memory)."""

    def __init__(self, path: Path, offset: int, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.offset, self.shape, self.dtype = path, offset, shape, np.dtype(dtype)

    def __getitem__(self, index: tuple) -> np.ndarray:
        *lead, rows, cols = index
        h, w = self.shape[-2:]
        plane = int(np.ravel_multi_index(tuple(lead), self.shape[:-2])) if lead else 0
        start, stop, _ = rows.indices(h)
        first = self.offset + (plane * h + start) * w * self.dtype.itemsize
        data = np.fromfile(self.path, self.dtype, count=(stop - start) * w, offset=first)
        if data.size != (stop - start) * w:
            raise OSError(f"file ends before row {stop} of plane {plane}")
        return data.reshape(stop - start, w)[:, cols]


def main_series(tif):
    """The series of a TIFF that miq rates: the one with the largest planes (Y × X px), the
    first of those (so a thumbnail or label image stored first is not rated in place of the
    image; a file with one series, or series of one size, gives its first)."""
    series = list(tif.series)
    if len(series) == 1:
        return series[0]

    def plane_pixels(s) -> int:
        shape = tuple(int(n) for n in s.shape)
        axes = str(s.axes)
        if "Y" in axes and "X" in axes and len(axes) == len(shape):
            return shape[axes.index("Y")] * shape[axes.index("X")]
        return int(np.prod(shape[-2:]))

    return max(series, key=plane_pixels)  # max keeps the first of equals


def tiff_lazy_array(tif, path: Path):
    """A lazily read array of the rated series (`main_series`): explicit row reads when the
    data is stored plainly, else tifffile's zarr view (needs zarr); None when neither is
    possible."""
    series = main_series(tif)
    if series.dataoffset is not None and len(series.shape) >= 2:
        return _ContiguousArray(path, series.dataoffset, series.shape, series.dtype), series.axes
    try:
        import zarr
    except ImportError:
        return None
    return zarr.open(series.aszarr(), mode="r"), series.axes


def split_lazy_planes(array, axes: str) -> list[LazyPlane] | None:
    """Split a lazy array into planes; None for layouts the normal reader should handle
    (samples per pixel, unnamed axes beyond one, more than T, C, Z)."""
    axes = axes.upper()
    if len(axes) != len(array.shape) or axes[-2:] != "YX":
        return None
    lead = axes[:-2]
    if any(a not in "TCZQI" for a in lead) or len(set(lead)) != len(lead):
        return None
    if sum(a in "QI" for a in lead) > (0 if "Z" in lead else 1):
        return None
    shape = tuple(array.shape[:-2])
    planes = []
    for index in np.ndindex(*shape) if shape else [()]:
        where = {"c": 0, "z": 0, "t": 0}
        for a, i in zip(lead, index):
            where[{"T": "t", "C": "c"}.get(a, "z")] = int(i)
        planes.append(
            LazyPlane(
                _PlaneView(array, tuple(index)),
                (int(array.shape[-2]), int(array.shape[-1])),
                np.dtype(array.dtype),
                **where,
            )
        )
    return planes
