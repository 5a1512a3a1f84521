"""The simulator against the original implementation's golden values (original-system.md §2.6)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FIXTURES, read_png16
from miq.optics import LevelTable, Optics, blur, defocus_psf, degrade, poisson_noise, set_exposure

DEFAULT = Optics()


def test_psf_point_goldens():
    assert defocus_psf(0, DEFAULT, width_px=1, pixel_size_um=1, normalize=None)[
        0, 0
    ] == pytest.approx(0.25, abs=1e-9)
    assert defocus_psf(1, DEFAULT, width_px=1, pixel_size_um=1, normalize=None)[
        0, 0
    ] == pytest.approx(0.20264, abs=1e-5)
    three = defocus_psf(0, DEFAULT, width_px=3, pixel_size_um=1, normalize=None)
    assert three[0, 1] == pytest.approx(0.00114255, abs=1e-8)


def test_psf_matches_original_png():
    golden = read_png16(FIXTURES / "psf.png") / 65535.0
    psf = defocus_psf(4, DEFAULT, width_px=21, pixel_size_um=5 / 21, normalize="max")
    assert np.abs(psf - golden).max() < 2e-5
    assert psf[10, 10] < 1e-3  # the dark centre of the defocus ring


def test_in_focus_psf_is_nearly_a_delta():
    psf = defocus_psf(0, DEFAULT, width_px=5, pixel_size_um=1, normalize="max")
    assert psf[2, 2] == pytest.approx(1.0)
    assert np.delete(psf.ravel(), 12).max() <= 0.005


@pytest.mark.parametrize("z", [0.0, 3.0, 10.0, 20.0])
def test_psf_is_symmetric_and_sums_to_one(z):
    psf = defocus_psf(z, DEFAULT)
    assert psf.shape == (51, 51)
    assert psf.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(psf, psf.T, atol=1e-15)
    np.testing.assert_allclose(psf, psf[::-1, ::-1], atol=1e-15)


def test_blur_spreads_with_defocus():
    """The 80 %-energy diameter grows monotonically with z (≈ 3 px per 2 µm level)."""

    def diameter(psf):
        r = np.hypot(*np.mgrid[-25:26, -25:26])
        order = np.argsort(r.ravel())
        energy = np.cumsum(psf.ravel()[order])
        return 2 * r.ravel()[order][np.searchsorted(energy, 0.8)]

    table = LevelTable()
    diameters = [diameter(defocus_psf(z, DEFAULT)) for z in table.defocus_um]
    assert all(b > a for a, b in zip(diameters[1:], diameters[2:]))
    assert 20 < diameters[-1] < 32


def test_even_width_rejected():
    with pytest.raises(ValueError, match="odd"):
        defocus_psf(1, DEFAULT, width_px=4)
    with pytest.raises(ValueError, match="odd"):
        Optics(psf_width_px=50)


def test_exposure_goldens(cell_image):
    sat = set_exposure(cell_image, 100, offset_photoelectrons=0)
    np.testing.assert_allclose(
        np.round(sat * 65535), read_png16(FIXTURES / "cell_image_saturated.png"), atol=0.5
    )
    off = set_exposure(cell_image, 100, offset_photoelectrons=100)
    np.testing.assert_allclose(
        np.round(off * 65535),
        read_png16(FIXTURES / "cell_image_saturated_with_offset.png"),
        atol=0.5,
    )
    np.testing.assert_allclose(set_exposure(cell_image, 1.0), cell_image, atol=1e-12)
    tiny = set_exposure(cell_image, 1e-4, offset_photoelectrons=0)
    assert tiny.max() / cell_image.max() == pytest.approx(1e-4)


def test_poisson_noise_is_bit_exact_with_original(cell_image):
    noisy = poisson_noise(cell_image, np.random.RandomState(0), offset_photoelectrons=0)
    np.testing.assert_array_equal(
        np.round(noisy * 65535), read_png16(FIXTURES / "cell_image_poisson_noise_py.png")
    )


def test_blur_with_golden_psf(cell_image):
    psf = read_png16(FIXTURES / "psf.png")
    out = np.round(blur(cell_image, psf) * 65535)
    assert np.abs(out - read_png16(FIXTURES / "cell_image_airy_blurred.png")).max() <= 1


def test_degrade_is_bit_exact_with_original(cell_image):
    optics = Optics(psf_width_px=21, pixel_size_um=5 / 21)
    out = degrade(cell_image, 20, optics=optics, offset_photoelectrons=0, rng=0)
    np.testing.assert_array_equal(
        np.round(out * 65535), read_png16(FIXTURES / "cell_image_degraded.png")
    )


def test_degrade_at_zero_without_noise_is_identity(cell_image):
    out = degrade(cell_image, 0, optics=Optics(psf_width_px=21, pixel_size_um=40 / 21), noise=False)
    np.testing.assert_allclose(out, cell_image, atol=1e-4)


def test_degrade_seeds_are_explicit(cell_image):
    a = degrade(cell_image, 4, rng=np.random.default_rng(3))
    b = degrade(cell_image, 4, rng=np.random.default_rng(3))
    c = degrade(cell_image, 4, rng=np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_level_table():
    table = LevelTable()
    assert table.n_levels == 11
    assert table.defocus_um[0] == 0 and table.defocus_um[-1] == 20
    assert table.um_per_level == 2.0


def test_degrade_blurs_with_a_given_kernel_instead_of_the_simulators(cell_image):
    optics = Optics(psf_width_px=21, pixel_size_um=5 / 21)
    simulated = degrade(cell_image, 6, optics=optics, rng=5)
    # the simulator's own kernel passed in gives the same image, noise included
    np.testing.assert_array_equal(
        degrade(cell_image, 99.0, optics=optics, rng=5, psf=defocus_psf(6, optics)), simulated
    )
    box = np.ones((5, 5))  # any odd kernel: blurred by it (normalised), z unused
    out = degrade(cell_image, 0.0, optics=optics, psf=box, noise=False, offset_photoelectrons=0)
    np.testing.assert_allclose(out, blur(cell_image, box / 25.0).clip(None, 1.0), atol=1e-12)
