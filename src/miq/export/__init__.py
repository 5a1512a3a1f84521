"""Exports of a miq model to other tools' formats: `export_bioimageio` writes a bioimage.io
model package (``miq export-bioimageio``)."""

from __future__ import annotations

from .bioimageio import export_bioimageio

__all__ = ["export_bioimageio"]
