"""The command line, run in-process through ``miq.cli.main``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from miq.cli import main


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture()
def mixed_folder(tmp_path, sample_image):
    folder = tmp_path / "in"
    (folder / "plate").mkdir(parents=True)
    tifffile.imwrite(folder / "good.tif", sample_image, compression="lzw")
    tifffile.imwrite(
        folder / "plate" / "good.tif", sample_image[:200, :300]
    )  # same name, other folder
    Image.fromarray((sample_image[:300, :300] // 16).astype(np.uint8)).save(
        folder / "eight_bit.png"
    )
    tifffile.imwrite(
        folder / "stack.tif",
        np.stack([sample_image, sample_image // 2 + 7]),
        imagej=True,
        metadata={"axes": "ZYX"},
    )
    (folder / "empty.tif").write_bytes(b"")
    (folder / "text.tif").write_text("hello")
    tifffile.imwrite(folder / "tiny.tif", np.ones((40, 40), np.uint16))
    tifffile.imwrite(folder / "nan.tif", np.full((100, 100), np.nan, np.float32))
    tifffile.imwrite(folder / "flat.tif", np.full((100, 100), 7, np.uint16))
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(folder / "rgb.png")
    return folder


def test_predict_batch_with_bad_files(mixed_folder, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        ["predict", str(mixed_folder), "-o", str(out), "--threads", "1"]
        + ["--overlays", "all", "--overlay-size", "0", "--masks", "per-pixel"]
    )
    assert code == 1  # some inputs failed, the rest processed
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if line.startswith("miq: error:")]
    assert len(error_lines) == 6
    for name in ("empty.tif", "text.tif", "tiny.tif", "nan.tif", "flat.tif", "rgb.png"):
        assert any(name in line for line in error_lines), name
    rows = _read_csv(out / "results.csv")
    assert len(rows) == 5 + 6  # good, plate/good, eight_bit, 2 stack planes; 6 failures
    ok = [r for r in rows if not r["error"]]
    assert len(ok) == 5
    for r in ok:
        probs = [float(r[f"prob_{k}"]) for k in range(11)]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert 0 <= int(r["level"]) <= 10 and r["in_focus"] in ("0", "1")
        assert float(r["defocus_um"]) == pytest.approx(2 * float(r["level_mean"]), rel=1e-4)
    stack_rows = [r for r in ok if r["file"].endswith("stack.tif")]
    assert sorted(r["z"] for r in stack_rows) == ["0", "1"]
    # outputs for each rated plane; duplicate stems do not overwrite each other
    overlays = sorted(p.name for p in (out / "overlays").iterdir())
    assert overlays == [
        "eight_bit.png",
        "good.png",
        "good_2.png",
        "stack_c0_z0.png",
        "stack_c0_z1.png",
    ]
    level = tifffile.imread(out / "masks" / "good_level.tif")
    valid = tifffile.imread(out / "masks" / "good_valid.tif")
    certainty = tifffile.imread(out / "masks" / "good_certainty.tif")
    assert level.shape == valid.shape == certainty.shape == sample_shape(mixed_folder / "good.tif")
    assert valid.all() and 0 <= certainty.min() and certainty.max() <= 1
    with Image.open(out / "overlays" / "good.png") as im:
        assert im.mode == "RGB" and im.width >= 696 and im.height > 520
    assert not list(out.rglob("*.part"))


def sample_shape(path):
    return tifffile.imread(path).shape


def test_predict_all_good_exits_zero(tmp_path, sample_image, capsys):
    tifffile.imwrite(tmp_path / "a.tif", sample_image)
    assert (
        main(
            [
                "predict",
                str(tmp_path / "a.tif"),
                "-o",
                str(tmp_path / "o"),
                "--no-masks",
                "--no-overlays",
            ]
        )
        == 0
    )
    assert "a.tif" in capsys.readouterr().out
    assert not (tmp_path / "o" / "masks").exists()
    assert len(_read_csv(tmp_path / "o" / "results.csv")) == 1


def test_predict_nothing_found_is_a_usage_error(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "ghost*.tif"), "-o", str(tmp_path / "o")]) == 2
    assert "no input images" in capsys.readouterr().err


def test_wrong_model_file_is_a_one_line_error(tmp_path, sample_image, capsys):
    tifffile.imwrite(tmp_path / "a.tif", sample_image)
    bad = tmp_path / "model.json"
    bad.write_text("{not json")
    assert (
        main(["predict", str(tmp_path / "a.tif"), "-o", str(tmp_path / "o"), "--model", str(bad)])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0]


def test_demo_rates_more_defocus_as_worse(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "demo")]) == 0
    rows = _read_csv(tmp_path / "demo" / "results.csv")
    means = [float(r["level_mean"]) for r in rows]
    assert len(rows) == 4 and means == sorted(means)
    assert "level" in capsys.readouterr().out


def test_simulate_writes_defocused_images(tmp_path, sample_image):
    tifffile.imwrite(tmp_path / "a.tif", sample_image)
    assert (
        main(
            [
                "simulate",
                str(tmp_path / "a.tif"),
                "-o",
                str(tmp_path / "sim"),
                "--level",
                "5",
                "--z-um",
                "1.5",
                "--no-noise",
            ]
        )
        == 0
    )
    out5 = tifffile.imread(tmp_path / "sim" / "a_defocus_10um.tif")
    assert out5.dtype == np.uint16 and out5.shape == sample_image.shape
    assert (tmp_path / "sim" / "a_defocus_1.5um.tif").exists()

    # blur lowers the high-frequency content
    from miq.measures import variance_of_laplacian

    assert variance_of_laplacian(out5) < 0.5 * variance_of_laplacian(sample_image)


def test_help_and_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "predict" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert main([]) == 2


def test_import_is_cheap():
    import subprocess
    import sys

    code = "import sys, miq; print(any(m.split('.')[0] in ('torch', 'onnxruntime', 'scipy', 'PIL') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_measure_writes_one_row_per_plane(mixed_folder, tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["measure", str(mixed_folder), "-o", str(out)]) == 1  # bad files present
    rows = _read_csv(out / "measures.csv")
    good = [r for r in rows if not r["error"]]
    assert len(good) == 5  # good ×2, eight_bit, stack ×2
    assert all(float(r["plls"]) < 0 and float(r["variance_of_laplacian"]) > 0 for r in good)
    stack = sorted((r for r in good if r["file"].endswith("stack.tif")), key=lambda r: r["z"])
    assert float(stack[0]["focus_score"]) != float(stack[1]["focus_score"])
    assert {r["file"].rsplit("/", 1)[-1] for r in rows if r["error"]} == {
        "empty.tif",
        "text.tif",
        "nan.tif",
        "flat.tif",
        "rgb.png",
        "tiny.tif",
    }


def test_predict_selects_planes_and_names_time_points(tmp_path, sample_image, capsys):
    tzcyx = np.stack([np.stack([np.stack([sample_image[:200, :300]] * 2)] * 3)] * 2)
    tifffile.imwrite(tmp_path / "h.tif", tzcyx, imagej=True, metadata={"axes": "TZCYX"})
    out = tmp_path / "o"
    assert (
        main(
            [
                "predict",
                str(tmp_path / "h.tif"),
                "-o",
                str(out),
                "-q",
                "--channel",
                "1",
                "--z",
                "0,2",
                "--overlays",
                "all",
            ]
        )
        == 0
    )
    rows = _read_csv(out / "results.csv")
    assert sorted((r["t"], r["c"], r["z"]) for r in rows) == [
        ("0", "1", "0"),
        ("0", "1", "2"),
        ("1", "1", "0"),
        ("1", "1", "2"),
    ]
    assert "h_t1_c1_z2.jpg" in {p.name for p in (out / "overlays").iterdir()}
    assert (
        main(["predict", str(tmp_path / "h.tif"), "-o", str(tmp_path / "o2"), "-q", "--t", "5"])
        == 1
    )
    assert "no plane matches t in [5]" in capsys.readouterr().err


def test_every_subcommand_help_says_what_it_writes_with_an_example(capsys):
    from miq.cli import build_parser

    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if a.dest == "command"]
    assert len(subparsers.choices) == 11
    for name, sub in subparsers.choices.items():
        text = sub.format_help()
        assert sub.description, name
        assert "writes:\n" in text and "example:\n  miq " + name in text, name


def test_shared_options_are_offered_where_they_make_sense():
    from miq.cli import build_parser

    (subparsers,) = [a for a in build_parser()._actions if a.dest == "command"]
    options = {
        name: {s for a in sub._actions for s in a.option_strings}
        for name, sub in subparsers.choices.items()
    }
    for name in ("predict", "demo", "evaluate", "best-focus"):
        assert {"-m", "--threads", "--device", "--pixel-size", "-o"} <= options[name], name
    for name in ("predict", "demo", "best-focus"):
        assert "-q" in options[name], name
    assert "--pixel-size" in options["simulate"] and "--pixel-size" in options["train"]


def test_simulate_keeps_the_background_of_an_8_bit_file(tmp_path, sample_image):
    """An 8-bit plane (0 = no light) is not cut off under the simulated camera's 100 DN offset:
    its background stays light with shot noise, not a flat floor at the offset."""
    as_8bit = np.round((sample_image - sample_image.min()) / np.ptp(sample_image) * 255)
    tifffile.imwrite(tmp_path / "a.tif", as_8bit.astype(np.uint8))
    assert (
        main(["simulate", str(tmp_path / "a.tif"), "-o", str(tmp_path / "sim"), "--z-um", "0"]) == 0
    )
    out = tifffile.imread(tmp_path / "sim" / "a_defocus_0um.tif").astype(np.float64)
    assert out.min() >= 100 and (out == 100).mean() < 0.2  # before: most pixels exactly 100
    assert np.corrcoef(out.ravel(), as_8bit.ravel())[0, 1] > 0.9


def test_simulate_writes_a_three_plane_stack_as_grey_z_planes(tmp_path, sample_image):
    """A 3-plane z-stack comes out as three grey pages with axes ZYX (tifffile took a (3, Y, X)
    array for one planar RGB page before), each plane the simulation of that plane alone."""
    planes = np.stack([sample_image, sample_image[::-1], sample_image[:, ::-1]]).astype(np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", planes, metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "middle.tif", planes[1])
    args = ["-o", str(tmp_path / "sim"), "--z-um", "6"]
    assert main(["simulate", str(tmp_path / "stack.tif"), str(tmp_path / "middle.tif"), *args]) == 0
    with tifffile.TiffFile(tmp_path / "sim" / "stack_defocus_6um.tif") as tif:
        assert len(tif.pages) == 3 and tif.series[0].axes == "ZYX"
        assert tif.pages[0].photometric == tifffile.PHOTOMETRIC.MINISBLACK
        stack = tif.asarray()
    alone = tifffile.imread(tmp_path / "sim" / "middle_defocus_6um.tif")
    assert stack.shape == planes.shape and np.array_equal(stack[1], alone)


def test_a_second_run_does_not_rate_the_first_runs_outputs(tmp_path, sample_image, capsys):
    """`miq predict plate/ -o plate/run1`, then `-o plate/run2`: run2 rates the plate's image
    only, not run1's masks (a folder holding a miq manifest is not searched; one line says so,
    exit 0); naming run1's folder explicitly still searches it."""
    plate = tmp_path / "plate"
    plate.mkdir()
    tifffile.imwrite(plate / "a.tif", sample_image)
    assert main(["predict", str(plate), "-o", str(plate / "run1"), "-q"]) == 0
    assert list((plate / "run1" / "masks").glob("*.tif"))  # outputs that would be found
    capsys.readouterr()
    assert main(["predict", str(plate), "-o", str(plate / "run2"), "-q"]) == 0
    rows = _read_csv(plate / "run2" / "results.csv")
    assert [Path(r["file"]).name for r in rows] == ["a.tif"]
    out = capsys.readouterr()
    assert f"{plate / 'run1'}: holds the outputs of an earlier miq run" in out.out
    assert out.err == ""
    # so is a glob from the plate folder
    glob = str(plate / "**" / "*.tif")
    assert main(["predict", glob, "-o", str(tmp_path / "run3"), "-q"]) == 0
    assert [Path(r["file"]).name for r in _read_csv(tmp_path / "run3" / "results.csv")] == ["a.tif"]
    # asked for by name, an output folder is searched (e.g. best-focus's best/ planes): here its
    # per-patch masks are found, and refused as smaller than one patch
    capsys.readouterr()
    assert main(["predict", str(plate / "run1" / "masks"), "-o", str(tmp_path / "run4"), "-q"]) != 0
    masks = str(plate / "run1" / "masks" / "*.tif")
    assert main(["predict", masks, "-o", str(tmp_path / "run5"), "-q"]) != 0
    assert capsys.readouterr().err.count("a_level_per_patch.tif: image is") == 2


def test_simulate_has_a_memory_budget(tmp_path, capsys):
    """A file over ``--memory-budget`` is refused before reading, one line naming it (the hint
    it gives names an option simulate has)."""
    big = tifffile.memmap(tmp_path / "a.tif", shape=(3000, 3000), dtype=np.uint16)  # not read
    del big
    args = ["simulate", str(tmp_path / "a.tif"), "-o", str(tmp_path / "sim"), "--z-um", "2"]
    assert main([*args, "--memory-budget", "16M"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a.tif" in err[0] and "--memory-budget" in err[0]
    assert not (tmp_path / "sim" / "a_defocus_2um.tif").exists()
