"""Memory bounded by design (issue 20, item 4): files small on disk that declare huge images
are read one plane at a time, or refused with one line before anything large is read.

Each bomb runs ``miq predict`` in a subprocess under an address-space limit (RLIMIT_AS), so
that a regression fails the test (MemoryError, a kill or a timeout) instead of exhausting the
machine's memory; the child reports its peak RSS, which the test bounds.
"""

from __future__ import annotations

import csv
import re
import resource
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

from miq.cli import main
from miq.io import ImageSource, read_planes
from miq.io.budget import DEFAULT_MEMORY_BUDGET, parse_memory_size

LIMIT = 4 * 2**30  # address space of a bomb's process: interpreter, onnxruntime, bioio ≈ 1.5 GiB
# Peak RSS of the child itself: VmHWM (per address space, fresh after exec). ru_maxrss is not:
# Linux carries it over exec from the forked copy of the test process (hundreds of MB late in a
# test session), so it is only the fallback where /proc is missing.
_CHILD = (
    "import re, resource, sys\n"
    "from miq.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "try:\n"
    "    status = open('/proc/self/status').read()\n"
    "    peak = int(re.search(r'VmHWM:\\s*(\\d+) kB', status)[1])\n"
    "except (OSError, TypeError):\n"
    "    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "print('MAXRSS_KB', peak, file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def run_limited(args: list[str], timeout: float = 120) -> tuple[int, str, int]:
    """(exit code, stderr, peak RSS in bytes) of ``miq ARGS`` under the address-space limit."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *args],
        preexec_fn=_limited,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    found = re.search(r"MAXRSS_KB (\d+)", done.stderr)
    peak = int(found[1]) * 1024 if found else -1
    errors = "\n".join(line for line in done.stderr.splitlines() if "MAXRSS_KB" not in line)
    return done.returncode, errors, peak


def _rows(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _zlib_zeros(nbytes: int) -> bytes:
    """zlib-compressed zero bytes, made without holding them all (a few hundred KB)."""
    packer, block, out = zlib.compressobj(1), bytes(2**24), []
    while nbytes:
        n = min(len(block), nbytes)
        out.append(packer.compress(block[:n]))
        nbytes -= n
    return b"".join([*out, packer.flush()])


def _ome_zarr(path: Path, shape: tuple[int, ...], chunks: tuple[int, ...], dtype="uint16"):
    """An empty OME-Zarr image (NGFF 0.4, zarr v2, axes t, c, z, y, x): chunks never written
    are missing (read as zeros); returns the zarr array to write some."""
    zarr = pytest.importorskip("zarr")
    pytest.importorskip("bioio_ome_zarr", reason="needs the io extra")
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    array = root.create_array("0", shape=shape, chunks=chunks, dtype=dtype, fill_value=0)
    axes = [{"name": a, "type": {"t": "time", "c": "channel"}.get(a, "space")} for a in "tczyx"]
    scale = [{"type": "scale", "scale": [1.0] * 5}]
    root.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": axes,
            "datasets": [{"path": "0", "coordinateTransformations": scale}],
        }
    ]
    return array


def _field(seed: int, shape=(256, 256)) -> np.ndarray:
    """A field with structure (not empty): blurred blobs plus noise, uint16."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[0], : shape[1]]
    image = np.zeros(shape)
    for cy, cx in rng.integers(0, min(shape), (40, 2)):
        image += 800 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 30.0)
    return (image + 100 + rng.normal(0, 3, shape)).clip(0, 65535).astype(np.uint16)


# --- the bombs ---------------------------------------------------------------------------------


def test_ome_zarr_time_series_is_read_one_plane_at_a_time(tmp_path):
    """256² × 100 000 time points (13 GB declared, ~100 KB on disk) was loaded whole."""
    path = tmp_path / "movie.ome.zarr"
    array = _ome_zarr(path, (100_000, 1, 1, 256, 256), (1, 1, 1, 256, 256))
    for t in range(2):
        array[t, 0, 0] = _field(t)
    out = tmp_path / "out"
    rc, err, peak = run_limited(["predict", str(path), "-o", str(out), "-q", "--t", "0,1"])
    assert rc == 0, err
    rows = _rows(out)
    assert [(r["t"], r["error"]) for r in rows] == [("0", ""), ("1", "")]
    assert peak < 1.2 * 2**30  # one plane at a time (measured ~0.3 GiB), not 13 GB


def test_ome_zarr_of_a_million_pixels_a_side_is_refused_before_reading(tmp_path):
    """10⁶ × 10⁶ px with missing chunks (24 KB on disk) was scanned band by band, no cap."""
    path = tmp_path / "huge.ome.zarr"
    _ome_zarr(path, (1, 1, 1, 10**6, 10**6), (1, 1, 1, 4096, 4096))
    out = tmp_path / "out"
    rc, err, peak = run_limited(["predict", str(path), "-o", str(out), "-q"], timeout=60)
    assert rc == 1
    (line,) = err.splitlines()
    assert line.startswith(f"miq: error: {path}: a plane of 1000000×1000000 px")
    assert "memory budget of 2.0 GiB" in line and "--memory-budget" in line
    (row,) = _rows(out)
    assert row["error"] == line.removeprefix("miq: error: ")
    assert peak < 1.2 * 2**30


def test_tiff_stored_as_one_huge_tile_is_refused_before_decoding(tmp_path):
    """A 24576² zlib TIFF stored as one tile peaked at 3.5 GB: bands are one tile tall."""
    side = 24576
    path = tmp_path / "one_tile.tif"
    tile = _zlib_zeros(side * side)
    tifffile.imwrite(
        path, iter([tile]), shape=(side, side), dtype="uint8", tile=(side, side), compression="zlib"
    )
    assert path.stat().st_size < 4 * 2**20
    out = tmp_path / "out"
    rc, err, peak = run_limited(["predict", str(path), "-o", str(out), "-q"])
    assert rc == 1
    (line,) = err.splitlines()
    assert "tiles or chunks of 24576×24576 px" in line and "--memory-budget" in line
    assert "smaller tiles" in line
    assert peak < 0.6 * 2**30  # nothing decoded


def test_multipage_bigtiff_is_read_one_page_at_a_time(tmp_path):
    """4000 pages of 1024² uint16 (8.2 GB decoded, 12 MB on disk) were loaded whole."""
    path = tmp_path / "pages.tif"
    pages = [zlib.compress(_field(s, (1024, 1024)).astype("<u2").tobytes(), 1) for s in range(2)]
    pages += [_zlib_zeros(1024 * 1024 * 2)] * 3998
    tifffile.imwrite(
        path,
        iter(pages),
        shape=(4000, 1024, 1024),
        dtype="uint16",
        compression="zlib",
        rowsperstrip=1024,
        bigtiff=True,
    )
    out = tmp_path / "out"
    rc, err, peak = run_limited(["predict", str(path), "-o", str(out), "-q", "--z", "0,1"])
    assert rc == 0, err
    assert [(r["z"], r["error"]) for r in _rows(out)] == [("0", ""), ("1", "")]
    assert (out / "overlays" / "pages_c0_z1.jpg").exists()  # pages read again for overlays
    assert peak < 1.2 * 2**30  # one page at a time (measured ~0.3 GiB), not 8.2 GB


def test_resampling_counts_against_the_budget_before_resampling(tmp_path, sample_image):
    """OME PhysicalSizeX = 100 µm would upsample ×154 (1024² → 157 538² px)."""
    path = tmp_path / "coarse.ome.tif"
    meta = {"axes": "YX", "PhysicalSizeX": 100.0, "PhysicalSizeY": 100.0}
    tifffile.imwrite(path, sample_image[:400, :400], ome=True, metadata=meta)
    out = tmp_path / "out"
    rc, err, peak = run_limited(["predict", str(path), "-o", str(out), "-q"])
    assert rc == 1
    (line,) = err.splitlines()
    assert "resampled ×154 to 61538×61538 px" in line
    assert "memory budget" in line and "--ignore-file-pixel-size" in line
    assert peak < 0.6 * 2**30


# --- the budget itself -------------------------------------------------------------------------


def test_a_file_over_the_budget_is_one_error_row_and_the_batch_goes_on(tmp_path, capsys):
    stack = np.stack([_field(s, (300, 300)) for s in range(4)])  # 4 × 300² uint16 = 0.7 MB
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    png = tmp_path / "big.png"
    from PIL import Image

    Image.fromarray(np.tile(_field(9, (300, 300)), (14, 14))).save(png)  # 4200² px
    out = tmp_path / "out"
    args = ["predict", str(tmp_path / "stack.tif"), str(png), "-o", str(out), "-q"]
    assert main([*args, "--memory-budget", "64M"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"miq: error: {png}: 4200×4200 px image")
    assert "--memory-budget" in err[0]
    rows = _rows(out)
    assert [r["error"] == "" for r in rows] == [True] * 4 + [False]


def test_planes_refuses_a_file_over_the_budget_before_reading(tmp_path):
    stack = np.zeros((40, 512, 512), np.float64)  # 80 MiB as float64
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    with ImageSource.open(tmp_path / "stack.tif", memory_budget=64 * 2**20) as source:
        with pytest.raises(Exception, match=r"reading the whole image of 40×512×512 px"):
            source.planes()
    assert len(read_planes(tmp_path / "stack.tif")) == 40  # the default budget is 2 GiB


def test_per_plane_reading_gives_the_same_results_as_whole(tmp_path, model):
    from miq.io import ReadOptions
    from miq.large import reading_plan
    from miq.runs import predict_files
    from miq.runs.outputs import OutputOptions

    stack = np.stack([_field(s) for s in range(3)])
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack, compression="zlib")
    # 3 planes of 256² uint16 need about 1.04 MB to read at once and rate; one needs 0.66 MB
    small = ReadOptions(memory_budget=900_000)
    with small.open(path) as source:
        assert reading_plan(source) == "planes"
    with ReadOptions().open(path) as source:
        assert reading_plan(source) == "whole"
    outputs = OutputOptions("per-patch", "all", 1024)
    for out, read in ((tmp_path / "whole", ReadOptions()), (tmp_path / "planes", small)):
        predict_files([path], out, model, outputs=outputs, read=read, progress=False)
    whole, planes = tmp_path / "whole", tmp_path / "planes"
    assert (whole / "results.csv").read_bytes() == (planes / "results.csv").read_bytes()
    for name in ("overlays/stack_c0_z0.jpg", "overlays/stack_c0_z2.jpg"):
        assert (whole / name).read_bytes() == (planes / name).read_bytes()


@pytest.mark.parametrize(
    "text, size",
    [("2G", 2 * 2**30), ("512M", 512 * 2**20), ("1.5GB", 3 * 2**29), ("8GiB", 8 * 2**30)],
)
def test_memory_sizes(text, size):
    assert parse_memory_size(text) == size
    assert DEFAULT_MEMORY_BUDGET == 2 * 2**30


@pytest.mark.parametrize("text", ["lots", "-1G", "1M", "nanG"])
def test_bad_memory_budget_is_a_one_line_usage_error(tmp_path, capsys, text):
    with pytest.raises(SystemExit) as exit_:
        main(["predict", str(tmp_path), "-o", str(tmp_path / "o"), "--memory-budget", text])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--memory-budget" in err[-1]


# --- how files are read (the reading-related low items) ----------------------------------------


def test_tiff_whose_first_series_is_a_thumbnail_rates_the_image(tmp_path, model):
    """A small series 0 (thumbnail) and the image as series 1: the image is rated."""
    path = tmp_path / "thumb_first.tif"
    image = _field(3, (400, 500))
    with tifffile.TiffWriter(path) as tif:
        tif.write(image[::8, ::8].copy(), metadata=None)
        tif.write(image, metadata=None)
    with tifffile.TiffFile(path) as tif:
        assert [s.shape for s in tif.series] == [(50, 63), (400, 500)]
    (plane,) = read_planes(path)
    np.testing.assert_array_equal(plane.data, image)


def _png(path: Path, image) -> Path:
    image.save(path)
    return path


def test_palette_grey_png_is_read_as_grey(tmp_path):
    from PIL import Image

    grey = (_field(4, (200, 200)) // 8).clip(0, 255).astype(np.uint8)
    palette = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    image = Image.frombytes("P", grey.shape[::-1], grey.tobytes())
    image.putpalette(palette.ravel().tolist())
    path = _png(tmp_path / "palette.png", image)
    with Image.open(path) as im:
        assert im.mode == "P"
    (plane,) = read_planes(path)
    np.testing.assert_array_equal(plane.data, grey)
    colour = Image.frombytes("P", grey.shape[::-1], grey.tobytes())
    colour.putpalette(np.random.default_rng(0).integers(0, 256, 768).tolist())
    with pytest.raises(Exception, match="RGB/colour image"):
        read_planes(_png(tmp_path / "colour_palette.png", colour))


def test_grey_alpha_png_is_read_as_grey_when_alpha_is_constant(tmp_path):
    from PIL import Image

    grey = (_field(5, (200, 200)) // 8).clip(0, 255).astype(np.uint8)
    opaque = np.dstack([grey, np.full_like(grey, 255)])
    (plane,) = read_planes(_png(tmp_path / "la.png", Image.fromarray(opaque, "LA")))
    np.testing.assert_array_equal(plane.data, grey)
    varying = opaque.copy()
    varying[:50, :, 1] = 0
    with pytest.raises(Exception, match="varying alpha") as info:
        read_planes(_png(tmp_path / "la_mask.png", Image.fromarray(varying, "LA")))
    assert "\n" not in str(info.value) and "la_mask.png" in str(info.value)


@pytest.mark.parametrize("value", ["NaN", "INF", "-0.5", "0"])
def test_unusable_physical_size_warns_and_uses_the_model_pixel_size(
    tmp_path, capsys, sample_image, value
):
    path = tmp_path / "odd.ome.tif"
    meta = {"axes": "YX", "PhysicalSizeX": float(value), "PhysicalSizeY": float(value)}
    tifffile.imwrite(path, sample_image, ome=True, metadata=meta)
    out = tmp_path / "out"
    assert main(["predict", str(path), "-o", str(out), "-q"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "not usable; ignored" in err[0]
    (row,) = _rows(out)
    assert row["error"] == "" and row["pixel_size_from"] == "model"


def test_memory_page_documents_every_bomb():
    page = (Path(__file__).parents[1] / "docs" / "explanation" / "memory.md").read_text("utf-8")
    for case in ("100 000 time points", "10⁶ × 10⁶", "one tile", "4000 pages", "PhysicalSizeX"):
        assert case in page
    assert "--memory-budget" in page


def test_best_focus_and_measure_read_one_plane_at_a_time_within_the_budget(tmp_path, model):
    """A stack whose planes do not fit at once is read one plane at a time by best-focus and
    measure too (same results as whole), and refused in one line when one plane does not fit."""
    from miq.io import ReadOptions
    from miq.runs import best_focus_files, measure_files

    stack = np.stack([_field(s) for s in range(3)])
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack, compression="zlib")
    small = ReadOptions(memory_budget=900_000)  # one 256² plane fits, three do not
    with small.open(path) as source:
        with pytest.raises(Exception, match="memory budget"):
            source.planes(native_integers=True)  # what both commands read before
    runs = {}
    for name, read in (("whole", ReadOptions()), ("planes", small)):
        errors: list[str] = []
        best_focus_files([path], tmp_path / f"bf_{name}", model, read=read, on_error=errors.append)
        measure_files([path], tmp_path / f"m_{name}", read=read, on_error=errors.append)
        assert errors == []
        runs[name] = [
            (tmp_path / f"bf_{name}" / "curves.csv").read_bytes(),
            (tmp_path / f"m_{name}" / "measures.csv").read_bytes(),
        ]
    assert runs["whole"] == runs["planes"]
    errors = []
    tiny = ReadOptions(memory_budget=300_000)  # not even one plane
    assert (
        best_focus_files([path], tmp_path / "bf_tiny", model, read=tiny, on_error=errors.append)
        == []
    )
    _, failures = measure_files([path], tmp_path / "m_tiny", read=tiny, on_error=errors.append)
    assert failures == 1
    assert len(errors) == 2 and all("memory budget" in e and "\n" not in e for e in errors)


def test_evaluate_takes_the_memory_budget(tmp_path, sample_image, capsys):
    path = tmp_path / "field.tif"
    tifffile.imwrite(path, np.tile(sample_image, (2, 2)))  # 2048² uint16
    out = tmp_path / "ev"
    args = ["evaluate", "--synthetic", str(path), "--seeds", "1", "-o", str(out)]
    assert main([*args, "--memory-budget", "16M"]) != 0
    err = capsys.readouterr().err
    assert "memory budget of 16.0 MiB" in err and "--memory-budget" in err
