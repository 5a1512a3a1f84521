"""benchmarks.model_variants: test-time augmentation and ensembles behave as their names say."""

from __future__ import annotations

import numpy as np
import pytest

import miq
from conftest import import_benchmark


@pytest.fixture(scope="module")
def variants():
    return import_benchmark("model_variants")


@pytest.fixture(scope="module")
def patches():
    rng = np.random.default_rng(0)
    return rng.poisson(100 + 400 * rng.random((6, 84, 84))).astype(np.float32)


def test_augmented_model_averages_the_rotated_patches(variants, patches):
    model = miq.load_model("default", threads=1)
    tta = variants.load_variant("default+tta4", threads=1)
    rotated = [np.ascontiguousarray(np.rot90(patches, k, axes=(1, 2))) for k in range(4)]
    expected = np.mean([model.predict(r, calibrated=False) for r in rotated], axis=0)
    assert tta.predict(patches, calibrated=False) == pytest.approx(expected, abs=1e-6)
    assert tta.predict(patches) == pytest.approx(model.calibrate(expected), abs=1e-6)
    # a patch that is the same under every rotation gets exactly the model's distribution
    symmetric = patches[:, :42, :42]
    symmetric = np.block(
        [[symmetric, symmetric[:, :, ::-1]], [symmetric[:, ::-1], symmetric[:, ::-1, ::-1]]]
    )
    symmetric = np.maximum(symmetric, np.rot90(symmetric, 1, axes=(1, 2)))
    assert np.allclose(symmetric, np.rot90(symmetric, 1, axes=(1, 2)))
    assert tta.predict(symmetric) == pytest.approx(model.predict(symmetric), abs=1e-5)
    assert tta.name.endswith("+tta4") and tta.patch_size == model.patch_size


def test_ensemble_averages_calibrated_members(variants, patches):
    default, fast = miq.load_model("default", threads=1), miq.load_model("fast", threads=1)
    both = variants.load_variant("default&fast", threads=1)
    expected = (default.predict(patches) + fast.predict(patches)) / 2
    assert both.predict(patches, calibrated=False) == pytest.approx(expected, abs=1e-6)
    assert both.calibrate(expected) is expected
    t = np.sqrt(default.image_temperature * fast.image_temperature)
    assert both.image_temperature == pytest.approx(t)
    # assess accepts it as a model
    image = np.tile(patches[0], (2, 2)).astype(np.uint16)
    assert 0 <= miq.assess(image, both).level <= 10


def test_unknown_lever_is_refused(variants):
    with pytest.raises(ValueError, match="unknown lever"):
        variants.load_variant("default+mc3")
