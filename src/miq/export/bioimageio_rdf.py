"""The bioimage.io model description (rdf.yaml) of miq's package: its tensors, weights, citation,
tags and miq's own settings, validated by bioimageio.spec."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timezone
from pathlib import Path

from ..data import SAMPLE_PATH
from ..errors import MiqError, ModelError

ARCHITECTURE_FILE = "miq_focus_net.py"
ARCHITECTURE_CALLABLE = "miq_focus_net"
SAMPLE_IMAGE = SAMPLE_PATH.name  # the bundled sample: the test tensors and the cover
CITATION_TEXT = (
    "Yang SJ et al. (2018) Assessing microscope image focus quality with deep learning. "
    "BMC Bioinformatics 19:77"
)
CITATION_DOI = "10.1186/s12859-018-2087-4"
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


def incompatible_pydantic() -> str:
    from importlib.metadata import version

    return (
        f"bioimageio.spec {version('bioimageio.spec')} does not work with pydantic "
        f"{version('pydantic')}: pip install 'pydantic<2.14' (or a newer bioimageio.spec)"
    )


def _package_name(package) -> str:
    name = re.sub(r"[^A-Za-z0-9_+\- ()]", "-", f"miq focus quality ({package.name})")
    return name[:64]


def _tensor_descriptions(folder: Path, package, pixel_size_um: float) -> tuple[list, list]:
    """bioimage.io descriptions of the input (patches) and output (probabilities) tensors."""
    from bioimageio.spec.model import v0_5

    k, p = package.n_levels, package.patch_size
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
                f"{package.um_per_level:g}*k um; level 0 = in focus)"
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
    """bioimage.io description of the two weight formats written by `miq.export.bioimageio._write_weights`."""
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


def model_description(folder: Path, package, net_kwargs: dict, opset: int, n_parameters: int):
    """The validated bioimage.io model description of the files in ``folder`` (inside a
    ``ValidationContext`` rooted there) for a `miq.model.package.ModelPackage`."""
    from bioimageio.spec.model import v0_5

    from .. import __version__

    k, p = package.n_levels, package.patch_size
    optics = dataclasses.asdict(package.optics)
    pixel_size = float(package.pixel_size_um)
    inputs, outputs = _tensor_descriptions(folder, package, pixel_size)
    calibration = package.calibration
    miq_config = {
        "miq_version": __version__,
        "model_name": package.name,
        "level_defocus_um": list(package.levels.defocus_um),
        "um_per_level": package.um_per_level,
        "optics": optics,
        "calibration": {
            "class_bias": [float(b) for b in calibration.class_bias],
            "patch_temperature": float(calibration.patch_temperature),
            "image_temperature": float(calibration.image_temperature),
        },
    }
    description = (
        f"Focus quality of {p}x{p} px patches of 2D fluorescence microscopy images: "
        f"calibrated probabilities of {k} absolute defocus levels (level 0 = in focus, "
        f"level k ~ {package.um_per_level:g}*k um defocus at NA "
        f"{package.optics.numerical_aperture}, {pixel_size:g} um per px). "
        "The per-patch network of miq, after Yang et al. 2018."
    )
    try:
        return v0_5.ModelDescr(
            name=_package_name(package),
            description=description,
            authors=[v0_5.Author(name="miq developers")],
            cite=[v0_5.CiteEntry(text=CITATION_TEXT, doi=v0_5.Doi(CITATION_DOI))],
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
            raise MiqError(incompatible_pydantic()) from None
        raise ModelError(
            f"{package.path}: cannot describe it as a bioimage.io model ({' '.join(first[:3])})"
        ) from None
