"""`miq best-focus`: the rule, synthetic stacks with a known in-focus plane, the CLI outputs."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile

from miq.best_focus import best_plane
from miq.cli import main
from miq.optics import Optics, degrade
from miq.runs import best_focus_files


def test_rule():
    assert best_plane([3.0], [1.0]) == (0, "single plane")
    assert best_plane([5.0, 1.0, 4.0], [9.0, 1.0, 8.0]) == (1, "model")  # one plane on the plateau
    # a plateau of three planes: the fine measure decides among them only
    index, rule = best_plane(
        [9.0, 0.4, 0.2, 0.5, 9.0], [100.0, 3.0, 2.0, 5.0, 1.0], fine_measure="focus_score"
    )
    assert (index, rule) == (3, "model+focus_score")  # not plane 0, sharp-looking but far out
    with pytest.raises(ValueError):
        best_plane([], [])


def _synthetic_stack(sample_image, best=6, n=13, step_um=1.0):
    """Planes defocused by |z − best| · step µm (the sample image is an in-focus field)."""
    unit = sample_image[:252, :336].astype(np.float64) / 65535.0
    planes = [degrade(unit, abs(z - best) * step_um, optics=Optics(), rng=z) for z in range(n)]
    return np.round(np.stack(planes) * 65535).astype(np.uint16)


def test_synthetic_stack_finds_the_in_focus_plane(tmp_path, sample_image, model):
    stack = _synthetic_stack(sample_image)
    tifffile.imwrite(tmp_path / "s.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    (curve,) = best_focus_files([tmp_path / "s.tif"], tmp_path / "out", model, save_best=True)
    assert abs(curve.best_z - 6) <= 1
    assert curve.level_mean[0] > curve.level_mean[6] + 1  # 6 µm out vs in focus
    with open(tmp_path / "out" / "best_focus.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["best_z"] == str(curve.best_z) and row["rule"] == curve.rule
    saved = tifffile.imread(tmp_path / "out" / "best" / "s_c0.tif")
    assert saved.dtype == np.uint16 and np.array_equal(saved, stack[curve.best_z])
    with open(tmp_path / "out" / "curves.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 13
    assert (tmp_path / "out" / "curves" / "s_c0.png").stat().st_size > 1000


def test_cli_stack_from_files_keeps_going_past_a_bad_file(tmp_path, sample_image, capsys):
    stack = _synthetic_stack(sample_image, best=4, n=9, step_um=1.5)
    folder = tmp_path / "acq"
    folder.mkdir()
    for z, plane in enumerate(stack):
        tifffile.imwrite(folder / f"img_z{z:02d}.tif", plane)
    (folder / "img_z99.tif").write_bytes(b"II*\x00broken")
    code = main(["best-focus", str(folder), "--stack-from-files", "-o", str(tmp_path / "o")])
    captured = capsys.readouterr()
    assert code == 1 and "img_z99.tif" in captured.err
    with open(tmp_path / "o" / "best_focus.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert abs(int(row["best_z"]) - 4) <= 1 and row["best_file"].endswith(
        f"img_z{row['best_z'].zfill(2)}.tif"
    )
    assert (
        main(["best-focus", str(folder), "-o", str(tmp_path / "o2"), "--fine-measure", "nope"]) == 2
    )


def test_time_series_of_stacks_gets_one_curve_per_time_point(tmp_path, sample_image, model):
    a = _synthetic_stack(sample_image, best=2, n=6, step_um=2.0)
    b = _synthetic_stack(sample_image, best=4, n=6, step_um=2.0)
    tifffile.imwrite(
        tmp_path / "tz.tif",
        np.stack([a, b]),
        imagej=True,
        resolution=(1 / 0.65, 1 / 0.65),  # calibrated at the model's pixel size: not resampled
        metadata={"axes": "TZYX", "spacing": 2.0, "unit": "um"},
    )
    curves = best_focus_files([tmp_path / "tz.tif"], tmp_path / "out", model, save_best=True)
    assert [(c.t, c.best_z, c.z_step_um) for c in curves] == [(0, 2, 2.0), (1, 4, 2.0)]
    assert np.array_equal(tifffile.imread(tmp_path / "out" / "best" / "tz_t1_c0.tif"), b[4])
