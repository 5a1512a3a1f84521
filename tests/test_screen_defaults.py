"""Screen-scale defaults and messages for people (issue 19, items 1, 4 and 5)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from miq.cli import main
from miq.optics import Optics, degrade


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def fields(tmp_path, sample_image):
    """One in-focus field and one 16 µm out of focus (level 8), with plate names."""
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "screen_A01_s1.tif", sample_image)
    blurred = degrade(sample_image / 65535.0, 16.0, optics=Optics(), rng=0) * 65535.0
    tifffile.imwrite(folder / "screen_B02_s3.tif", np.round(blurred).astype(np.uint16))
    return folder


def test_default_outputs_per_patch_masks_and_previews_of_flagged_fields_only(fields, tmp_path):
    out = tmp_path / "out"
    assert main(["predict", str(fields), "-o", str(out), "-q", "--overlay-size", "300"]) == 0
    rows = {r["file"].rsplit("/", 1)[-1]: r for r in _rows(out / "results.csv")}
    sharp, blurred = rows["screen_A01_s1.tif"], rows["screen_B02_s3.tif"]
    assert sharp["in_focus"] == "1" and blurred["in_focus"] == "0"
    assert sharp["overlay"] == "" and blurred["overlay"] == "overlays/screen_B02_s3.jpg"
    with Image.open(out / blurred["overlay"]) as im:
        assert im.format == "JPEG" and im.height - 52 <= 300  # a preview above the legend
    with tifffile.TiffFile(out / "masks" / "screen_A01_s1_level_per_patch.tif") as tif:
        level = tif.asarray()
        grid = json.loads(tif.pages[0].description)
    assert level.shape == (len(grid["patch_top_px"]), len(grid["patch_left_px"])) == (7, 9)
    assert grid["patch_size_px"] == 84 and grid["image_shape_px"] == [520, 696]
    assert sorted(p.name for p in (out / "masks").iterdir()) == sorted(
        f"screen_{f}_{kind}_per_patch.tif"
        for f in ("A01_s1", "B02_s3")
        for kind in ("level", "certainty", "valid")
    )
    assert main(["report", str(out)]) == 0  # the report works with the defaults


def test_full_outputs_on_request(fields, tmp_path):
    out = tmp_path / "out"
    full = ["--masks", "per-pixel", "--overlays", "all", "--overlay-size", "0"]
    assert main(["predict", str(fields), "-o", str(out), "-q", *full]) == 0
    assert tifffile.imread(out / "masks" / "screen_A01_s1_level.tif").shape == (520, 696)
    with Image.open(out / "overlays" / "screen_A01_s1.png") as im:
        assert im.format == "PNG" and im.width == 696


def test_report_without_matplotlib_is_refused_before_rating(fields, tmp_path, monkeypatch, capsys):
    import miq.plots

    monkeypatch.setattr(miq.plots, "plots_available", lambda: False)
    out = tmp_path / "out"
    assert main(["predict", str(fields), "-o", str(out), "-q", "--report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "matplotlib" in err[0]
    assert "pip install 'miq[plot]'" in err[0] and "pip install -e '.[plot]'" in err[0]
    assert not (out / "results.csv").exists() and not (out / "masks").exists()


def test_z_last_tiff_gives_one_line_with_a_hint_and_axes_rates_it(tmp_path, sample_image, capsys):
    stack = np.stack([sample_image[:100, :120] + 50 * z for z in range(40)], axis=-1)  # Y X Z
    tifffile.imwrite(tmp_path / "zlast.tif", stack.astype(np.uint16))
    assert main(["predict", str(tmp_path / "zlast.tif"), "-o", str(tmp_path / "a"), "-q"]) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("miq: error")]
    assert len(err) == 1, err  # one line for the file, not one per plane
    assert "planes" in err[0] and "--axes YXZ" in err[0]
    code = main(
        ["predict", str(tmp_path / "zlast.tif"), "-o", str(tmp_path / "b"), "-q"]
        + ["--axes", "YXZ"]
    )
    assert code == 0
    rows = _rows(tmp_path / "b" / "results.csv")
    assert len(rows) == 40 and all(not r["error"] for r in rows)


def test_rgb_tiff_rated_per_colour_with_channel(tmp_path, sample_image, capsys):
    gray = (sample_image[:200, :300] // 256).astype(np.uint8)
    rgb = np.stack([gray // 4, gray, gray // 2], axis=-1)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    assert main(["predict", str(tmp_path / "rgb.tif"), "-o", str(tmp_path / "a"), "-q"]) == 1
    assert "--channel" in capsys.readouterr().err
    out = tmp_path / "b"
    assert main(["predict", str(tmp_path / "rgb.tif"), "-o", str(out), "-q", "--channel", "1"]) == 0
    (row,) = _rows(out / "results.csv")
    assert row["c"] == "1" and not row["error"]


def test_terminal_table_keeps_well_and_site_and_blank_indices_for_failed_files(
    tmp_path, sample_image, capsys
):
    long_name = "00_mcf-z-stacks-03212011_a01_s2_w1a571d43d-5554-47fd-bb54-5db68290e5a7.tif"
    tifffile.imwrite(tmp_path / long_name, sample_image)
    (tmp_path / "broken_C03_s1.tif").write_bytes(b"II*\x00 broken")
    main(["predict", str(tmp_path), "-o", str(tmp_path / "out")])
    lines = capsys.readouterr().out.splitlines()
    good = next(ln for ln in lines if ln.startswith("00_mcf"))
    assert " A01 " in good and " 2 " in good and "…" in good and good.split()[0].endswith(".tif")
    bad = next(ln for ln in lines if ln.startswith("broken_C03_s1.tif"))
    assert "-1" not in bad and "ERROR" in bad and " C03 " in bad


def test_wells_of_several_plates_are_warned_about(tmp_path, sample_image, capsys):
    for plate in ("plate1", "plate2"):
        (tmp_path / plate).mkdir()
        tifffile.imwrite(tmp_path / plate / "img_A01_s1.tif", sample_image[:200, :300])
    assert main(["predict", str(tmp_path), "-o", str(tmp_path / "out"), "-q"]) == 0
    err = capsys.readouterr().err
    assert "pools the wells of 2 plates" in err and "plate1" in err and "plate2" in err


def test_interrupt_says_how_to_resume(fields, tmp_path, monkeypatch, capsys):
    import miq.runs

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(miq.runs, "predict_files", interrupted)
    assert main(["predict", str(fields), "-o", str(tmp_path / "out"), "-q"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "--resume" in err


def test_empty_field_gets_its_own_outcome_and_real_defocus_does_not(tmp_path, sample_image):
    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    folder.mkdir()
    background = rng.poisson(100 + 60 * np.linspace(0, 1, 696)[None, :], size=(520, 696))
    tifffile.imwrite(folder / "empty_A01_s1.tif", background.astype(np.uint16))
    level10 = degrade(sample_image / 65535.0, 20.0, optics=Optics(), rng=1) * 65535.0
    tifffile.imwrite(folder / "blurred_A01_s2.tif", np.round(level10).astype(np.uint16))
    out = tmp_path / "out"
    assert main(["predict", str(folder), "-o", str(out), "-q"]) == 0
    rows = {r["file"].rsplit("/", 1)[-1]: r for r in _rows(out / "results.csv")}
    empty, blurred = rows["empty_A01_s1.tif"], rows["blurred_A01_s2.tif"]
    assert empty["empty"] == "1" and empty["level"] == "" and empty["in_focus"] == ""
    assert empty["overlay"] == "" and not empty["error"]
    assert blurred["empty"] == "0" and int(blurred["level"]) >= 8 and blurred["in_focus"] == "0"
    (well,) = _rows(out / "wells.csv")
    assert (well["n_fields"], well["n_rated"], well["n_empty"]) == ("2", "1", "1")
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    empty_part = page[page.index("<h2>Empty fields (1)</h2>") :]
    reimage_part = page[page.index("<h2>Fields to re-image") : page.index("<h2>Empty fields")]
    assert "empty_A01_s1.tif" in empty_part and "empty_A01_s1.tif" not in reimage_part
    assert "blurred_A01_s2.tif" in reimage_part
