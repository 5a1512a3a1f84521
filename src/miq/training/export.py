"""Export a trained network: ONNX (inference), safetensors state dict (torch), JSON metadata."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path

import torch

__all__ = ["export_model", "write_onnx", "reexport_onnx", "MODEL_FORMAT"]

MODEL_FORMAT = "miq-model/1"
NORMALISATION = (
    "per patch, inside the network: (x - mean) / std over the 84x84 patch; input may be in any "
    "intensity units (DN, unit range, float); miq maps each plane to [0, 1] by min/max first "
    "for float32 precision only"
)


def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes, read 1 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _WithSoftmax(torch.nn.Module):
    """The network's logits (B, K) → probabilities, the ONNX file's output."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)


def write_onnx(model: torch.nn.Module, path: str | Path, patch_size: int) -> None:
    """Write ``model`` (logits) with a softmax as ONNX (opset 17): input ``patches`` (batch, 1,
    ``patch_size``, ``patch_size``) float32, output ``probabilities`` (batch, K). Written to a
    temporary file and renamed, so ``path`` is never half-written."""
    import io

    from ..io import atomic_write

    dummy = torch.zeros(2, 1, patch_size, patch_size)
    dummy[:, :, ::7, ::5] = 1.0
    encoded = io.BytesIO()
    torch.onnx.export(
        _WithSoftmax(model.eval()),
        (dummy,),
        encoded,
        input_names=["patches"],
        output_names=["probabilities"],
        dynamic_axes={"patches": {0: "batch"}, "probabilities": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    with atomic_write(path) as fh:
        fh.write(encoded.getvalue())


def export_model(
    model: torch.nn.Module,
    out_dir: str | Path,
    *,
    config: dict,
    provenance: dict,
    licence: str = "BSD-3-Clause (miq); trained on CC0 / CC-BY-4.0 / BSD-3 images, see training.files",
) -> Path:
    """Write ``model.onnx``, ``model.safetensors`` and ``model.json`` into ``out_dir``.

    ``config`` is the training configuration (architecture, kwargs, optics, levels...), and
    ``provenance`` what the run did (files with sha256, steps, time, command).
    Returns the path of ``model.json``.
    """
    from safetensors.torch import save

    from ..io import atomic_write

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    patch = int(config["patch_size"])
    n_levels = len(config["levels"]["defocus_um"])
    onnx_path = out / "model.onnx"
    write_onnx(model, onnx_path, patch)
    st_path = out / "model.safetensors"
    with atomic_write(st_path) as fh:  # (safetensors' own save_file makes the file private)
        fh.write(save({k: v.detach().contiguous() for k, v in model.state_dict().items()}))
    kwargs = dict(config.get("architecture_kwargs") or {})
    kwargs.setdefault("n_levels", n_levels)
    kwargs.setdefault("patch_size", patch)
    levels = [float(z) for z in config["levels"]["defocus_um"]]
    meta = {
        "format": MODEL_FORMAT,
        "name": out.name,
        "created": _dt.date.today().isoformat(),
        "architecture": config["architecture"],
        "architecture_kwargs": kwargs,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "patch_size": patch,
        "n_levels": n_levels,
        "level_defocus_um": levels,
        "um_per_level": (levels[-1] - levels[0]) / max(1, n_levels - 1),
        "optics": config["optics"],
        "input": {
            "name": "patches",
            "shape": ["batch", 1, patch, patch],
            "dtype": "float32",
            "normalisation": NORMALISATION,
        },
        "output": {
            "name": "probabilities",
            "shape": ["batch", n_levels],
            "meaning": "softmax over defocus levels, level 0 = in focus",
        },
        "weights": {
            "onnx": {"file": onnx_path.name, "sha256": file_sha256(onnx_path)},
            "safetensors": {"file": st_path.name, "sha256": file_sha256(st_path)},
        },
        "training": {"config": config, **provenance},
        "licence": licence,
    }
    meta_path = out / "model.json"
    with atomic_write(meta_path, "w") as fh:
        fh.write(json.dumps(meta, indent=2))
    return meta_path


def reexport_onnx(model_dir: str | Path) -> Path:
    """Rewrite a model folder's ``model.onnx`` from its ``model.safetensors`` with the current
    network code (e.g. after a change of how an operation is exported) and update its sha256 in
    ``model.json``; weights, calibration and everything else stay. Returns the ONNX path."""
    from ..model.network import load_network
    from ..model.package import ModelPackage

    package = ModelPackage.open(model_dir)
    network = load_network(package)
    onnx_path = package.weight_file("onnx")
    write_onnx(network, onnx_path, package.patch_size)
    package.save_weight_sha256("onnx")
    return onnx_path


if __name__ == "__main__":  # python -m miq.training.export MODEL_DIR ...
    import sys

    for folder in sys.argv[1:]:
        print(f"rewritten: {reexport_onnx(folder)}")
