"""miq's two weight formats as the bioimage.io package holds them, with the patch calibration
included: the torch network (for the ``pytorch_state_dict`` weights) and the ONNX graph with the
calibration appended; and running each on patches."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ModelError

_SUPPORTED_ARCHITECTURES = ("compact", "stride4", "separable", "yang2018")


def check_model(model) -> tuple[str, dict, Path]:
    """Architecture name, its kwargs and the safetensors path of a loaded miq model."""
    # TODO(ModelPackage): reads model.metadata (architecture, architecture_kwargs, weights) and
    # checks the safetensors sha256 itself, a copy of runtime.verified_weights
    import hashlib

    meta, where = model.metadata, model.path
    architecture = meta.get("architecture")
    if architecture not in _SUPPORTED_ARCHITECTURES:
        raise ModelError(
            f"{where}: architecture {architecture!r} cannot be exported to bioimage.io "
            f"(supported: {', '.join(_SUPPORTED_ARCHITECTURES)})"
        )
    kwargs = meta.get("architecture_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ModelError(f"{where}: malformed 'architecture_kwargs' (a JSON object expected)")
    try:
        info = meta["weights"]["safetensors"]
        weights = where.parent / info["file"]
        payload = weights.read_bytes()
    except (KeyError, TypeError):
        raise ModelError(
            f"{where}: metadata lists no safetensors weights (needed for bioimage.io export)"
        ) from None
    except OSError as exc:
        raise ModelError(f"{where}: safetensors weights missing ({exc.strerror or exc})") from None
    # TODO(ModelPackage): the package's own sha256 check, a copy of runtime.verified_weights
    if info.get("sha256") and hashlib.sha256(payload).hexdigest() != info["sha256"]:
        raise ModelError(f"{weights}: sha256 does not match model.json: corrupt or replaced file")
    return architecture, dict(kwargs), weights


def torch_network(model, architecture: str, kwargs: dict, weights: Path):
    """The calibrated torch network (eval mode) with miq's weights loaded, and its kwargs."""
    from safetensors.torch import load_file

    from ..model import network

    net_kwargs = {
        "architecture": architecture,
        **kwargs,
        "class_bias": [float(b) for b in model.class_bias],
        "patch_temperature": float(model.patch_temperature),
    }
    try:
        net = network.miq_focus_net(**net_kwargs)
        net.load_state_dict(load_file(str(weights)), strict=True)
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"{weights}: state dict does not fit architecture {architecture!r} ({message})"
        ) from None
    return net.eval(), net_kwargs


def calibrated_onnx(model, target: Path) -> int:
    """Write miq's ONNX graph with the patch calibration appended; returns its opset version."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    # TODO(ModelPackage): the ONNX file's name read from model.metadata, its bytes unchecked
    where = model.path.parent / model.metadata["weights"]["onnx"]["file"]
    try:
        proto = onnx.load_from_string(where.read_bytes())
    except Exception as exc:
        raise ModelError(f"{where}: not a readable ONNX model ({exc})") from None
    graph = proto.graph
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if len(graph.input) != 1 or len(graph.output) != 1 or opset < 13:
        raise ModelError(
            f"{where}: expected one input, one output and ONNX opset ≥ 13, got "
            f"{len(graph.input)} inputs, {len(graph.output)} outputs, opset {opset}"
        )
    final = graph.output[0].name
    raw = "miq_uncalibrated_probabilities"
    for node in graph.node:
        node.output[:] = [raw if name == final else name for name in node.output]
        node.input[:] = [raw if name == final else name for name in node.input]
    prefix = "miq_calibration_"
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(1e-12, np.float32), prefix + "min_probability"),
            numpy_helper.from_array(model.class_bias.astype(np.float32), prefix + "class_bias"),
            numpy_helper.from_array(
                np.array(model.patch_temperature, np.float32), prefix + "patch_temperature"
            ),
        ]
    )
    graph.node.extend(
        [
            helper.make_node(
                "Clip",
                [raw, prefix + "min_probability"],
                [prefix + "clipped"],
                name=prefix + "clip",
            ),
            helper.make_node("Log", [prefix + "clipped"], [prefix + "log"], name=prefix + "log"),
            helper.make_node(
                "Add",
                [prefix + "log", prefix + "class_bias"],
                [prefix + "biased"],
                name=prefix + "add",
            ),
            helper.make_node(
                "Div",
                [prefix + "biased", prefix + "patch_temperature"],
                [prefix + "scaled"],
                name=prefix + "div",
            ),
            helper.make_node(
                "Softmax", [prefix + "scaled"], [final], axis=-1, name=prefix + "softmax"
            ),
        ]
    )
    graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT
    proto.doc_string = (
        "miq focus network; output: calibrated level probabilities "
        "softmax((log(max(p, 1e-12)) + class_bias) / patch_temperature)"
    )
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(target))
    return int(opset)


def onnx_predict(path: Path, patches: np.ndarray) -> np.ndarray:
    """Run an ONNX file on patches (N, 1, P, P) float32 → (N, K) float32 (CPU, 1 thread)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: patches})[0]


def torch_predict(net, patches: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return net(torch.from_numpy(np.ascontiguousarray(patches))).numpy()
