"""Hardening against hostile and unlucky numbers and metadata (issue 20, item 5 and its "Low"
model, plate and best-focus items).

Each test reproduces a defect of the code before the fix: integer planes with large offsets
losing precision, planes with no valid patch reported as "out of focus", model.json values of
the wrong type or range, weight paths outside the model folder, malformed plate metadata, and
``best-focus --save-best`` changing the pixel type. Small files are made on the fly.
"""

from __future__ import annotations

from pathlib import Path

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


# --- 3. model.json validated completely before any image is read ------------------------------


def _model_copy(tmp_path, change) -> Path:
    """A copy of the fast bundled model with ``change(metadata)`` applied to its model.json."""
    import json
    import shutil

    from miq.model.package import BUNDLED_MODELS

    folder = tmp_path / "model"
    shutil.copytree(BUNDLED_MODELS["fast"].parent, folder)
    meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    change(meta, folder)
    (folder / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


def _set(key, value):
    def change(meta, folder):
        target = meta
        *parents, last = key.split(".")
        for part in parents:
            target = target[part]
        target[last] = value

    return change


def _outside_weights(absolute: bool):
    def change(meta, folder):
        outside = folder.parent / "elsewhere.onnx"
        outside.write_bytes((folder / "model.onnx").read_bytes())
        meta["weights"]["onnx"]["file"] = str(outside) if absolute else "../elsewhere.onnx"

    return change


def _swapped_onnx_without_sha256(meta, folder):
    from miq.model.package import BUNDLED_MODELS

    (folder / "model.onnx").write_bytes(
        (BUNDLED_MODELS["default"].parent / "model.onnx").read_bytes()
    )
    del meta["weights"]["onnx"]["sha256"]


BAD_MODELS = {
    "n_levels_string": (_set("n_levels", "11"), "'n_levels' must be a whole number"),
    "n_levels_fraction": (_set("n_levels", 11.5), "'n_levels' must be a whole number"),
    "n_levels_zero": (_set("n_levels", 0), "'n_levels' must be a whole number"),
    "n_levels_bool": (_set("n_levels", True), "'n_levels' must be a whole number"),
    "patch_size_string": (_set("patch_size", "84"), "'patch_size' must be a whole number"),
    "patch_size_zero": (_set("patch_size", 0), "'patch_size' must be a whole number"),
    "patch_size_huge": (_set("patch_size", 10**9), "'patch_size' must be a whole number"),
    "um_per_level_nan": (_set("um_per_level", float("nan")), "'um_per_level' must be a finite"),
    "um_per_level_inf": (_set("um_per_level", float("inf")), "'um_per_level' must be a finite"),
    "um_per_level_negative_inf": (
        _set("um_per_level", float("-inf")),
        "'um_per_level' must be a finite",
    ),
    "um_per_level_string": (_set("um_per_level", "2"), "'um_per_level' must be a finite"),
    "patch_temperature_nan": (
        _set("calibration.patch_temperature", float("nan")),
        "'calibration.patch_temperature' must be a finite number > 0",
    ),
    "image_temperature_inf": (
        _set("calibration.image_temperature", float("inf")),
        "'calibration.image_temperature' must be a finite number > 0",
    ),
    "class_bias_nan": (
        _set("calibration.class_bias", [0.0] * 10 + [float("nan")]),
        "'calibration.class_bias' must be a finite number",
    ),
    "level_defocus_nan": (
        _set("level_defocus_um", [2.0 * k for k in range(10)] + [float("nan")]),
        "'level_defocus_um' must be a finite number",
    ),
    "level_defocus_short": (_set("level_defocus_um", [0.0, 2.0]), "'level_defocus_um' must be"),
    "optics_pixel_size_inf": (
        _set("optics.pixel_size_um", float("inf")),
        "'optics.pixel_size_um' must be a finite number > 0",
    ),
    "optics_not_an_object": (_set("optics", [1, 2]), "'optics' must be an object"),
    "weights_absolute": (_outside_weights(True), "not inside the model folder"),
    "weights_parent": (_outside_weights(False), "not inside the model folder"),
    "sha256_removed_after_swap": (_swapped_onnx_without_sha256, "no valid sha256 recorded"),
    "sha256_not_hex": (_set("weights.onnx.sha256", "z" * 64), "no valid sha256 recorded"),
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_bad_model_json_is_refused_in_one_line(tmp_path, case):
    """Before the fix these loaded (NaN/inf values gave all-NaN probabilities with exit 0;
    weights outside the folder or without sha256 were read unchecked) or gave a traceback."""
    from miq.errors import ModelError
    from miq.model.package import ModelPackage

    change, expected = BAD_MODELS[case]
    folder = _model_copy(tmp_path, change)
    with pytest.raises(ModelError) as info:
        ModelPackage.open(folder)
    message = str(info.value)
    assert expected in message and "\n" not in message
    assert str(folder / "model.json") in message or str(folder) in message


def test_bad_model_json_refused_before_any_image_is_read(tmp_path, field, capsys):
    """miq predict with such a model: exit 2, one error line, nothing rated or written."""
    from miq.cli import main

    folder = _model_copy(tmp_path, _set("um_per_level", float("nan")))
    image = tmp_path / "a.tif"
    tifffile.imwrite(image, field.astype(np.uint16))
    code = main(["predict", str(image), "-o", str(tmp_path / "out"), "-q", "-m", str(folder)])
    err = capsys.readouterr().err
    assert code == 2
    assert [line for line in err.splitlines() if line.strip()] == [
        line for line in err.splitlines() if line.startswith("miq: error:")
    ]
    assert "um_per_level" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "results.csv").exists()


def test_network_shape_must_match_model_json(tmp_path):
    """n_levels (with its calibration) changed to 10 while the network gives 11: refused when
    loaded (before: a broadcasting traceback at the first image)."""
    from miq.errors import ModelError
    from miq.model.runtime import FocusModel

    def ten_levels(meta, folder):
        meta["n_levels"] = 10
        meta.pop("level_defocus_um", None)
        meta["calibration"]["class_bias"] = meta["calibration"]["class_bias"][:10]

    folder = _model_copy(tmp_path, ten_levels)
    with pytest.raises(ModelError, match="output has shape .* n_levels 10"):
        FocusModel(folder)


def test_bundled_models_and_their_copies_still_load(tmp_path):
    from miq.model.package import BUNDLED_MODELS, ModelPackage

    for name in BUNDLED_MODELS:
        package = ModelPackage.open(name)
        assert package.n_levels == 11 and package.patch_size == 84
    assert ModelPackage.open(_model_copy(tmp_path, lambda meta, folder: None)).n_levels == 11


# --- 4. OME-Zarr plate metadata: malformed, escaping, and 1536-well rows ----------------------


def _plate_with(tmp_path, sample_image, change) -> Path:
    """A 2-well plate (B/3, C/12) whose plate .zattrs is rewritten by ``change(attrs, plate)``."""
    import json

    from test_ome import _write_plate

    plate = _write_plate(tmp_path, sample_image, {"B/3": 1, "C/12": 1})
    attrs = json.loads((plate / ".zattrs").read_text())
    change(attrs, plate)
    (plate / ".zattrs").write_text(json.dumps(attrs))
    return plate


def _wells(value):
    def change(attrs, plate):
        attrs["plate"]["wells"] = value

    return change


def _escaping_well(absolute: bool):
    def change(attrs, plate):
        from test_ome import _write_ome_zarr

        outside = plate.parent.parent / "outside"  # beside the input folder
        _write_ome_zarr(
            outside / "0", np.arange(100 * 100, dtype=np.uint16).reshape(1, 1, 100, 100)
        )
        (outside / ".zattrs").write_text('{"well": {"images": [{"path": "0"}]}}')
        (outside / ".zgroup").write_text('{"zarr_format": 2}')
        attrs["plate"]["wells"][1]["path"] = str(outside) if absolute else "../../outside"

    return change


def _escaping_image(attrs, plate):
    import json

    (plate / "B" / "3" / ".zattrs").write_text(
        json.dumps({"well": {"images": [{"path": "0"}, {"path": "../../../elsewhere"}, "1"]}})
    )


BAD_PLATES = {
    "wells_as_strings": (_wells(["B/3", "C/12"]), 0, "wells[0] is not an object"),
    "wells_as_a_dict": (_wells({"B/3": {"path": "B/3"}}), 0, "'wells' is not a list"),
    "well_without_path": (_wells([{"path": "B/3"}, {"rowIndex": 1}]), 1, "wells[1] has no 'path'"),
    "well_path_parent": (_escaping_well(False), 1, "leads outside the plate"),
    "well_path_absolute": (_escaping_well(True), 1, "leads outside the plate"),
    "image_path_parent": (_escaping_image, 2, "leads outside the plate"),
}


@pytest.mark.parametrize("case", sorted(BAD_PLATES))
def test_malformed_plate_is_one_error_line_and_the_batch_goes_on(
    tmp_path, sample_image, field, capsys, case
):
    """Before the fix: a traceback that aborted the whole batch (or fields outside the plate
    were read and rated)."""
    from miq.cli import main

    change, n_fields, expected = BAD_PLATES[case]
    inputs = tmp_path / "in"
    inputs.mkdir()
    plate = _plate_with(inputs, sample_image, change)
    tifffile.imwrite(inputs / "good.tif", field.astype(np.uint16))
    out = tmp_path / "out"
    code = main(["predict", str(inputs), "-o", str(out), "-q", "--threads", "1"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    plate_lines = [line for line in err.splitlines() if "malformed OME-Zarr plate" in line]
    assert len(plate_lines) == 1 and str(plate) in plate_lines[0] and expected in plate_lines[0]
    assert code != 0
    files = [r["file"] for r in _csv_rows(out / "results.csv")]
    assert str(inputs / "good.tif") in files
    assert not any("outside" in f or "elsewhere" in f for f in files)
    assert len([f for f in files if str(plate) in f]) == n_fields


def test_1536_well_rows_beyond_z_are_labelled_aa_to_af():
    """Before the fix rows 27–32 were '[', '\\', ']', '^', '_', '`'."""
    from miq.plates import parse_well, row_label, split_well, well_aggregates

    assert [row_label(r) for r in (0, 25, 26, 31)] == ["A", "Z", "AA", "AF"]
    assert parse_well("r27c01f01.tif").well == "AA01"  # Opera row numbers
    assert parse_well("r32c48f02.tif").well == "AF48"
    assert parse_well("scan_AF48.tif", r"_(?P<row>[A-Z]{1,2})(?P<col>\d{2})").well == "AF48"
    assert split_well("AF48") == (31, 48)
    rows = [
        {"well": w, "level": "1", "level_mean": "1", "in_focus": "1", "certainty": "1", "error": ""}
        for w in ("AA01", "B02", "Z24", "AF48")
    ]
    assert [w["well"] for w in well_aggregates(rows)] == ["B02", "Z24", "AA01", "AF48"]


def test_1536_well_zarr_plate_row_aa(tmp_path, sample_image):
    from miq.io import find_images
    from miq.plates import plate_position
    from miq.report.figures import plate_shape
    from test_ome import _write_plate

    plate = _write_plate(tmp_path, sample_image, {"AA/1": 1, "AF/48": 1})
    fields = find_images([plate])
    assert [plate_position(f).well for f in fields] == ["AA01", "AF48"]
    assert plate_shape([{"well": "AA01"}, {"well": "AF48"}]) == (32, 48)


def test_measure_of_offset_integers_is_exact(tmp_path, field):
    """measure reads 32/64-bit integer planes as they are: the classical measures of an int64
    plane with a 1e12 offset are those of the exact values (float64), not of a float32 copy."""
    from miq.measures import measure_all

    plane = field + 10**12
    path = tmp_path / "offset.tif"
    tifffile.imwrite(path, plane)
    out_csv, failures = measure_files([path], tmp_path / "m")
    (row,) = _csv_rows(out_csv)
    expected = measure_all(plane)
    assert failures == 0
    assert {k: row[k] for k in expected} == {k: f"{v:.8g}" for k, v in expected.items()}
