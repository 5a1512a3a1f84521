"""The defocus simulator applied to image files (``miq simulate``): in-focus planes in, defocused
uint16 TIFFs out, as a 16-bit camera would record them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .io import ImageSource, atomic_write
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
) -> list[Path]:
    """Defocus every plane of an in-focus image file to each of ``depths_um`` (µm).

    Pixel values are DN of a 16-bit camera (offset 100 DN, 1 photoelectron per DN, as in the
    original simulator: `miq.optics.degrade`); a plane that reaches below the offset (8-bit
    files, background-subtracted images) has it put back under its darkest pixel first
    (`miq.optics.restore_offset`), so that its background is not cut off. Each depth is written as
    ``out_dir/{stem}_defocus_{z}um.tif``, uint16, one plane or a stack (Z, Y, X) of the file's
    planes. Returns the files written. Raises `miq.errors.MiqError` for an unreadable
    input.
    """
    import tifffile

    with ImageSource.open(path) as source:
        planes = [restore_offset(plane.data) / DN_FULL_SCALE for plane in source.planes()]
    written = []
    for z_um in depths_um:
        stack = [
            degrade(
                plane,
                z_um,
                optics=optics,
                exposure_factor=exposure,
                rng=seed,
                noise=noise,
            )
            * DN_FULL_SCALE
            for plane in planes
        ]
        data = np.round(np.stack(stack)).clip(0, DN_FULL_SCALE).astype(np.uint16)
        out = Path(out_dir) / f"{Path(path).stem}_defocus_{z_um:g}um.tif"
        with atomic_write(out) as fh:
            tifffile.imwrite(fh, data[0] if len(stack) == 1 else data)
        written.append(out)
    return written
