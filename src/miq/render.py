"""Annotated overlay images: grayscale image with patch borders, hue = level, brightness = certainty.

Colours: level 0 red → level 10 blue (hue 0° → 240°, like the Fiji plug-in's spectrum, so the
scale does not wrap back to red); each border colour is multiplied by the patch certainty, so an
uncertain patch (e.g. empty background) has a dark border. Invalid (constant) patches get none.
"""

from __future__ import annotations

import colorsys

import numpy as np

__all__ = ["level_colors", "overlay_image"]


def level_colors(n_levels: int = 11) -> np.ndarray:
    """RGB uint8 colours (n_levels, 3): level 0 red → last level blue."""
    hues = np.linspace(0.0, 240.0 / 360.0, n_levels)
    return np.array(
        [[round(255 * v) for v in colorsys.hsv_to_rgb(h, 1.0, 1.0)] for h in hues], np.uint8
    )


def _gray8(image: np.ndarray) -> np.ndarray:
    """The image contrast-stretched to uint8 between its 0.5th and 99.8th percentiles (taken on
    a regular subsample of at most ~2^16 pixels: as good for display, and fast on large planes)."""
    data = np.asarray(image)
    step = max(1, int(np.sqrt(data.size / 2**16)))
    lo, hi = (float(v) for v in np.percentile(data[::step, ::step], [0.5, 99.8]))
    if hi <= lo:
        hi = lo + 1.0
    scaled = data.astype(np.float32)
    scaled -= lo
    scaled *= 255.0 / (hi - lo)
    np.clip(scaled, 0, 255, out=scaled)
    return scaled.astype(np.uint8)


def overlay_image(
    image: np.ndarray, assessment, *, title: str = "", border_px: int = 3, downsample: int = 1
):
    """Annotated RGB overlay (a ``PIL.Image``) of an `miq.ImageAssessment`.

    The image is contrast-stretched (0.5–99.8th percentile); below it, a legend bar of level colours
    and a line with the whole-image level, defocus, certainty and in-focus flag. ``image`` may be
    the assessed plane reduced by an integer factor ``downsample`` (rows and columns 0, f, 2f …):
    patch borders are then drawn at that scale.
    """
    from PIL import Image, ImageDraw, ImageFont

    grid = assessment.grid
    k = assessment.patch_probabilities.shape[-1]
    colors = level_colors(k).astype(np.float32)
    gray = _gray8(image)
    f = max(1, int(downsample))
    p = max(1, round(grid.patch_size / f))
    b = max(1, min(border_px, p // 6)) if f > 1 else border_px
    h, w = gray.shape
    font = ImageFont.load_default()
    bar_h, text_h = 18, 34
    canvas = Image.new("RGB", (max(w, 420), h + bar_h + text_h), (0, 0, 0))
    canvas.paste(Image.fromarray(gray, "L").convert("RGB"), (0, 0))
    draw = ImageDraw.Draw(canvas)
    levels = assessment.patch_level
    tint = (colors[np.maximum(levels, 0)] * assessment.patch_certainty[..., None]).astype(np.uint8)
    for i, y in enumerate(-(-grid.ys // f)):
        for j, x in enumerate(-(-grid.xs // f)):
            if levels[i, j] >= 0:  # the border: b px inside the patch's p × p square
                draw.rectangle(
                    [int(x), int(y), int(x) + p - 1, int(y) + p - 1],
                    outline=tuple(int(v) for v in tint[i, j]),
                    width=b,
                )
    if canvas.width > w:  # the patches' borders stay within the picture
        canvas.paste((0, 0, 0), (w, 0, canvas.width, h))
    cell = canvas.width / k
    for lvl in range(k):
        x0 = int(lvl * cell)
        draw.rectangle(
            [x0, h, int((lvl + 1) * cell) - 1, h + bar_h - 1],
            fill=tuple(int(v) for v in colors[lvl]),
        )
        draw.text((x0 + 3, h + 3), str(lvl), fill=(0, 0, 0), font=font)
    a = assessment
    flag = "IN FOCUS" if a.in_focus else "OUT OF FOCUS"
    line1 = (
        f"level {a.level} (mean {a.level_mean:.2f}, ~{a.defocus_um:.1f} um)  "
        f"certainty {a.certainty_aggregate:.2f}  P(in focus) {a.p_in_focus:.2f}  {flag}"
    )
    draw.text((4, h + bar_h + 2), line1, fill=(255, 255, 255), font=font)
    draw.text(
        (4, h + bar_h + 17),
        (title + "  |  " if title else "")
        + "border hue = level (0 red = in focus ... 10 blue), brightness = certainty",
        fill=(200, 200, 200),
        font=font,
    )
    return canvas
