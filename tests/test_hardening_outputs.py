"""Issue 20, items 1–3: inputs are never written, one run per output folder, unique output
names across a run and its resumes, and a file counts as done only when all its outputs are
written (disk full: one line, nothing lost, resume finishes the rest)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from miq.cli import main
from miq.errors import OutputError
from miq.io.folder import MANIFEST_NAME, OutputFolder
from miq.runs.journal import JOURNAL_NAME


@pytest.fixture
def field(sample_image):
    return sample_image[:200, :300]


def _csv(out) -> bytes:
    return (out / "results.csv").read_bytes()


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# --- 1. inputs are never written ---------------------------------------------------------


@pytest.mark.parametrize("flag", ["--overwrite", "--resume"])
def test_an_input_where_miq_writes_its_outputs_is_never_overwritten(tmp_path, field, flag, capsys):
    data = tmp_path / "data"
    assert main(["predict", str(tmp_path / "none"), "-o", str(data), "-q"]) == 2  # no inputs
    (data / "overlays").mkdir(parents=True)
    picture = data / "overlays" / "img_000.png"
    Image.fromarray(field).save(picture)
    before = picture.read_bytes()
    args = ["--overlays", "all", "--overlay-size", "0", "-q", flag]
    # the folder named as input and as output: its files are outputs, not inputs
    assert main(["predict", str(data), "-o", str(data), *args]) == 2
    # the input named explicitly: refused, it lies where miq writes its overlays
    capsys.readouterr()
    assert main(["predict", str(picture), "-o", str(data), *args]) == 2
    err = capsys.readouterr().err
    assert "img_000.png: lies inside the output folder" in err and "Traceback" not in err
    assert all(line.startswith("miq: error: ") for line in err.splitlines())
    assert picture.read_bytes() == before


def test_api_refuses_an_input_that_an_output_would_replace(tmp_path, field, model):
    from miq.runs import predict_files

    out = tmp_path / "out"
    (out / "masks").mkdir(parents=True)
    victim = out / "masks" / "x.tif"
    tifffile.imwrite(victim, field)
    before = victim.read_bytes()
    with pytest.raises(OutputError, match="x.tif"):
        predict_files([victim], out, model, progress=False)
    assert victim.read_bytes() == before


def test_an_output_folder_inside_its_input_is_left_out_run_after_run(tmp_path, field):
    inp = tmp_path / "in"
    inp.mkdir()
    for name in ("a.tif", "b.tif", "c.tif"):
        tifffile.imwrite(inp / name, field)
    out = inp / "out"
    args = ["predict", str(inp), "-o", str(out), "-q", "--overlays", "all"]
    assert main(args) == 0
    first = _csv(out)
    assert main([*args, "--resume"]) == 0
    assert main([*args, "--overwrite"]) == 0
    assert main([*args, "--resume"]) == 0
    assert _csv(out) == first and _csv(out).count(b"\n") == 4


@pytest.mark.parametrize("flag", ["--overwrite", "--resume"])
def test_a_folder_without_a_miq_run_is_refused(tmp_path, field, flag, capsys):
    tifffile.imwrite(tmp_path / "a.tif", field)
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main(["predict", str(tmp_path / "a.tif"), "-o", str(other), "-q", flag]) == 2
    assert "holds no miq outputs" in capsys.readouterr().err
    assert _files(other) == ["keep.txt"]


# --- 2. one run per output folder ----------------------------------------------------------

_HOLD = """
import sys, time
from miq.io.folder import OutputFolder
folder = OutputFolder.existing(sys.argv[1])  # as miq report holds it
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_run_into_a_folder_in_use_is_refused_at_once(tmp_path, field, capsys):
    out = tmp_path / "out"
    tifffile.imwrite(tmp_path / "a.tif", field)
    assert main(["predict", str(tmp_path / "a.tif"), "-o", str(out), "-q"]) == 0
    first = _files(out)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        for flag in ([], ["--resume"], ["--overwrite"]):
            code = main(["predict", str(tmp_path / "a.tif"), "-o", str(out), "-q", *flag])
            assert code == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1, err
            assert f"in use by another miq run (pid {holder.pid})" in err
        assert main(["report", str(out)]) == 2
        assert "in use by another miq run" in capsys.readouterr().err
        assert _files(out) == sorted([*first, ".miq-lock"])  # nothing removed or added
    finally:
        holder.kill()
        holder.wait()
    # killed with the lock held: the next run goes ahead
    assert main(["predict", str(tmp_path / "a.tif"), "-o", str(out), "-q", "--overwrite"]) == 0


def test_the_lock_is_released_on_success_and_on_error(tmp_path, field, monkeypatch):
    out = tmp_path / "out"
    folder = OutputFolder.prepare(out, command="predict", settings={})
    with pytest.raises(OutputError, match="in use by another miq run"):
        OutputFolder.prepare(out, command="predict", settings={}, overwrite=True)
    folder.close()
    again = OutputFolder.prepare(out, command="predict", settings={}, overwrite=True)
    again.close()
    assert not (out / ".miq-lock").exists()  # a finished command leaves no lock file

    tifffile.imwrite(tmp_path / "a.tif", field)

    def fail(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("miq.runs.predict.write_rows_csv", fail)
    with pytest.raises(RuntimeError):
        main(["predict", str(tmp_path / "a.tif"), "-o", str(out), "-q", "--overwrite"])
    monkeypatch.undo()
    OutputFolder.prepare(out, command="predict", settings={}, overwrite=True).close()


# --- 3. output names unique across a run and its resumes -----------------------------------


def _overlays(out) -> list[str]:
    return sorted(p.name for p in (out / "overlays").iterdir())


def _overlay_column(out) -> list[str]:
    import csv

    with open(out / "results.csv", encoding="utf-8") as fh:
        return [row["overlay"] for row in csv.DictReader(fh)]


def test_same_stems_in_several_folders_and_plane_names_get_distinct_outputs(tmp_path, field):
    inp = tmp_path / "in"
    for name in ("a/x.tif", "b/x.tif", "c/x_2.tif", "d/s_c0_z1.tif"):
        (inp / name).parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(inp / name, field)
    tifffile.imwrite(inp / "d" / "s.tif", np.stack([field, field[::-1]]), metadata={"axes": "ZYX"})
    out = tmp_path / "out"
    args = ["predict", str(inp), "-o", str(out), "-q", "--overlays", "all"]
    assert main(args) == 0
    overlays = _overlay_column(out)
    assert len(overlays) == 6 and len(set(overlays)) == 6, overlays
    assert len(_overlays(out)) == 6
    masks = sorted(p.name for p in (out / "masks").iterdir())
    assert len(masks) == 18 and len(set(masks)) == 18
    assert overlays[0] == "overlays/x.jpg"  # a unique name keeps its plain stem


def test_resume_after_adding_an_earlier_file_keeps_every_name(tmp_path, field):
    inp = tmp_path / "in"
    (inp / "b").mkdir(parents=True)
    (inp / "c").mkdir()
    tifffile.imwrite(inp / "b" / "x.tif", field)
    tifffile.imwrite(inp / "c" / "x.tif", field[::-1])
    out = tmp_path / "out"
    args = ["predict", str(inp), "-o", str(out), "-q", "--overlays", "all"]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in (out / "overlays").iterdir()}
    names = dict(zip(["b", "c"], _overlay_column(out)))
    (inp / "a").mkdir()
    tifffile.imwrite(inp / "a" / "x.tif", field[:, ::-1])
    assert main([*args, "--resume"]) == 0
    after = dict(zip(["a", "b", "c"], _overlay_column(out)))
    assert after["b"] == names["b"] and after["c"] == names["c"]
    assert len(set(after.values())) == 3
    for name, data in before.items():  # the earlier outputs are untouched
        assert (out / "overlays" / name).read_bytes() == data


# --- 3. a file counts as done only when all its outputs are written ------------------------


@pytest.fixture
def three(tmp_path, field):
    inp = tmp_path / "in"
    inp.mkdir()
    for i, name in enumerate(("a.tif", "b.tif", "c.tif")):
        tifffile.imwrite(inp / name, np.roll(field, 40 * i, axis=1))
    return inp


def _disk_full(monkeypatch, fragment: str) -> None:
    """Make ``fsync`` of any file whose path contains ``fragment`` fail as on a full disk
    (after its bytes were written: the worst moment)."""
    real = os.fsync

    def fsync(fd):
        if fragment in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def _reference(three, tmp_path) -> bytes:
    ref = tmp_path / "ref"
    assert main(["predict", str(three), "-o", str(ref), "-q", "--overlays", "all"]) == 0
    return _csv(ref)


pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")


@pytest.mark.parametrize("fragment", ["masks/.b_level", "overlays/.b.jpg"])
def test_a_file_whose_outputs_did_not_fit_is_done_again_on_resume(
    three, tmp_path, monkeypatch, capsys, fragment
):
    expected = _reference(three, tmp_path)
    out = tmp_path / "out"
    args = ["predict", str(three), "-o", str(out), "-q", "--overlays", "all"]
    _disk_full(monkeypatch, fragment)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "b.tif: cannot write outputs" in err and "No space left on device" in err
    assert fragment.replace("/.", "/") in err and "Traceback" not in err
    journal = (out / JOURNAL_NAME).read_text()
    assert "b.tif" not in journal and journal.count("\n") == 2  # a and c only
    monkeypatch.undo()  # the disk is freed
    assert main([*args, "--resume"]) == 0
    assert _csv(out) == expected
    assert (out / "masks" / "b_level_per_patch.tif").exists()
    assert (out / "overlays" / "b.jpg").exists()
    assert not [p for p in out.rglob("*.part")]


def test_outputs_written_before_a_failed_one_are_removed_by_overwrite(
    three, tmp_path, monkeypatch, capsys
):
    """The level mask of b was written, its certainty mask was not: the level mask is recorded,
    so --overwrite removes it (it was left behind, unlisted)."""
    out = tmp_path / "out"
    args = ["predict", str(three), "-o", str(out), "-q", "--overlays", "none"]
    _disk_full(monkeypatch, "masks/.b_certainty")
    assert main(args) == 1
    assert (out / "masks" / "b_level_per_patch.tif").exists()
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert "masks/b_level_per_patch.tif" in manifest["files"]
    monkeypatch.undo()
    capsys.readouterr()
    assert main([*args, "--overwrite", "--masks", "none"]) == 0
    assert not (out / "masks").exists()


def test_a_full_disk_while_journaling_is_one_line_and_resume_finishes(
    three, tmp_path, monkeypatch, capsys
):
    expected = _reference(three, tmp_path)
    out = tmp_path / "out"
    args = ["predict", str(three), "-o", str(out), "-q", "--overlays", "all"]
    _disk_full(monkeypatch, JOURNAL_NAME)
    assert main(args) == 1
    err = capsys.readouterr().err.splitlines()
    journal_lines = [line for line in err if JOURNAL_NAME in line]
    assert len(journal_lines) == 1 and "No space left on device" in journal_lines[0]
    assert _csv(out) == expected  # results.csv is complete all the same
    assert (out / JOURNAL_NAME).read_bytes() == b""  # every append was cut back off
    monkeypatch.undo()
    assert main([*args, "--resume"]) == 0
    assert _csv(out) == expected
    assert all(json.loads(line) for line in (out / JOURNAL_NAME).read_text().splitlines())


@pytest.mark.parametrize("fragment", ["results.csv", "run.json", MANIFEST_NAME])
def test_a_full_disk_at_the_end_of_a_run_is_one_line_and_resume_finishes(
    three, tmp_path, monkeypatch, capsys, fragment
):
    expected = _reference(three, tmp_path)
    out = tmp_path / "out"
    args = ["predict", str(three), "-o", str(out), "-q", "--overlays", "all"]
    assert main(args) == 0  # a first run
    os.remove(out / "results.csv")
    _disk_full(monkeypatch, fragment)
    assert main([*args, "--overwrite"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and fragment in err[0] and "No space left on device" in err[0], err
    if (out / "results.csv").exists():
        assert _csv(out) == expected  # never a torn results.csv
    assert main([*args, "--resume"]) == 2  # still full: one line again
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "No space left on device" in err[0], err
    monkeypatch.undo()
    assert main([*args, "--resume"]) == 0
    assert _csv(out) == expected
    assert not [p for p in out.rglob("*.part")]


def test_a_torn_journal_line_is_cut_off_on_resume(three, tmp_path):
    expected = _reference(three, tmp_path)
    out = tmp_path / "out"
    args = ["predict", str(three), "-o", str(out), "-q", "--overlays", "all"]
    assert main(args) == 0
    lines = (out / JOURNAL_NAME).read_bytes().splitlines(keepends=True)
    (out / JOURNAL_NAME).write_bytes(lines[0] + lines[1][: len(lines[1]) // 2])
    assert main([*args, "--resume"]) == 0
    assert _csv(out) == expected
    assert (out / JOURNAL_NAME).read_text().count("\n") == 3


# --- 5. temp files, odd output paths, links --------------------------------------------------


@pytest.mark.parametrize("flag", ["--resume", "--overwrite"])
def test_temp_files_of_a_killed_run_do_not_survive(three, tmp_path, flag):
    out = tmp_path / "out"
    args = ["predict", str(three), "-o", str(out), "-q", "--overlays", "all"]
    assert main(args) == 0
    for name in ("masks/.a_level_per_patch.tif.k3j_x9q0.part", ".results.csv.abcdefgh.part"):
        (out / name).write_bytes(b"half")
    assert main([*args, flag]) == 0
    assert not [p for p in out.rglob("*.part")]


@pytest.mark.parametrize("where", ["file/sub", "file/sub/deeper", "file"])
def test_an_output_path_through_a_file_is_one_line(three, tmp_path, capsys, where):
    (tmp_path / "file").write_text("x")
    code = main(["predict", str(three), "-o", str(tmp_path / where), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("link", ["masks", "overlays", JOURNAL_NAME])
@pytest.mark.parametrize("flag", ["--resume", "--overwrite"])
def test_links_inside_the_output_folder_are_never_followed(three, tmp_path, capsys, link, flag):
    out = tmp_path / "out"
    args = ["predict", str(three), "-o", str(out), "-q", "--overlays", "all"]
    assert main(args) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("keep")
    target = out / link
    if target.is_dir():
        import shutil

        shutil.copytree(target, elsewhere / link)
        shutil.rmtree(target)
    else:
        target.replace(elsewhere / link)
    target.symlink_to(elsewhere / link)
    before = _files(elsewhere)
    capsys.readouterr()
    assert main([*args, flag]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "symbolic link" in err and link in err
    assert _files(elsewhere) == before


def test_output_names_from_a_tampered_manifest_never_lead_outside(tmp_path, field):
    inp = tmp_path / "in"
    inp.mkdir()
    tifffile.imwrite(inp / "a.tif", field)
    tifffile.imwrite(inp / "b.tif", field[::-1])
    out = tmp_path / "deep" / "out"
    args = ["predict", str(inp), "-o", str(out), "-q", "--overlays", "all"]
    assert main(args) == 0
    expected = _csv(out)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    manifest["names"] = {str(inp / "a.tif"): "../../evil", str(inp / "b.tif"): ".."}
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    (out / JOURNAL_NAME).write_text("")  # both files are rated again
    assert main([*args, "--resume"]) == 0
    assert _csv(out) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "in"]
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["out"]


def test_resume_with_a_recalibrated_copy_of_the_model_is_refused(tmp_path, field, capsys):
    import shutil

    from miq.model.package import resolve_model_path

    bundled = resolve_model_path(None).parent
    first, second = tmp_path / "model_a", tmp_path / "model_b"
    shutil.copytree(bundled, first)
    shutil.copytree(bundled, second)
    meta = json.loads((second / "model.json").read_text())
    meta["calibration"] = {**(meta.get("calibration") or {}), "image_temperature": 3.0}
    (second / "model.json").write_text(json.dumps(meta))  # same name, same ONNX weights
    tifffile.imwrite(tmp_path / "a.tif", field)
    out = tmp_path / "out"
    args = ["predict", str(tmp_path / "a.tif"), "-o", str(out), "-q"]
    assert main([*args, "-m", str(first)]) == 0
    before = _csv(out)
    capsys.readouterr()
    assert main([*args, "-m", str(second), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "--resume with other settings" in err and "model.calibration" in err
    assert _csv(out) == before


def test_an_output_folder_that_cannot_be_written_is_one_line(tmp_path, field, monkeypatch, capsys):
    """A read-only file system (simulated: the tests may run as root, whom modes do not stop)."""
    tifffile.imwrite(tmp_path / "a.tif", field)
    real = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(path).startswith(str(tmp_path / "ro")) and flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(path, flags, *args, **kwargs)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(os, "open", read_only)
    code = main(["predict", str(tmp_path / "a.tif"), "-o", str(tmp_path / "ro"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Read-only file system" in err, err
