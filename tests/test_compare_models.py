"""benchmarks.compare_models: the pre-registered non-inferiority rule and its --folder mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import import_benchmark

ROOT = Path(__file__).resolve().parents[1]  # benchmarks is a package at the repository root


@pytest.fixture(scope="module")
def compare_models():
    return import_benchmark("compare_models")


def _bounds(compare_models, **changes):
    """(low, high) 95 % bounds per metric: all 0 except the named metrics' (low, high)."""
    low = np.zeros(len(compare_models.METRICS))
    high = np.zeros(len(compare_models.METRICS))
    for metric, (lo, hi) in changes.items():
        low[compare_models.METRICS.index(metric.replace("_", " "))] = lo
        high[compare_models.METRICS.index(metric.replace("_", " "))] = hi
    return low, high


def test_verdict_needs_enough_units(compare_models):
    low, high = _bounds(compare_models)
    assert compare_models.non_inferiority_verdict(low, high, 8, "plane").startswith("undecided")
    n = compare_models.MIN_UNITS
    assert compare_models.non_inferiority_verdict(low, high, n, "file").startswith(
        "non-inferior on all 5"
    )


@pytest.mark.parametrize(
    "metric, low, high, shown",
    [
        ("exact", -0.029, 0.05, True),
        ("exact", -0.031, 0.05, False),  # higher is better: the lower bound counts
        ("within-one", -0.021, 0.0, False),
        ("field_CE", -0.2, 0.029, True),
        ("field_CE", -0.2, 0.031, False),  # lower is better: the upper bound counts
        ("NLL", -0.5, 0.051, False),
        ("RPS", -0.5, 0.019, True),
        ("ECE", -0.5, 0.5, True),  # not part of the rule
    ],
)
def test_verdict_applies_each_margin_to_the_right_bound(compare_models, metric, low, high, shown):
    lo, hi = _bounds(compare_models, **{metric: (low, high)})
    verdict = compare_models.non_inferiority_verdict(lo, hi, 100, "file")
    assert verdict.startswith("non-inferior on all") is shown
    if not shown:
        assert metric.replace("_", " ") in verdict


def _compare_on_folder(folder: Path, models: list[str], bootstrap: int, extra=()):
    """`benchmarks.compare_models` run on ``folder`` (one seed, files resampled); it must exit 0."""
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.compare_models", "--models", *models]
        + ["--folder", str(folder), "--seeds", "1", "--bootstrap", str(bootstrap)]
        + ["--unit", "file", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result


def test_folder_mode_compares_a_model_with_itself(tmp_path, sample_image):
    import tifffile

    folder = tmp_path / "new fields"
    folder.mkdir()
    tifffile.imwrite(folder / "field.tif", sample_image[:168, :252])
    tifffile.imwrite(folder / "field_mask.tif", (sample_image[:168, :252] > 500).astype("uint8"))
    tifffile.imwrite(folder / "tiny.tif", sample_image[:50, :50])
    (folder / "broken.tif").write_bytes(b"II*\x00 not a tiff")
    result = _compare_on_folder(folder, ["fast", "fast"], bootstrap=50, extra=["--first-seed", "7"])
    assert "11 images (1 planes of 1 files × 11 levels × 1 seeds; noise seeds 7–7)" in result.stderr
    for name in ("field_mask.tif", "tiny.tif", "broken.tif"):  # each named once, the rest rated
        lines = [line for line in result.stderr.splitlines() if name in line]
        assert len(lines) == 1 and "left out" in lines[0], result.stderr
    rows = [
        line
        for line in result.stdout.splitlines()
        if line.startswith("| fast (miq-separable-fast-v4) |")
    ]
    assert len(rows) == 2 and "+0.000 (+0.000, +0.000)" in rows[1]
    assert "undecided: 1 files, the rule needs at least 40" in result.stdout


def test_a_recipe_scores_the_mean_of_its_runs(compare_models):
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(11), 4)
    plane = np.tile(np.arange(4), 11)
    runs = [rng.dirichlet(np.ones(11), size=len(truth)) for _ in range(3)]
    images = np.arange(len(truth))
    by_run = [compare_models.scores(p, truth, plane) for p in runs]
    mean = compare_models.recipe_scores(runs, truth, images, plane)
    np.testing.assert_allclose(mean, np.mean(by_run, axis=0))
    one = compare_models.recipe_scores(runs[:1], truth, images[:20], plane[:20])
    np.testing.assert_allclose(one, compare_models.scores(runs[0][:20], truth[:20], plane[:20]))


def test_recipes_of_several_runs_are_compared_as_their_mean(tmp_path, sample_image):
    import tifffile

    folder = tmp_path / "fields"
    folder.mkdir()
    tifffile.imwrite(folder / "field.tif", sample_image[:168, :252])
    result = _compare_on_folder(folder, ["fast", "fast,fast"], bootstrap=20)
    row = next(line for line in result.stdout.splitlines() if "mean of 2 runs" in line)
    assert row.startswith("| fast,fast (mean of 2 runs) |")
    assert row.count("+0.000 (+0.000, +0.000)") == 6  # two runs of one model: no difference


def test_split_files_too_small_at_the_model_pixel_size_are_left_out(
    compare_models, tmp_path, sample_image, capsys
):
    """The validation split stopped at a NEUBIAS file that is 71 px a side at 0.65 µm/px; such
    a file is now left out with one line naming it, as ``miq calibrate`` leaves it out."""
    import tifffile

    import miq

    fine = tmp_path / "fine_pixels.tif"  # 400 px at 0.13 µm/px: 80 px at the model's 0.65
    tifffile.imwrite(
        fine,
        sample_image[:400, :400],
        imagej=True,
        resolution=(1 / 0.13, 1 / 0.13),
        metadata={"unit": "um"},
    )
    normal = tmp_path / "field.tif"
    tifffile.imwrite(normal, sample_image[:168, :252])
    model = miq.load_model("fast", threads=1)
    simulate = {"seeds": 1, "first_seed": 0, "optics": model.optics, "levels": model.levels}
    files, items = compare_models.ratable_items([fine, normal], model, simulate, "validation")
    assert files == [normal] and len(items[0]) == 11
    assert {item.dataset for item in items[0]} == {"validation"}
    err = capsys.readouterr().err.splitlines()
    left_out = [line for line in err if "fine_pixels.tif" in line]
    assert len(left_out) == 1 and "smaller than one 84×84 patch" in left_out[0]
