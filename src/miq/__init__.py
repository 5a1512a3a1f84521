"""miq: microscope image focus quality.

Rates every 84×84 patch of a fluorescence image into 11 absolute defocus levels (level 0 = in
focus, level k ≈ 2k µm at NA 0.5 / 0.65 µm per px) with a certainty, and aggregates them per image.
Importing miq is cheap: heavy modules load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

__all__ = [
    "__version__",
    "assess",
    "AssessOptions",
    "assess_file",
    "evaluate",
    "load_model",
    "FocusModel",
    "ImageAssessment",
    "certainty",
    "aggregate",
    "defocus_psf",
    "degrade",
    "Optics",
    "LevelTable",
    "read_planes",
    "ImageSource",
    "ModelPackage",
    "predict_files",
    "focus_curve",
]

_LAZY = {
    "assess": "miq.assessment",
    "AssessOptions": "miq.assessment",
    "evaluate": "miq.evaluation",
    "assess_file": "miq.runs",
    "ImageAssessment": "miq.assessment",
    "certainty": "miq.assessment",
    "aggregate": "miq.assessment",
    "load_model": "miq.model.runtime",
    "FocusModel": "miq.model.runtime",
    "defocus_psf": "miq.optics",
    "degrade": "miq.optics",
    "Optics": "miq.optics",
    "LevelTable": "miq.optics",
    "read_planes": "miq.io",
    "ImageSource": "miq.io",
    "ModelPackage": "miq.model.package",
    "predict_files": "miq.runs",
    "focus_curve": "miq.best_focus",
}

if TYPE_CHECKING:  # pragma: no cover
    from .assessment import AssessOptions, ImageAssessment, aggregate, assess, certainty
    from .best_focus import focus_curve
    from .evaluation import evaluate
    from .io import ImageSource, read_planes
    from .model.package import ModelPackage
    from .model.runtime import FocusModel, load_model
    from .optics import LevelTable, Optics, defocus_psf, degrade
    from .runs import assess_file, predict_files


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'miq' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
