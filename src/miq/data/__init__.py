"""Data that ship with miq: the bundled sample field and its simulated defocus series.

The sample is a BBBC022 Hoechst field (U2OS cells, 20×, 520×696 px, uint16; CC0, see
``ATTRIBUTION.md`` beside this file). ``miq demo``, the napari sample and the tests use it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["SAMPLE_PATH", "DEFOCUS_SERIES_UM", "sample_image", "defocus_series"]

#: the bundled in-focus field (TIFF, uint16, 520 × 696 px, 0.65 µm/px)
SAMPLE_PATH = Path(__file__).parent / "bbbc022_A01_s3_hoechst.tif"
#: simulated defocus (µm) of the napari sample's planes (plane 1 is in focus)
DEFOCUS_SERIES_UM = (-4.0, 0.0, 4.0, 10.0, 18.0)


def sample_image() -> np.ndarray:
    """The bundled sample field: (520, 696) uint16 (DN)."""
    import tifffile

    return tifffile.imread(SAMPLE_PATH)


def defocus_series(z_um: tuple[float, ...] = DEFOCUS_SERIES_UM) -> np.ndarray:
    """The bundled sample defocused by `miq.optics.degrade` to each of ``z_um`` (µm; 0 =
    the original image, unchanged) with the default `miq.optics.Optics` (NA 0.5,
    0.65 µm/px) and noise seed ``int(abs(z))``.

    Returns a (Z, 520, 696) uint16 stack (DN, 65535 = full scale).
    """
    from ..optics import Optics, degrade

    image = sample_image().astype(np.float64) / 65535.0
    planes = [
        image if z == 0 else degrade(image, z, optics=Optics(), rng=int(abs(z))) for z in z_um
    ]
    return np.round(np.stack(planes) * 65535.0).astype(np.uint16)
