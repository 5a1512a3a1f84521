"""Certainty/aggregation goldens (original-system.md §5.2) and properties of a real assessment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import miq
from miq.assessment import (
    AssessOptions,
    aggregate,
    assessment_from_probabilities,
    certainty,
    level_on_call_side,
)
from miq.errors import ImageContentError
from miq.optics import degrade


def test_certainty_extremes():
    assert certainty(np.full(11, 1 / 11)) == pytest.approx(0.0, abs=1e-12)
    assert certainty(np.eye(11)[3]) == pytest.approx(1.0)
    assert certainty(np.zeros(11)) == 0.0
    batch = certainty(np.stack([np.full(11, 1 / 11), np.eye(11)[0]]))
    np.testing.assert_allclose(batch, [0.0, 1.0], atol=1e-12)


def test_aggregation_golden_1():
    out = aggregate(np.array([[1 / 3, 1 / 3, 1 / 3], [0, 0.2, 0.8]]))
    assert out["level"] == 2
    np.testing.assert_allclose(out["probabilities"], [0, 0.2, 0.8], atol=1e-12)
    assert round(out["certainty_mean"], 3) == 0.272
    assert round(out["certainty_max"], 3) == 0.545
    assert round(out["certainty_aggregate"], 3) == 0.545
    assert round(out["certainty_weighted"], 3) == 0.545


def test_aggregation_all_uniform_is_unweighted():
    out = aggregate(np.full((4, 3), 1 / 3))
    assert out["level"] == 0
    np.testing.assert_allclose(out["probabilities"], [1 / 3] * 3)
    for key in ("certainty_mean", "certainty_max", "certainty_aggregate"):
        assert out[key] == pytest.approx(0.0, abs=1e-12)


def test_aggregation_golden_3():
    out = aggregate(np.array([[1 / 3, 1 / 3, 1 / 3], [0, 0, 1]]))
    assert out["level"] == 2
    assert out["certainty_mean"] == pytest.approx(0.5)
    for key in ("certainty_max", "certainty_aggregate", "certainty_weighted"):
        assert out[key] == pytest.approx(1.0)


def test_aggregation_respects_valid_mask_and_expected_level():
    probs = np.array([[1.0, 0, 0], [0, 0, 1.0]])
    out = aggregate(probs, np.array([False, True]))
    assert out["level"] == 2 and out["level_mean"] == pytest.approx(2.0)
    empty = aggregate(probs, np.array([False, False]))
    assert empty["level"] == -1 and np.isnan(empty["level_mean"])


def test_assess_outputs_are_consistent(sample_image, model):
    a = miq.assess(sample_image, model)
    assert a.patch_probabilities.shape == (7, 9, 11)  # 520×696 → full coverage, 7×9 patches
    np.testing.assert_allclose(a.patch_probabilities.sum(-1), 1.0, atol=1e-5)
    assert a.probabilities.sum() == pytest.approx(1.0)
    assert 0 <= a.level <= 10 and a.level == int(np.argmax(a.probabilities))
    assert a.level_mean == pytest.approx(float(a.probabilities @ np.arange(11)))
    assert a.defocus_um == pytest.approx(a.level_mean * 2.0)
    assert a.p_in_focus == pytest.approx(a.probabilities[:3].sum())
    assert a.in_focus == (a.p_in_focus >= 0.5)
    assert 0 <= a.certainty_mean <= a.certainty_max <= 1
    assert a.n_patches == 63


def test_simulated_defocus_raises_the_level(sample_image, model):
    """Monotone in simulated defocus: 0 → 8 → 16 µm gives increasing expected level."""
    unit = sample_image.astype(np.float64) / 65535
    means = [miq.assess(degrade(unit, z, rng=1), model).level_mean for z in (0.0, 8.0, 16.0)]
    assert means[0] < means[1] < means[2]
    assert means[2] - means[0] > 4


@pytest.mark.parametrize(
    "gain,offset", [(0.2, 1.0), (5.0, 1000.0), (1 / 65535, 0.0), (1.0, 5000.0)]
)
def test_gain_and_offset_do_not_change_the_result(sample_image, model, gain, offset):
    base = miq.assess(sample_image, model)
    changed = miq.assess(sample_image.astype(np.float64) * gain + offset, model)
    assert changed.level == base.level
    assert changed.level_mean == pytest.approx(base.level_mean, abs=0.05)


def test_dtypes_give_the_same_answer(sample_image, model):
    base = miq.assess(sample_image, model).level_mean
    for arr in (
        sample_image.astype(np.float32),
        sample_image.astype(np.int32),
        sample_image.astype(np.float64) / 65535,
    ):
        assert miq.assess(arr, model).level_mean == pytest.approx(base, abs=1e-3)


@pytest.mark.parametrize(
    "image,message",
    [
        (np.zeros((100, 100)), "constant"),
        (np.full((200, 200), np.nan), "NaN or infinite"),
        (np.where(np.eye(100) > 0, np.inf, 1.0), "NaN or infinite"),
        (np.ones((83, 500)), "smaller than one 84"),
        (np.ones((5, 5, 5)), "2D"),
        (np.ones((100, 100), complex), "pixel type"),
    ],
)
def test_bad_arrays_raise_clear_errors(image, message, model):
    with pytest.raises(ImageContentError, match=message):
        miq.assess(image, model)


def test_constant_patches_are_invalid_and_ignored(sample_image, model):
    img = sample_image.astype(np.float32).copy()
    img[:, :84] = 0  # a black stripe (e.g. stitching fill) over the first column of patches
    a = miq.assess(img, model)
    assert not a.patch_valid[:, 0].any() and a.patch_valid[:, 1:].all()
    assert (a.patch_level[:, 0] == -1).all() and (a.patch_certainty[:, 0] == 0).all()
    assert a.n_patches == 7 * 8


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_fast_path_matches_the_float64_reference(sample_image, model, dtype):
    """The fast path (float32 unit map, joint patch indexing) stays within 1e-4 of a reference
    that maps in float64 and cuts each patch by hand."""
    from miq.tiling import patch_grid

    image = sample_image.astype(dtype) * (3 if dtype == np.float32 else 1)
    fast = miq.assess(image, model)
    data = image.astype(np.float64)
    unit = ((data - data.min()) / (data.max() - data.min())).astype(np.float32)
    grid = patch_grid(unit.shape, model.patch_size)
    p = model.patch_size
    patches = np.stack([unit[y : y + p, x : x + p] for y in grid.ys for x in grid.xs])
    reference = model.predict(patches).reshape(fast.patch_probabilities.shape)
    assert np.abs(fast.patch_probabilities - reference).max() < 1e-4


def test_file_path_matches_the_in_memory_float_path(sample_image, model, tmp_path):
    """Rating a 16-bit file (read without a float32 copy) gives exactly what rating the same
    plane as float32 in memory gives."""
    import tifffile

    from miq.runs import assess_file

    tifffile.imwrite(tmp_path / "a.tif", sample_image.astype(np.uint16))
    (result,) = assess_file(tmp_path / "a.tif", model)
    in_memory = miq.assess(sample_image.astype(np.uint16).astype(np.float32), model)
    np.testing.assert_array_equal(
        result.assessment.patch_probabilities, in_memory.patch_probabilities
    )
    assert result.assessment.level == in_memory.level


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64])
def test_row_patches_are_the_unit_mapped_patches_cut_by_hand(dtype):
    """rate_patch_rows maps each row's patches straight from strided views of the input; the
    network must get exactly the patches that unit-mapping the plane and cutting them gives,
    also where the last column overlaps its neighbour and for irregular columns."""
    from miq.assessment import rate_patch_rows
    from miq.io import unit_map
    from miq.tiling import patch_grid

    class Recorder:
        patch_size = 8

        def __init__(self):
            self.batches = []

        def predict(self, patches, calibrated=True):
            self.batches.append(patches.copy())
            return np.zeros((len(patches), 3), np.float32)

        def calibrate(self, probabilities):
            return probabilities

    rng = np.random.default_rng(7)
    image = (rng.random((29, 43)) * 200 + 20).astype(dtype)
    lo, hi = float(image.min()), float(image.max())
    unit = unit_map(image, lo, hi)
    grid = patch_grid(image.shape, 8)
    for xs in (grid.xs, np.array([0, 3, 6, 20, 35])):
        model = Recorder()
        _, valid, _ = rate_patch_rows(image, grid.ys, xs, lo, hi, model)
        expected = np.stack([unit[y : y + 8, x : x + 8] for y in grid.ys for x in xs])
        np.testing.assert_array_equal(np.concatenate(model.batches), expected)
        assert valid.all() and len(valid) == len(expected)


def test_sparse_content_on_a_large_background_is_rated_by_its_content(sample_image, model):
    """A 2×2-patch piece of the sample, sharp or defocused by 16 µm, in a field of camera
    background (100 patches): the level is the content's, as uint16 and as 8-bit, although the
    96 background patches alone would say something else for at least one of the two (a
    network's reading of pure noise is arbitrary: towards 10 for some, towards 0 for others)."""
    rng = np.random.default_rng(0)
    background = rng.poisson(float(np.median(sample_image)), (840, 840)).astype(np.float64)
    defocused = degrade(sample_image / 65535.0, 16.0, rng=0) * 65535.0
    background_says_otherwise = []
    for source in (sample_image, defocused):
        field = background.copy()
        crop = source[100:268, 200:368]
        field[336:504, 336:504] = crop
        alone = miq.assess(crop, model).level
        as_8bit = np.round((field - field.min()) / np.ptp(field) * 255).astype(np.uint8)
        for image in (field.astype(np.uint16), as_8bit):
            a = miq.assess(image, model)
            assert a.n_foreground == 4 and a.n_patches == 100
            assert abs(a.level - alone) <= 1
            assert a.level <= 2 if source is sample_image else a.level >= 6
        only_background = a.patch_valid.ravel() & ~a.patch_foreground.ravel()
        said = miq.aggregate(a.patch_probabilities.reshape(-1, 11), only_background)["level"]
        background_says_otherwise.append(abs(said - alone) >= 3)
    assert any(background_says_otherwise)
    field = background.copy()
    field[336:504, 336:504] = sample_image[100:268, 200:368]
    # a camera with 2× larger pixels, resampled back: the noise is judged at the camera's pixels
    coarse = AssessOptions(pixel_size_um=1.3)
    binned = field.reshape(420, 2, 420, 2).sum(axis=(1, 3))
    a = miq.assess(binned, model, options=coarse)
    crop_binned = binned[168:252, 168:252]  # the content alone, as that camera saw it
    assert a.scale == 2.0 and 4 <= a.n_foreground <= 9
    assert abs(a.level - miq.assess(crop_binned, model, options=coarse).level) <= 1


def test_level_follows_the_call_on_a_two_mode_distribution():
    # a narrow peak on level 2, most of the mass spread over levels 5-10: the arg-max says
    # "in focus", P(in focus) = 0.4 says "out"; the level is the best level of the out side
    q = np.array([0.05, 0.05, 0.30, 0.0, 0.0, 0.12, 0.10, 0.10, 0.08, 0.10, 0.10])
    assert q.argmax() == 2 and q[:3].sum() < 0.5
    assert level_on_call_side(q) == 5
    # the same distribution called with a lower threshold is in focus: level 2
    assert level_on_call_side(q, threshold=0.4) == 2
    # with levels 0-5 in focus, P(in focus) = 0.52: the arg-max over 0-5
    assert level_on_call_side(q, in_focus_levels=6) == 2


def test_level_never_contradicts_the_call_and_is_the_arg_max_otherwise():
    rng = np.random.default_rng(0)
    q = rng.dirichlet(np.full(11, 0.3), size=4000)
    for n, threshold in [(3, 0.5), (1, 0.5), (5, 0.3), (3, 0.9), (11, 0.5)]:
        level = level_on_call_side(q, n, threshold)
        called_in = q[:, :n].sum(axis=1) >= threshold
        np.testing.assert_array_equal(level < n, called_in)
        agree = (q.argmax(axis=1) < n) == called_in
        np.testing.assert_array_equal(level[agree], q.argmax(axis=1)[agree])
        assert 0 < agree.mean() < 1 or n == 11  # both cases were exercised
        # on the call's side no level is more probable than the reported one
        side = (np.arange(11) < n)[None, :] == called_in[:, None]
        best = np.where(side, q, -1).max(axis=1)
        np.testing.assert_array_equal(q[np.arange(len(q)), level], best)


def test_assessment_level_and_flag_agree(sample_image, model):
    a = miq.assess(sample_image, model)
    probs = a.patch_probabilities.reshape(-1, 11)
    valid = a.patch_valid.ravel()
    # a threshold just above the sample's P(in focus) calls it out of focus
    stricter = AssessOptions(in_focus_threshold=(1.0 + a.p_in_focus) / 2)
    for options in (AssessOptions(), stricter):
        b = assessment_from_probabilities(a.grid, probs, valid, model, options)
        assert (b.level < options.in_focus_levels) == b.in_focus
    strict = assessment_from_probabilities(a.grid, probs, valid, model, stricter)
    assert a.in_focus and not strict.in_focus and strict.level >= 3


def test_without_foreground_every_valid_patch_is_aggregated(sample_image, model):
    a = miq.assess(sample_image, model)
    probs = a.patch_probabilities.reshape(-1, 11)
    valid = a.patch_valid.ravel()
    none = assessment_from_probabilities(
        a.grid, probs, valid, model, AssessOptions(), foreground=np.zeros_like(valid)
    )
    expected = aggregate(probs, valid, temperature=model.image_temperature)["probabilities"]
    assert none.probabilities == pytest.approx(expected)
    assert none.n_foreground == 0


SHARED_Z10 = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / "real-defocus"
    / "bbbc006-hoechst-z10"
)


@pytest.mark.parametrize("field", ["a01", "a03"])
@pytest.mark.parametrize("version", ["v3-slim", "v3", "fast-v2", "fast-v3", "fast-v4"])
def test_sparse_real_fields_keep_their_level_as_8bit(field, version):
    """The real BBBC006 z10 fields (a few nuclei on a 12-bit background) whose level jumped
    between 1-2 and 10 when saved as 8-bit while every patch was aggregated
    (docs/lab-notebook/foreground.md)."""
    from miq.io import read_planes

    path = SHARED_Z10 / f"BBBC006_z_aligned__{field}__s1__w1_10.png"
    if not path.exists():
        pytest.fail(f"this test needs ../shared/data beside the project ({path} is missing)")
    plane = np.asarray(next(iter(read_planes(path))).data, dtype=np.float64)
    as_8bit = np.round((plane - plane.min()) / np.ptp(plane) * 255).astype(np.uint8)
    model = miq.load_model(version, threads=1)
    a, b = miq.assess(plane, model), miq.assess(as_8bit, model)
    assert a.level <= 2 and abs(a.level - b.level) <= 1
    assert 0 < a.n_foreground < a.n_patches  # the level rests on the nuclei's patches
