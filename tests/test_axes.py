"""Explicit axis orders, colour samples rated as channels, tifffile's 3/4-plane stacks and the
axis mix-up hint (miq.io)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile
from PIL import Image

from miq.errors import ImageContentError
from miq.io import ImageSource, read_planes
from miq.io.planes import axis_hint, parse_axes, split_planes


def _random(shape, dtype=np.uint16, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 250, shape).astype(dtype)


def _write_plain(path, data) -> None:
    """tifffile.imwrite without photometric (as users do), its deprecation warning silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        tifffile.imwrite(path, data)


def test_z_last_tiff_read_with_axes_yxz(tmp_path):
    data = _random((90, 100, 5))
    path = tmp_path / "z_last.tif"
    tifffile.imwrite(path, data)  # tifffile: 90 pages of 100 × 5 ("QYX")
    assert len(read_planes(path)) == 90
    planes = read_planes(path, axes="YXZ")
    assert [(p.t, p.c, p.z) for p in planes] == [(0, 0, z) for z in range(5)]
    for p in planes:
        np.testing.assert_array_equal(p.data, data[:, :, p.z])
    assert [p.z for p in read_planes(path, axes="yxz")] == list(range(5))  # any case
    with ImageSource.open(path, "YXZ") as source:
        assert source.layout() == ((90, 100, 5), "YXZ")
        assert source.lazy_planes() is None  # Y, X not last: planes() reads the file
        assert len(source.planes(native_integers=True)) == 5


def test_given_axes_rename_the_readers_axes_and_stay_lazy(tmp_path):
    data = _random((3, 90, 100))
    path = tmp_path / "frames.tif"
    tifffile.imwrite(path, data, photometric="minisblack")  # pages: "QYX", read as z
    assert [(p.t, p.z) for p in read_planes(path)] == [(0, 0), (0, 1), (0, 2)]
    planes = read_planes(path, axes="TYX")
    assert [(p.t, p.z) for p in planes] == [(0, 0), (1, 0), (2, 0)]
    np.testing.assert_array_equal(planes[2].data, data[2])
    with ImageSource.open(path, axes="CYX") as source:
        lazy = source.lazy_planes()
        assert [(p.c, p.z) for p in lazy] == [(0, 0), (1, 0), (2, 0)]
        np.testing.assert_array_equal(lazy[1].data[0:90, 0:100], data[1])
        assert [(p.c, p.z) for p in source.planes()] == [(0, 0), (1, 0), (2, 0)]


@pytest.mark.parametrize(
    "axes,message",
    [
        ("ZYX", "name 3 dimensions but the image has 2"),
        ("YXQ", "unknown letters 'Q'"),
        ("Y-X", "unknown letters '-'"),
        ("YXY", "Y given twice"),
        ("ZC", "Y and X"),
        ("", "no letters"),
    ],
)
def test_bad_axes_are_one_line_errors_naming_the_file(tmp_path, axes, message):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, _random((90, 100)))
    with pytest.raises(ImageContentError) as caught:
        read_planes(path, axes=axes)
    text = str(caught.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text
    with pytest.raises(ImageContentError, match="axes"):
        ImageSource.open(path, axes)


def test_parse_axes_for_option_checks():
    assert parse_axes(" czyx ") == "CZYX"
    with pytest.raises(ValueError, match="unknown letters"):
        parse_axes("ABC")


def test_rgb_tiff_rated_per_sample_or_refused_with_the_channel_hint(tmp_path):
    rgb = _random((90, 100, 3), np.uint8, seed=4)
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    with pytest.raises(ImageContentError) as caught:
        read_planes(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: RGB/colour image (3 samples per pixel)")
    assert text.endswith("; rate one colour with --channel N (e.g. --channel 1 for green)")
    planes = read_planes(path, samples_as_channels=True)
    assert [(p.t, p.c, p.z) for p in planes] == [(0, 0, 0), (0, 1, 0), (0, 2, 0)]
    for p in planes:
        np.testing.assert_array_equal(p.data, rgb[:, :, p.c])
    with ImageSource.open(path, samples_as_channels=True) as source:
        assert len(source.planes(native_integers=True)) == 3
        assert source.has_planes(native_integers=True)
        assert not source.has_planes(native_integers=True, samples_as_channels=False)
        with pytest.raises(ImageContentError, match="--channel"):
            source.planes(samples_as_channels=False)
    with ImageSource.open(path) as source:
        assert [p.c for p in source.planes(samples_as_channels=True)] == [0, 1, 2]


@pytest.mark.parametrize("mode,samples", [("RGB", 3), ("RGBA", 4)])
def test_png_colour_rated_per_sample_or_refused(tmp_path, mode, samples):
    colour = _random((90, 100, samples), np.uint8, seed=5)
    path = tmp_path / "colour.png"
    Image.fromarray(colour, mode).save(path)
    with pytest.raises(ImageContentError, match=r"--channel 1 for green\)$"):
        read_planes(path)
    planes = read_planes(path, samples_as_channels=True)
    assert [p.c for p in planes] == list(range(samples))
    for p in planes:
        np.testing.assert_array_equal(p.data, colour[:, :, p.c])


def test_colour_and_channel_axes_together_are_refused():
    data = _random((2, 90, 100, 3), np.uint8)
    with pytest.raises(ImageContentError, match="2 channels with 3 colour samples"):
        split_planes(data, "CYXS", "f.tif", samples_as_channels=True)
    planes = split_planes(data[:1], "CYXS", "f.tif", samples_as_channels=True)  # one channel
    assert [p.c for p in planes] == [0, 1, 2]
    np.testing.assert_array_equal(planes[2].data, data[0, :, :, 2])
    grey = split_planes(data[0, :, :, 0], "YX", "f.tif", samples_as_channels=True)
    assert len(grey) == 1  # nothing to do without colour samples


@pytest.mark.parametrize("n", [3, 4])
@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_three_and_four_plane_stacks_written_plainly_are_planes(tmp_path, n, dtype):
    data = _random((n, 90, 100), dtype, seed=n)
    path = tmp_path / "stack.tif"
    _write_plain(path, data)
    with tifffile.TiffFile(path) as tif:  # what tifffile makes of it: planar RGB
        assert tif.series[0].axes == "SYX" and tif.pages[0].photometric == 2
    planes = read_planes(path)
    assert [(p.t, p.c, p.z) for p in planes] == [(0, 0, z) for z in range(n)]
    for p in planes:
        np.testing.assert_array_equal(p.data, data[p.z])
    with ImageSource.open(path) as source:
        assert source.layout() == ((n, 90, 100), "QYX")
        lazy = source.lazy_planes()
        assert [p.z for p in lazy] == list(range(n))
        np.testing.assert_array_equal(lazy[-1].data[0:90, 0:100], data[-1])


def test_eight_bit_planar_rgb_stays_colour_with_an_axes_hint(tmp_path):
    path = tmp_path / "planar.tif"
    _write_plain(path, _random((3, 90, 100), np.uint8))
    with pytest.raises(ImageContentError) as caught:
        read_planes(path)
    assert "if they are z-planes, not colours, use --axes ZYX" in str(caught.value)
    assert len(read_planes(path, axes="ZYX")) == 3
    assert [p.c for p in read_planes(path, samples_as_channels=True)] == [0, 1, 2]


def test_grey_samples_are_planes(tmp_path):
    data = _random((90, 100, 3))
    path = tmp_path / "grey_samples.tif"
    tifffile.imwrite(path, data, photometric="minisblack", planarconfig="contig")
    planes = read_planes(path)
    assert [p.z for p in planes] == [0, 1, 2]
    np.testing.assert_array_equal(planes[1].data, data[:, :, 1])


@pytest.mark.parametrize(
    "shape,axes,hint",
    [
        ((512, 512, 40), "QYX", "last axis has 40 planes: is Z last? use --axes YXZ"),
        ((512, 512, 40), "ZYX", "last axis has 40 planes: is Z last? use --axes YXZ"),
        ((2, 512, 512, 40), "CZYX", "last axis has 40 planes: is Z last? use --axes CYXZ"),
        ((40, 512, 512), "YXQ", "first axis has 40 planes: is Z first? use --axes ZYX"),
        ((512, 30, 512), "QYX", "axis 2 of 3 has 30 planes: is it Z? use --axes YZX"),
        ((512, 512, 3), "ZYX", "last axis has 3 planes: is Z last? use --axes YXZ"),
        ((512, 512), "YX", None),
        ((40, 512, 512), "ZYX", None),
        ((10, 50, 60), "ZYX", None),  # really small
        ((200, 40, 50), "QYX", None),  # only one side large
    ],
)
def test_axis_hint(shape, axes, hint):
    assert axis_hint(shape, axes) == hint


def test_axis_hint_min_side():
    assert axis_hint((100, 100, 40), "QYX", min_side=84) is not None
    assert axis_hint((100, 100, 40), "QYX", min_side=30) is None


def test_source_axis_hint_from_the_declared_shape(tmp_path):
    path = tmp_path / "z_last.tif"
    tifffile.imwrite(path, _random((100, 90, 40)))
    with ImageSource.open(path) as source:
        assert source.axis_hint() == "last axis has 40 planes: is Z last? use --axes YXZ"
        assert not source.has_planes()
    with ImageSource.open(path, "YXZ") as source:
        assert source.axis_hint() is None
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, _random((100, 90)))
    with ImageSource.open(plain) as source:
        assert source.axis_hint() is None
    png = tmp_path / "small.png"
    Image.fromarray(_random((40, 50), np.uint8)).save(png)
    with ImageSource.open(png) as source:
        assert source.axis_hint() is None
