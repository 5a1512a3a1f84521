"""Scale-out: --workers (local processes) and --scheduler (a real Dask LocalCluster) give the same
results.csv as a serial run; failures stay one row; --device cuda without CUDA is a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from miq.cli import main
from miq.optics import Optics, degrade

ALL_OUTPUTS = ["--overlays", "all"]  # an overlay for every plane, whatever its rating


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, sample_image) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    field = sample_image[:200, :300].astype(np.float64) / 65535.0
    for i, z_um in enumerate((0.0, 4.0, 10.0, 18.0, 2.0)):
        image = field if z_um == 0 else degrade(field, z_um, optics=Optics(), rng=i)
        tifffile.imwrite(
            folder / f"plate_B0{i + 1}_s1.tif", np.round(image * 65535).astype(np.uint16)
        )
    (folder / "plate_C01_s1.tif").write_bytes(b"II*\x00 truncated")
    return folder


@pytest.fixture(scope="module")
def serial_csv(inputs, tmp_path_factory) -> bytes:
    out = tmp_path_factory.mktemp("serial") / "run"
    assert main(["predict", str(inputs), "-o", str(out), "-q", "--threads", "1", *ALL_OUTPUTS]) == 1
    return (out / "results.csv").read_bytes()


def test_workers_give_the_serial_results(inputs, serial_csv, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["predict", str(inputs), "-o", str(out), "-q", "--workers", "2", *ALL_OUTPUTS]) == 1
    assert (out / "results.csv").read_bytes() == serial_csv
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("miq: error")]
    assert len(err) == 1 and "plate_C01_s1.tif" in err[0]  # the bad file, once; the rest rated
    assert len(list((out / "overlays").glob("*.jpg"))) == 5
    assert (out / "wells.csv").is_file()


def test_dask_local_cluster_gives_the_serial_results(inputs, serial_csv, tmp_path, capsys):
    distributed = pytest.importorskip("distributed", reason="needs the dask extra")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        out = tmp_path / "run"
        code = main(
            ["predict", str(inputs), "-o", str(out), "-q", "--scheduler", cluster.scheduler_address]
            + ALL_OUTPUTS
        )
        assert code == 1
        assert (out / "results.csv").read_bytes() == serial_csv
        with distributed.Client(cluster) as client:  # each worker loaded the model once
            loaded = client.run(
                lambda: (
                    __import__("miq.runs.workers").runs.workers.worker_model.cache_info().currsize
                )
            )
        assert sorted(loaded.values()) == [1, 1]
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("miq: error")]
    assert len(err) == 1 and "plate_C01_s1.tif" in err[0]


def test_an_unexpected_worker_error_is_one_row(monkeypatch, tmp_path, inputs):
    """A bug or resource failure while rating one file is reported for that file only."""
    import miq.runs.workers as parallel
    from miq.runs.file_job import FileJob

    def explode(job, model, preread=None):
        raise RuntimeError("out of disk")

    monkeypatch.setattr(parallel, "rate_file", explode)
    spec = parallel.ModelSpec(None, 1, "cpu", None)
    job = FileJob(inputs / "plate_B01_s1.tif", "plate_B01_s1", tmp_path)
    outcome = parallel.rate_in_worker(job, spec)
    assert outcome.failed_file and "out of disk" in outcome.errors[0]
    assert outcome.rows[0]["error"].startswith(str(job.path))


def test_device_cuda_without_cuda_is_one_clear_error(inputs, tmp_path, capsys):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA: the error path cannot be shown")
    code = main(["predict", str(inputs), "-o", str(tmp_path / "run"), "--device", "cuda"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CUDA" in err[0] and "onnxruntime-gpu" in err[0]


def test_scheduler_without_distributed_is_one_clear_error(inputs, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed now fails
    code = main(["predict", str(inputs), "-o", str(tmp_path / "run"), "--scheduler", "tcp://x:1"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "miq: error: --scheduler needs Dask distributed: pip install 'miq[dask]' "
        "(in a clone of miq: pip install -e '.[dask]')"
    ]


def test_workers_equal_one_process_with_the_default_outputs(inputs, tmp_path):
    """The screen-scale defaults (per-patch masks, previews of flagged planes only) give the same
    results.csv and the same files with 2 workers as in one process."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["predict", str(inputs), "-o", str(one), "-q", "--threads", "1"]) == 1
    assert main(["predict", str(inputs), "-o", str(two), "-q", "--workers", "2"]) == 1
    assert (one / "results.csv").read_bytes() == (two / "results.csv").read_bytes()

    def files(folder):
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())

    assert files(one) == files(two)
