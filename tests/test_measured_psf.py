"""`benchmarks.measured_psf`: the measured bead PSF as 0.65 µm kernels, and the simulator
defocus with the same blur, checked on cases with known answers (the rating itself is the
benchmark's output, recorded in docs/lab-notebook/simulator-psf.md)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import import_benchmark

measured_psf = import_benchmark("measured_psf")


def test_the_simulators_own_kernels_are_their_own_equivalent():
    from miq.optics import Optics, defocus_psf

    optics = Optics()
    depths = np.array([2.0, 5.0, 9.5, 16.0])
    kernels = np.stack([defocus_psf(z, optics) for z in depths])
    for fraction in (0.5, 0.8):
        found = measured_psf.simulator_equivalent_z(kernels, optics, fraction)
        assert found == pytest.approx(depths, abs=0.3)  # the 0.25 µm grid, r flat in places
    # a point is as sharp as the simulator gets on this grid: the middle of its in-focus step
    point = np.zeros((51, 51))
    point[25, 25] = 1.0
    assert 0.0 < measured_psf.simulator_equivalent_z(point[None], optics, 0.5)[0] < 1.0


def test_measured_kernels_are_centred_normalised_and_widen_away_from_focus():
    if not measured_psf.BEAD_FILE.exists():
        pytest.fail(f"this test needs ../shared/data beside the project ({measured_psf.BEAD_FILE})")
    z, kernels = measured_psf.measured_kernels(51)
    assert kernels.shape == (25, 51, 51)
    assert z[12] == 0.0 and z[0] == pytest.approx(-3.6) and z[-1] == pytest.approx(3.6)
    assert kernels.sum(axis=(1, 2)) == pytest.approx(np.ones(25))
    assert np.unravel_index(kernels[12].argmax(), (51, 51)) == (25, 25)
    # zero beyond the bead's radius: 60 px of 130 nm = 12 px of 650 nm, plus a bin
    r = np.hypot(*np.mgrid[-25:26, -25:26])
    assert np.all(kernels[:, r > 14] == 0.0)
    peak = kernels[:, 25, 25]
    assert peak[12] > 0.4 and peak[0] < 0.1 * peak[12] and peak[-1] < 0.1 * peak[12]
