"""Hardening against hostile and unlucky numbers and metadata (issue 20, item 5 and its "Low"
model, plate and best-focus items).

Each test reproduces a defect of the code before the fix: integer planes with large offsets
losing precision, planes with no valid patch reported as "out of focus", model.json values of
the wrong type or range, weight paths outside the model folder, malformed plate metadata, and
``best-focus --save-best`` changing the pixel type. Small files are made on the fly.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

import miq
from miq.runs.best_focus import best_focus_files, focus_curves
from miq.runs.file_job import assess_file
from miq.runs.measure import measure_files

# --- 1. integer planes of any width keep their precision until mapped -----------------------

OFFSETS = [
    pytest.param(np.int32, 10**8, id="int32+1e8"),
    pytest.param(np.uint32, 4 * 10**9, id="uint32+4e9"),
    pytest.param(np.int64, 10**12, id="int64+1e12"),
    pytest.param(np.uint64, 10**15, id="uint64+1e15"),
]


@pytest.fixture(scope="module")
def field(sample_image) -> np.ndarray:
    """A 252 × 252 crop of the bundled field (9 patches), int64 DN."""
    return sample_image[:252, :252].astype(np.int64)


@pytest.fixture(scope="module")
def stack(field) -> np.ndarray:
    """A 3-plane z-stack (int64 DN): the field sharp, then blurred by 3 × 3 and 9 × 9 boxes."""

    def box(image: np.ndarray, k: int) -> np.ndarray:
        padded = np.pad(image, k // 2, mode="edge")
        windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k))
        return windows.sum(axis=(2, 3)) // (k * k)

    return np.stack([field, box(field, 3), box(field, 9)])


@pytest.fixture(scope="module")
def base_level(field, model) -> float:
    return miq.assess(field, model).level_mean


@pytest.mark.parametrize("dtype, offset", OFFSETS)
def test_offset_integer_file_rates_as_without_offset(
    tmp_path, field, base_level, model, dtype, offset
):
    """predict's path (and the API): the same level with and without the offset (before the fix:
    1.03 → 1.02, → 0.16, or "image is constant")."""
    path = tmp_path / "offset.tif"
    tifffile.imwrite(
        path, (field.astype(np.uint64 if dtype == np.uint64 else np.int64) + offset).astype(dtype)
    )
    (result,) = assess_file(path, model)
    assert result.error == ""
    assert abs(result.assessment.level_mean - base_level) < 1e-6


@pytest.mark.parametrize("dtype, offset", OFFSETS[:3])  # resampled values: float64 in DN
def test_offset_integer_file_resampled_rates_as_without_offset(
    tmp_path, field, model, dtype, offset
):
    """Resampling to the model's pixel size keeps the precision too."""
    options = miq.AssessOptions(pixel_size_um=0.8)
    base = miq.assess(field, model, options=options).level_mean
    path = tmp_path / "offset.tif"
    tifffile.imwrite(
        path, (field.astype(np.uint64 if dtype == np.uint64 else np.int64) + offset).astype(dtype)
    )
    (result,) = assess_file(path, model, options=options)
    assert result.error == ""
    assert abs(result.assessment.level_mean - base) < 1e-6


@pytest.mark.parametrize("dtype, offset", OFFSETS)
def test_offset_integer_stack_best_focus_and_measure(tmp_path, stack, model, dtype, offset):
    """best-focus and measure read planes of the same file the same way as without offset."""
    base_path, path = tmp_path / "base.tif", tmp_path / "offset.tif"
    tifffile.imwrite(base_path, stack.astype(np.uint16))
    wide = stack.astype(np.uint64) if dtype == np.uint64 else stack
    tifffile.imwrite(path, (wide + offset).astype(dtype))
    (base,) = focus_curves([base_path], model, progress=False)
    (curve,) = focus_curves([path], model, progress=False)
    assert np.allclose(curve.level_mean, base.level_mean, atol=1e-6, rtol=0)
    assert curve.best == base.best
    out_csv, failures = measure_files([path], tmp_path / "m")
    assert failures == 0
    text = out_csv.read_text()
    assert "constant" not in text


# --- 5. best-focus --save-best keeps the pixel type and values --------------------------------


@pytest.mark.parametrize(
    "dtype", [np.uint16, np.float32, np.int32, np.uint8, np.int64], ids=lambda d: d.__name__
)
def test_save_best_keeps_dtype_and_values(tmp_path, stack, model, dtype):
    """The saved best plane is the input plane, bit for bit (before the fix: uint8 → uint16,
    int32 with negatives → float32, integral float32 → uint16)."""
    if dtype == np.uint8:
        stack = (stack - stack.min()) * 255 // (stack.max() - stack.min())
    elif dtype == np.float32:
        stack = stack.astype(np.float32)  # integral floats: once written as uint16
    elif dtype == np.int32:
        stack = stack - 5000
    elif dtype == np.int64:
        stack = stack + 10**12
    stack = stack.astype(dtype)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack, photometric="minisblack")  # 3 uint8 planes are not RGB
    (curve,) = best_focus_files([path], tmp_path / "out", model, save_best=True, progress=False)
    saved = tifffile.imread(tmp_path / "out" / "best" / "stack_c0.tif")
    assert saved.dtype == stack.dtype
    assert np.array_equal(saved, stack[curve.best_z])


# --- 2. a plane with no valid patch is an error row, and miq report copes --------------------


def _no_valid_patch_images(folder, field) -> None:
    """A step edge exactly on the patch grid (every 84 × 84 patch constant), and a good file."""
    step = np.zeros((168, 252), np.uint16)
    step[:, 84:168] = 1000
    tifffile.imwrite(folder / "step_on_grid.tif", step)
    tifffile.imwrite(folder / "good.tif", field.astype(np.uint16))


def test_plane_without_valid_patch_is_an_error_row(tmp_path, field, capsys):
    """Before the fix: level −1, NaN, in_focus 0 ("OUT OF FOCUS"), no error, exit 0."""
    from miq.cli import main

    inputs = tmp_path / "in"
    inputs.mkdir()
    _no_valid_patch_images(inputs, field)
    out = tmp_path / "out"
    code = main(["predict", str(inputs), "-o", str(out), "-q", "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 1
    lines = [line for line in err.splitlines() if "step_on_grid.tif" in line]
    assert len(lines) == 1 and "no patch has enough content to rate" in lines[0]
    rows = {r["file"].rsplit("/", 1)[-1]: r for r in _csv_rows(out / "results.csv")}
    assert "no patch has enough content" in rows["step_on_grid.tif"]["error"]
    assert rows["step_on_grid.tif"]["in_focus"] == ""
    assert rows["good.tif"]["error"] == ""
    # the report of that run does not crash
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").is_file()


def test_denormal_plane_is_rated_like_its_normal_scale(field, model, base_level):
    """float32 denormals (a plane scaled by 1e-42) are rated as the plane itself (before the
    fix: the [0, 1] map overflowed float32 and every patch was invalid: level −1, NaN)."""
    tiny = (field.astype(np.float32) * np.float32(1e-42)).astype(np.float32)
    assert tiny.max() < np.finfo(np.float32).tiny  # really denormal
    level = miq.assess(tiny, model).level_mean
    assert abs(level - base_level) < 1e-3  # denormals keep fewer bits than the original


def test_report_of_a_run_whose_rows_all_failed(tmp_path, capsys):
    """Only failed rows (a constant image, a plane without a valid patch): report still works."""
    from miq.cli import main

    inputs = tmp_path / "in"
    inputs.mkdir()
    tifffile.imwrite(inputs / "constant.tif", np.full((100, 100), 7, np.uint16))
    step = np.zeros((168, 168), np.uint16)
    step[:, 84:] = 1000
    tifffile.imwrite(inputs / "step.tif", step)
    out = tmp_path / "out"
    assert main(["predict", str(inputs), "-o", str(out), "-q", "--threads", "1"]) == 1
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert (out / "report.html").is_file()


def _csv_rows(path) -> list[dict]:
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(line for line in fh if not line.startswith("#")))


def test_report_of_an_older_run_with_a_level_minus_one_row(tmp_path, field, capsys):
    """A results.csv written before the fix (a row with level −1, NaN and no error): the report
    counts it as failed instead of crashing (np.bincount of −1)."""
    import csv

    from miq.cli import main

    inputs = tmp_path / "in"
    inputs.mkdir()
    tifffile.imwrite(inputs / "a.tif", field.astype(np.uint16))
    tifffile.imwrite(inputs / "b.tif", field[::-1].astype(np.uint16))
    out = tmp_path / "out"
    assert main(["predict", str(inputs), "-o", str(out), "-q", "--threads", "1"]) == 0
    path = out / "results.csv"
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns, rows = reader.fieldnames, list(reader)
    rows[1].update(level="-1", level_mean="nan", certainty="nan", in_focus="0")
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(rows)
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert "no usable level" in (out / "report.html").read_text(encoding="utf-8")
