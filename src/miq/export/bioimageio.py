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

This module writes the package; `.bioimageio_weights` makes the two weight formats,
`.bioimageio_rdf` describes the package (rdf.yaml) and `.bioimageio_readme` fills in its
README.md from the template ``bioimageio_readme.md``.

Needs the ``bioimageio`` extra (torch, safetensors, onnx, bioimageio.spec); nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import tempfile
import warnings
from importlib import resources
from pathlib import Path

import numpy as np

from ..data import sample_image
from ..errors import MiqError, ModelError, OutputError, install_hint
from ..io import part_path
from .bioimageio_rdf import (
    ARCHITECTURE_CALLABLE,
    ARCHITECTURE_FILE,
    SAMPLE_IMAGE,
    incompatible_pydantic,
    model_description,
)
from .bioimageio_readme import readme
from .bioimageio_weights import (
    calibrated_onnx,
    check_model,
    onnx_predict,
    torch_network,
    torch_predict,
)

__all__ = ["export_bioimageio", "ARCHITECTURE_FILE", "ARCHITECTURE_CALLABLE"]

_REQUIRED = {
    "torch": "torch",
    "safetensors.torch": "safetensors",
    "onnx": "onnx",
    "bioimageio.spec": "bioimageio.spec",
}
# the package's weights must reproduce miq's per-patch output this closely (probabilities)
_EXPORT_TOLERANCE = 1e-4


def _require_dependencies() -> None:
    """Import the optional dependencies; one-line `MiqError` naming those missing."""
    missing = []
    for module, package in _REQUIRED.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise MiqError(
            f"bioimage.io export needs {', '.join(missing)}, not installed: "
            + install_hint("bioimageio")
        )


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
    from ..model.runtime import load_model

    target = Path(output_zip)
    if target.is_dir():
        raise OutputError(f"{target}: is a folder; give the path of the .zip file to write")
    model = load_model(model_path, threads=1)
    package = model.package
    check_model(package)
    net, net_kwargs = torch_network(package)
    sample = _SamplePatches.of(model)

    with tempfile.TemporaryDirectory(prefix="miq-bioimageio-") as tmp:
        folder = Path(tmp)
        opset, checks = _write_weights(folder, model, net, sample)
        _write_sample_files(folder, model, sample)
        n_parameters = int(sum(p.numel() for p in net.parameters()))
        (folder / "README.md").write_text(
            readme(
                package,
                n_parameters=n_parameters,
                checks=checks,
                sample=sample.summary(),
            ),
            encoding="utf-8",
        )
        from bioimageio.spec import ValidationContext

        context = ValidationContext(root=folder, perform_io_checks=True, log_warnings=False)
        with context:
            descr = model_description(folder, package, net_kwargs, opset, n_parameters)
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

        from ..assessment import prepare_patches

        image = sample_image()
        grid, patches, valid, _, _ = prepare_patches(image, model, name=SAMPLE_IMAGE)
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

    opset = calibrated_onnx(model.package, folder / "weights.onnx")
    torch.save(net.state_dict(), folder / "weights.pt")
    (folder / ARCHITECTURE_FILE).write_text(
        (resources.files("miq.model") / "network.py").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    x = sample.patches[:, None]
    checks = {
        "onnx": float(np.abs(onnx_predict(folder / "weights.onnx", x) - sample.reference).max()),
        "pytorch_state_dict": float(np.abs(torch_predict(net, x) - sample.reference).max()),
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
    from ..assessment import assess
    from ..render import overlay_image

    np.save(folder / "test_input.npy", sample.test_input)
    np.save(folder / "test_output.npy", sample.test_output)
    assessment = assess(sample.image, model, name=SAMPLE_IMAGE)
    cover = overlay_image(sample.image, assessment, title=f"{model.name}: {SAMPLE_IMAGE}")
    _pad_to_cover_ratio(cover).save(folder / "cover.png", optimize=True)


def _save_package(descr, target: Path, model) -> None:
    """Save the package to a temporary file beside ``target``, then rename it into place."""
    from bioimageio.spec import save_bioimageio_package

    part = part_path(target, ".part.zip")  # created by the save, inside the try: always removed
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # bioimageio.spec's cache pre-fill warns about the package's relative paths
            warnings.filterwarnings("ignore", "Found mapping with 'source'", UserWarning)
            save_bioimageio_package(descr, output_path=Path(part))
        os.replace(part, target)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write ({exc.strerror or exc})") from None
    except ValueError as exc:  # the written package does not validate
        if "index_key" in str(exc):
            raise MiqError(incompatible_pydantic()) from None
        first = str(exc).strip().splitlines()
        raise ModelError(
            f"{model.path}: exported package is not valid ({' '.join(first[:3])})"
        ) from None
    finally:
        if os.path.exists(part):
            os.unlink(part)


def _main() -> None:  # pragma: no cover - manual use: python -m miq.export.bioimageio OUT [MODEL]
    import sys

    args = sys.argv[1:]
    if not 1 <= len(args) <= 2:
        sys.exit("usage: python -m miq.export.bioimageio OUTPUT.zip [MODEL_DIR]")
    try:
        print(export_bioimageio(args[0], args[1] if len(args) > 1 else None))
    except MiqError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":  # pragma: no cover
    _main()
