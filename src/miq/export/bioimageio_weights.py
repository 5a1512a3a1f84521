"""miq's two weight formats as the bioimage.io package holds them, with the patch calibration
included: the torch network (for the ``pytorch_state_dict`` weights) and the ONNX graph with the
calibration appended; and running each on patches."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ModelError

_SUPPORTED_ARCHITECTURES = ("compact", "stride4", "separable", "yang2018")


def check_model(package) -> None:
    """Refuse a `miq.model.package.ModelPackage` that cannot be exported: an architecture
    the architecture file does not build, or no safetensors weights (its sha256 is checked by
    the package)."""
    if package.architecture not in _SUPPORTED_ARCHITECTURES:
        raise ModelError(
            f"{package.path}: architecture {package.architecture!r} cannot be exported to "
            f"bioimage.io (supported: {', '.join(_SUPPORTED_ARCHITECTURES)})"
        )
    if not package.has_weights("safetensors"):
        raise ModelError(
            f"{package.path}: metadata lists no safetensors weights (needed for bioimage.io export)"
        )


def torch_network(package):
    """The calibrated torch network (eval mode) with the package's weights, and its kwargs.

    The weights come from `miq.model.network.load_network` (the package's sha256-checked
    safetensors); the calibrated class adds the calibration as buffers outside the state dict."""
    from ..model import network

    calibration = package.calibration
    net_kwargs = {
        "architecture": package.architecture,
        **package.architecture_kwargs,
        "class_bias": [float(b) for b in calibration.class_bias],
        "patch_temperature": float(calibration.patch_temperature),
    }
    trained = network.load_network(package)
    try:
        net = network.miq_focus_net(**net_kwargs)
        net.load_state_dict(trained.state_dict(), strict=True)
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"{package.weight_file('safetensors')}: state dict does not fit architecture "
            f"{package.architecture!r} ({message})"
        ) from None
    return net.eval(), net_kwargs


def calibrated_onnx(package, target: Path) -> int:
    """Write the package's ONNX graph with the patch calibration appended; returns its opset."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    where = package.weight_file("onnx")
    try:
        proto = onnx.load_from_string(package.weight_bytes("onnx"))
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
    calibration = package.calibration
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(1e-12, np.float32), prefix + "min_probability"),
            numpy_helper.from_array(
                calibration.class_bias.astype(np.float32), prefix + "class_bias"
            ),
            numpy_helper.from_array(
                np.array(calibration.patch_temperature, np.float32), prefix + "patch_temperature"
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
