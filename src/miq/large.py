"""Rating planes too large to load whole (mosaics, whole slides), in bands of whole patch rows.

A plane of more than :data:`LARGE_PLANE_PIXELS` is read lazily — an uncompressed TIFF by
explicit reads of whole rows, a compressed or tiled TIFF through tifffile's zarr view (needs
zarr: the ``io`` extra), OME-Zarr through bioio's dask arrays — and rated in two passes over bands
of patch rows (at least ``rows_per_band``, and at least one storage chunk tall): the first finds the plane's minimum and maximum (and any NaN or
Inf), the second maps each band to [0, 1] with those, cuts its patches and runs the model.
Every patch gets exactly the values the whole-image path gives it, so the results are the same;
memory holds one band (plus the model), not the plane.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .assessment import (
    AssessOptions,
    ImageAssessment,
    assessment_from_probabilities,
    rate_patch_rows,
)
from .errors import ImageContentError
from .tiling import patch_grid

__all__ = ["LARGE_PLANE_PIXELS", "LazyPlane", "lazy_planes", "assess_banded"]

LARGE_PLANE_PIXELS = 64 * 2**20  # 64 MP (8192²): larger planes are rated in bands
PREVIEW_SIDE = 4096  # px: a banded plane keeps a subsampled preview this size for its overlay


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
    height of the array's storage chunks (rows decoded together), 1 when rows are independent."""

    def __init__(self, array, lead: tuple[int, ...]) -> None:
        self.array, self.lead = array, lead
        chunks = getattr(array, "chunksize", None) or getattr(array, "chunks", None)
        self.chunk_rows = int(chunks[-2]) if chunks and len(chunks) >= 2 else 1

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


def _tiff_array(tif, path: Path):
    """A lazily read array of the first series: explicit row reads when the data is stored
    plainly, else tifffile's zarr view (needs zarr); None when neither is possible."""
    series = tif.series[0]
    if series.dataoffset is not None and len(series.shape) >= 2:
        return _ContiguousArray(path, series.dataoffset, series.shape, series.dtype), series.axes
    try:
        import zarr
    except ImportError:
        return None
    return zarr.open(series.aszarr(), mode="r"), series.axes


@contextmanager
def lazy_planes(path: str | os.PathLike) -> Iterator[list[LazyPlane] | None]:
    """Context manager giving the lazily readable planes of a file (T, C, Z as in
    :func:`miq.io.read_planes`), or None when the file cannot be read lazily."""
    import tifffile

    from .io import is_zarr

    p = Path(path)
    if is_zarr(p):
        try:
            from bioio import BioImage

            from .io import _zarr_reader

            image = BioImage(p, reader=_zarr_reader(p))
            array, axes = image.dask_data, image.dims.order
        except Exception:  # bioio missing or unreadable: the normal path reports it
            yield None
            return
        yield _planes_of(array, axes)
        return
    try:
        tif = tifffile.TiffFile(p)
    except Exception:  # not a TIFF (or unreadable): the normal path handles it
        yield None
        return
    try:
        try:
            found = _tiff_array(tif, p)
        except Exception:  # no readable series: the normal path reports the problem
            found = None
        yield None if found is None else _planes_of(*found)
    finally:
        tif.close()


def _planes_of(array, axes: str) -> list[LazyPlane] | None:
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


def _bands(starts: np.ndarray, patch: int, rows_per_band: int) -> Iterator[tuple[int, int, int]]:
    """(first grid row, end grid row, first pixel row) of each band of patch rows."""
    for first in range(0, len(starts), rows_per_band):
        yield first, min(first + rows_per_band, len(starts)), int(starts[first])


def assess_banded(
    plane: LazyPlane,
    model,
    *,
    options: AssessOptions = AssessOptions(),
    name: str = "array",
    rows_per_band: int = 4,
) -> ImageAssessment:
    """Rate a lazily read plane band by band (same result as :func:`miq.assess` on the whole
    plane, which must then fit in memory). ``options.pixel_size_um`` is not supported here.

    ``extra["preview"]`` holds the plane subsampled by ``extra["preview_factor"]`` (at most
    :data:`PREVIEW_SIDE` px a side) for drawing the overlay."""
    if options.pixel_size_um is not None:
        raise ValueError("assess_banded does not resample: rate at the model's pixel size")
    if plane.dtype.kind not in "buif":
        raise ImageContentError(f"{name}: unsupported pixel type {plane.dtype}")
    p = model.patch_size
    h, w = plane.shape
    if h < p or w < p:
        raise ImageContentError(f"{name}: image is {w}×{h} px, smaller than one {p}×{p} patch")
    grid = patch_grid((h, w), p)
    preview_factor = max(1, -(-max(h, w) // PREVIEW_SIDE))  # rows/columns 0, f, 2f … kept
    # bands at least one storage chunk tall, so that each chunk is decoded about once per pass
    rows_per_band = max(rows_per_band, -(-getattr(plane.data, "chunk_rows", 1) // p))
    band_rows = rows_per_band * p
    lo, hi, n_bad = np.inf, -np.inf, 0
    for y in range(0, h, band_rows):  # pass 1: range and finiteness, as check_plane does
        band = plane.data[y : y + band_rows, 0:w]
        finite = np.isfinite(band) if band.dtype.kind == "f" else None
        if finite is not None and not finite.all():
            n_bad += int(band.size - np.count_nonzero(finite))
            continue
        lo, hi = min(lo, float(band.min())), max(hi, float(band.max()))
    if n_bad:
        raise ImageContentError(f"{name}: {n_bad} pixels are NaN or infinite")
    if lo == hi:
        raise ImageContentError(
            f"{name}: image is constant (every pixel = {lo:g}); nothing to rate"
        )
    probs, valid, preview = [], [], []
    for first, end, y0 in _bands(grid.ys, p, rows_per_band):  # pass 2: rate band by band
        band = plane.data[y0 : int(grid.ys[end - 1]) + p, 0:w]
        kept = np.arange(y0, y0 + band.shape[0])
        kept = kept[(kept % preview_factor == 0) & (kept >= len(preview) * preview_factor)]
        preview.extend(band[kept - y0, ::preview_factor])
        band_probs, band_valid = rate_patch_rows(
            band, grid.ys[first:end] - y0, grid.xs, lo, hi, model
        )
        probs.append(band_probs)
        valid.append(band_valid)
    result = assessment_from_probabilities(
        grid, np.concatenate(probs), np.concatenate(valid), model, options
    )
    result.extra.update(
        scale=1.0,
        pixel_size_um=None,
        banded=True,
        preview=np.stack(preview),
        preview_factor=preview_factor,
    )
    return result
