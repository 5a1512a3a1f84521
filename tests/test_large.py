"""Planes over the large-image limit are rated band by band with the same results as whole."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

import miq.large
from miq.assessment import assess
from miq.runs import assess_file


@pytest.fixture
def small_limit(monkeypatch):
    """Treat planes over 0.1 MP as large, so that the banded path runs on test-sized images."""
    monkeypatch.setattr(miq.large, "LARGE_PLANE_PIXELS", 100_000)


@pytest.fixture(scope="module")
def mosaic(sample_image) -> np.ndarray:
    """A 700×1000 uint16 mosaic (sides not multiples of 84: the last patches overlap)."""
    tiles = np.concatenate([sample_image, sample_image[:, ::-1]], axis=1)
    return np.ascontiguousarray(np.concatenate([tiles, tiles[::-1]], axis=0)[:700, :1000])


def _write(path, data, kind):
    if kind == "plain":  # memory-mapped
        tifffile.imwrite(path, data)
    elif kind == "tiled_zlib":  # tifffile's zarr view
        tifffile.imwrite(path, data, tile=(128, 128), compression="zlib")
    elif kind == "strips_lzw":
        tifffile.imwrite(path, data, compression="lzw", rowsperstrip=37)


@pytest.mark.parametrize("kind", ["plain", "tiled_zlib", "strips_lzw"])
def test_banded_tiff_equals_whole(tmp_path, model, mosaic, small_limit, kind):
    if kind != "plain":
        pytest.importorskip("zarr", reason="compressed TIFFs are read lazily through zarr")
    path = tmp_path / f"{kind}.tif"
    _write(path, mosaic, kind)
    (result,) = assess_file(path, model)
    assert result.assessment.banded is True
    whole = assess(mosaic, model)
    np.testing.assert_array_equal(result.assessment.patch_probabilities, whole.patch_probabilities)
    # the same noise σ from the bands, so the same foreground patches
    np.testing.assert_array_equal(result.assessment.patch_foreground, whole.patch_foreground)
    assert 0 < whole.n_foreground < whole.n_patches  # the mosaic has background patches
    assert result.assessment.level == whole.level
    assert result.assessment.level_mean == whole.level_mean


def test_banded_multichannel_and_ome_zarr(tmp_path, model, mosaic, small_limit):
    stack = np.stack([mosaic, mosaic[::-1, ::-1]])
    path = tmp_path / "two_channels.tif"
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "CYX"})
    results = assess_file(path, model)
    assert [(r.c, r.z) for r in results] == [(0, 0), (1, 0)]
    for r, plane in zip(results, stack):
        assert r.assessment.banded is True
        assert r.assessment.level_mean == assess(plane, model).level_mean

    writers = pytest.importorskip("bioio_ome_zarr.writers", reason="needs the io extra")
    zpath = tmp_path / "mosaic.ome.zarr"
    writer = writers.OMEZarrWriter(
        str(zpath),
        level_shapes=stack.shape,
        dtype=stack.dtype,
        zarr_format=2,
        chunk_shape=(1, 256, 256),
        axes_names=["c", "y", "x"],
        axes_types=["channel", "space", "space"],
    )
    writer.write_full_volume(stack)
    zresults = assess_file(zpath, model)
    assert [r.assessment.level_mean for r in zresults] == [r.assessment.level_mean for r in results]
    assert all(r.assessment.banded for r in zresults)


@pytest.mark.parametrize("content", ["nan", "constant"])
def test_banded_bad_content_same_error(tmp_path, model, mosaic, small_limit, content):
    data = mosaic.astype(np.float32)
    if content == "nan":
        data[650, 990] = np.nan
    else:
        data[:] = 7.0
    path = tmp_path / f"{content}.tif"
    tifffile.imwrite(path, data)
    (banded,) = assess_file(path, model)
    miq.large.LARGE_PLANE_PIXELS = 10**12
    (whole,) = assess_file(path, model)
    assert banded.error and banded.error == whole.error


def test_banded_truncated_file_is_one_error(tmp_path, model, mosaic, small_limit):
    path = tmp_path / "truncated.tif"
    tifffile.imwrite(path, mosaic)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 5000])  # the last rows are missing
    (result,) = assess_file(path, model)
    assert result.assessment is None
    assert result.error.startswith(str(path)) and "\n" not in result.error


def test_banded_outputs_per_patch_masks_and_reduced_overlay(
    tmp_path, mosaic, small_limit, monkeypatch, capsys
):
    from PIL import Image

    from miq.cli import main

    monkeypatch.setattr(miq.large, "PREVIEW_SIDE", 300)  # 1000 px wide → every 4th px
    tifffile.imwrite(tmp_path / "mosaic.tif", mosaic)
    out = tmp_path / "run"
    full = ["--masks", "per-pixel", "--overlays", "all", "--overlay-size", "0"]
    assert main(["predict", str(tmp_path / "mosaic.tif"), "-o", str(out), "-q", *full]) == 0
    assert "rated in bands" in capsys.readouterr().err
    level = tifffile.imread(out / "masks" / "mosaic_level_per_patch.tif")
    assert level.shape == (9, 12)  # 700×1000 px → 9×12 patches, one pixel each
    with Image.open(out / "overlays" / "mosaic.png") as im:
        assert im.height - 52 == 175  # 700 / 4 rows above the legend bar and text
        pixels = np.asarray(im.convert("RGB"))[:175, :250]
    coloured = (pixels[:, :, 0] != pixels[:, :, 1]) | (pixels[:, :, 1] != pixels[:, :, 2])
    assert 0.1 < coloured.mean() < 0.6  # patch borders drawn over the grey preview


def test_large_plane_with_a_recorded_pixel_size_is_rated_in_bands_with_a_warning(
    tmp_path, model, mosaic, small_limit
):
    """Resampling needs the whole plane in memory: a plane too large for that is rated in bands
    at its recorded pixel size, and the row and a warning say so."""
    tifffile.imwrite(
        tmp_path / "big.tif", mosaic, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "um"}
    )
    warnings = []
    (result,) = assess_file(tmp_path / "big.tif", model, on_warning=warnings.append)
    assert result.assessment.banded and result.assessment.scale == 1.0
    assert (result.pixel_size_um, result.pixel_size_from) == (0.5, "file")
    assert len(warnings) == 1 and "too large to resample" in warnings[0]
