"""Resampling an image to the pixel size the model was trained at.

The model's levels are defined in µm of defocus at its own pixel size (0.65 µm/px for the
bundled model), so the blur it reads is in model pixels. An image sampled at another pixel size
must be resampled first for its level to be comparable: a 0.325 µm/px image is halved, a
1.3 µm/px image doubled. Downsampling averages areas (as camera binning does, so pixel noise stays
independent); upsampling is bicubic and cannot restore detail the camera never recorded. (The
bundled model is trained with coarse-camera patches upsampled bilinearly; bicubic upsampling at
inference measured better: benchmarks/robustness.py, 2× binning moves the level by ≤ 1 instead of
≤ 2.)
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "rescale_factor",
    "resample_to_pixel_size",
    "trusted_pixel_size",
    "pixel_size_rule",
    "MAX_RESAMPLED_PIXELS",
]

# Pixel sizes closer than this (relative) are treated as equal: no resampling.
_TOLERANCE = 0.02
#: largest plane (px) resampling may produce: beyond, the plane is refused (a recorded pixel size
#: of 100 µm would otherwise upsample a 1024² plane to 158 000² px)
MAX_RESAMPLED_PIXELS = 64 * 2**20


def trusted_pixel_size(value: float | None) -> float | None:
    """A recorded pixel size (µm) when it can be used: finite and between 1 nm and 1 mm per px;
    else None (the file's metadata is then ignored)."""
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) and 1e-3 <= value <= 1e3 else None


def pixel_size_rule(
    given_um: float | None,
    recorded_um: float | None,
    use_recorded: bool,
    model_pixel_size_um: float,
) -> tuple[float, str, bool]:
    """The pixel size (µm) an image is taken to have, where it comes from and whether it is
    resampled to the model's: ``given_um`` (``"option"``) when given; else the size its file
    records when ``use_recorded`` and it can be trusted (`trusted_pixel_size`; ``"file"``);
    else the model's (``"model"``). Resampled when it differs from the model's by more than
    2 % (`rescale_factor`)."""
    if given_um is not None:
        size, origin = float(given_um), "option"
    elif use_recorded and trusted_pixel_size(recorded_um) is not None:
        size, origin = float(recorded_um), "file"
    else:
        size, origin = float(model_pixel_size_um), "model"
    return size, origin, rescale_factor(size, model_pixel_size_um) != 1.0


def rescale_factor(pixel_size_um: float, model_pixel_size_um: float) -> float:
    """Output px per input px (> 1: upsample) to go from ``pixel_size_um`` to the model's.

    Returns exactly 1.0 when the two agree within 2 %.
    """
    if not (pixel_size_um > 0 and np.isfinite(pixel_size_um)):
        raise ValueError(f"pixel size must be a positive number of µm, got {pixel_size_um}")
    factor = float(pixel_size_um) / float(model_pixel_size_um)
    return 1.0 if abs(factor - 1.0) <= _TOLERANCE else factor


def resample_to_pixel_size(
    image: np.ndarray, pixel_size_um: float, model_pixel_size_um: float
) -> np.ndarray:
    """Resample a 2D image (H, W) from ``pixel_size_um`` to ``model_pixel_size_um`` (float32).

    Output shape is round(H·f), round(W·f) with f = pixel_size_um / model_pixel_size_um;
    intensities (DN) are preserved on average. Returns the input as float32 when f is 1.
    32/64-bit integers and float64 with an offset beyond float32's exact range (|min| > 2**24,
    e.g. 1e12 DN) are resampled less their minimum and returned as float64 (min added back), so
    that the differences between pixels keep their precision.
    """
    from PIL import Image

    factor = rescale_factor(pixel_size_um, model_pixel_size_um)
    data, offset = _less_offset(np.asarray(image))
    if factor == 1.0:
        return data if offset == 0.0 else data.astype(np.float64) + offset
    h, w = data.shape
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    if size[0] * size[1] > MAX_RESAMPLED_PIXELS:
        from .errors import ImageContentError

        raise ImageContentError(
            f"resampling {w}×{h} px from {pixel_size_um:.4g} to {model_pixel_size_um:.4g} µm/px "
            f"would make {size[0]}×{size[1]} px (more than {MAX_RESAMPLED_PIXELS // 2**20} MP); "
            "check the pixel size, or give --pixel-size"
        )
    method = Image.Resampling.BOX if factor < 1 else Image.Resampling.BICUBIC
    resized = Image.fromarray(np.ascontiguousarray(data)).resize(size, method)
    if offset != 0.0:
        return np.asarray(resized, dtype=np.float64) + offset
    return np.asarray(resized, dtype=np.float32)


def _less_offset(data: np.ndarray) -> tuple[np.ndarray, float]:
    """``data`` (H, W) as float32, less its minimum when its values are beyond float32's exact
    range (|min| > 2**24) and its type is wider than float32 (32/64-bit integers, float64;
    subtracted in float64); and the offset subtracted (0.0 when none)."""
    wide = data.dtype.kind in "iu" and data.dtype.itemsize > 2
    wide = wide or (data.dtype.kind == "f" and data.dtype.itemsize > 4)
    if wide and data.size:
        lo = float(data.min())
        if np.isfinite(lo) and abs(lo) > 2**24:
            return (data.astype(np.float64) - lo).astype(np.float32), lo
    return data.astype(np.float32, copy=False), 0.0
