"""PNG, JPEG and BMP files read through Pillow: grey images (also palette images whose palette is
grey, and grey with a constant alpha channel) as one plane, colour images as samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ImageContentError
from .budget import over_budget

__all__ = ["read_pillow"]

_COLOUR_MODES = ("RGB", "RGBA", "P", "PA", "CMYK", "LA", "La", "YCbCr")


def read_pillow(path: Path, memory_budget: int) -> tuple[np.ndarray, str]:
    """(pixels, axes) of a Pillow image: ``"YX"`` for grey images, ``"YXS"`` (RGB or RGBA
    samples) for colour ones. A palette image whose palette entries in use are all grey is read
    as its grey values; a grey image with an alpha channel (mode ``LA``) as its grey values
    when its alpha is constant.

    Raises
    ------
    ImageContentError : an image whose pixels (w × h × samples, declared in its header) would
        not fit in ``memory_budget`` bytes (checked before decoding), or a grey image whose
        alpha channel varies (transparency that the grey values alone do not show).
    """
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
        samples = len(im.getbands())
        need = 3 * w * h * max(samples, 3) * (2 if im.mode.startswith("I;16") else 1)
        if need > memory_budget:
            what = f"{w}×{h} px image with {samples} samples per pixel"
            raise over_budget(str(path), what, need, memory_budget)
        if im.mode in ("P", "PA"):
            grey = _grey_palette(im)
            if grey is not None:
                return grey, "YX"
        if im.mode in ("LA", "La"):
            grey, alpha = (np.asarray(band) for band in im.split())
            if alpha.min() != alpha.max():
                raise ImageContentError(
                    f"{path}: grey image with a varying alpha (transparency) channel; miq rates "
                    "the grey values of opaque images: save it without transparency"
                )
            return grey, "YX"
        if im.mode in _COLOUR_MODES:
            arr = np.asarray(im.convert("RGBA" if "A" in im.mode else "RGB"))
            return arr, "YXS"
        if im.mode == "I;16" or im.mode.startswith("I;16"):
            return np.asarray(im, dtype=np.uint16), "YX"
        return np.asarray(im), "YX"


def _grey_palette(im) -> np.ndarray | None:
    """The grey values of a palette image whose entries in use are all grey (R = G = B), as
    uint8 (Y, X); None for a colour palette."""
    palette = im.getpalette("RGB")
    if palette is None:
        return None
    lut = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    index = np.asarray(im.convert("P") if im.mode == "PA" else im)
    used = np.unique(index)
    if used.max() >= len(lut):
        return None
    colours = lut[used]
    if not ((colours[:, 0] == colours[:, 1]) & (colours[:, 1] == colours[:, 2])).all():
        return None
    return lut[:, 0][index]
