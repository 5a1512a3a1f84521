"""Hardening (issue 20, item 6): worker processes die with their parent, a dead worker charges
only its own file, CSV cells are never read as formulas, every printed line is one line, and
non-regular files (named pipes) are refused without being opened."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import tifffile

from miq.cli import main
from miq.runs.journal import JOURNAL_NAME

linux_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


# --- helpers ---------------------------------------------------------------------------------


def _children(pid: int) -> set[int]:
    """Live (not zombie) processes whose parent is ``pid``, from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            state = _state(int(entry.name))
            if state is not None and state[1] == pid and state[0] != "Z":
                found.add(int(entry.name))
    return found


def _state(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    state = _state(pid)
    return state is not None and state[0] not in ("Z", "X")


def _images(folder: Path, n: int, size: int = 160) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        tifffile.imwrite(folder / f"img_{i:03d}.tif", rng.integers(0, 4000, (size, size), "u2"))
    return folder


def _journal_lines(out: Path) -> int:
    path = out / JOURNAL_NAME
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _start_predict(images: Path, out: Path, *more: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "miq", "predict", str(images), "-o", str(out), "-q", *more]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# --- worker processes ------------------------------------------------------------------------


@linux_only
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_workers_die_with_their_parent(tmp_path, how):
    """Killing `miq predict --workers 2` (SIGKILL or SIGTERM) leaves no worker process and no
    resource tracker behind: on the old code they lived on indefinitely."""
    images = _images(tmp_path / "in", 60)
    out = tmp_path / "out"
    proc = _start_predict(images, out, "--workers", "2")
    children: set[int] = set()
    try:
        started = _wait_for(lambda: _journal_lines(out) >= 2 or proc.poll() is not None, 60)
        assert started and proc.poll() is None, "the run must be killed while rating"
        children = _children(proc.pid)
        assert len(children) >= 2  # two workers (and multiprocessing's resource tracker)
        proc.send_signal(how)
        code = proc.wait(timeout=30)
        assert _wait_for(lambda: not any(_alive(pid) for pid in children), 10), [
            pid for pid in children if _alive(pid)
        ]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pid in children:  # never leave a process of the test behind
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    err = proc.stderr.read().decode()
    assert "Traceback" not in err
    if how == signal.SIGTERM:  # handled: the workers were stopped, the user told what to do
        assert code == 143 and err.strip().splitlines()[-1].startswith("miq: error: terminated;")
        assert not list(out.rglob("*.part"))  # the workers removed their temporary files


def _die_on_marked_files(job, spec):
    """A worker task for the tests: dies (like a worker killed for memory) on files whose name
    starts with ``die``, takes a moment on the others."""
    from miq.runs.file_job import failed_outcome

    if job.path.name.startswith("die"):
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.2)
    return failed_outcome(job, "rated", spec.n_levels)


def test_a_dead_worker_charges_only_its_own_file(tmp_path):
    """Two workers die (on two files that kill their worker every time): those two files are
    reported "died twice", every other file is rated once, undisturbed; on the old code each
    death charged every file in flight, so queued files were reported dead too."""
    from miq.runs.file_job import FileJob
    from miq.runs.workers import ModelSpec, _run_processes

    names = ["a", "die1", "b", "c", "d", "die2", "e", "f", "g", "h"]
    jobs = {i: FileJob(tmp_path / f"{n}.tif", n, tmp_path) for i, n in enumerate(names)}
    spec = ModelSpec(None, 1, "cpu", None)
    outcomes = list(_run_processes(jobs, spec, 2, task=_die_on_marked_files))
    assert sorted(i for i, _ in outcomes) == list(range(len(names)))  # each file once
    messages = {names[i]: o.errors[0].split(": ", 1)[1] for i, o in outcomes}
    assert {n for n, m in messages.items() if "died twice" in m} == {"die1", "die2"}
    assert all(m == "rated" for n, m in messages.items() if not n.startswith("die"))
    assert "SIGKILL" in messages["die1"]


def test_workers_that_cannot_start_are_one_error(tmp_path, monkeypatch):
    """No process can be started (EAGAIN: out of processes): one MiqError naming the option,
    not a traceback."""
    import errno
    import multiprocessing.context

    from miq.errors import MiqError
    from miq.runs.file_job import FileJob
    from miq.runs.workers import ModelSpec, _run_processes

    def refuse(self):
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(multiprocessing.context.SpawnProcess, "start", refuse)
    jobs = {i: FileJob(tmp_path / f"{i}.tif", str(i), tmp_path) for i in range(3)}
    with pytest.raises(MiqError, match="cannot start a worker process .*use fewer --workers"):
        list(_run_processes(jobs, ModelSpec(None, 1, "cpu", None), 2))


@linux_only
def test_a_worker_killed_from_outside_costs_nothing(tmp_path):
    """A worker killed mid-run (e.g. by the kernel for memory): its file is rated again in a new
    worker, the run ends normally with a complete results.csv and no traceback."""
    images = _images(tmp_path / "in", 24)
    out = tmp_path / "out"
    proc = _start_predict(images, out, "--workers", "2")
    try:
        assert _wait_for(lambda: _journal_lines(out) >= 1 or proc.poll() is not None, 60)
        workers = [p for p in _children(proc.pid) if b"resource_tracker" not in _cmdline(p)]
        assert workers and proc.poll() is None
        os.kill(workers[0], signal.SIGKILL)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in proc.stderr.read().decode()
    lines = (out / "results.csv").read_text().splitlines()
    assert len(lines) == 1 + 24
    assert all(line.endswith(",") for line in lines[1:])  # no error cell filled


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# --- named pipes and other special files -----------------------------------------------------


@contextmanager
def _deadline(seconds: int):
    """Fail (instead of hanging the test suite) when the block takes longer than ``seconds``."""

    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_is_refused_without_being_opened(tmp_path):
    """A FIFO named on the command line (and one inside a folder) is one error line each and
    the batch goes on; on the old code opening it waited for a writer forever."""
    from miq.errors import ImageReadError
    from miq.io import ImageSource, find_images

    images = _images(tmp_path / "in", 1)
    os.mkfifo(images / "pipe.tif")
    os.mkfifo(tmp_path / "named.tif")
    out = tmp_path / "out"
    command = ["predict", str(tmp_path / "named.tif"), str(images), "-o", str(out), "-q"]
    try:  # a subprocess: the old code hung in a thread that no signal can stop
        done = subprocess.run(
            [sys.executable, "-m", "miq", *command], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        pytest.fail("miq predict hangs on a named pipe")
    assert done.returncode == 1  # the pipes are refused, the image is rated
    err = done.stderr.splitlines()
    assert len(err) == 2 and all("named pipe (FIFO)" in line for line in err)
    assert (out / "results.csv").read_text().count("\n") == 2
    with _deadline(20):
        with pytest.raises(ImageReadError, match="named pipe"):  # the API does not open it
            ImageSource.open(tmp_path / "named.tif")
        refused: list[str] = []
        found = find_images([tmp_path / "named.tif", images], on_refused=refused.append)
    assert found == [images / "img_000.tif"]
    assert refused == [
        f"{tmp_path / 'named.tif'}: a named pipe (FIFO), not an image file; skipped",
        f"{images / 'pipe.tif'}: a named pipe (FIFO), not an image file; skipped",
    ]


# --- CSV cells that spreadsheets would run as formulas ---------------------------------------


def test_csv_cells_are_never_formulas_and_numbers_stay_numbers(tmp_path):
    import csv

    from miq.io import read_rows_csv, write_rows_csv

    values = [
        '=HYPERLINK("http://x","y")',
        "+1+2",
        "-2+3",
        "@SUM(A1)",
        "\tx",
        "\rx",
        "'=x",
        "-a\rb",
    ]
    numbers = ["-1", "-0.5", "-1e-05", "1e+06", -1, -0.25, 0]
    plain = ["plain.tif", "it's.tif", "", "a=b.tif", "a\rb,c"]  # a CR kept inside its cell
    rows = [{"v": v} for v in values + numbers + plain]
    write_rows_csv(tmp_path / "t.csv", ["v"], rows)
    with open(tmp_path / "t.csv", encoding="utf-8", newline="") as fh:
        cells = [row[0] for row in csv.reader(fh)][1:]
    assert cells[: len(values)] == ["'" + v for v in values]  # each one read as text
    assert cells[len(values) :] == [str(v) for v in numbers + plain]  # unchanged
    assert [r["v"] for r in read_rows_csv(tmp_path / "t.csv")] == [str(r["v"]) for r in rows]


def test_results_csv_neutralises_file_names_and_errors(tmp_path, monkeypatch):
    """A file named ``=…`` (rated) and one named ``-…`` (unreadable: its error message starts
    with its name) never start a results.csv cell with a formula character; ``c`` = -1 stays a
    number; the report reads the names back as they are."""
    from miq.report.run import load_run

    images = _images(tmp_path, 1)
    monkeypatch.chdir(images)
    os.rename("img_000.tif", "=1+2.tif")
    Path("-bad.tif").write_bytes(b"II*\x00 truncated")
    assert main(["predict", "-o", "out", "-q", "--", "=1+2.tif", "-bad.tif"]) == 1
    text = Path("out/results.csv").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[1].startswith("'=1+2.tif,0,0,0,")
    assert lines[2].startswith("'-bad.tif,0,-1,-1,")
    assert ",'-bad.tif: " in lines[2]  # the error cell
    rows = load_run("out").rows
    assert [r["file"] for r in rows] == ["=1+2.tif", "-bad.tif"]
    assert rows[1]["error"].startswith("-bad.tif: ")


# --- every printed line is one line ----------------------------------------------------------


def test_a_file_name_cannot_forge_a_line(tmp_path, capsys):
    """File names holding line breaks print as escapes in the table, the error lines and the
    summary: one line each (on the old code the table's name and the output path broke lines)."""
    images = _images(tmp_path / "in", 1)
    os.rename(images / "img_000.tif", images / "a\nmiq: error: forged.tif")
    (images / "b\rmiq: error: forged.tif").write_bytes(b"II*\x00 truncated")
    out = tmp_path / "out\nmiq: error: forged"
    assert main(["predict", str(images), "-o", str(out)]) == 1
    captured = capsys.readouterr()
    stdout, stderr = captured.out.splitlines(), captured.err.splitlines()
    assert len(stdout) == 4  # the table's header, its two rows, the summary
    assert len(stderr) == 1 and stderr[0].startswith("miq: error: ")
    assert not any(line.startswith("miq: error: forged") for line in stdout + stderr)
    assert "a\\nmiq: error: forged.tif" in stdout[1] + stdout[2]
    assert "b\\rmiq: error: forged.tif" in stderr[0]
