"""miq.messages: per-plane repeats collapsed, every message on one line."""

from __future__ import annotations

from miq.messages import collapse_errors, one_line

SMALL = "image is 79×74 px, smaller than one 84×84 patch"


def test_repeated_plane_errors_of_one_file_collapse_in_place():
    lines = ["first.tif: not a TIFF, PNG, JPEG or BMP image (unknown file content)"]
    lines += [f"stack.tif [c=0, z={z}]: {SMALL}" for z in range(201)]
    lines += ["last.tif: empty file (0 bytes)"]
    assert collapse_errors(lines) == [
        lines[0],
        f"stack.tif: 201 planes: {SMALL} (planes c=0, z=0 … c=0, z=200)",
        lines[-1],
    ]


def test_time_labels_notes_and_prefixes():
    lines = [f"miq: error: h.tif [t={t}, c=0, z=3]: {SMALL}" for t in range(3)]
    assert collapse_errors(lines) == [
        f"miq: error: h.tif: 3 planes: {SMALL} (planes t=0, c=0, z=3 … t=2, c=0, z=3)"
    ]
    noted = [f"g.tif [c=0, z={z}] (resampled ×0.541): {SMALL}" for z in range(2)]
    assert collapse_errors(noted) == [
        f"g.tif (resampled ×0.541): 2 planes: {SMALL} (planes c=0, z=0 and c=0, z=1)"
    ]


def test_single_lines_different_messages_and_other_files_stay():
    lines = [
        "a.tif [c=0, z=0]: image is constant (every pixel = 0); nothing to rate",
        f"a.tif [c=0, z=1]: {SMALL}",
        "b.tif [c=0, z=0]: image is constant (every pixel = 0); nothing to rate",
        f"a.tif [c=0, z=2]: {SMALL}",
        "b.tif: pixel size 1.2 µm (from the file) differs from the model's 0.65 µm",
        "a.tif [c=1, z=0]: 3 pixels are NaN or infinite",
    ]
    assert collapse_errors(lines) == [
        lines[0],
        f"a.tif: 2 planes: {SMALL} (planes c=0, z=1 and c=0, z=2)",
        lines[2],
        lines[4],
        lines[5],
    ]
    assert collapse_errors([]) == []
    assert collapse_errors(lines[:1]) == lines[:1]


def test_one_line_escapes_breaks_and_control_characters():
    assert one_line("plain message") == "plain message"
    assert one_line("dir/a\nb.tif: empty file") == "dir/a\\nb.tif: empty file"
    assert one_line("a\r\nb\x00c\x85d\u2028e\tf") == "a\\r\\nb\\x00c\\x85d\\u2028e\tf"
    assert one_line("bad\udcffname.tif") == "bad\\xffname.tif"  # undecodable byte
    made = one_line("x\ny")
    assert one_line(made) == made and len(made.splitlines()) == 1
