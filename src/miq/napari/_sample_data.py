"""Sample data: the bundled BBBC022 Hoechst field at a few simulated defocus distances."""

from __future__ import annotations

from typing import Any

from ..data import DEFOCUS_SERIES_UM, defocus_series

__all__ = ["DEFOCUS_SERIES_UM", "defocus_series", "make_defocus_series"]


def make_defocus_series() -> list[tuple[Any, dict[str, Any], str]]:
    """napari sample-data command: one image layer, the stack of `miq.data.defocus_series`,
    with pixel size 0.65 µm in Y and X (the Z axis is the plane index; the planes' defocus in µm
    is in the layer's ``defocus_um`` metadata)."""
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
