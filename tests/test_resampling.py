"""Resampling to the model's pixel size (--pixel-size)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import miq
from miq.assessment import AssessOptions
from miq.cli import main
from miq.optics import Optics, degrade
from miq.resampling import resample_to_pixel_size, rescale_factor


def test_rescale_factor():
    assert rescale_factor(0.65, 0.65) == 1.0
    assert rescale_factor(0.66, 0.65) == 1.0  # within 2 %: not resampled
    assert rescale_factor(0.325, 0.65) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        rescale_factor(0.0, 0.65)


def test_resample_shape_and_mean():
    rng = np.random.default_rng(0)
    image = rng.random((100, 150)).astype(np.float32) * 1000
    half = resample_to_pixel_size(image, 0.325, 0.65)
    assert half.shape == (50, 75) and half.dtype == np.float32
    assert half.mean() == pytest.approx(image.mean(), rel=0.01)
    assert resample_to_pixel_size(image, 1.3, 0.65).shape == (200, 300)


def _upsampled(image: np.ndarray, factor: int) -> np.ndarray:
    h, w = image.shape
    big = Image.fromarray(image.astype(np.float32)).resize(
        (w * factor, h * factor), Image.Resampling.BICUBIC
    )
    return np.asarray(big)


def test_finer_sampled_image_rates_like_the_original_when_pixel_size_is_given(sample_image, model):
    unit = sample_image.astype(np.float64) / 65535.0
    image = degrade(unit, 10.0, optics=Optics(), rng=0) * 65535  # level 5
    base = miq.assess(image, model).level
    fine = _upsampled(image, 2)  # the same field at 0.325 µm/px
    naive = miq.assess(fine, model).level
    rescaled = miq.assess(fine, model, options=AssessOptions(pixel_size_um=0.325))
    assert abs(rescaled.level - base) <= 1
    assert naive > base + 1  # without the pixel size, twice the blur in px reads much worse
    assert rescaled.scale == pytest.approx(0.5)
    assert rescaled.grid.image_shape == (image.shape[0], image.shape[1])


def test_cli_pixel_size_overlay_matches_the_resampled_grid(tmp_path, sample_image):
    import tifffile

    tifffile.imwrite(tmp_path / "a.tif", sample_image)
    assert (
        main(
            [
                "predict",
                str(tmp_path / "a.tif"),
                "-o",
                str(tmp_path / "o"),
                "--pixel-size",
                "1.3",
                "-q",
                "--overlays",
                "all",
                "--overlay-size",
                "0",
            ]
        )
        == 0
    )
    overlay = Image.open(tmp_path / "o" / "overlays" / "a.png")
    assert overlay.size[0] >= 2 * sample_image.shape[1]  # drawn on the 2× resampled image


def test_recorded_pixel_size_is_used_or_ignored_on_request(tmp_path, sample_image, model, capsys):
    import csv

    import tifffile

    unit = sample_image.astype(np.float64) / 65535.0
    image = degrade(unit, 10.0, optics=Optics(), rng=0) * 65535  # level 5 at 0.65 µm/px
    fine = np.round(_upsampled(image, 2)).clip(0, 65535).astype(np.uint16)
    tifffile.imwrite(
        tmp_path / "fine.tif",
        fine,
        imagej=True,
        resolution=(1 / 0.325, 1 / 0.325),
        metadata={"unit": "um"},
    )
    base = miq.assess(image, model).level
    ignored = ["--ignore-file-pixel-size"]
    all_overlays = ["--overlays", "all", "--overlay-size", "0"]
    fine_tif = str(tmp_path / "fine.tif")
    assert main(["predict", fine_tif, "-o", str(tmp_path / "a"), "-q", *ignored]) == 0
    assert "warning" not in capsys.readouterr().err  # asked for: the rows say so
    assert main(["predict", fine_tif, "-o", str(tmp_path / "b"), "-q", *all_overlays]) == 0
    assert "warning" not in capsys.readouterr().err  # the default: the recorded size is used
    rows = {}
    for run in ("a", "b"):
        with open(tmp_path / run / "results.csv", newline="") as fh:
            rows[run] = next(csv.DictReader(fh))
    levels = {run: int(row["level"]) for run, row in rows.items()}
    assert abs(levels["b"] - base) <= 1 < levels["a"] - base
    assert (rows["b"]["pixel_size_um"], rows["b"]["pixel_size_from"], rows["b"]["resampled"]) == (
        "0.325",
        "file",
        "1",
    )
    assert (rows["a"]["pixel_size_um"], rows["a"]["pixel_size_from"], rows["a"]["resampled"]) == (
        "0.65",
        "model",
        "0",
    )
    with Image.open(tmp_path / "b" / "overlays" / "fine.png") as im:
        assert im.width < fine.shape[1]  # the overlay is drawn on the resampled image
    # --pixel-size wins over the file's
    assert main(["predict", fine_tif, "-o", str(tmp_path / "c"), "-q", "--pixel-size", "0.65"]) == 0
    with open(tmp_path / "c" / "results.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    assert (row["pixel_size_um"], row["pixel_size_from"], row["resampled"]) == (
        "0.65",
        "option",
        "0",
    )


def test_ome_tiff_at_0_1_um_rated_with_and_without_its_recorded_size(tmp_path, sample_image):
    """An in-focus field recorded at 0.1 µm/px (6.5× finer than the model's): by default it is
    resampled and rated in focus; taken at the model's pixel size it reads levels blurrier.
    Each row records the pixel size used and whether the plane was resampled."""
    import csv

    import tifffile

    h, w = sample_image.shape
    size = (round(w * 6.5), round(h * 6.5))
    big = Image.fromarray(sample_image.astype(np.float32)).resize(size, Image.Resampling.BICUBIC)
    fine = np.round(np.asarray(big)).clip(0, 65535)
    tifffile.imwrite(
        tmp_path / "fine.ome.tif",
        fine.astype(np.uint16),
        ome=True,
        metadata={"axes": "YX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1},
    )
    rows = {}
    for run, extra in (("used", []), ("ignored", ["--ignore-file-pixel-size"])):
        out = tmp_path / run
        assert main(["predict", str(tmp_path / "fine.ome.tif"), "-o", str(out), "-q", *extra]) == 0
        with open(out / "results.csv", newline="") as fh:
            rows[run] = next(csv.DictReader(fh))
    used, ignored = rows["used"], rows["ignored"]
    assert (used["pixel_size_um"], used["pixel_size_from"], used["resampled"]) == (
        "0.1",
        "file",
        "1",
    )
    assert (ignored["pixel_size_from"], ignored["resampled"]) == ("model", "0")
    assert used["in_focus"] == "1" and int(used["level"]) <= 2
    assert float(ignored["level_mean"]) >= float(used["level_mean"]) + 1.5  # 2.4 measured
