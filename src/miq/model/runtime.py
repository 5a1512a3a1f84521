"""Inference runtime: a trained model in ONNX format run by ONNX Runtime (no torch needed; on a
GPU, torch runs the same weights when ONNX Runtime has no CUDA provider: `.torch_runner`).

A model is a folder (or its ``model.json``) holding ``model.json`` (metadata) and ``model.onnx``.
The bundled models live in ``miq/model/weights*/`` (`miq.model.package.MODEL_VERSIONS`) and load
offline.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .package import BUNDLED_MODEL, BUNDLED_MODELS, ModelPackage, apply_patch_calibration

__all__ = ["FocusModel", "load_model", "default_model", "BUNDLED_MODEL", "BUNDLED_MODELS"]


class FocusModel:
    """A loaded focus model: ``predict(patches)`` → per-patch level probabilities.

    Built from a `miq.model.package.ModelPackage` (or anything
    `ModelPackage.open` accepts). Attributes: ``package``, ``path`` (model.json),
    ``name``, ``patch_size`` (px), ``n_levels``, ``um_per_level`` (µm of defocus per level),
    ``pixel_size_um`` (µm per px the levels are defined at), ``optics``, ``levels``,
    ``threads``, ``device``.
    """

    def __init__(
        self,
        package: ModelPackage | str | os.PathLike | None,
        *,
        threads: int | None = None,
        batch_size: int | None = None,
        device: str = "cpu",
    ) -> None:
        if not isinstance(package, ModelPackage):
            package = ModelPackage.open(package)
        if device not in DEVICES:
            raise ModelError(
                f"{package.path}: unknown device {device!r}; choose one of {', '.join(DEVICES)}"
            )
        payload = package.weight_bytes("onnx")
        if device == "cuda" and not _onnxruntime_has_cuda():
            self._run = _torch_cuda_runner(package)
        else:
            self._run = _onnx_runner(payload, package.weight_file("onnx"), device, threads, package)
        self.package = package
        self.path = package.path
        self.name = package.name
        self.patch_size = package.patch_size
        self.n_levels = package.n_levels
        self.um_per_level = package.um_per_level
        self.pixel_size_um = package.pixel_size_um
        self.optics = package.optics
        self.levels = package.levels
        self.threads = threads
        self.device = device
        # large batches keep a GPU busy; on CPU, 32-64 patches keep each layer's activations in
        # cache (625 patches of a 2048² image: 119 ms in batches of 64, 144 ms in one of 512)
        self.batch_size = int(batch_size or (8192 if device == "cuda" else 64))
        calibration = package.calibration
        self.class_bias = calibration.class_bias
        self.patch_temperature = calibration.patch_temperature
        self.image_temperature = calibration.image_temperature
        self.image_temperature_slope = calibration.image_temperature_slope
        self.image_temperature_centre = calibration.image_temperature_centre
        self.calibrated = calibration.fitted

    def predict(self, patches: np.ndarray, *, calibrated: bool = True) -> np.ndarray:
        """Level probabilities for patches (N, P, P) (any intensity scale) → (N, K) float32.

        With ``calibrated`` (default) the network's probabilities p become
        softmax((log p + class_bias) / patch_temperature), the calibration stored in model.json.
        """
        x = np.asarray(patches, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != (self.patch_size, self.patch_size):
            raise ValueError(
                f"patches must be (N, {self.patch_size}, {self.patch_size}), got {x.shape}"
            )
        out = np.empty((len(x), self.n_levels), np.float32)
        for start in range(0, len(x), self.batch_size):
            batch = np.ascontiguousarray(x[start : start + self.batch_size, None])
            out[start : start + len(batch)] = self._run(batch)
        return self.calibrate(out) if calibrated else out

    def calibrate(self, probabilities: np.ndarray) -> np.ndarray:
        """The patch calibration of model.json applied to network probabilities (N, K):
        softmax((log p + class_bias) / patch_temperature); unchanged if the model has none.
        (Row by row, so calibrating a whole image at once equals calibrating each batch.)"""
        if not self.calibrated:
            return probabilities
        return apply_patch_calibration(probabilities, self.class_bias, self.patch_temperature)

    def __repr__(self) -> str:
        return f"FocusModel({self.name!r}, levels={self.n_levels}, patch={self.patch_size})"


DEVICES = ("cpu", "cuda")


def _onnxruntime_has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def _onnx_runner(
    payload: bytes,
    onnx_path: Path,
    device: str,
    threads: int | None,
    package: ModelPackage | None = None,
):
    """patches (B, 1, P, P) float32 → probabilities (B, K), by ONNX Runtime on ``device``.
    The network's declared input and output shapes are checked against ``package``'s
    ``patch_size`` and ``n_levels`` (`miq.errors.ModelError`, one line, when they differ)."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        providers.insert(0, "CUDAExecutionProvider")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(payload, sess_options=options, providers=providers)
    except Exception as exc:
        raise ModelError(
            f"{onnx_path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})"
        ) from None
    input_name = session.get_inputs()[0].name
    if package is not None:
        _check_shapes(session, onnx_path, package)
    return lambda batch: session.run(None, {input_name: batch})[0]


def _check_shapes(session, onnx_path: Path, package: ModelPackage) -> None:
    """The ONNX network takes (B, 1, P, P) patches and gives (B, K) probabilities, with P and
    K as model.json says (dimensions the network leaves open are not checked)."""
    p, k = package.patch_size, package.n_levels
    inputs, outputs = session.get_inputs(), session.get_outputs()
    want = [(inputs, [None, 1, p, p], "input"), (outputs, [None, k], "output")]
    for nodes, expected, what in want:
        shape = list(nodes[0].shape) if nodes else []
        fixed = len(shape) == len(expected) and all(
            e is None or not isinstance(s, int) or s == e for s, e in zip(shape, expected)
        )
        if not fixed:
            raise ModelError(
                f"{onnx_path}: the network's {what} has shape {shape}, but model.json says "
                f"patch_size {p} and n_levels {k}"
            )


def _torch_cuda_runner(package: ModelPackage):
    """The network in torch on the GPU, for ``device="cuda"`` when ONNX Runtime has no CUDA
    provider; one clear error when torch has no CUDA either."""
    import onnxruntime as ort

    from .torch_runner import TorchRunner, torch_has_cuda

    if not torch_has_cuda():
        raise ModelError(
            f"{package.path}: --device cuda, but neither this ONNX Runtime (providers: "
            f"{', '.join(ort.get_available_providers())}) nor torch can use a CUDA GPU; install "
            "onnxruntime-gpu, or torch with CUDA and safetensors, with a CUDA driver, "
            "or use --device cpu"
        )
    return TorchRunner(package, "cuda")


def load_model(
    path: str | os.PathLike | None = None, *, threads: int | None = None, device: str = "cpu"
) -> FocusModel:
    """Load a model: a folder, ``model.json`` or ``model.onnx`` path, or the name of a bundled
    model (``"default"``, ``"fast"``: `BUNDLED_MODELS`; a path of that name wins); None is
    the default bundled model.

    ``threads``: inference threads (default: ONNX Runtime's, all cores); ``device``: ``"cpu"`` or
    ``"cuda"`` (a CUDA GPU through onnxruntime-gpu, or else through torch with CUDA; never
    required).

    Raises `miq.errors.ModelError` with the file name if it is missing or not a miq model.
    """
    return FocusModel(ModelPackage.open(path), threads=threads, device=device)


@lru_cache(maxsize=1)
def default_model() -> FocusModel:
    """The bundled model, loaded once per process."""
    return load_model()
