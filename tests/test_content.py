"""Empty fields (camera background only) against real content, however far out of focus
(`miq.content`; issue 19, item 2)."""

from __future__ import annotations

import numpy as np
import pytest

from miq.content import (
    EMPTY_THRESHOLD,
    content_score,
    is_empty,
    noise_sample_positions,
    noise_sigma,
    noise_sigma_of_samples,
    patch_foreground,
    patch_validity_and_foreground,
)
from miq.optics import Optics, degrade


def _illumination(n: int, kind: str) -> np.ndarray:
    y, x = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")
    if kind == "flat":
        return np.ones((n, n))
    if kind == "gradient":  # ±20 % across the field
        return 1 + 0.2 * (x + y) / 2
    # cos⁴ vignetting, corners at 76 % of the centre, times the gradient
    vignette = np.cos(np.arctan(np.sqrt((x**2 + y**2) / 2) * 0.38)) ** 4
    return vignette * (1 + 0.2 * (x + y) / 2)


def _background(n: int, offset: float, kind: str = "flat", read: float = 0.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    mean = (offset + 50.0) * _illumination(n, kind)
    v = rng.poisson(mean).astype(np.float64)
    if read:
        v += rng.normal(0.0, read, v.shape)
    return np.clip(np.round(v), 0, 65535).astype(np.uint16)


def _to_uint16(unit: np.ndarray) -> np.ndarray:
    return np.round(np.clip(unit, 0, 1) * 65535).astype(np.uint16)


@pytest.fixture(scope="module")
def defocused(sample_image) -> np.ndarray:
    """The bundled field simulated 20 µm out of focus (level 10)."""
    return _to_uint16(degrade(sample_image / 65535.0, 20.0, optics=Optics(), rng=0))


@pytest.mark.parametrize("kind", ["flat", "gradient", "vignette"])
@pytest.mark.parametrize("offset, read", [(100, 0.0), (1000, 5.0)])
def test_camera_backgrounds_are_empty(kind, offset, read):
    plane = _background(512, offset, kind, read)
    assert content_score(plane) < EMPTY_THRESHOLD / 2
    assert is_empty(plane)


def test_8bit_and_integer_valued_float_backgrounds_are_empty():
    plane16 = _background(512, 100, "vignette")
    shifted = (plane16 >> 4).astype(np.uint8)  # a 12-bit camera written as 8 bits: ~6 DN ± 0.6
    assert is_empty(shifted)
    assert is_empty(shifted.astype(np.float32))  # as read_planes returns it by default
    lo, hi = np.percentile(plane16, [0.01, 99.99])
    stretched = np.clip(np.round((plane16 - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)
    assert is_empty(stretched)


def test_hot_pixels_do_not_make_a_background_content():
    plane = _background(512, 100)
    rng = np.random.default_rng(1)
    plane[rng.integers(0, 512, 40), rng.integers(0, 512, 40)] = 65535
    assert is_empty(plane)


def test_tiny_background_is_empty():
    assert is_empty(_background(84, 100, "gradient"))
    assert is_empty(_background(96, 1000, read=5.0)[:84])


def test_sample_sharp_and_20um_out_of_focus_is_content(sample_image, defocused):
    assert content_score(sample_image) > 2 * EMPTY_THRESHOLD
    assert not is_empty(sample_image)
    assert content_score(defocused) > 2 * EMPTY_THRESHOLD
    assert not is_empty(defocused)


def test_dim_sample_20um_out_of_focus_is_content(sample_image):
    dim = _to_uint16(
        degrade(sample_image / 65535.0, 20.0, optics=Optics(), rng=0, exposure_factor=0.3)
    )
    assert content_score(dim) > EMPTY_THRESHOLD
    assert not is_empty(dim)


def test_a_few_defocused_nuclei_in_a_large_field_are_content(sample_image):
    background = float(np.median(sample_image))
    field = np.full((768, 768), background)
    crop = sample_image[200:300, 300:400].astype(np.float64)  # a few nuclei of the sample
    field[400:500, 300:400] = crop
    out = _to_uint16(degrade(field / 65535.0, 20.0, optics=Optics(), rng=0))
    assert not is_empty(out)


def test_constant_planes_are_empty():
    for plane in (
        np.zeros((128, 128), np.uint16),
        np.full((200, 300), 1000, np.uint16),
        np.full((100, 100), -3.5, np.float32),
        np.full((100, 100), 7, np.uint8),
    ):
        assert content_score(plane) == 0.0
        assert is_empty(plane)


def test_score_ignores_gain_and_offset(defocused):
    unit = defocused / 65535.0 + 1e-7  # float, not integer-valued
    ref = content_score(unit)
    for gain in (0.01, 3.3, 1000.0):
        assert content_score(unit * gain) == pytest.approx(ref, rel=1e-6)
    for offset in (-2.0, 5.0):
        assert content_score(unit + offset) == pytest.approx(ref, rel=1e-4)
    assert content_score(unit.astype(np.float32)) == pytest.approx(ref, rel=1e-3)


def test_integer_dtypes_and_negative_offsets(defocused):
    ref = content_score(defocused)
    assert content_score(defocused.astype(np.int32) - 1000) == pytest.approx(ref, rel=1e-9)
    assert content_score(defocused.astype(np.uint32) + 100_000) == pytest.approx(ref, rel=1e-9)
    assert content_score(defocused.astype(np.float64)) == pytest.approx(ref, rel=1e-9)
    assert content_score(defocused.astype(np.float64) - 1000) == pytest.approx(ref, rel=1e-9)


def test_noiseless_structure_is_content():
    y, x = np.mgrid[:128, :128]
    plane = np.where((x - 64) ** 2 + (y - 64) ** 2 < 100, 0.75, 0.25)
    assert content_score(plane) == float("inf")
    assert not is_empty(plane)


# --- per patch: which patches carry information on focus (whole-image aggregation) ----------


def _patches(plane: np.ndarray, p: int = 84) -> np.ndarray:
    n = plane.shape[0] // p
    return plane[: n * p, : n * p].reshape(n, p, n, p).swapaxes(1, 2).reshape(-1, p, p)


@pytest.mark.parametrize("kind", ["flat", "vignetting"])
@pytest.mark.parametrize("offset", [100.0, 1000.0])
def test_background_patches_are_not_foreground(kind, offset):
    plane = _background(840, offset, kind, read=2.0)
    # a patch in a vignetted corner of a bright background may pass (its ramp is ~1 σ): few do
    fg = patch_foreground(_patches(plane), noise_sigma(plane))
    assert fg.mean() <= 0.03, fg.mean()
    as_8bit = np.round((plane - plane.min()) / np.ptp(plane) * 255).astype(np.uint8)
    assert patch_foreground(_patches(as_8bit), noise_sigma(as_8bit)).mean() <= 0.03


def test_faint_spot_and_fine_texture_are_foreground():
    rng = np.random.default_rng(1)
    sigma = 10.0
    noise = rng.normal(1000.0, sigma, (3, 84, 84))
    y, x = np.mgrid[:84, :84]
    noise[1] += 4 * sigma * np.exp(-((y - 42) ** 2 + (x - 42) ** 2) / (2 * 6.0**2))  # dim blob
    noise[2] += 3 * sigma * ((y + x) % 2)  # a pixel-scale texture the block means average out
    assert patch_foreground(noise, sigma).tolist() == [False, True, True]


def test_foreground_ignores_gain_and_offset(defocused):
    patches = _patches(defocused.astype(np.float64))
    fg = patch_foreground(patches, noise_sigma(defocused))
    assert 0 < fg.sum()
    scaled = defocused * 7.5 - 300.0
    assert (patch_foreground(_patches(scaled), noise_sigma(scaled)) == fg).all()


def test_noise_from_samples_is_the_planes_noise(defocused):
    rows, cols = noise_sample_positions(*defocused.shape)
    assert noise_sigma_of_samples(defocused[rows], defocused[:, cols]) == noise_sigma(defocused)


def test_without_noise_every_non_constant_patch_is_foreground():
    patches = np.zeros((3, 84, 84))
    patches[1, 40, 40] = 1.0  # one pixel
    patches[2] += np.arange(84) * 1e-3  # a faint ramp
    assert patch_foreground(patches, 0.0).tolist() == [False, True, True]


def test_validity_is_exactly_whether_a_patch_is_constant(defocused):
    """Validity comes from the foreground test's block means, falling back to the pixels only
    where those nearly agree: it must equal max > min for constant patches of any value,
    patches with a single pixel one float32 step off, and real ones."""
    real = _patches(defocused.astype(np.float32) / np.float32(defocused.max()))
    n_real = len(real)
    values = [0.0, 1.0, 0.7, 1e-30, 3.3e4, 0.1 + 1e-7]
    constant = np.stack([np.full((84, 84), v, np.float32) for v in values])
    nudged = constant.copy()
    for patch in nudged:
        patch[83, 83] = np.nextafter(patch[83, 83], np.float32(np.inf))
    patches = np.concatenate([real, constant, nudged])
    flat = patches.reshape(len(patches), -1)
    valid, foreground = patch_validity_and_foreground(patches, 1e-3)
    assert valid.tolist() == (flat.max(axis=1) > flat.min(axis=1)).tolist()
    assert valid.sum() == n_real + len(values)  # the real patches and the nudged ones
    blocks = patches.astype(np.float64).reshape(len(patches), 12, 7, 12, 7).mean(axis=(2, 4))
    spread = np.ptp(blocks.reshape(len(patches), -1), axis=1)
    reference = (spread >= 3.0 * 1e-3) | (flat.astype(np.float64).std(axis=1) >= 1.5 * 1e-3)
    assert foreground.tolist() == reference.tolist()  # the definition, computed another way
    assert not foreground[n_real : n_real + len(values)].any()  # constant: never foreground
    assert patch_validity_and_foreground(patches, None)[1].all()


def _clip_tails_searching_all(blocks, means, r, k, hi):
    """The hot-pixel clipping searching every block residual each round (the definition that
    `miq.content._clip_tails` must reproduce while searching only a pool of the largest)."""
    done = np.zeros(r.size, dtype=bool)
    batch = min(r.size, 64)
    for _ in range(16):
        if done[np.argpartition(r, r.size - k)[r.size - k :]].all():
            return
        top = np.argpartition(r, r.size - batch)[r.size - batch :]
        todo = top[~done[top]]
        iy, ix = np.divmod(todo, blocks.shape[2])
        clipped = np.minimum(blocks[iy, :, ix, :].astype(np.float64), hi).mean(axis=(1, 2))
        r[todo] -= means[todo] - clipped
        means[todo] = clipped
        done[todo] = True


def test_hot_pixel_clipping_of_a_pool_equals_searching_all(monkeypatch, sample_image):
    import miq.content

    rng = np.random.default_rng(4)
    bright = np.zeros((1024, 1024))
    for y, x in rng.integers(0, 1024, (400, 2)):  # many bright cells: many rounds of clipping
        bright[max(0, y - 9) : y + 9, max(0, x - 9) : x + 9] += rng.uniform(500, 3000)
    planes = [
        (rng.poisson(bright + 60) + 100).astype(np.uint16),
        sample_image,
        _background(700, 100.0, "vignetting", read=2.0),
    ]
    hot = planes[2].copy()
    hot[rng.integers(0, 700, 80), rng.integers(0, 700, 80)] = 65535
    planes.append(hot)
    pooled = [content_score(p) for p in planes]
    monkeypatch.setattr(miq.content, "_clip_tails", _clip_tails_searching_all)
    assert [content_score(p) for p in planes] == pooled


@pytest.mark.parametrize(
    "dtype, block, shape",
    [
        (np.uint8, 8, (130, 97)),
        (np.uint16, 8, (2048, 2048)),
        (np.uint16, 5, (84, 90)),
        (np.int16, 8, (100, 120)),
        (np.float32, 7, (91, 200)),
        (np.float64, 4, (64, 80)),
    ],
)
def test_block_means_equal_float64_means(dtype, block, shape):
    """The exact uint32 path for 8/16-bit planes gives bit for bit the float64 block means."""
    from miq.content import _block_means

    rng = np.random.default_rng(block)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is None:
        plane = (rng.random(shape) * 1000 - 100).astype(dtype)
    else:
        plane = rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
    ny, nx = shape[0] // block, shape[1] // block
    whole = plane[: ny * block, : nx * block].astype(np.float64)
    expected = whole.reshape(ny, block, nx, block).sum(axis=(1, 3)) / block**2
    got = _block_means(plane[: ny * block, : nx * block], block)
    assert got.dtype == np.float64 and got.shape == (ny, nx)
    if info is not None:
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("size", [1, 7, 8, 9, 100, 1089, 65536])
def test_largest_are_the_n_largest_values(size):
    """`_largest` (a threshold from a sample, then a partition of what reaches it) picks n
    distinct positions holding the n largest values, for any n, with ties and on small arrays."""
    from miq.content import _largest

    rng = np.random.default_rng(size)
    for values in (rng.normal(size=size), rng.integers(0, 5, size).astype(np.float64)):
        for n in sorted(
            {1, 2, 3, size // 8, size // 8 + 1, size // 2, size} & set(range(1, size + 1))
        ):
            got = _largest(values, n)
            assert len(np.unique(got)) == n
            np.testing.assert_array_equal(np.sort(values[got]), np.sort(values)[size - n :])
