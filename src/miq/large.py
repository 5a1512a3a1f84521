"""Rating planes too large to load whole (mosaics, whole slides), in bands of whole patch rows.

A plane of more than `LARGE_PLANE_PIXELS` is read lazily — an uncompressed TIFF by
explicit reads of whole rows, a compressed or tiled TIFF through tifffile's zarr view (needs
zarr: the ``io`` extra), OME-Zarr through bioio's dask arrays — and rated in two passes over bands
of patch rows (at least ``rows_per_band``, and at least one storage chunk tall): the first finds the plane's minimum and maximum (and any NaN or
Inf), the second maps each band to [0, 1] with those, cuts its patches and runs the model.
Every patch gets exactly the values the whole-image path gives it, so the results are the same;
memory holds one band (plus the model), not the plane.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .assessment import (
    AssessOptions,
    ImageAssessment,
    assessment_from_probabilities,
    rate_patch_rows,
)
from .content import noise_sample_positions, noise_sigma_of_samples
from .errors import ImageContentError
from .io.budget import band_bytes, over_budget, plane_bytes
from .io.lazy import LazyPlane
from .io.planes import Plane, plane_pixels
from .tiling import patch_grid

__all__ = ["LARGE_PLANE_PIXELS", "assess_banded", "reading_plan", "read_plane", "whole_planes"]

LARGE_PLANE_PIXELS = 64 * 2**20  # 64 MP (8192²): larger planes are rated in bands
PREVIEW_SIDE = 4096  # px: a banded plane keeps a subsampled preview this size for its overlay


def _bands(starts: np.ndarray, patch: int, rows_per_band: int) -> Iterator[tuple[int, int, int]]:
    """(first grid row, end grid row, first pixel row) of each band of patch rows."""
    for first in range(0, len(starts), rows_per_band):
        yield first, min(first + rows_per_band, len(starts)), int(starts[first])


def reading_plan(source, *, scale: float = 1.0, patch_size: int = 84) -> str:
    """How to read and rate an open `miq.io.ImageSource` within its ``memory_budget`` (bytes),
    decided from what the file declares before its pixels are read:

    * ``"whole"``: every plane at once (`ImageSource.planes`, which refuses a file over the
      budget), when that fits, or when the file cannot be read plane by plane;
    * ``"planes"``: one plane at a time (`read_plane`), each read whole: memory ∝ one plane;
    * ``"bands"``: planes of more than `LARGE_PLANE_PIXELS`, or too large for the budget when
      held whole, read and rated in bands (`assess_banded`; not resampled).

    ``scale``: output px per input px of the resampling the planes get (1 = none).

    Raises
    ------
    ImageContentError : (one line naming the file, the size needed and the option that would
        help) a plane that cannot be rated within the budget, whole or in bands.
    ImageReadError : unreadable file.
    """
    lazy = source.lazy_planes()
    if not lazy:
        return "whole"
    budget = source.memory_budget
    (h, w), itemsize = lazy[0].shape, lazy[0].dtype.itemsize
    large = h * w > LARGE_PLANE_PIXELS
    one = plane_bytes(h, w, itemsize, scale)
    if not large and source.whole_bytes() + one - plane_bytes(h, w, itemsize) <= budget:
        return "whole"
    if (not large or scale != 1.0) and one <= budget:  # a resampled plane is held whole
        return "planes"
    if scale != 1.0:
        resampled = f"{round(w * scale)}×{round(h * scale)}"
        what = f"a plane of {w}×{h} px resampled ×{scale:.3g} to {resampled} px"
        hint = "or check its pixel size (--pixel-size, --ignore-file-pixel-size)"
        raise over_budget(source.name, what, one, budget, hint)
    rows = _band_rows(lazy[0], patch_size) * patch_size
    chunk = int(getattr(lazy[0].data, "chunk_pixels", w))
    grid = patch_grid((h, w), patch_size)
    factor = _preview_factor(h, w)
    preview = -(-h // factor) * -(-w // factor)
    need = band_bytes(rows, w, itemsize, chunk, len(grid.ys) * len(grid.xs), preview)
    if need > budget:
        what = f"a plane of {w}×{h} px ({lazy[0].dtype}) read in bands of {rows} rows"
        hint = ""
        if chunk * itemsize > budget // 4:
            tile = f"{lazy[0].data.chunk_rows}×{lazy[0].data.chunk_cols}"
            what += f" (stored in tiles or chunks of {tile} px, each decoded whole)"
            hint = "or re-save it with smaller tiles or chunks"
        raise over_budget(source.name, what, need, budget, hint)
    return "bands"


def read_plane(plane: LazyPlane, label: str) -> np.ndarray:
    """A lazily read plane read whole (Y, X), in its own pixel type.

    Raises
    ------
    ImageReadError : (one line naming ``label``) corrupt or unreadable data.
    """
    from .errors import ImageReadError, MiqError

    h, w = plane.shape
    try:
        return np.asarray(plane.data[0:h, 0:w])
    except MiqError:
        raise
    except MemoryError:
        raise ImageReadError(f"{label}: plane too large to load into memory") from None
    except Exception as exc:  # a lazily read chunk can be corrupt
        msg = str(exc).splitlines()[0] if str(exc) else ""
        raise ImageReadError(
            f"{label}: corrupt or unreadable image data ({type(exc).__name__}: {msg[:200]})"
        ) from None


def whole_planes(source, *, scale: float = 1.0, patch_size: int = 84) -> Iterator[Plane]:
    """Every plane of an open `miq.io.ImageSource` read whole, as
    ``source.planes(native_integers=True)`` gives them (integers of any width in their own
    type), within its ``memory_budget``: all at once when they fit, else one at a time (memory
    ∝ one plane). For commands that need each plane whole (best-focus, measure); ``scale``:
    the resampling the planes get (output px per input px).

    Raises
    ------
    ImageContentError : (one line naming the file, the size needed and the option that would
        help) a plane that cannot be held whole within the budget, before it is read.
    ImageReadError : unreadable file or plane.
    """
    if reading_plan(source, scale=scale, patch_size=patch_size) == "whole":
        yield from source.planes(native_integers=True)
        return
    lazy = source.lazy_planes()
    (h, w), dtype = lazy[0].shape, lazy[0].dtype
    need = plane_bytes(h, w, dtype.itemsize, scale)
    if need > source.memory_budget:
        what = f"a plane of {w}×{h} px ({dtype}) held whole"
        raise over_budget(source.name, what, need, source.memory_budget)
    several = len(lazy) > 1
    for plane in lazy:
        label = f"{source.name} [c={plane.c}, z={plane.z}]" if several else source.name
        data = plane_pixels(read_plane(plane, label), native_integers=True)
        yield Plane(data, c=plane.c, z=plane.z, t=plane.t)


def _band_rows(plane: LazyPlane, patch: int, rows_per_band: int = 4) -> int:
    """Patch rows per band: at least ``rows_per_band`` and one storage chunk tall, so that each
    chunk is decoded about once per pass."""
    return max(rows_per_band, -(-getattr(plane.data, "chunk_rows", 1) // patch))


def _preview_factor(h: int, w: int) -> int:
    """Rows and columns 0, f, 2f … of a banded plane are kept for its overlay."""
    return max(1, -(-max(h, w) // PREVIEW_SIDE))


def assess_banded(
    plane: LazyPlane,
    model,
    *,
    options: AssessOptions = AssessOptions(),
    name: str = "array",
    rows_per_band: int = 4,
) -> ImageAssessment:
    """Rate a lazily read plane band by band (same result as `miq.assess` on the whole
    plane, which must then fit in memory). ``options.pixel_size_um`` is not supported here.

    ``preview`` holds the plane subsampled by ``preview_factor`` (at most
    `PREVIEW_SIDE` px a side) for drawing the overlay."""
    if options.pixel_size_um is not None:
        raise ValueError("assess_banded does not resample: rate at the model's pixel size")
    if plane.dtype.kind not in "buif":
        raise ImageContentError(f"{name}: unsupported pixel type {plane.dtype}")
    p = model.patch_size
    h, w = plane.shape
    if h < p or w < p:
        raise ImageContentError(f"{name}: image is {w}×{h} px, smaller than one {p}×{p} patch")
    grid = patch_grid((h, w), p)
    preview_factor = _preview_factor(h, w)  # rows/columns 0, f, 2f … kept
    rows_per_band = _band_rows(plane, p, rows_per_band)
    band_rows = rows_per_band * p
    lo, hi, n_bad = np.inf, -np.inf, 0
    noise_rows, noise_cols = noise_sample_positions(h, w)
    row_samples, col_samples = [], []
    for y in range(0, h, band_rows):  # pass 1: range, finiteness and the noise's samples
        band = plane.data[y : y + band_rows, 0:w]
        row_samples.append(band[noise_rows[(noise_rows >= y) & (noise_rows < y + band_rows)] - y])
        col_samples.append(band[:, noise_cols])
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
    sigma = noise_sigma_of_samples(np.concatenate(row_samples), np.concatenate(col_samples))
    probs, valid, foreground, preview = [], [], [], []
    for first, end, y0 in _bands(grid.ys, p, rows_per_band):  # pass 2: rate band by band
        band = plane.data[y0 : int(grid.ys[end - 1]) + p, 0:w]
        kept = np.arange(y0, y0 + band.shape[0])
        kept = kept[(kept % preview_factor == 0) & (kept >= len(preview) * preview_factor)]
        preview.extend(band[kept - y0, ::preview_factor])
        band_probs, band_valid, band_foreground = rate_patch_rows(
            band, grid.ys[first:end] - y0, grid.xs, lo, hi, model, sigma
        )
        probs.append(band_probs)
        valid.append(band_valid)
        foreground.append(band_foreground)
    result = assessment_from_probabilities(
        grid,
        np.concatenate(probs),
        np.concatenate(valid),
        model,
        options,
        name,
        np.concatenate(foreground),
    )
    result.banded = True
    result.preview = np.stack(preview)
    result.preview_factor = preview_factor
    result.set_content(result.preview)  # pixels of the preview are pixels of the plane
    return result
