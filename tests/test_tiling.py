from __future__ import annotations

import numpy as np
import pytest

from miq.tiling import extract_patches, paint, patch_grid


@pytest.mark.parametrize(
    "shape", [(84, 84), (85, 84), (520, 696), (168, 253), (1000, 90), (2048, 2048)]
)
def test_grid_covers_every_pixel_with_patches_inside(shape):
    grid = patch_grid(shape, 84)
    covered = np.zeros(shape, int)
    for y in grid.ys:
        for x in grid.xs:
            assert 0 <= y and y + 84 <= shape[0] and 0 <= x and x + 84 <= shape[1]
            covered[y : y + 84, x : x + 84] += 1
    assert covered.min() >= 1
    assert grid.shape == (-(-shape[0] // 84), -(-shape[1] // 84))


def test_grid_of_exact_multiple_has_no_overlap():
    grid = patch_grid((168, 252), 84)
    assert list(grid.ys) == [0, 84] and list(grid.xs) == [0, 84, 168]


def test_too_small_image_rejected():
    with pytest.raises(ValueError, match="smaller than one 84"):
        patch_grid((83, 500), 84)


def test_extract_and_paint_round_trip():
    rng = np.random.default_rng(0)
    image = rng.random((200, 300)).astype(np.float32)
    grid = patch_grid(image.shape, 84)
    patches = extract_patches(image, grid)
    assert patches.shape == grid.shape + (84, 84)
    np.testing.assert_array_equal(patches[-1, -1], image[-84:, -84:])
    values = np.arange(grid.n_patches).reshape(grid.shape)
    painted = paint(values, grid)
    assert painted.shape == image.shape
    assert painted[0, 0] == 0 and painted[-1, -1] == values[-1, -1]
    assert set(np.unique(painted)) == set(values.ravel())
