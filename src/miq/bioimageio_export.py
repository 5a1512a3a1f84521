"""Export a miq model as a bioimage.io model package (zip, model spec 0.5).

The package rates single patches: input ``(batch, 1, P, P)`` float32 (P = 84 px, any intensity
units), output ``(batch, K)`` float32 calibrated level probabilities (K = 11, level 0 = in focus),
exactly the per-patch probabilities miq reports (its patch calibration included). It holds two
weight formats that give the same output:

* ``onnx``: miq's ``model.onnx`` with the patch calibration appended as ONNX nodes
  (Clip → Log → Add bias → Div temperature → Softmax);
* ``pytorch_state_dict``: miq's ``model.safetensors`` state dict, saved with ``torch.save``, for
  the self-contained architecture file ``miq_focus_net.py`` (a copy of
  ``miq/model/network.py``) that takes the calibration as keyword arguments.

Splitting whole images into patches and aggregating the patches into a whole-image rating (and the
image-level temperature) stay in miq; the package covers the per-patch network only.

Needs the ``bioimageio`` extra (torch, safetensors, onnx, bioimageio.spec); nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import tempfile
import warnings
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import MiqError, ModelError, OutputError
from .io import _umask

__all__ = ["export_bioimageio", "ARCHITECTURE_FILE", "ARCHITECTURE_CALLABLE"]

ARCHITECTURE_FILE = "miq_focus_net.py"
ARCHITECTURE_CALLABLE = "miq_focus_net"
_SAMPLE_IMAGE = "bbbc022_A01_s3_hoechst.tif"
_SUPPORTED_ARCHITECTURES = ("compact", "stride4", "separable", "yang2018")
_REQUIRED = {
    "torch": "torch",
    "safetensors.torch": "safetensors",
    "onnx": "onnx",
    "bioimageio.spec": "bioimageio.spec",
}
# the package's weights must reproduce miq's per-patch output this closely (probabilities)
_EXPORT_TOLERANCE = 1e-4
_CITATION_TEXT = (
    "Yang SJ et al. (2018) Assessing microscope image focus quality with deep learning. "
    "BMC Bioinformatics 19:77"
)
_CITATION_DOI = "10.1186/s12859-018-2087-4"
_TAGS = [
    "fluorescence-light-microscopy",
    "2d",
    "cells",
    "nuclei",
    "pytorch",
    "onnx",
    "image-classification",
    "focus",
    "defocus",
    "image-quality",
    "quality-control",
    "miq",
]


def _require_dependencies() -> None:
    """Import the optional dependencies; one-line :class:`MiqError` naming those missing."""
    missing = []
    for module, package in _REQUIRED.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise MiqError(
            f"bioimage.io export needs {', '.join(missing)}, not installed: "
            "pip install 'miq[bioimageio]'"
        )


def _incompatible_pydantic() -> str:
    from importlib.metadata import version

    return (
        f"bioimageio.spec {version('bioimageio.spec')} does not work with pydantic "
        f"{version('pydantic')}: pip install 'pydantic<2.14' (or a newer bioimageio.spec)"
    )


def _fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def _check_model(model) -> tuple[str, dict, Path]:
    """Architecture name, its kwargs and the safetensors path of a loaded miq model."""
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
    if info.get("sha256") and hashlib.sha256(payload).hexdigest() != info["sha256"]:
        raise ModelError(f"{weights}: sha256 does not match model.json: corrupt or replaced file")
    return architecture, dict(kwargs), weights


def _torch_network(model, architecture: str, kwargs: dict, weights: Path):
    """The calibrated torch network (eval mode) with miq's weights loaded, and its kwargs."""
    from safetensors.torch import load_file

    from .model import network

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


def _calibrated_onnx(model, target: Path) -> int:
    """Write miq's ONNX graph with the patch calibration appended; returns its opset version."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

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


def _onnx_predict(path: Path, patches: np.ndarray) -> np.ndarray:
    """Run an ONNX file on patches (N, 1, P, P) float32 → (N, K) float32 (CPU, 1 thread)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: patches})[0]


def _torch_predict(net, patches: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return net(torch.from_numpy(np.ascontiguousarray(patches))).numpy()


def _pad_to_cover_ratio(image):
    """Pad a PIL image with black to the nearer of the aspect ratios 1:1 and 2:1 (width:height)."""
    from PIL import Image

    w, h = image.size
    candidates = []
    for ratio in (1.0, 2.0):
        if w >= ratio * h:
            candidates.append((w, int(round(w / ratio))))
        else:
            candidates.append((int(round(h * ratio)), h))
    size = min(candidates, key=lambda s: s[0] * s[1])
    canvas = Image.new("RGB", size, (0, 0, 0))
    canvas.paste(image, ((size[0] - w) // 2, (size[1] - h) // 2))
    return canvas


def _readme(model, *, architecture: str, n_parameters: int, checks: dict, sample: dict) -> str:
    """The package's README.md: what it computes, how it was made, and the numbers miq has."""
    meta = model.metadata
    p, k = model.patch_size, model.n_levels
    optics = meta.get("optics", {})
    levels = meta.get("level_defocus_um", [])
    level_text = ", ".join(f"{z:g}" for z in levels)
    lines = [
        f"# miq focus quality: {model.name}",
        "",
        f"Rates the focus of one {p}×{p} px patch of a 2D fluorescence microscopy image: the "
        f"probabilities of {k} absolute defocus levels (level 0 = in focus). This is the per-patch "
        "network of miq (microscope image focus quality), which follows the approach of Yang et "
        "al. 2018 (see Citation), exported by miq's bioimage.io export.",
        "",
        "## Inputs and outputs",
        "",
        f"* Input `patches`: `(batch, 1, {p}, {p})` float32, one channel, any intensity units. "
        "Each patch is standardised to zero mean and unit variance over (y, x); the package "
        "declares this as `zero_mean_unit_variance` preprocessing, and the network also does it "
        "internally, so the result does not depend on gain or offset.",
        f"* Output `probabilities`: `(batch, {k})` float32, one channel per level "
        f"(`level_0` … `level_{k - 1}`), summing to 1.",
        f"* Level k means a defocus of about {model.um_per_level:g}·k µm; the levels are defined at "
        f"defocus {level_text} µm for the optics the model was trained for: wavelength "
        f"{optics.get('wavelength_nm', '?')} nm, NA {optics.get('numerical_aperture', '?')}, "
        f"refractive index {optics.get('refractive_index', '?')}, "
        f"{optics.get('pixel_size_um', '?')} µm per px. Images at another pixel size should be "
        "resampled to it first (`miq predict --pixel-size` does this).",
        "",
        "## Calibration",
        "",
        "The network's softmax probabilities p are post-hoc calibrated as in miq: "
        "`softmax((log(max(p, 1e-12)) + class_bias) / patch_temperature)` with"
        + ("" if model.calibrated else " (model.json has no calibration: the identity)"),
        "",
        f"* `class_bias` = {[round(float(b), 6) for b in model.class_bias]}",
        f"* `patch_temperature` = {model.patch_temperature:g}",
        "",
        "Both weight formats include this step, so their output equals miq's per-patch "
        "probabilities. miq's whole-image rating (certainty-weighted aggregation of all patches "
        f"of an image, image temperature {model.image_temperature:g}) is not part of the package.",
        "",
        "## Weights",
        "",
        f"* Architecture `{architecture}` ({n_parameters} parameters), defined in "
        f"`{ARCHITECTURE_FILE}` (depends on torch only).",
        "* `pytorch_state_dict`: the trained state dict (miq's `model.safetensors`) for "
        f"`{ARCHITECTURE_CALLABLE}(**kwargs)`; the calibration is passed as keyword arguments.",
        "* `onnx`: miq's `model.onnx` with the calibration appended as ONNX operators "
        "(Clip, Log, Add, Div, Softmax). Its batch-norm layers are folded into the convolutions, "
        "so it differs from the state dict by float32 rounding only.",
    ]
    training = meta.get("training") or {}
    config = training.get("config") or {}
    if config:
        lines += ["", "## Training", ""]
        facts = []
        if "steps" in config:
            facts.append(f"{config['steps']} steps")
        if "batch_size" in config:
            facts.append(f"batch size {config['batch_size']}")
        if "learning_rate" in config:
            facts.append(f"learning rate {config['learning_rate']}")
        if training.get("training_minutes") is not None:
            facts.append(f"{training['training_minutes']} min")
        lines.append(
            "Trained by `miq train` on in-focus images defocused by miq's optical simulator "
            "(synthetic defocus at the levels above)"
            + (f": {', '.join(facts)}" if facts else "")
            + f"; {len(training.get('files') or [])} in-focus source images."
        )
        if training.get("history"):
            lines += ["", f"History: {training['history']}"]
    lines += ["", "## Validation", ""]
    calib = (meta.get("calibration") or {}).get("validation")
    if calib:
        train_files = {
            str(f.get("path")) for f in training.get("files") or [] if isinstance(f, dict)
        }
        val_files = [str(f) for f in calib.get("files") or []]
        overlap = sum(f in train_files for f in val_files)
        lines += [
            "miq's `model.json` records the following numbers on its calibration validation set: "
            f"{calib.get('n_images', '?')} synthetic images ({len(val_files)} in-focus source "
            f"images defocused by miq's simulator to every level, {calib.get('seeds', '?')} noise "
            f"seed(s)), {calib.get('n_patches', '?')} valid patches. The calibration was fitted on "
            "this set, so these are not held-out test numbers"
            + (
                f"; {overlap} of its {len(val_files)} source images are also training images."
                if train_files
                else "."
            ),
            "",
            "| whole-image level | before calibration | after calibration |",
            "|---|---|---|",
        ]
        before, after = calib.get("before") or {}, calib.get("after") or {}
        for key, label in (
            ("exact", "accuracy (exact level)"),
            ("within_one", "accuracy (within one level)"),
            ("ece", "expected calibration error"),
            ("nll", "negative log-likelihood"),
        ):
            if key in before or key in after:
                b = _fmt(before[key]) if key in before else "–"
                a = _fmt(after[key]) if key in after else "–"
                lines.append(f"| {label} | {b} | {a} |")
        lines += [
            "",
            "These numbers refer to miq's whole-image rating, which aggregates the per-patch "
            "output of this model.",
        ]
    else:
        lines += ["miq's `model.json` records no validation numbers for this model."]
    lines += [
        "",
        "To validate on your own data: cut in-focus and defocused images of known defocus into "
        f"{p}×{p} px patches, run the model, and compare the most probable level with the true "
        "level (or use `miq evaluate` on whole images).",
        "",
        "### Export check",
        "",
        f"At export, both weight formats were run on the {sample['n_patches']} patches of the "
        f"sample image `{_SAMPLE_IMAGE}` (BBBC022, CC0) and compared with miq's own calibrated "
        "per-patch probabilities: largest absolute difference "
        f"{checks['onnx']:.2g} (onnx) and {checks['pytorch_state_dict']:.2g} "
        "(pytorch_state_dict). The test tensors are the patch of that image with the largest "
        f"intensity standard deviation (row {sample['row']}, column {sample['col']} of miq's patch "
        f"grid) and miq's calibrated prediction for it (most probable level {sample['level']}).",
        "",
        "## Limitations",
        "",
        "* Trained on synthetic defocus of 2D fluorescence images only.",
        "* Patches without structure (empty background) give uncertain output; miq weights "
        "patches by certainty when rating a whole image.",
        "* The levels are absolute defocus for the optics above; a different NA or pixel size "
        "shifts them.",
        "",
        "## Citation",
        "",
        f"{_CITATION_TEXT}. doi:[{_CITATION_DOI}](https://doi.org/{_CITATION_DOI})",
        "",
        "## License",
        "",
        "BSD-3-Clause (miq developers).",
        "",
    ]
    return "\n".join(lines)


def _package_name(model) -> str:
    name = re.sub(r"[^A-Za-z0-9_+\- ()]", "-", f"miq focus quality ({model.name})")
    return name[:64]


def export_bioimageio(
    output_zip: str | os.PathLike, model_path: str | os.PathLike | None = None
) -> Path:
    """Write a miq model as a bioimage.io model package (zip, spec format 0.5).

    Parameters
    ----------
    output_zip : path of the package to write (e.g. ``model.zip``); replaced if it exists.
    model_path : a miq model folder, its ``model.json`` or ``model.onnx``; default the bundled
        model.

    Returns
    -------
    Path of the written package. Input tensor ``patches`` (batch, 1, P, P) float32 (P = 84 px);
    output ``probabilities`` (batch, K) float32, miq's calibrated per-patch level probabilities.

    Raises
    ------
    MiqError
        torch, safetensors, onnx or bioimageio.spec is not installed.
    ModelError
        the model folder is invalid, or cannot be exported (architecture, weights).
    OutputError
        the package cannot be written at ``output_zip``.
    """
    _require_dependencies()
    from .model.runtime import load_model

    target = Path(output_zip)
    if target.is_dir():
        raise OutputError(f"{target}: is a folder; give the path of the .zip file to write")
    model = load_model(model_path, threads=1)
    architecture, kwargs, safetensors_path = _check_model(model)
    net, net_kwargs = _torch_network(model, architecture, kwargs, safetensors_path)
    sample = _SamplePatches.of(model)

    with tempfile.TemporaryDirectory(prefix="miq-bioimageio-") as tmp:
        folder = Path(tmp)
        opset, checks = _write_weights(folder, model, net, sample)
        _write_sample_files(folder, model, sample)
        n_parameters = int(sum(p.numel() for p in net.parameters()))
        (folder / "README.md").write_text(
            _readme(
                model,
                architecture=architecture,
                n_parameters=n_parameters,
                checks=checks,
                sample=sample.summary(),
            ),
            encoding="utf-8",
        )
        from bioimageio.spec import ValidationContext

        context = ValidationContext(root=folder, perform_io_checks=True, log_warnings=False)
        with context:
            descr = _model_description(folder, model, net_kwargs, opset, n_parameters)
            _save_package(descr, target, model)
    return target


@dataclasses.dataclass
class _SamplePatches:
    """The bundled sample image cut into patches, miq's predictions for them, and the patch
    (the most textured one) that becomes the package's test tensor."""

    image: np.ndarray
    patches: np.ndarray  # (N, P, P) float32, unit range
    reference: np.ndarray  # (N, K) float32, miq's calibrated probabilities
    index: int  # the test patch, row-major
    grid_cols: int

    @classmethod
    def of(cls, model) -> _SamplePatches:
        import tifffile

        from .assessment import prepare_patches

        image = tifffile.imread(Path(str(resources.files("miq") / "data" / _SAMPLE_IMAGE)))
        grid, patches, valid, _ = prepare_patches(image, model, name=_SAMPLE_IMAGE)
        spread = np.where(valid, patches.reshape(len(patches), -1).std(axis=1), -1.0)
        return cls(image, patches, model.predict(patches), int(np.argmax(spread)), grid.shape[1])

    @property
    def test_input(self) -> np.ndarray:
        return self.patches[self.index][None, None].astype(np.float32)

    @property
    def test_output(self) -> np.ndarray:
        return self.reference[self.index][None].astype(np.float32)

    def summary(self) -> dict:
        row, col = divmod(self.index, self.grid_cols)
        return {
            "n_patches": int(len(self.patches)),
            "row": row,
            "col": col,
            "level": int(self.test_output[0].argmax()),
        }


def _write_weights(folder: Path, model, net, sample: _SamplePatches) -> tuple[int, dict]:
    """Write both weight formats and the architecture file into ``folder``; check both against
    miq's predictions on the sample patches. Returns the ONNX opset and {format: max |Δp|}."""
    import torch

    opset = _calibrated_onnx(model, folder / "weights.onnx")
    torch.save(net.state_dict(), folder / "weights.pt")
    (folder / ARCHITECTURE_FILE).write_text(
        (resources.files("miq.model") / "network.py").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    x = sample.patches[:, None]
    checks = {
        "onnx": float(np.abs(_onnx_predict(folder / "weights.onnx", x) - sample.reference).max()),
        "pytorch_state_dict": float(np.abs(_torch_predict(net, x) - sample.reference).max()),
    }
    for fmt, diff in checks.items():
        if not diff <= _EXPORT_TOLERANCE:
            raise ModelError(
                f"{model.path}: exported {fmt} weights differ from miq's prediction by "
                f"{diff:.3g} (> {_EXPORT_TOLERANCE:g}); model.onnx and model.safetensors "
                "do not match"
            )
    return opset, checks


def _write_sample_files(folder: Path, model, sample: _SamplePatches) -> None:
    """The test tensors and the cover (the sample image with miq's overlay)."""
    from .assessment import assess
    from .render import overlay_image

    np.save(folder / "test_input.npy", sample.test_input)
    np.save(folder / "test_output.npy", sample.test_output)
    assessment = assess(sample.image, model, name=_SAMPLE_IMAGE)
    cover = overlay_image(sample.image, assessment, title=f"{model.name}: {_SAMPLE_IMAGE}")
    _pad_to_cover_ratio(cover).save(folder / "cover.png", optimize=True)


def _tensor_descriptions(folder: Path, model, pixel_size_um: float) -> tuple[list, list]:
    """bioimage.io descriptions of the input (patches) and output (probabilities) tensors."""
    from bioimageio.spec.model import v0_5

    k, p = model.n_levels, model.patch_size
    space = {"unit": "micrometer", "scale": pixel_size_um}
    inputs = [
        v0_5.InputTensorDescr(
            id=v0_5.TensorId("patches"),
            description=f"{p}x{p} px patch of a 2D fluorescence image, any intensity units",
            axes=[
                v0_5.BatchAxis(),
                v0_5.ChannelAxis(channel_names=[v0_5.Identifier("intensity")]),
                v0_5.SpaceInputAxis(id=v0_5.AxisId("y"), size=p, **space),
                v0_5.SpaceInputAxis(id=v0_5.AxisId("x"), size=p, **space),
            ],
            test_tensor=v0_5.FileDescr(source=folder / "test_input.npy"),
            data=v0_5.IntervalOrRatioDataDescr(type="float32"),
            preprocessing=[
                v0_5.ZeroMeanUnitVarianceDescr(
                    kwargs=v0_5.ZeroMeanUnitVarianceKwargs(
                        axes=[v0_5.AxisId("y"), v0_5.AxisId("x")]
                    )
                )
            ],
        )
    ]
    outputs = [
        v0_5.OutputTensorDescr(
            id=v0_5.TensorId("probabilities"),
            description=(
                f"calibrated probability of each defocus level (level k ~ "
                f"{model.um_per_level:g}*k um; level 0 = in focus)"
            ),
            axes=[
                v0_5.BatchAxis(),
                v0_5.ChannelAxis(channel_names=[v0_5.Identifier(f"level_{i}") for i in range(k)]),
            ],
            test_tensor=v0_5.FileDescr(source=folder / "test_output.npy"),
            data=v0_5.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
        )
    ]
    return inputs, outputs


def _weights_description(folder: Path, net_kwargs: dict, opset: int):
    """bioimage.io description of the two weight formats written by :func:`_write_weights`."""
    import torch
    from bioimageio.spec.model import v0_5

    return v0_5.WeightsDescr(
        pytorch_state_dict=v0_5.PytorchStateDictWeightsDescr(
            source=folder / "weights.pt",
            architecture=v0_5.ArchitectureFromFileDescr(
                source=folder / ARCHITECTURE_FILE,
                callable=ARCHITECTURE_CALLABLE,
                kwargs=net_kwargs,
            ),
            pytorch_version=v0_5.Version(torch.__version__.split("+")[0]),
            comment="miq's model.safetensors state dict; calibration in the kwargs",
        ),
        onnx=v0_5.OnnxWeightsDescr(
            source=folder / "weights.onnx",
            opset_version=opset,
            parent="pytorch_state_dict",
            comment="miq's model.onnx with the patch calibration appended",
        ),
    )


def _model_description(folder: Path, model, net_kwargs: dict, opset: int, n_parameters: int):
    """The validated bioimage.io model description of the files in ``folder`` (inside a
    ``ValidationContext`` rooted there)."""
    from bioimageio.spec.model import v0_5

    from . import __version__

    k, p = model.n_levels, model.patch_size
    optics = model.metadata.get("optics", {})
    pixel_size = float(optics.get("pixel_size_um", model.pixel_size_um))
    inputs, outputs = _tensor_descriptions(folder, model, pixel_size)
    miq_config = {
        "miq_version": __version__,
        "model_name": model.name,
        "level_defocus_um": model.metadata.get("level_defocus_um"),
        "um_per_level": model.um_per_level,
        "optics": optics,
        "calibration": {
            "class_bias": [float(b) for b in model.class_bias],
            "patch_temperature": float(model.patch_temperature),
            "image_temperature": float(model.image_temperature),
        },
    }
    description = (
        f"Focus quality of {p}x{p} px patches of 2D fluorescence microscopy images: "
        f"calibrated probabilities of {k} absolute defocus levels (level 0 = in focus, "
        f"level k ~ {model.um_per_level:g}*k um defocus at NA "
        f"{optics.get('numerical_aperture', '?')}, {pixel_size:g} um per px). "
        "The per-patch network of miq, after Yang et al. 2018."
    )
    try:
        return v0_5.ModelDescr(
            name=_package_name(model),
            description=description,
            authors=[v0_5.Author(name="miq developers")],
            cite=[v0_5.CiteEntry(text=_CITATION_TEXT, doi=v0_5.Doi(_CITATION_DOI))],
            license=v0_5.LicenseId("BSD-3-Clause"),
            tags=list(_TAGS),
            documentation=v0_5.FileDescr(source=folder / "README.md"),
            covers=[v0_5.FileDescr(source=folder / "cover.png")],
            inputs=inputs,
            outputs=outputs,
            weights=_weights_description(folder, net_kwargs, opset),
            timestamp=v0_5.Datetime(datetime.now(timezone.utc)),
            config=v0_5.Config(
                bioimageio=v0_5.BioimageioConfig(
                    model_parameter_count=n_parameters,
                    architecture_type="CNN",
                    task="image-classification",
                ),
                miq=miq_config,
            ),
        )
    except Exception as exc:  # pydantic ValidationError: a bug here or an odd model.json
        first = str(exc).strip().splitlines()
        if "index_key" in str(exc):  # bioimageio.spec 0.5.12 with pydantic >= 2.14
            raise MiqError(_incompatible_pydantic()) from None
        raise ModelError(
            f"{model.path}: cannot describe it as a bioimage.io model ({' '.join(first[:3])})"
        ) from None


def _save_package(descr, target: Path, model) -> None:
    """Save the package to a temporary file beside ``target``, then rename it into place."""
    from bioimageio.spec import save_bioimageio_package

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, part = tempfile.mkstemp(
            prefix=f".{target.stem}.", suffix=".part.zip", dir=target.parent
        )
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write ({exc.strerror or exc})") from None
    try:
        with warnings.catch_warnings():
            # bioimageio.spec's cache pre-fill warns about the package's relative paths
            warnings.filterwarnings("ignore", "Found mapping with 'source'", UserWarning)
            save_bioimageio_package(descr, output_path=Path(part))
        os.chmod(part, 0o666 & ~_umask())  # mkstemp makes it private
        os.replace(part, target)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write ({exc.strerror or exc})") from None
    except ValueError as exc:  # the written package does not validate
        if "index_key" in str(exc):
            raise MiqError(_incompatible_pydantic()) from None
        first = str(exc).strip().splitlines()
        raise ModelError(
            f"{model.path}: exported package is not valid ({' '.join(first[:3])})"
        ) from None
    finally:
        if os.path.exists(part):
            os.unlink(part)


def _main() -> None:  # pragma: no cover - manual use: python -m miq.bioimageio_export OUT [MODEL]
    import sys

    args = sys.argv[1:]
    if not 1 <= len(args) <= 2:
        sys.exit("usage: python -m miq.bioimageio_export OUTPUT.zip [MODEL_DIR]")
    try:
        print(export_bioimageio(args[0], args[1] if len(args) > 1 else None))
    except MiqError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":  # pragma: no cover
    _main()
