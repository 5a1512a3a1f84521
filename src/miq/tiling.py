"""Patch grid covering a whole image: no border is dropped.

Patches are ``patch_size`` px squares on a regular stride of ``patch_size`` from the top-left; when
a side is not a multiple of the patch size, the last row/column is shifted back to end exactly at
the image border (it overlaps its neighbour). Every pixel is covered by at least one patch and
every patch holds only real image pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PatchGrid", "patch_grid", "extract_patches", "paint", "evenly_spaced_runs"]


def _starts(length: int, patch: int) -> np.ndarray:
    if length < patch:
        raise ValueError(f"side of {length} px is smaller than one {patch} px patch")
    n = -(-length // patch)  # ceil
    starts = np.arange(n) * patch
    starts[-1] = length - patch
    return starts


@dataclass(frozen=True)
class PatchGrid:
    """Top-left corners of the patches: ``ys`` (rows,) and ``xs`` (cols,), in px."""

    image_shape: tuple[int, int]
    patch_size: int
    ys: np.ndarray
    xs: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the grid."""
        return (len(self.ys), len(self.xs))

    @property
    def n_patches(self) -> int:
        return len(self.ys) * len(self.xs)


def patch_grid(image_shape: tuple[int, int], patch_size: int = 84) -> PatchGrid:
    """Grid of ``patch_size`` squares covering an image of ``image_shape`` (H, W) px."""
    h, w = int(image_shape[0]), int(image_shape[1])
    return PatchGrid((h, w), int(patch_size), _starts(h, patch_size), _starts(w, patch_size))


def extract_patches(image: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """Copy the grid's patches out of ``image`` (H, W) → (rows, cols, P, P), same dtype."""
    if tuple(image.shape) != grid.image_shape:
        raise ValueError(f"image shape {image.shape} does not match grid {grid.image_shape}")
    p = grid.patch_size
    windows = np.lib.stride_tricks.sliding_window_view(image, (p, p))
    # index rows and columns together: copies only the patches (indexing one axis at a time
    # would first copy every window of the chosen rows, ~W·P² values per row)
    return windows[grid.ys[:, None], grid.xs[None, :]]


def paint(values: np.ndarray, grid: PatchGrid, dtype=None) -> np.ndarray:
    """Per-patch values (rows, cols) → per-pixel map (H, W); each pixel gets the value of the
    last patch (in row-major order) that covers it."""
    values = np.asarray(values)
    if values.shape != grid.shape:
        raise ValueError(f"values shape {values.shape} does not match grid {grid.shape}")
    out = np.zeros(grid.image_shape, dtype=dtype or values.dtype)
    p = grid.patch_size
    row_of = np.zeros(grid.image_shape[0], dtype=int)
    col_of = np.zeros(grid.image_shape[1], dtype=int)
    for i, y in enumerate(grid.ys):
        row_of[y : y + p] = i
    for j, x in enumerate(grid.xs):
        col_of[x : x + p] = j
    out[:] = values[row_of[:, None], col_of[None, :]]
    return out


def evenly_spaced_runs(starts: np.ndarray) -> list[slice]:
    """Increasing positions (px) as slices, each maximal run of equal spacing one strided slice
    (grid columns [0, 84, …, 1932, 1964] → [0:1933:84, 1964:1965:1]): the patches of a grid row
    as few strided views of the plane."""
    starts = [int(v) for v in starts]
    slices, i = [], 0
    while i < len(starts):
        j = i
        step = starts[i + 1] - starts[i] if i + 1 < len(starts) else 1
        if step > 0:
            while j + 1 < len(starts) and starts[j + 1] - starts[j] == step:
                j += 1
        else:
            step = 1
        slices.append(slice(starts[i], starts[j] + 1, step))
        i = j + 1
    return slices
