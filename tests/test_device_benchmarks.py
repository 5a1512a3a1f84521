"""The throughput, GPU-agreement and training-simulation benchmarks still run against today's
API: they are what a session with a GPU runs in its few minutes on it, so they must not break
unnoticed (the throughput benchmark once called ``predict_files`` with keywords it no longer
had)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # benchmarks is a package at the repository root


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_throughput_benchmark_runs_and_every_run_writes_the_same_results():
    result = _run("benchmarks.throughput", "--count", "2", "--side", "256", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "results.csv identical across all miq runs: True" in result.stdout


def test_cuda_agreement_without_a_gpu_says_so_and_exits_2():
    import miq.model.runtime as runtime
    from miq.model.torch_runner import torch_has_cuda

    if runtime._onnxruntime_has_cuda() or torch_has_cuda():  # a GPU: compare for real
        result = _run("benchmarks.cuda_agreement", "--models", "fast-v2", "--repeats", "1")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "PASS" in result.stdout
        return
    result = _run("benchmarks.cuda_agreement", "--models", "fast-v2", "--repeats", "1")
    assert result.returncode == 2
    assert "no CUDA device" in result.stdout


def test_training_simulation_benchmark_without_a_gpu_says_so_and_exits_2():
    import torch

    result = _run("benchmarks.training_simulation", "--repeats", "1", "--batch-size", "16")
    if torch.cuda.is_available():  # a GPU: time and compare for real
        assert result.returncode == 0, result.stdout + result.stderr
        assert "PASS" in result.stdout
        return
    assert result.returncode == 2
    assert "no CUDA device" in result.stdout
