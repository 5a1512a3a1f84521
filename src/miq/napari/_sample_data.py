"""Sample data: the bundled BBBC022 Hoechst field at a few simulated defocus distances."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEFOCUS_SERIES_UM", "defocus_series", "make_defocus_series"]

#: Simulated defocus of each plane in µm (plane 1 is in focus; the series starts 4 µm below).
DEFOCUS_SERIES_UM = (-4.0, 0.0, 4.0, 10.0, 18.0)
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "bbbc022_A01_s3_hoechst.tif"


def defocus_series(z_um: tuple[float, ...] = DEFOCUS_SERIES_UM) -> np.ndarray:
    """The bundled sample defocused by :func:`miq.optics.degrade` to each of ``z_um`` (µm; 0 =
    the original image, unchanged) with the default :class:`miq.optics.Optics` (NA 0.5,
    0.65 µm/px) and seed ``int(abs(z))``, as ``miq demo`` does.

    Returns a (Z, 520, 696) uint16 stack (DN, 65535 = full scale).
    """
    import tifffile

    from miq.optics import Optics, degrade

    image = tifffile.imread(SAMPLE).astype(np.float64) / 65535.0
    planes = [
        image if z == 0 else degrade(image, z, optics=Optics(), rng=int(abs(z))) for z in z_um
    ]
    return np.round(np.stack(planes) * 65535.0).astype(np.uint16)


def make_defocus_series() -> list[tuple[Any, dict[str, Any], str]]:
    """napari sample-data command: one image layer, the stack of :func:`defocus_series`, with
    pixel size 0.65 µm in Y and X (the Z axis is the plane index; the planes' defocus in µm is in
    ``metadata["defocus_um"]``)."""
    return [
        (
            defocus_series(),
            {
                "name": "BBBC022 defocus series",
                "scale": (1.0, 0.65, 0.65),
                "metadata": {"defocus_um": list(DEFOCUS_SERIES_UM)},
            },
            "image",
        )
    ]
