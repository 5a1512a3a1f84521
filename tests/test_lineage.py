"""What a model learned from, through the models it was built from (`miq.model.lineage`)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from miq.model.lineage import lineage, lineage_record

FLY = [
    f"/data/in-focus/cellprofiler-fly/01_POS{p}_{c}.TIF"
    for p in ("002", "076", "218")
    for c in "DFR"
]


def _model(folder: Path, name: str, files=(), **training) -> Path:
    """A model.json with only what lineage reads (no weights needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    training = {"files": [{"path": f, "sha256": "0" * 64} for f in files], **training}
    description = {"format": "miq-model/1", "name": name, "training": training}
    (folder / "model.json").write_text(json.dumps(description))
    return folder


def test_a_fine_tune_has_seen_what_its_starting_weights_trained_on(tmp_path):
    a = _model(tmp_path / "a", "A", ["/old/data/x/a.tif", "/old/data/y/b.tif"])
    b = _model(
        tmp_path / "b",
        "B",
        ["/old/data/x/c.tif"],
        config={"init_from": str(a / "model.safetensors")},
    )
    found = lineage(b)
    seen = found.seen(["/new/place/x/a.tif", "/new/place/x/c.tif", "/new/place/z/d.tif"])
    assert seen == {"x/a.tif": "A", "x/c.tif": "B"}
    assert found.ancestors == ["A (starting weights of B)"] and found.complete


def test_a_teacher_and_averaged_runs_count_and_a_missing_one_is_unresolved(tmp_path):
    teacher = _model(tmp_path / "t", "T", ["/d/t/teacher.tif"])
    run = _model(tmp_path / "r", "R", ["/d/r/run.tif"])
    avg = _model(
        tmp_path / "avg",
        "AVG",
        config={"teacher": str(teacher), "init_from": str(tmp_path / "gone" / "model.safetensors")},
        averaged_from=[{"folder": str(run)}],
    )
    found = lineage(avg)
    assert found.seen(["/e/t/teacher.tif", "/e/r/run.tif"]) == {
        "t/teacher.tif": "T",
        "r/run.tif": "R",
    }
    assert not found.complete and "not found on this machine" in found.unresolved[0]


def test_the_recorded_lineage_outlives_the_ancestors(tmp_path):
    """`miq train` writes its ancestors' files into model.json: deleting them changes nothing."""
    a = _model(tmp_path / "a", "A", ["/d/x/a.tif"])
    b = _model(tmp_path / "b", "B", ["/d/x/b.tif"], config={"init_from": str(a)})
    record = lineage_record([(str(b), "starting weights")])
    assert {f["path"] for f in record["files"]} == {"/d/x/a.tif", "/d/x/b.tif"}
    c = _model(tmp_path / "c", "C", ["/d/x/c.tif"], config={"init_from": str(b)}, lineage=record)
    shutil.rmtree(a)
    shutil.rmtree(b)
    found = lineage(c)
    assert found.seen(["/d/x/a.tif", "/d/x/b.tif", "/d/x/c.tif"]) == {
        "x/a.tif": "A",
        "x/b.tif": "B",
        "x/c.tif": "C",
    }
    assert found.complete


def test_the_images_of_the_model_own_calibration_count(tmp_path):
    a = _model(tmp_path / "a", "A", ["/d/x/a.tif"])
    description = json.loads((a / "model.json").read_text())
    description["calibration"] = {"validation": {"files": ["/d/y/calibrated.tif"]}}
    (a / "model.json").write_text(json.dumps(description))
    assert lineage(a).seen(["/e/y/calibrated.tif"]) == {"y/calibrated.tif": "A's calibration"}


def test_a_cycle_of_references_ends(tmp_path):
    _model(tmp_path / "a", "A", ["/d/x/a.tif"], config={"init_from": str(tmp_path / "b")})
    _model(tmp_path / "b", "B", ["/d/x/b.tif"], config={"init_from": str(tmp_path / "a")})
    assert set(lineage(tmp_path / "a").trained_on) == {"x/a.tif", "x/b.tif"}


@pytest.mark.parametrize(
    ("model", "through"),
    [("fast-v2", "miq-separable-fast-v1"), ("v3", "miq-compact-v2"), ("v3-slim", "miq-compact-v2")],
)
def test_the_earlier_bundled_models_saw_the_fly_source(model, through):
    """fast-v2, v3 and v3-slim descend from a model trained on 6 of cellprofiler-fly's 9 files,
    though their own training runs left the source out; only the 3 fields of POS218 stayed out."""
    seen = lineage(model).seen(FLY)
    assert len(seen) == 6 and set(seen.values()) == {through}
    assert not any("POS218" in key for key in seen)


def test_the_default_has_the_fly_source_held_out_from_its_whole_lineage(tmp_path, monkeypatch):
    """fast-v4 (the default since 2026-12-02) was pruned from and taught by fast-v3, which was
    trained from random weights without the source: its recorded lineage, read where none of the
    run folders exist, is complete, names fast-v3 and its two stages, and holds none of the
    source's files nor any held-out field, but all 96 BBBC013 training planes."""
    from benchmarks.common import HELD_OUT, HELD_OUT_LAB

    monkeypatch.chdir(tmp_path)  # runs/ of the training machine is not here
    found = lineage("default")
    assert found.name == "miq-separable-fast-v4" and found.complete
    assert [a.split(" (")[0] for a in found.ancestors] == ["miq-separable-fast-v3", "cv-b", "cv-a"]
    assert found.seen(FLY) == {}
    assert not any(h in key for key in found.trained_on for h in HELD_OUT + HELD_OUT_LAB)
    assert sum(key.startswith("bbbc013-u2os-fkhr/") for key in found.trained_on) == 96


def test_train_and_average_weights_record_the_lineage(tmp_path, sample_image):
    import tifffile

    from miq.training.average import average_models
    from miq.training.train import TrainConfig, train

    first, second = tmp_path / "data1" / "first.tif", tmp_path / "data2" / "second.tif"
    for path in (first, second):
        path.parent.mkdir()
        tifffile.imwrite(path, sample_image)
    quiet = {"log": lambda *_: None}
    base = TrainConfig(architecture="separable", steps=2, batch_size=8, procedural_fraction=0.5)
    train([str(first)], tmp_path / "start", base, **quiet)
    tuned = dataclasses.replace(base, init_from=str(tmp_path / "start"))
    train([str(second)], tmp_path / "tuned", tuned, **quiet)
    meta = json.loads((tmp_path / "tuned" / "model.json").read_text())
    assert [f["model"] for f in meta["training"]["lineage"]["files"]] == ["start"]
    average_models(
        [str(tmp_path / "tuned"), str(tmp_path / "start")],
        tmp_path / "avg",
        [str(first)],
        bn_batches=1,
        batch_size=8,
        **quiet,
    )
    shutil.rmtree(tmp_path / "start")
    found = lineage(tmp_path / "avg")
    assert found.seen([str(first), str(second)]) == {
        "data1/first.tif": "avg",  # its batch-norm statistics were measured on it
        "data2/second.tif": "avg",
    }
    assert found.complete


def test_the_benchmarks_call_a_source_an_ancestor_trained_on_not_held_out():
    from benchmarks.accuracy import DataSet, _seen_line, seen_in_training
    from benchmarks.compare_models import trained_on

    import miq

    model = miq.load_model("fast-v2")
    files = [Path(p) for p in FLY]
    seen = seen_in_training(DataSet("fly", [], [], files, {}), model)
    assert seen["seen_by"] == ["miq-separable-fast-v1"] and len(seen["seen"]) == 6
    line = _seen_line({"models": {"fast-v2": {"seen_in_training": seen}}}, ["fast-v2"])
    assert line.startswith("**fast-v2: NOT held out** (miq-separable-fast-v1 trained on 6 of its 9")
    lines = trained_on([model], ["fast-v2"], files)
    assert "6 of these 9 files" in lines["fast-v2"]
    assert trained_on([model], ["fast-v2"], [Path("/d/held-out-fields/bbbc013/x.tif")]) == {}


def test_miq_evaluate_warns_when_the_model_trained_on_the_files(tmp_path, sample_image, capsys):
    """A file with the folder and name of one fast-v1 trained on (fast-v2's starting weights) is
    named in one warning line; another file is not; the default (fast-v4) warns of neither."""
    import tifffile

    from miq.cli import main

    seen = tmp_path / "cellprofiler-fly" / "01_POS002_D.TIF"
    other = tmp_path / "cellprofiler-fly" / "01_POS218_D.TIF"
    seen.parent.mkdir()
    for path in (seen, other):
        tifffile.imwrite(path, sample_image[:256, :256])
    args = ["evaluate", "--seeds", "1", "--measures", "plls", "-o", str(tmp_path / "out")]
    assert main([*args, "-m", "fast-v2", "--synthetic", str(seen), str(other)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert "1 of the 2 files" in warnings[0] and "cellprofiler-fly/01_POS002_D.TIF" in warnings[0]
    assert main([*args, "-m", "fast-v2", "--synthetic", str(other), "--overwrite"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main([*args, "--synthetic", str(seen), str(other), "--overwrite"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_train_warns_that_an_excluded_source_seen_by_its_start_is_not_held_out(
    tmp_path, sample_image, capsys
):
    """`--exclude fly` with `--init-from fast-v2` (a bundled name): one warning naming fast-v1
    and the 6 images; the run still trains, and its lineage records them."""
    import tifffile

    from miq.cli import main

    image = tmp_path / "data" / "in_focus.tif"
    image.parent.mkdir()
    tifffile.imwrite(image, sample_image)
    out = tmp_path / "run"
    args = ["train", str(image), "-o", str(out), "--architecture", "separable", "--steps", "1"]
    args += ["--batch-size", "8", "--init-from", "fast-v2", "--exclude", "cellprofiler-fly"]
    assert main(args) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert "--exclude cellprofiler-fly: miq-separable-fast-v1 trained on 6 image(s)" in warnings[0]
    assert len(lineage(out).seen(FLY)) == 6


def test_train_refuses_a_missing_or_foreign_start_in_one_line(tmp_path, sample_image, capsys):
    import tifffile

    from miq.cli import main

    image = tmp_path / "in_focus.tif"
    tifffile.imwrite(image, sample_image)
    not_a_checkpoint = tmp_path / "notes.pt"
    not_a_checkpoint.write_text("not torch")
    for start, says in [
        (tmp_path / "gone", "no such model folder"),
        (not_a_checkpoint, "not a miq checkpoint.pt"),
    ]:
        out = tmp_path / f"run_{says[:6]}"
        args = ["train", str(image), "-o", str(out), "--steps", "1", "--init-from", str(start)]
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("miq: error:") and says in err[0]
        assert not out.exists()


def test_average_weights_warns_the_same_way(tmp_path, capsys):
    from miq.cli import main

    out = tmp_path / "avg"
    args = ["average-weights", "fast-v2", "fast-v2", "--bn-batches", "0", "-o", str(out)]
    assert main([*args, "--exclude", "cellprofiler-fly"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "miq-separable-fast-v1 trained on 6 image(s)" in warnings[0]
    assert len(lineage(out).seen(FLY)) == 6
