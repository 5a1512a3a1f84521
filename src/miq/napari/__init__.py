"""napari plug-in for miq: a dock widget that rates an image layer's focus and overlays the
patch levels, and a sample defocus series. Needs the ``napari`` extra.

The plug-in is a thin layer over miq's public API (`miq.assess`,
`miq.best_focus.best_plane`, `miq.render.level_colors`, `miq.tiling.paint`);
its manifest is ``napari.yaml`` beside this file. Importing this package is cheap: the widget
module (and magicgui) load on first use of its names.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "FocusQualityWidget",
    "defocus_series",
    "make_defocus_series",
    "rate_layer_data",
    "show_results",
    "summary_text",
]

_LAZY = {
    "FocusQualityWidget": "._widget",
    "rate_layer_data": "._widget",
    "show_results": "._widget",
    "summary_text": "._widget",
    "defocus_series": "._sample_data",
    "make_defocus_series": "._sample_data",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'miq.napari' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
