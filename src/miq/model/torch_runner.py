"""A model's network run by torch: ``--device cuda`` where torch has CUDA but ONNX Runtime has not.

The network is built by `miq.model.network.load_network` from the model package's
``model.safetensors`` (checked against the sha256 in model.json): the same weights the ONNX file was exported from, so
the probabilities agree with ONNX Runtime's to float32 rounding (``tests/test_torch_runner.py``
checks ≤ 1e-4 for both bundled models). Needs torch and safetensors (the ``train`` extra).
"""

from __future__ import annotations

import numpy as np


class TorchRunner:
    """Callable: patches (B, 1, P, P) float32 → level probabilities (B, K) float32, on ``device``."""

    def __init__(self, package, device: str) -> None:
        import torch

        from .network import load_network

        self._torch = torch
        self.device = device
        self._network = load_network(package).to(device)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        cudnn = torch.backends.cudnn
        # full float32 convolutions: cuDNN's default TF32 keeps 10 bits of mantissa, too few for
        # probabilities within 1e-4 of ONNX Runtime's (the other settings are kept as they are)
        full_float32 = cudnn.flags(
            enabled=cudnn.enabled,
            benchmark=cudnn.benchmark,
            deterministic=cudnn.deterministic,
            allow_tf32=False,
        )
        with torch.inference_mode(), full_float32:
            logits = self._network(torch.from_numpy(batch).to(self.device))
            return torch.softmax(logits, dim=1).float().cpu().numpy()


def torch_has_cuda() -> bool:
    """True when torch and safetensors import and torch sees a CUDA device."""
    try:
        import safetensors.torch  # noqa: F401
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
