"""The patch pooling of `benchmarks.calibration_transfer` (a lever measured in the lab notebook,
calibration-transfer.md): the geometric mean of an image's patch distributions, by hand."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from conftest import import_benchmark

calibration_transfer = import_benchmark("calibration_transfer")


def test_geometric_pooling_is_the_normalised_weighted_geometric_mean_of_the_patches():
    from miq.assessment import certainty
    from miq.calibration import ValidationSet

    p = np.array(
        [[0.8, 0.2, 0.0], [0.6, 0.4, 0.0], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4], [0.2, 0.5, 0.3]]
    )
    valid = np.array([True, True, True, True, False])  # the last patch of image 1 is left out
    data = ValidationSet(p, valid, labels=[0, 0, 2, 2, 2], image=[0, 0, 1, 1, 1])
    identity = SimpleNamespace(class_bias=np.zeros(3), patch_temperature=1.0)

    alike = calibration_transfer.geometric_distributions(data, identity, False)
    expected = np.sqrt(np.clip(p[0], 1e-12, None) * np.clip(p[1], 1e-12, None))
    assert alike[0] == pytest.approx(expected / expected.sum(), abs=1e-6)
    assert alike[0, 2] < 1e-5  # a level one patch rules out stays ruled out (a mixture keeps it)
    assert alike.sum(axis=1) == pytest.approx([1.0, 1.0])

    weighted = calibration_transfer.geometric_distributions(data, identity, True)
    w = certainty(p[2:4])
    expected = np.exp((w[:, None] * np.log(p[2:4])).sum(axis=0) / w.sum())
    assert weighted[1] == pytest.approx(expected / expected.sum(), abs=1e-6)
    assert weighted[1] != pytest.approx(alike[1], abs=1e-3)  # the weights matter
