"""--device cuda through torch when ONNX Runtime has no CUDA provider (miq.model.torch_runner).

No GPU is needed: the runner is checked on torch's CPU, and the device choice with torch's CUDA
check and the runner's device replaced."""

from __future__ import annotations

import numpy as np
import pytest

import miq
from miq.errors import ModelError
from miq.model.package import BUNDLED_MODELS, ModelPackage

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")


@pytest.fixture(scope="module")
def patches(sample_image):
    from miq.assessment import prepare_patches

    return prepare_patches(sample_image, miq.load_model(threads=1))[1][:48]


@pytest.mark.parametrize("name", sorted(BUNDLED_MODELS))
def test_torch_runner_matches_onnx_runtime(name, patches):
    from miq.model.torch_runner import TorchRunner

    runner = TorchRunner(ModelPackage.open(name), "cpu")
    expected = miq.load_model(name, threads=1).predict(patches, calibrated=False)
    got = runner(np.ascontiguousarray(patches[:, None]))
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_device_cuda_falls_back_to_torch_when_onnx_runtime_has_no_cuda(
    monkeypatch, patches, sample_image
):
    from miq.model import runtime, torch_runner

    asked = []

    class CpuStandIn(torch_runner.TorchRunner):
        def __init__(self, package, device):
            asked.append(device)
            super().__init__(package, "cpu")

    monkeypatch.setattr(runtime, "_onnxruntime_has_cuda", lambda: False)
    monkeypatch.setattr(torch_runner, "torch_has_cuda", lambda: True)
    monkeypatch.setattr(torch_runner, "TorchRunner", CpuStandIn)
    on_gpu = miq.load_model("fast", device="cuda")
    on_cpu = miq.load_model("fast", threads=1)
    assert asked == ["cuda"] and on_gpu.batch_size == 8192
    np.testing.assert_allclose(on_gpu.predict(patches), on_cpu.predict(patches), atol=1e-4)
    gpu_result, cpu_result = miq.assess(sample_image, on_gpu), miq.assess(sample_image, on_cpu)
    assert gpu_result.level == cpu_result.level
    np.testing.assert_allclose(gpu_result.probabilities, cpu_result.probabilities, atol=1e-4)


def test_device_cuda_without_any_cuda_names_both_ways(monkeypatch):
    from miq.model import runtime, torch_runner

    monkeypatch.setattr(runtime, "_onnxruntime_has_cuda", lambda: False)
    monkeypatch.setattr(torch_runner, "torch_has_cuda", lambda: False)
    with pytest.raises(ModelError, match="onnxruntime-gpu, or torch with CUDA") as error:
        miq.load_model("fast", device="cuda")
    assert str(BUNDLED_MODELS["fast"]) in str(error.value)
