"""Inference runtime: a trained model in ONNX format run by ONNX Runtime (no torch needed; on a
GPU, torch runs the same weights when ONNX Runtime has no CUDA provider: :mod:`.torch_runner`).

A model is a folder (or its ``model.json``) holding ``model.json`` (metadata) and ``model.onnx``.
The bundled default model lives in ``miq/model/weights/`` and loads offline.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import ModelError

__all__ = ["FocusModel", "load_model", "default_model", "BUNDLED_MODEL", "BUNDLED_MODELS"]

BUNDLED_MODEL = Path(__file__).parent / "weights" / "model.json"
#: models that ship in the package, by the name ``load_model`` and ``--model`` accept
BUNDLED_MODELS = {
    "default": BUNDLED_MODEL,  # miq-compact-v2: the most accurate and best calibrated
    "fast": Path(__file__).parent / "weights_fast" / "model.json",  # separable: ~2.5x faster
}
_FORMAT = "miq-model/1"


class FocusModel:
    """A loaded focus model: ``predict(patches)`` → per-patch level probabilities.

    Attributes: ``metadata`` (dict from model.json), ``patch_size`` (px), ``n_levels``,
    ``um_per_level`` (µm of defocus per level), ``pixel_size_um`` (µm per px the levels are
    defined at), ``path`` (model.json).
    """

    def __init__(
        self,
        metadata_path: str | os.PathLike,
        *,
        threads: int | None = None,
        batch_size: int | None = None,
        device: str = "cpu",
    ) -> None:
        meta_path = Path(metadata_path)
        try:
            metadata = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{meta_path}: not a readable miq model.json ({exc})") from None
        if not isinstance(metadata, dict) or metadata.get("format") != _FORMAT:
            raise ModelError(
                f"{meta_path}: not a miq model description (format {_FORMAT} expected)"
            )
        onnx_path, payload = verified_weights(meta_path, metadata, "onnx")
        if device not in DEVICES:
            raise ModelError(
                f"{meta_path}: unknown device {device!r}; choose one of {', '.join(DEVICES)}"
            )
        if device == "cuda" and not _onnxruntime_has_cuda():
            self._run = _torch_cuda_runner(meta_path, metadata)
        else:
            self._run = _onnx_runner(payload, onnx_path, device, threads)
        self.metadata = metadata
        self.path = meta_path
        self.patch_size = int(metadata["patch_size"])
        self.n_levels = int(metadata["n_levels"])
        self.um_per_level = float(metadata["um_per_level"])
        self.pixel_size_um = float(metadata.get("optics", {}).get("pixel_size_um", 0.65))
        self.threads = threads
        self.device = device
        # large batches keep a GPU busy; on CPU, 32-64 patches keep each layer's activations in
        # cache (625 patches of a 2048² image: 119 ms in batches of 64, 144 ms in one of 512)
        self.batch_size = int(batch_size or (8192 if device == "cuda" else 64))
        self._set_calibration(metadata.get("calibration") or {})

    def _set_calibration(self, calib: dict) -> None:
        """Post-hoc calibration from model.json (see :mod:`miq.calibration`); identity if absent."""
        try:
            bias = np.asarray(calib.get("class_bias", np.zeros(self.n_levels)), dtype=np.float64)
            self.patch_temperature = float(calib.get("patch_temperature", 1.0))
            self.image_temperature = float(calib.get("image_temperature", 1.0))
        except (TypeError, ValueError):
            raise ModelError(f"{self.path}: malformed 'calibration' entry") from None
        if (
            bias.shape != (self.n_levels,)
            or min(self.patch_temperature, self.image_temperature) <= 0
        ):
            raise ModelError(
                f"{self.path}: 'calibration' does not fit a {self.n_levels}-level model"
            )
        self.class_bias = bias
        self.calibrated = bool(calib)

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", self.path.parent.name))

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
        from ..calibration import apply_patch_calibration

        return apply_patch_calibration(probabilities, self.class_bias, self.patch_temperature)

    def __repr__(self) -> str:
        return f"FocusModel({self.name!r}, levels={self.n_levels}, patch={self.patch_size})"


DEVICES = ("cpu", "cuda")


def verified_weights(meta_path: Path, metadata: dict, kind: str) -> tuple[Path, bytes]:
    """The path and bytes of the weights file that ``model.json`` lists under ``kind``
    (``"onnx"`` or ``"safetensors"``), checked against its sha256 there; ModelError otherwise."""
    label = "ONNX" if kind == "onnx" else kind
    try:
        info = metadata["weights"][kind]
        path = meta_path.parent / info["file"]
        payload = path.read_bytes()
    except (KeyError, TypeError):
        raise ModelError(f"{meta_path}: metadata lists no {label} weights") from None
    except OSError as exc:
        raise ModelError(f"{meta_path}: {label} weights missing ({exc.strerror or exc})") from None
    if info.get("sha256") and hashlib.sha256(payload).hexdigest() != info["sha256"]:
        raise ModelError(f"{path}: sha256 does not match model.json: corrupt or replaced file")
    return path, payload


def _onnxruntime_has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def _onnx_runner(payload: bytes, onnx_path: Path, device: str, threads: int | None):
    """patches (B, 1, P, P) float32 → probabilities (B, K), by ONNX Runtime on ``device``."""
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
    return lambda batch: session.run(None, {input_name: batch})[0]


def _torch_cuda_runner(meta_path: Path, metadata: dict):
    """The network in torch on the GPU, for ``device="cuda"`` when ONNX Runtime has no CUDA
    provider; one clear error when torch has no CUDA either."""
    import onnxruntime as ort

    from .torch_runner import TorchRunner, torch_has_cuda

    if not torch_has_cuda():
        raise ModelError(
            f"{meta_path}: --device cuda, but neither this ONNX Runtime (providers: "
            f"{', '.join(ort.get_available_providers())}) nor torch can use a CUDA GPU; install "
            "onnxruntime-gpu, or torch with CUDA and safetensors, with a CUDA driver, "
            "or use --device cpu"
        )
    return TorchRunner(meta_path, metadata, "cuda")


def _resolve(path: str | os.PathLike | None) -> Path:
    if path is None:
        return BUNDLED_MODEL
    p = Path(path)
    if isinstance(path, str) and path in BUNDLED_MODELS and not p.exists():
        return BUNDLED_MODELS[path]
    if p.is_dir():
        return p / "model.json"
    if p.suffix == ".onnx":
        return p.with_name("model.json")
    return p


def load_model(
    path: str | os.PathLike | None = None, *, threads: int | None = None, device: str = "cpu"
) -> FocusModel:
    """Load a model: a folder, ``model.json`` or ``model.onnx`` path, or the name of a bundled
    model (``"default"``, ``"fast"``: :data:`BUNDLED_MODELS`; a path of that name wins); None is
    the default bundled model.

    ``threads``: inference threads (default: ONNX Runtime's, all cores); ``device``: ``"cpu"`` or
    ``"cuda"`` (a CUDA GPU through onnxruntime-gpu, or else through torch with CUDA; never
    required).

    Raises :class:`miq.errors.ModelError` with the file name if it is missing or not a miq model.
    """
    meta = _resolve(path)
    if not meta.exists():
        raise ModelError(
            f"{meta}: model not found (give a model folder or its model.json, or a bundled "
            f"model: {', '.join(BUNDLED_MODELS)})"
        )
    return FocusModel(meta, threads=threads, device=device)


@lru_cache(maxsize=1)
def default_model() -> FocusModel:
    """The bundled model, loaded once per process."""
    return load_model()
