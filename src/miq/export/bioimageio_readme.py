"""The README.md of miq's bioimage.io package: the template ``bioimageio_readme.md`` (shipped
with miq) filled in with the model's numbers."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from string import Template

from .bioimageio_rdf import (
    ARCHITECTURE_CALLABLE,
    ARCHITECTURE_FILE,
    CITATION_DOI,
    CITATION_TEXT,
    SAMPLE_IMAGE,
)

TEMPLATE = "bioimageio_readme.md"
# the whole-image numbers of model.json's calibration validation, in the README's table
_VALIDATION_ROWS = (
    ("exact", "accuracy (exact level)"),
    ("within_one", "accuracy (within one level)"),
    ("ece", "expected calibration error"),
    ("nll", "negative log-likelihood"),
)


@cache
def _parts() -> dict[str, Template]:
    """The template's parts by name (``<!-- part: NAME ... -->`` lines start them)."""
    text = (resources.files(__package__) / TEMPLATE).read_text(encoding="utf-8")
    pieces = re.split(r"^<!-- part: (\w+)[^\n]*-->\n", text, flags=re.MULTILINE)
    return {name: Template(body.strip("\n")) for name, body in zip(pieces[1::2], pieces[2::2])}


def _fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def readme(package, *, n_parameters: int, checks: dict, sample: dict) -> str:
    """The README.md of a `miq.model.package.ModelPackage`'s bioimage.io package: what
    it computes, how it was made, and the numbers miq has.

    ``checks``: {weight format: largest |Δp| against miq}; ``sample``: the test patch
    (``n_patches``, ``row``, ``col``, ``level``)."""
    parts = _parts()
    optics, calibration = package.optics, package.calibration
    values = {
        "model_name": package.name,
        "patch": package.patch_size,
        "n_levels": package.n_levels,
        "last_level": package.n_levels - 1,
        "um_per_level": f"{package.um_per_level:g}",
        "level_defocus": ", ".join(f"{z:g}" for z in package.levels.defocus_um),
        "wavelength_nm": optics.wavelength_nm,
        "numerical_aperture": optics.numerical_aperture,
        "refractive_index": optics.refractive_index,
        "pixel_size_um": optics.pixel_size_um,
        "uncalibrated": ""
        if calibration.fitted
        else " (model.json has no calibration: the identity)",
        "class_bias": [round(float(b), 6) for b in calibration.class_bias],
        "patch_temperature": f"{calibration.patch_temperature:g}",
        "image_temperature": f"{calibration.image_temperature:g}",
        "architecture": package.architecture,
        "n_parameters": n_parameters,
        "architecture_file": ARCHITECTURE_FILE,
        "architecture_callable": ARCHITECTURE_CALLABLE,
        "n_sample_patches": sample["n_patches"],
        "sample_image": SAMPLE_IMAGE,
        "onnx_difference": f"{checks['onnx']:.2g}",
        "torch_difference": f"{checks['pytorch_state_dict']:.2g}",
        "sample_row": sample["row"],
        "sample_col": sample["col"],
        "sample_level": sample["level"],
        "citation_text": CITATION_TEXT,
        "citation_doi": CITATION_DOI,
    }
    sections = [parts["overview"].substitute(values)]
    training = package.describe("training") or {}
    config = training.get("config") or {}
    if config:
        facts = []
        if "steps" in config:
            facts.append(f"{config['steps']} steps")
        if "batch_size" in config:
            facts.append(f"batch size {config['batch_size']}")
        if "learning_rate" in config:
            facts.append(f"learning rate {config['learning_rate']}")
        if training.get("training_minutes") is not None:
            facts.append(f"{training['training_minutes']} min")
        sections.append(
            parts["training"].substitute(
                training_facts=f": {', '.join(facts)}" if facts else "",
                n_training_files=len(training.get("files") or []),
            )
        )
        if training.get("history"):
            sections.append(parts["history"].substitute(history=training["history"]))
    calib = package.describe("calibration", "validation")
    if calib:
        sections.append(parts["validation"].substitute(_validation_values(calib, training)))
    else:
        sections.append(parts["no_validation"].substitute())
    sections.append(parts["closing"].substitute(values))
    return "\n\n".join(sections) + "\n"


def _validation_values(calib: dict, training: dict) -> dict:
    """The values of the template's validation part, from model.json's calibration validation
    entry (and its training files, to count the source images both share)."""
    train_files = {str(f.get("path")) for f in training.get("files") or [] if isinstance(f, dict)}
    val_files = [str(f) for f in calib.get("files") or []]
    overlap = sum(f in train_files for f in val_files)
    before, after = calib.get("before") or {}, calib.get("after") or {}
    rows = [
        f"\n| {label} | {_fmt(before[key]) if key in before else '–'} | "
        f"{_fmt(after[key]) if key in after else '–'} |"
        for key, label in _VALIDATION_ROWS
        if key in before or key in after
    ]
    return {
        "n_images": calib.get("n_images", "?"),
        "n_validation_files": len(val_files),
        "seeds": calib.get("seeds", "?"),
        "n_patches": calib.get("n_patches", "?"),
        "training_overlap": (
            f"; {overlap} of its {len(val_files)} source images are also training images."
            if train_files
            else "."
        ),
        "validation_rows": "".join(rows),
    }
