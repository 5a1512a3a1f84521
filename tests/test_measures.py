"""Classical focus measures: definitions, properties, and cross-checks."""

from __future__ import annotations

import numpy as np
import pytest

from miq.measures import (
    MEASURES,
    brenner,
    correlation,
    focus_score,
    local_focus_score,
    measure_all,
    power_log_log_slope,
    tenengrad,
    variance_of_laplacian,
)
from miq.optics import degrade


def test_focus_score_definition():
    x = np.array([[1.0, 3.0], [5.0, 7.0]])
    assert focus_score(x) == pytest.approx(((x - 4) ** 2).sum() / (4 * 4))
    assert focus_score(np.zeros((5, 5))) == 0.0


def test_local_focus_score_is_dispersion_of_tile_scores():
    rng = np.random.default_rng(0)
    x = rng.random((40, 40)) + 1
    tiles = [x[i : i + 20, j : j + 20] for i in (0, 20) for j in (0, 20)]
    v = np.array([((t - t.mean()) ** 2).sum() / (t.size * t.mean()) for t in tiles])
    assert local_focus_score(x, 20) == pytest.approx(v.var() / np.median(v))


def test_variance_of_laplacian_matches_scipy():
    from scipy import ndimage

    x = np.random.default_rng(1).random((64, 80))
    expected = ndimage.laplace(x)[1:-1, 1:-1].var()  # scipy's kernel is the negative of ours
    assert variance_of_laplacian(x) == pytest.approx(expected)


def test_tenengrad_matches_scipy_sobel():
    from scipy import ndimage

    x = np.random.default_rng(2).random((50, 60))
    g = ndimage.sobel(x, axis=0) ** 2 + ndimage.sobel(x, axis=1) ** 2
    assert tenengrad(x) == pytest.approx(g[1:-1, 1:-1].mean())


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_measures_are_monotone_in_simulated_defocus(name, sample_image):
    """Every measure orders 0, 6 and 16 µm of defocus (no noise); correlation rises with blur."""
    big = sample_image / 65535.0
    values = [MEASURES[name](degrade(big, z, noise=False)) for z in (0.0, 6.0, 16.0)]
    if name.startswith("correlation"):
        values = [-v for v in values]
    assert values[0] > values[1] > values[2], values


@pytest.mark.parametrize("scale", [1, 5, 20])
def test_correlation_matches_scikit_image_glcm(sample_image, scale):
    skimage_feature = pytest.importorskip("skimage.feature")
    x = sample_image.astype(np.float64)
    q = np.minimum((x - x.min()) / (x.max() - x.min()) * 8, 7).astype(np.uint8)
    glcm = skimage_feature.graycomatrix(q, [scale], [0], levels=8, symmetric=False, normed=True)
    expected = skimage_feature.graycoprops(glcm, "correlation")[0, 0]
    assert correlation(x, scale) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_constant_and_tiny_images_do_not_crash(name):
    assert MEASURES[name](np.full((100, 100), 5.0)) == 0.0
    assert np.isfinite(MEASURES[name](np.random.default_rng(3).random((8, 8))))


def test_plls_is_gain_and_offset_invariant_and_negative(sample_image):
    big = sample_image.astype(np.float64)
    slope = power_log_log_slope(big)
    assert slope < 0
    assert power_log_log_slope(big * 13 + 200) == pytest.approx(slope, rel=1e-9)


def test_measure_all_and_brenner():
    x = np.zeros((10, 10))
    x[:, 5:] = 1.0
    assert brenner(x) == pytest.approx(20 / 100)  # two columns of 1² differences
    assert set(measure_all(x)) == set(MEASURES)
