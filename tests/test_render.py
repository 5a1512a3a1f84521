"""The annotated overlay (`miq.render.overlay_image`): patch borders in the level's colour times
the certainty, nothing drawn for invalid patches, the grayscale image inside."""

from __future__ import annotations

import numpy as np
import pytest

import miq
from miq.render import level_colors, overlay_image


@pytest.mark.parametrize("downsample", [1, 2])
def test_borders_have_the_level_colour_times_certainty_and_skip_invalid_patches(
    sample_image, downsample
):
    plane = sample_image[: 2 * 84, : 3 * 84]
    a = miq.assess(plane, miq.load_model(threads=1))
    a.patch_valid = a.patch_valid.copy()
    a.patch_valid[1, 2] = False  # as a constant patch would be
    picture = np.asarray(overlay_image(plane[::downsample, ::downsample], a, downsample=downsample))
    p = 84 // downsample
    b = 3 if downsample == 1 else min(3, p // 6)
    colors = level_colors(11).astype(np.float32)
    for i in range(2):
        for j in range(3):
            y, x = i * p, j * p
            centre = picture[y + p // 2, x + p // 2]
            assert centre[0] == centre[1] == centre[2]  # the image, in gray
            edges = [picture[y, x + p // 2], picture[y + p - 1, x + p // 2]]
            edges += [picture[y + p // 2, x + b - 1], picture[y + p // 2, x + p - b]]
            if not a.patch_valid[i, j]:
                assert all(e[0] == e[1] == e[2] for e in edges)  # no border
                continue
            want = (colors[a.patch_level[i, j]] * a.patch_certainty[i, j]).astype(np.uint8)
            for edge in edges:
                np.testing.assert_array_equal(edge, want)
            inside = picture[y + p // 2, x + b]  # just inside the border: the image again
            assert inside[0] == inside[1] == inside[2]
    assert picture.shape[0] == 2 * p + 18 + 34  # the picture, the legend bar, two text lines
