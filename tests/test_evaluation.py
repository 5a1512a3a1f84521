"""Ground truth sources, the evaluation runner and `miq evaluate` on small real images."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile

from miq.cli import main
from miq.evaluation import MODEL, evaluate, format_table
from miq.ground_truth import (
    Item,
    ManifestError,
    manifest_items,
    stack_items,
    synthetic_items,
    to_camera_range,
)
from miq.optics import Optics, degrade


def _write_defocus_series(folder, image, zs_um):
    """The sample defocused to each z (uint16 files) → paths."""
    unit = image.astype(np.float64) / 65535.0
    paths = []
    for i, z in enumerate(zs_um):
        img = degrade(unit, z, optics=Optics(), rng=i)
        path = folder / f"plane_{i:02d}.tif"
        tifffile.imwrite(path, np.round(img * 65535).astype(np.uint16))
        paths.append(path)
    return paths


def test_manifest_derives_levels_and_labels(tmp_path, sample_image):
    tifffile.imwrite(tmp_path / "a.tif", sample_image)
    (tmp_path / "m.csv").write_text("file,defocus_um\na.tif,-7.4\n", encoding="utf-8")
    (item,) = manifest_items(tmp_path / "m.csv")
    assert item.level == 4 and item.defocus_um == pytest.approx(7.4) and item.in_focus is False
    assert item.load().shape == sample_image.shape
    (tmp_path / "bad.csv").write_text("file,score\na.tif,1\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="needs a 'file' column"):
        manifest_items(tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text("file,level\na.tif,12\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="bad2.csv:2: level 12"):
        manifest_items(tmp_path / "bad2.csv")
    (tmp_path / "bad3.csv").write_text("file,level,z\na.tif,1,first\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="bad3.csv:2: .* must be integers"):
        manifest_items(tmp_path / "bad3.csv")


def test_stack_items_know_defocus_and_best_plane(tmp_path, sample_image):
    stack = np.stack([sample_image[:200, :200]] * 5)
    tifffile.imwrite(tmp_path / "s.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    items = stack_items(tmp_path / "s.tif", 0.5, 2, in_focus_um=0.6)
    assert [i.defocus_um for i in items] == [1.0, 0.5, 0.0, 0.5, 1.0]
    assert [i.in_focus for i in items] == [False, True, True, True, False]
    assert all(i.level is None and i.best_z == 2 for i in items)
    with pytest.raises(ManifestError, match="outside"):
        stack_items(tmp_path / "s.tif", 0.5, 9)


def test_synthetic_items_first_seed_draws_other_noise(tmp_path, sample_image):
    tifffile.imwrite(tmp_path / "in.tif", sample_image)
    first = synthetic_items([tmp_path / "in.tif"], seeds=2)
    fresh = synthetic_items([tmp_path / "in.tif"], seeds=2, first_seed=2)
    assert [i.name.rsplit(" ", 1)[1] for i in fresh[:2]] == ["seed2", "seed3"]
    assert [i.level for i in fresh] == [i.level for i in first]
    assert not np.array_equal(first[10].load(), fresh[10].load())  # level 5, seed 0 vs seed 2
    assert np.array_equal(first[10].load(), first[10].load())
    # the noise seeds of one plane at one level are draws of one image; levels are not
    assert first[10].draw_of == first[11].draw_of == fresh[10].draw_of
    assert first[10].draw_of.endswith("@10um") and first[9].draw_of != first[10].draw_of
    assert first[10].image == first[10].draw_of
    real = Item("real.tif", "d", lambda: None, 0)  # not a noise draw: its own image
    assert real.draw_of is None and real.image == "real.tif"


def test_evaluate_separates_levels_and_writes_outputs(tmp_path, sample_image, model):
    tifffile.imwrite(tmp_path / "in.tif", sample_image)
    items = synthetic_items([tmp_path / "in.tif"], seeds=1)
    assert len(items) == 11 and [i.level for i in items] == list(range(11))
    paths = _write_defocus_series(tmp_path, sample_image, [6.0, 3.0, 0.0, 3.0, 6.0])
    rows = [f"{p.name},{abs(z)},s,{i}" for i, (p, z) in enumerate(zip(paths, [6, 3, 0, 3, 6]))]
    (tmp_path / "stack.csv").write_text(
        "file,defocus_um,stack,stack_z\n" + "\n".join(rows) + "\n", encoding="utf-8"
    )
    items += manifest_items(tmp_path / "stack.csv")
    ev = evaluate(items, tmp_path / "out", model, measures=("plls", "focus_score"), n_splits=10)
    syn, stk = ev.metrics["synthetic"], ev.metrics["stack"]
    assert syn["n"] == 11 and syn["n_failed"] == 0
    assert syn["model"]["within_one"] >= 9 / 11  # the bundled sample is a held-out field
    assert syn["methods"][MODEL]["spearman"] > 0.9
    assert syn["methods"][MODEL]["roc_auc"] > 0.9
    assert stk["best_plane"][0]["true_z"] == 2
    assert stk["methods"]["plls"]["best_plane_error_mean"] == 0  # the sharp plane is obvious
    assert stk["methods"]["miq best-focus"]["best_plane_error_mean"] == 0
    out = tmp_path / "out"
    summary = json.loads(  # strict JSON: no NaN (empty calibration bins are null)
        (out / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON")
    )
    assert set(summary["datasets"]) == {"synthetic", "stack"}
    assert summary["methods"] == [MODEL, "plls", "focus_score"]
    with open(out / "predictions.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 16
    cm = np.loadtxt(out / "confusion_synthetic.csv", delimiter=",", skiprows=1)[:, 1:]
    assert cm.sum() == 11
    assert (out / "best_plane.csv").exists() and (out / "reliability_synthetic.csv").exists()
    from PIL import Image

    from miq.plots import plots_available

    assert plots_available()  # matplotlib is part of the test extra
    for name in ("confusion_synthetic.png", "reliability_synthetic.png"):
        with Image.open(out / name) as im:
            assert im.size[0] > 300 and len(np.unique(np.asarray(im.convert("L")))) > 10
    table = format_table(ev.metrics)
    assert "synthetic: 11 images" in table and "plls" in table


def test_evaluate_cli_reports_bad_rows_and_goes_on(tmp_path, sample_image, capsys):
    tifffile.imwrite(tmp_path / "good.tif", sample_image)
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    (tmp_path / "m.csv").write_text("file,in_focus\ngood.tif,1\nbroken.tif,0\n", encoding="utf-8")
    code = main(["evaluate", "--manifest", str(tmp_path / "m.csv"), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1 and "broken.tif" in err and len(err.strip().splitlines()) == 1
    with open(tmp_path / "o" / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [bool(r["error"]) for r in rows] == [False, True]  # the good file was still rated
    assert rows[0]["level"] != ""
    code = main(
        [
            "evaluate",
            "--synthetic",
            str(tmp_path / "good.tif"),
            "--seeds",
            "1",
            "--measures",
            "plls",
            "--splits",
            "5",
            "-o",
            str(tmp_path / "o2"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "within-one" in out and "plls" in out
    assert (
        json.loads((tmp_path / "o2" / "summary.json").read_text())["datasets"]["synthetic"]["info"][
            "seeds"
        ]
        == 1
    )
    assert main(["evaluate", "-o", str(tmp_path / "o3")]) == 2
    assert main(["evaluate", "--synthetic", "x", "--measures", "nope", "-o", "o"]) == 2


def test_evaluate_cli_stack_options_must_pair_up(tmp_path, sample_image, capsys):
    stack = np.stack([sample_image[:200, :200]] * 3)
    tifffile.imwrite(tmp_path / "s.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    args = ["evaluate", "--stack", str(tmp_path / "s.tif"), "-o", str(tmp_path / "o")]
    assert main(args + ["--z-step", "0.5"]) == 2
    assert "--best-z" in capsys.readouterr().err
    assert main(args + ["--z-step", "0.5", "--best-z", "1", "--measures", "plls"]) == 0
    with open(tmp_path / "o" / "best_plane.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["true_z"] == "1" and row["n_planes"] == "3"


def test_evaluate_uses_the_pixel_size_files_record(tmp_path, sample_image):
    """A field recorded at 0.325 µm/px, simulated and rated at the model's 0.65 µm/px: its
    synthetic levels come out as well as those of the same field given at 0.65 µm/px."""
    import csv

    import tifffile

    from miq.cli import main

    fine = np.kron(sample_image[:260, :348], np.ones((2, 2), dtype=np.uint16))  # 0.325 µm/px
    tifffile.imwrite(
        tmp_path / "fine.tif",
        fine,
        imagej=True,
        resolution=(1 / 0.325, 1 / 0.325),
        metadata={"unit": "um"},
    )
    args = ["evaluate", "--synthetic", str(tmp_path / "fine.tif"), "--seeds", "1"]
    args += ["--splits", "2", "--measures", "plls"]
    assert main([*args, "-o", str(tmp_path / "used")]) == 0
    assert main([*args, "-o", str(tmp_path / "ignored"), "--ignore-file-pixel-size"]) == 0

    def exact(run):
        with open(tmp_path / run / "metrics.csv", newline="") as fh:
            row = next(r for r in csv.DictReader(fh) if r["method"] == "miq")
        return float(row["exact"])

    assert exact("used") > exact("ignored")


def test_field_calibration_error_groups_the_images_of_each_source_file():
    """Two files, each rated right on half of its images with a stated confidence of 0.5: the
    field CE is 0 per file, as the ECE (it would be 0.5 if every image were its own field);
    with one file always right and the other always wrong, the ECE stays 0 and the field CE
    is 0.5 (the errors cancel in the ECE, not per field)."""
    from miq.evaluation import ItemResult, dataset_metrics
    from miq.ground_truth import Item

    def results(right: dict[str, list[bool]]) -> list[ItemResult]:
        out = []
        for name, outcomes in right.items():
            for i, ok in enumerate(outcomes):
                level = i % 11
                rated = level if ok else (level + 5) % 11
                probs = {f"prob_{k}": 0.5 if k == rated else 0.05 for k in range(11)}
                model = {"level": rated, "level_mean": float(rated), "in_focus": rated < 3}
                item = Item(f"{name} [c=0, z=0] @{2 * level}um seed{i}", "d", lambda: None, level)
                out.append(ItemResult(item, {**model, **probs}))
        return out

    half = dataset_metrics(results({"a.tif": [True, False] * 4, "b.tif": [False, True] * 4}),
                           methods=(MODEL,))["model"]  # fmt: skip
    assert half["ece"] == pytest.approx(0.0) and half["field_ce"] == pytest.approx(0.0)
    split = dataset_metrics(results({"a.tif": [True] * 8, "b.tif": [False] * 8}), methods=(MODEL,))
    assert split["model"]["ece"] == pytest.approx(0.0)
    assert split["model"]["field_ce"] == pytest.approx(0.5)
    # confidence 0.5 on 8 images per file: chance alone gives a calibrated model
    # E|Bin(8, ½)/8 − ½| = 0.137 per file, which the measured 0 of ``half`` is below and the 0.5
    # of ``split`` far above; pooled, one bin of 16 images: E|Bin(16, ½)/16 − ½| = 0.098
    assert half["field_ce_chance"] == pytest.approx(0.137, abs=0.01)
    assert half["field_ce_chance"] < half["field_ce_chance_high"] < split["model"]["field_ce"]
    assert half["ece_chance"] == pytest.approx(0.098, abs=0.01)
    assert 0.25 <= half["ece_chance_high"] <= 5 / 16  # |k/16 − ½| for k = 4 or 5 of 16


def test_to_camera_range_puts_the_offset_back_under_planes_that_lost_it():
    """An 8-bit plane (0 = no light) gets the sensor offset under it, so that `degrade` sees its
    dim background as light: no pixel of the background becomes a flat, noiseless offset."""
    rng = np.random.default_rng(0)
    plane = rng.integers(2, 12, (96, 96)).astype(np.uint8)  # dim background, 2–11 DN
    plane[30:60, 30:60] = 200  # one bright object
    unit = to_camera_range(plane)
    dn = unit * 65535
    assert dn.min() == pytest.approx(100.0)  # darkest pixel = the offset, i.e. no light
    assert dn.max() == pytest.approx(2000.0)  # signal scaled to a 16-bit camera's brightness
    # the background's differences are kept (scaled), not cut off under the offset
    assert np.corrcoef(dn[:20, :20].ravel(), plane[:20, :20].ravel())[0, 1] > 0.99
    blurred = degrade(unit, 20.0, rng=1) * 65535
    assert (blurred == 100.0).mean() < 0.01  # shot noise everywhere, no flat floor


def test_to_camera_range_keeps_raw_camera_planes_as_they_are():
    """A raw 16-bit plane sitting on its offset (all pixels ≥ 100 DN, bright enough) is used as
    it is, as the original simulator expects; the rule is continuous at the offset."""
    rng = np.random.default_rng(1)
    raw = rng.integers(100, 4000, (64, 64)).astype(np.uint16)
    np.testing.assert_allclose(to_camera_range(raw) * 65535, raw)
    just_under = raw.astype(np.float64) - 1.0  # darkest pixel 99 DN: offset put back, + 1 DN
    np.testing.assert_allclose(to_camera_range(just_under) * 65535, raw, atol=1e-6)
