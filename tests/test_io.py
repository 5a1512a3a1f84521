"""Reading planes from real formats, and one clear error per kind of bad input."""

from __future__ import annotations

import builtins
import os

import numpy as np
import pytest
import tifffile
from PIL import Image

from miq.errors import ImageContentError, ImageReadError
from miq.io import atomic_write, find_images, read_planes, to_unit_range


def test_uint16_tiff_lzw(tmp_path):
    data = np.arange(100 * 120, dtype=np.uint16).reshape(100, 120)
    tifffile.imwrite(tmp_path / "a.tif", data, compression="lzw")
    (plane,) = read_planes(tmp_path / "a.tif")
    assert plane.data.dtype == np.float32 and (plane.c, plane.z) == (0, 0)
    np.testing.assert_array_equal(plane.data, data)


@pytest.mark.parametrize(
    "dtype, kept",
    [
        (np.uint8, True),
        (np.uint16, True),
        (np.int16, True),
        (np.int32, True),
        (np.uint32, True),
        (np.int64, True),
        (np.float32, False),
        (np.float64, False),
    ],
)
def test_native_integers_keeps_integer_planes_uncopied(tmp_path, dtype, kept):
    data = (np.arange(2 * 90 * 100) % 200).astype(dtype).reshape(2, 90, 100)
    tifffile.imwrite(tmp_path / "a.tif", data)
    planes = read_planes(tmp_path / "a.tif", native_integers=True)
    assert [p.data.dtype for p in planes] == [np.dtype(dtype) if kept else np.float32] * 2
    assert read_planes(tmp_path / "a.tif")[0].data.dtype == np.float32  # the default
    for plane, expected in zip(planes, data):
        np.testing.assert_array_equal(plane.data, expected)


def test_png_8_and_16_bit_sniffed_by_content(tmp_path):
    data8 = (np.arange(100 * 100) % 256).astype(np.uint8).reshape(100, 100)
    Image.fromarray(data8).save(tmp_path / "eight.png")
    data16 = (np.arange(100 * 100) * 6).astype(np.uint16).reshape(100, 100)
    Image.fromarray(data16).save(tmp_path / "sixteen.png")
    (tmp_path / "sixteen.png").rename(tmp_path / "sixteen_really_png.tif")  # wrong extension
    np.testing.assert_array_equal(read_planes(tmp_path / "eight.png")[0].data, data8)
    np.testing.assert_array_equal(read_planes(tmp_path / "sixteen_really_png.tif")[0].data, data16)


def test_multichannel_and_stack_are_split_per_plane(tmp_path):
    cyx = np.random.default_rng(0).integers(0, 4000, (3, 90, 100)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "cyx.tif", cyx, imagej=True, metadata={"axes": "CYX"})
    planes = read_planes(tmp_path / "cyx.tif")
    assert [(p.c, p.z) for p in planes] == [(0, 0), (1, 0), (2, 0)]
    np.testing.assert_array_equal(planes[2].data, cyx[2])
    zcyx = np.random.default_rng(1).random((4, 2, 90, 100)).astype(np.float32)
    tifffile.imwrite(tmp_path / "zcyx.tif", zcyx, imagej=True, metadata={"axes": "ZCYX"})
    planes = read_planes(tmp_path / "zcyx.tif")
    assert len(planes) == 8
    lookup = {(p.c, p.z): p.data for p in planes}
    np.testing.assert_array_equal(lookup[(1, 3)], zcyx[3, 1])


def test_time_channel_z_hyperstack(tmp_path):
    tzcyx = np.random.default_rng(3).integers(0, 900, (2, 3, 2, 90, 100)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "h.tif", tzcyx, imagej=True, metadata={"axes": "TZCYX"})
    planes = read_planes(tmp_path / "h.tif")
    assert len(planes) == 12
    lookup = {(p.t, p.c, p.z): p.data for p in planes}
    np.testing.assert_array_equal(lookup[(1, 0, 2)], tzcyx[1, 2, 0])
    tyx = tzcyx[:, 0, 0]  # a time series without z: its frames are time points, not z planes
    tifffile.imwrite(tmp_path / "t.tif", tyx, imagej=True, metadata={"axes": "TYX"})
    assert [(p.t, p.z) for p in read_planes(tmp_path / "t.tif")] == [(0, 0), (1, 0)]
    tifffile.imwrite(tmp_path / "pages.tif", tzcyx[:, 0, 0])  # plain multi-page: pages are z
    assert [(p.t, p.z) for p in read_planes(tmp_path / "pages.tif")] == [(0, 0), (0, 1)]


def test_singleton_axes_are_squeezed(tmp_path):
    data = np.random.default_rng(2).integers(0, 100, (1, 1, 1, 90, 90)).astype(np.uint16)
    tifffile.imwrite(
        tmp_path / "five_d_singletons.tif", data, imagej=True, metadata={"axes": "TZCYX"}
    )
    (plane,) = read_planes(tmp_path / "five_d_singletons.tif")
    assert plane.data.shape == (90, 90)


@pytest.mark.parametrize(
    "name,make,error,message",
    [
        ("empty.tif", lambda p: p.write_bytes(b""), ImageReadError, "empty file"),
        ("notes.tif", lambda p: p.write_text("not an image at all"), ImageReadError, "not a TIFF"),
        ("truncated.tif", None, ImageReadError, "corrupt"),
        (
            "rgb.png",
            lambda p: Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(p),
            ImageContentError,
            "RGB",
        ),
        (
            "rgba.png",
            lambda p: Image.fromarray(np.zeros((100, 100, 4), np.uint8)).save(p),
            ImageContentError,
            "RGB",
        ),
        (
            "six_d.tif",
            lambda p: tifffile.imwrite(p, np.zeros((2, 2, 2, 2, 90, 90), np.uint16)),
            ImageContentError,
            "6-D",
        ),
        (
            "complex.tif",
            lambda p: tifffile.imwrite(p, np.zeros((90, 90), np.complex64)),
            ImageContentError,
            "complex",
        ),
    ],
)
def test_bad_files_name_the_file_and_the_problem(tmp_path, name, make, error, message):
    path = tmp_path / name
    if make is None:  # a real TIFF cut in half
        tifffile.imwrite(
            path, np.random.default_rng(0).integers(0, 60000, (300, 300)).astype(np.uint16)
        )
        path.write_bytes(path.read_bytes()[:5000])
    else:
        make(path)
    with pytest.raises(error, match=message) as info:
        read_planes(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_and_folder_inputs(tmp_path):
    with pytest.raises(ImageReadError, match="cannot open"):
        read_planes(tmp_path / "nope.tif")
    with pytest.raises(ImageReadError, match="folder"):
        read_planes(tmp_path)


def test_find_images_expands_folders_and_globs(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.tif", "a.TIF", "sub/c.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    missing = []
    found = find_images(
        [tmp_path, str(tmp_path / "*.tif"), tmp_path / "ghost.tif"], on_missing=missing.append
    )
    assert [p.name for p in found] == ["a.TIF", "b.tif", "c.png"]  # sorted, de-duplicated, no .txt
    assert missing == [str(tmp_path / "ghost.tif")]


def test_to_unit_range_is_affine_invariant():
    rng = np.random.default_rng(0)
    data = rng.random((50, 60))
    np.testing.assert_allclose(to_unit_range(data * 37 + 1000), to_unit_range(data), atol=1e-5)
    assert to_unit_range(data).min() == 0 and to_unit_range(data).max() == 1


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, SystemExit])
def test_atomic_write_interrupted_as_its_file_is_created_leaves_nothing(
    tmp_path, monkeypatch, interruption
):
    """A signal that lands just after the temporary file is created (Ctrl-C, or SIGTERM in a
    worker, which exits through SystemExit) leaves no ``.part`` file behind: on the old code,
    created by `tempfile.mkstemp` before the cleanup was armed, it stayed (seen once in CI)."""

    def interrupted_after(real_open):
        """``real_open``, interrupted just after it created a ``.part`` file."""

        def opened_then_interrupted(path, *args, **kwargs):
            handle = real_open(path, *args, **kwargs)
            if os.fspath(path).endswith(".part"):
                os.close(handle) if isinstance(handle, int) else handle.close()
                raise interruption()
            return handle

        return opened_then_interrupted

    monkeypatch.setattr(os, "open", interrupted_after(os.open))  # tempfile.mkstemp's way
    monkeypatch.setattr(builtins, "open", interrupted_after(builtins.open))  # open(..., "x")
    with pytest.raises(interruption):
        with atomic_write(tmp_path / "out.csv", "w") as fh:
            fh.write("never")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_follows_the_umask(tmp_path):
    """Outputs get 0o666 less the process umask, like any file a program writes (not the
    private 0o600 of a temporary file)."""
    previous = os.umask(0o027)
    try:
        with atomic_write(tmp_path / "out.bin") as fh:
            fh.write(b"x")
    finally:
        os.umask(previous)
    assert (tmp_path / "out.bin").stat().st_mode & 0o777 == 0o640


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as fh:
            fh.write("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]
    with atomic_write(target, "w") as fh:
        fh.write("new")
    assert target.read_text() == "new"
