"""A corpus of bad and odd inputs: each gets a result or one error line naming it, never a crash.

Every case is a file (or link) in one folder, run through `miq predict` in a single batch. The
expectation per case is either "ok" (rated) or "error" (one `miq: error:` line naming the file,
and a CSV row with `error` filled). The CSV must stay well-formed and contain every input.
"""

from __future__ import annotations

import csv
import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from miq.cli import main


def _image(sample_image, h=200, w=300):
    return sample_image[:h, :w].copy()


def build_corpus(folder, sample_image) -> dict[str, str]:
    """Write the corpus into ``folder``; return {file name: "ok" | "error"}."""
    s = _image(sample_image)
    expect: dict[str, str] = {}

    def tif(name, data, outcome, **kwargs):
        tifffile.imwrite(folder / name, data, **kwargs)
        expect[name] = outcome

    # formats and pixel types that must be rated
    tif("uint16.tif", s, "ok")
    tif("lzw.tif", s, "ok", compression="lzw")
    tif("int8.tif", (s // 64).astype(np.int8), "ok")
    tif("int32_negative.tif", s.astype(np.int32) - 5000, "ok")
    tif("float16.tif", (s / 4096).astype(np.float16), "ok")
    tif("float64_huge.tif", s.astype(np.float64) * 1e290, "ok")
    tif("negative_floats.tif", s.astype(np.float32) - 1e4, "ok")
    tif("bool.tif", s > np.median(s), "ok")
    tif("exactly_84.tif", s[:84, :84], "ok")
    tif("elongated_84x5000.tif", np.tile(s[:84], (1, 17))[:, :5000], "ok")
    tif("five_d_singletons.tif", s[None, None, None], "ok")
    tif("hot_pixel.tif", _hot_pixel(), "ok")
    Image.fromarray(s.astype(np.uint16)).save(folder / "png16.png")
    expect["png16.png"] = "ok"
    Image.fromarray((s // 16).clip(0, 255).astype(np.uint8)).save(folder / "jpeg.jpg", quality=95)
    expect["jpeg.jpg"] = "ok"
    Image.fromarray((s // 16).clip(0, 255).astype(np.uint8)).save(folder / "bitmap.bmp")
    expect["bitmap.bmp"] = "ok"
    tif("tiff_named_png.png", s, "ok")  # content decides, not the extension
    sub_a, sub_b = folder / "dup_a", folder / "dup_b"
    sub_a.mkdir()
    sub_b.mkdir()
    tif("dup_a/same.tif", s, "ok")
    tif("dup_b/same.tif", s[::-1], "ok")
    name = "caf\xe9_\u4e2d\u6587 name.tif"  # non-ASCII file name
    tif(name, s, "ok")
    raw = os.fsencode(folder) + b"/latin1_\xe9t\xe9.tif"  # not valid UTF-8
    with open(raw, "wb") as fh:
        fh.write((folder / name).read_bytes())
    expect["latin1_\\xe9t\\xe9.tif"] = "ok"  # how the UTF-8 CSV shows the raw bytes

    # inputs that must give one error line each
    (folder / "empty.tif").write_bytes(b"")
    expect["empty.tif"] = "error"
    (folder / "text.tif").write_text("not an image\n")
    expect["text.tif"] = "error"
    good = (folder / "uint16.tif").read_bytes()
    (folder / "truncated.tif").write_bytes(good[: len(good) // 3])
    expect["truncated.tif"] = "error"
    (folder / "header_only.tif").write_bytes(good[:16])
    expect["header_only.tif"] = "error"
    tif("one_pixel.tif", np.array([[7]], np.uint16), "error")
    tif("thin_83x5000.tif", np.tile(s[:83], (1, 17))[:, :5000], "error")
    nan = s.astype(np.float32)
    nan[10, 10] = np.nan
    tif("nan.tif", nan, "error")
    inf = s.astype(np.float32)
    inf[5, 5] = np.inf
    tif("inf.tif", inf, "error")
    tif("complex.tif", s.astype(np.complex64), "error")
    tif("constant.tif", np.full((200, 200), 1234, np.uint16), "error")
    tif("all_zero.tif", np.zeros((200, 200), np.uint16), "error")
    rgb = np.stack([s // 16] * 3, axis=-1).clip(0, 255).astype(np.uint8)
    Image.fromarray(rgb).save(folder / "rgb.png")
    expect["rgb.png"] = "error"
    Image.fromarray(np.dstack([rgb, np.full(s.shape, 255, np.uint8)])).save(folder / "rgba.png")
    expect["rgba.png"] = "error"
    tif(
        "six_d.tif",
        np.zeros((2, 2, 2, 2, 90, 90), np.uint16) + _image(sample_image, 90, 90),
        "error",
    )
    _huge_declared_size(folder / "huge_declared.tif")
    expect["huge_declared.tif"] = "error"
    (folder / "gif_named_tif.tif").write_bytes(b"GIF89a" + bytes(64))
    expect["gif_named_tif.tif"] = "error"
    (folder / "png_garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    expect["png_garbage.png"] = "error"
    os.symlink("loop_b.tif", folder / "loop_a.tif")
    os.symlink("loop_a.tif", folder / "loop_b.tif")
    (folder / "folder_named.tif").mkdir()  # a folder with an image suffix: nothing to rate
    return expect


def _hot_pixel() -> np.ndarray:
    data = np.zeros((200, 200), np.uint16)
    data[50, 60] = 4000
    return data


def _huge_declared_size(path) -> None:
    """A valid 16×16 TIFF whose header is patched to declare 100000 × 100000 px."""
    import struct

    tifffile.imwrite(path, np.arange(256, dtype=np.uint16).reshape(16, 16))
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        offsets = [tags[name].valueoffset for name in ("ImageWidth", "ImageLength")]
        types = [tags[name].dtype for name in ("ImageWidth", "ImageLength")]
    data = bytearray(path.read_bytes())
    for offset, dtype in zip(offsets, types):
        fmt = "<H" if dtype == 3 else "<I"  # SHORT or LONG
        value = 65535 if dtype == 3 else 100000
        data[offset : offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    path.write_bytes(bytes(data))


def test_bad_input_corpus(tmp_path, sample_image, capsys):
    folder = tmp_path / "corpus"
    folder.mkdir()
    expect = build_corpus(folder, sample_image)
    assert len(expect) >= 30
    before = _snapshot(folder)
    out = tmp_path / "out"
    code = main(
        ["predict", str(folder), str(folder / "loop_a.tif"), "-o", str(out), "--threads", "1"]
        + ["--overlays", "all", "--overlay-size", "0"]
    )
    assert _snapshot(folder) == before  # inputs are only read: same bytes, same mtimes
    assert code == 1  # some inputs failed, the rest were rated
    err_lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("miq: error:")]
    with open(out / "results.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    by_name: dict[str, list[dict]] = {}
    for row in rows:
        by_name.setdefault(os.path.relpath(row["file"], folder), []).append(row)
    for name, outcome in expect.items():
        assert name in by_name, f"{name}: no CSV row"
        file_rows = by_name[name]
        if outcome == "ok":
            assert all(not r["error"] for r in file_rows), name
            rated = [r for r in file_rows if r["empty"] != "1"]  # noise-only content: empty
            assert all(0 <= int(r["level"]) <= 10 for r in rated), name
        else:
            assert all(r["error"] for r in file_rows), f"{name}: expected an error"
            assert all(name.split("/")[-1] in r["error"] for r in file_rows), name
            matching = [ln for ln in err_lines if name in ln]
            assert len(matching) == len(file_rows), f"{name}: {matching}"
    assert any("loop_a.tif" in ln for ln in err_lines)  # the explicitly named symlink loop
    assert len(rows) == sum(len(v) for v in by_name.values())
    overlays = {p.name for p in (out / "overlays").iterdir()}
    assert {"same.png", "same_2.png"} <= overlays  # duplicate names do not overwrite
    assert not list(out.rglob("*.part")) and not list(out.rglob("*.tmp"))
    # the report of this run lists every failure, odd file names included
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    n_failed = sum(bool(r["error"]) for r in rows)
    assert f"<h2>Failures ({n_failed})</h2>" in page


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """sha256 and modification time of every regular file under a folder (links not followed)."""
    state = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            if path.is_symlink() or not path.is_file():
                continue
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:  # e.g. the unreadable file, when not run as root
                digest = "unreadable"
            state[os.fsdecode(path)] = (digest, path.stat().st_mtime_ns)
    return state


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0,
    reason="root (as in CI containers) can read any file",
)
def test_unreadable_file_is_one_error(tmp_path, sample_image, capsys):
    tifffile.imwrite(tmp_path / "locked.tif", _image(sample_image))
    (tmp_path / "locked.tif").chmod(0)
    tifffile.imwrite(tmp_path / "fine.tif", _image(sample_image))
    assert main(["predict", str(tmp_path), "-o", str(tmp_path / "o"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "locked.tif" in err and "cannot open" in err
