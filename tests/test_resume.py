"""Nothing lost: a killed run resumes to the same CSV; non-empty outputs are not overwritten."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import tifffile

from miq.cli import main
from miq.runs.journal import JOURNAL_NAME


def _folder_of_images(folder, sample_image, n):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        y, x = rng.integers(0, 100), rng.integers(0, 200)
        tifffile.imwrite(folder / f"img_{i:03d}.tif", sample_image[y : y + 336, x : x + 420])


def _journal_lines(out) -> int:
    path = out / JOURNAL_NAME
    return path.read_text(encoding="utf-8").count("\n") if path.exists() else 0


def test_killed_run_resumes_to_the_same_csv(tmp_path, sample_image):
    n = 100
    images = tmp_path / "images"
    _folder_of_images(images, sample_image, n)
    inputs_before = {p.name: p.read_bytes() for p in images.iterdir()}
    killed = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "miq",
        "predict",
        str(images),
        "-o",
        str(killed),
        "-q",
        "--threads",
        "1",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _journal_lines(killed) < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_at_kill = _journal_lines(killed)
    assert 5 <= done_at_kill < n, "the run must be killed part-way"
    assert not (killed / "results.csv").exists()

    # restarting without --resume refuses to touch the folder
    assert main(["predict", str(images), "-o", str(killed), "-q"]) == 2
    assert _journal_lines(killed) == done_at_kill

    assert (
        main(["predict", str(images), "-o", str(killed), "-q", "--resume", "--threads", "1"]) == 0
    )
    assert _journal_lines(killed) == n  # only the missing files were rated
    whole = tmp_path / "whole"
    assert main(["predict", str(images), "-o", str(whole), "-q", "--threads", "1"]) == 0
    assert (killed / "results.csv").read_bytes() == (whole / "results.csv").read_bytes()
    assert sorted(p.relative_to(killed) for p in killed.rglob("*.*") if p.parent != killed) == (
        sorted(p.relative_to(whole) for p in whole.rglob("*.*") if p.parent != whole)
    )  # the same masks (and overlays, if any)
    assert {p.name: p.read_bytes() for p in images.iterdir()} == inputs_before  # untouched


def test_overwrite_and_determinism(tmp_path, sample_image, capsys):
    images = tmp_path / "images"
    _folder_of_images(images, sample_image, 3)
    out = tmp_path / "out"
    assert main(["predict", str(images), "-o", str(out), "-q"]) == 0
    first = (out / "results.csv").read_bytes()
    capsys.readouterr()
    assert main(["predict", str(images), "-o", str(out), "-q"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["predict", str(images), "-o", str(out), "-q", "--overwrite"]) == 0
    assert (out / "results.csv").read_bytes() == first  # same input, same version: same bytes
    assert main(["predict", str(images), "-o", str(out), "-q", "--resume"]) == 0
    assert "3 files taken from the interrupted run" in capsys.readouterr().out
    assert (out / "results.csv").read_bytes() == first
    with open(out / JOURNAL_NAME, "a", encoding="utf-8") as fh:
        fh.write('{"key": "torn line of a killed wri')  # a write cut short by SIGKILL
    assert main(["predict", str(images), "-o", str(out), "-q", "--resume"]) == 0
    assert (out / "results.csv").read_bytes() == first
    os.utime(images / "img_001.tif", ns=(1, 1))  # a changed input is rated again
    assert main(["predict", str(images), "-o", str(out), "-q", "--resume"]) == 0
    assert "2 files taken" in capsys.readouterr().out
    assert main(["predict", str(images), "-o", str(out), "-q", "--resume"]) == 0
    assert "3 files taken" in capsys.readouterr().out  # the re-rated file's entry survived
