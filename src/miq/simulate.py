"""The defocus simulator applied to image files (``miq simulate``): in-focus planes in, defocused
uint16 TIFFs out, as a 16-bit camera would record them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .io import ImageSource, atomic_write
from .io.budget import DEFAULT_MEMORY_BUDGET
from .optics import Optics, degrade, restore_offset

__all__ = ["simulate_file", "DN_FULL_SCALE"]

#: camera full scale (DN): planes are taken as DN of a 16-bit camera, 1 photoelectron per DN
DN_FULL_SCALE = 65535.0


def simulate_file(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    depths_um: list[float],
    *,
    optics: Optics = Optics(),
    exposure: float = 1.0,
    seed: int = 0,
    noise: bool = True,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> list[Path]:
    """Defocus every plane of an in-focus image file to each of ``depths_um`` (µm).

    Pixel values are DN of a 16-bit camera (offset 100 DN, 1 photoelectron per DN, as in the
    original simulator: `miq.optics.degrade`); a plane that reaches below the offset (8-bit
    files, background-subtracted images) has it put back under its darkest pixel first
    (`miq.optics.restore_offset`), so that its background is not cut off. Each depth is written as
    ``out_dir/{stem}_defocus_{z}um.tif``, uint16, one plane or a stack (Z, Y, X) of the file's
    planes (one grey page each, axes ZYX in the TIFF's metadata). Memory: the file as stored
    plus one plane's simulation at a time. Returns the files written. Raises
    `miq.errors.MiqError` for an unreadable input, or one whose planes would not fit in
    ``memory_budget`` bytes (`miq.io.budget`, checked before reading).
    """
    import tifffile

    with ImageSource.open(path, memory_budget=memory_budget) as source:
        # the file's planes as stored (no float copy): one plane at a time is defocused, so
        # the peak is the file plus one plane's simulation, whatever the number of planes
        planes = [plane.data for plane in source.planes(native_integers=True)]
        shape = (len(planes), *planes[0].shape) if len(planes) > 1 else planes[0].shape
        written = []
        for z_um in depths_um:
            pages = (_defocused_dn(plane, z_um, optics, exposure, seed, noise) for plane in planes)
            out = Path(out_dir) / f"{Path(path).stem}_defocus_{z_um:g}um.tif"
            with atomic_write(out) as fh:
                # one grey page per plane, so that a 3- or 4-plane stack is not taken for RGB(A)
                tifffile.imwrite(
                    fh,
                    data=pages,
                    shape=shape,
                    dtype=np.uint16,
                    photometric="minisblack",
                    metadata={"axes": "ZYX" if len(planes) > 1 else "YX"},
                )
            written.append(out)
    return written


def _defocused_dn(
    plane: np.ndarray, z_um: float, optics: Optics, exposure: float, seed: int, noise: bool
) -> np.ndarray:
    """One plane (Y, X) in DN defocused by ``z_um`` µm through `miq.optics.degrade`: uint16 DN."""
    unit = restore_offset(plane) / DN_FULL_SCALE
    dn = degrade(unit, z_um, optics=optics, exposure_factor=exposure, rng=seed, noise=noise)
    return np.round(dn * DN_FULL_SCALE).clip(0, DN_FULL_SCALE).astype(np.uint16)
