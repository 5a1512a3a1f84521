"""The output-folder contract of every command that writes a folder (issue 19, item 4)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from miq.cli import main
from miq.io.folder import MANIFEST_NAME


@pytest.fixture
def images(tmp_path, sample_image):
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "plate_A01_s1.tif", sample_image[:200, :300])
    tifffile.imwrite(folder / "plate_B02_s1.tif", sample_image[200:400, 300:600])
    return folder


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_overwrite_leaves_no_stale_file_and_the_report_shows_only_the_new_run(
    images, tmp_path, sample_image
):
    out = tmp_path / "out"
    assert main(["predict", str(images), "-o", str(out), "-q", "--overlays", "all"]) == 0
    assert (out / "wells.csv").exists() and list((out / "overlays").iterdir())
    (out / "notes.txt").write_text("mine")  # not miq's: must survive --overwrite
    single = tmp_path / "single"
    single.mkdir()
    tifffile.imwrite(single / "field.tif", sample_image[:200, :300])  # no well in its name
    code = main(["predict", str(single), "-o", str(out), "-q", "--overwrite", "--no-overlays"])
    assert code == 0
    left = _files(out)
    assert "wells.csv" not in left and not any(f.startswith("overlays/") for f in left)
    assert not any("plate_" in f for f in left)  # the first run's masks are gone
    assert "notes.txt" in left and (out / "notes.txt").read_text() == "mine"
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert sorted(manifest["files"]) == sorted(
        f for f in left if f not in ("notes.txt", MANIFEST_NAME)
    )
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "field.tif" in page and "plate_A01" not in page and "Plate (" not in page


def test_non_empty_folders_are_refused_without_overwrite(images, tmp_path, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.csv").write_text("x")
    for command in (
        ["predict", str(images)],
        ["predict", str(images), "--overwrite"],
        ["predict", str(images), "--resume"],
        ["measure", str(images)],
        ["measure", str(images), "--overwrite"],
        ["best-focus", str(images / "plate_A01_s1.tif")],
        ["evaluate", "--synthetic", str(images / "plate_A01_s1.tif"), "--seeds", "1"],
    ):
        capsys.readouterr()
        assert main([*command, "-o", str(foreign)]) == 2, command
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(foreign) in err[0] and "not empty" in err[0], (command, err)
    assert _files(foreign) == ["data.csv"]  # untouched


@pytest.mark.parametrize("command", ["predict", "measure", "best-focus", "evaluate"])
def test_output_naming_a_file_is_one_line(images, tmp_path, capsys, command):
    target = tmp_path / "results.txt"
    target.write_text("keep")
    args = {
        "predict": ["predict", str(images)],
        "measure": ["measure", str(images)],
        "best-focus": ["best-focus", str(images / "plate_A01_s1.tif")],
        "evaluate": ["evaluate", "--synthetic", str(images / "plate_A01_s1.tif")],
    }[command]
    assert main([*args, "-o", str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a file, not a folder" in err[0]
    assert target.read_text() == "keep"


def test_rerun_with_overwrite_for_measure_best_focus_and_evaluate(images, tmp_path):
    for args in (
        ["measure", str(images)],
        ["best-focus", str(images / "plate_A01_s1.tif")],
        [
            "evaluate",
            "--synthetic",
            str(images / "plate_A01_s1.tif"),
            "--seeds",
            "1",
            "--splits",
            "2",
        ],
    ):
        out = tmp_path / args[0]
        assert main([*args, "-o", str(out)]) == 0
        first = _files(out)
        assert MANIFEST_NAME in first
        assert main([*args, "-o", str(out)]) == 2  # refused without --overwrite
        assert main([*args, "-o", str(out), "--overwrite"]) == 0
        assert _files(out) == first


def test_resume_with_a_changed_option_is_refused_naming_it(images, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["predict", str(images), "-o", str(out), "-q"]) == 0
    csv_before = (out / "results.csv").read_bytes()
    assert main(["predict", str(images), "-o", str(out), "-q", "--resume"]) == 0
    assert (out / "results.csv").read_bytes() == csv_before
    for changed, name in (
        (["--pixel-size", "0.1"], "pixel_size_um"),
        (["--threshold", "0.7"], "in_focus_threshold"),
        (["-m", "v2"], "model"),
        (["--masks", "per-pixel"], "masks"),
    ):
        capsys.readouterr()
        assert main(["predict", str(images), "-o", str(out), "-q", "--resume", *changed]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--resume with other settings" in err[0] and name in err[0]
    assert (out / "results.csv").read_bytes() == csv_before


@pytest.mark.parametrize(
    "option, value",
    [
        ("--threshold", "5"),
        ("--threshold", "-0.1"),
        ("--in-focus-levels", "0"),
        ("--in-focus-levels", "40"),
        ("--overlay-size", "-1"),
    ],
)
def test_options_are_range_checked_before_rating(images, tmp_path, capsys, option, value):
    out = tmp_path / "out"
    try:
        code = main(["predict", str(images), "-o", str(out), "-q", option, value])
    except SystemExit as exc:  # argparse's own usage error
        code = exc.code
    assert code == 2
    assert not (out / "results.csv").exists()
    assert option in capsys.readouterr().err


def test_resume_is_byte_identical_with_the_new_defaults(images, tmp_path):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert main(["predict", str(images), "-o", str(whole), "-q", "--threads", "1"]) == 0
    first = ["predict", str(images / "plate_A01_s1.tif"), "-o", str(resumed), "-q"]
    assert main([*first, "--threads", "1"]) == 0
    (resumed / "results.csv").unlink()  # as if killed before the end: one file journaled
    code = main(["predict", str(images), "-o", str(resumed), "-q", "--resume", "--threads", "1"])
    assert code == 0
    assert (resumed / "results.csv").read_bytes() == (whole / "results.csv").read_bytes()
    masks = sorted(p.name for p in (whole / "masks").iterdir())
    assert masks == sorted(p.name for p in (resumed / "masks").iterdir())
    for name in masks:
        np.testing.assert_array_equal(
            tifffile.imread(whole / "masks" / name), tifffile.imread(resumed / "masks" / name)
        )


def test_report_files_are_recorded_and_replaced(images, tmp_path):
    out = tmp_path / "out"
    assert main(["predict", str(images), "-o", str(out), "-q", "--report"]) == 0
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert "report.html" in manifest["files"]
    assert any(f.startswith("report/plate_") for f in manifest["files"])  # the wells' maps
    assert main(["predict", str(images), "-o", str(out), "-q", "--overwrite"]) == 0
    assert not (out / "report.html").exists() and not (out / "report").exists()
    single = tmp_path / "single"
    single.mkdir()
    tifffile.imwrite(single / "field.tif", tifffile.imread(images / "plate_A01_s1.tif"))
    assert main(["predict", str(single), "-o", str(out), "-q", "--overwrite", "--report"]) == 0
    assert not any(p.name.startswith("plate_") for p in (out / "report").iterdir())


def test_demo_refuses_resume(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "d"), "-q", "--resume"]) == 2
    assert "--resume is for miq predict" in capsys.readouterr().err


def test_an_output_folder_inside_the_inputs_is_not_rated(images, tmp_path):
    out = images / "qc"
    assert main(["predict", str(images), "-o", str(out), "-q", "--overlays", "all"]) == 0
    first = (out / "results.csv").read_bytes()
    assert (
        main(["predict", str(images), "-o", str(out), "-q", "--overlays", "all", "--overwrite"])
        == 0
    )
    assert (out / "results.csv").read_bytes() == first  # its own masks and overlays left out
