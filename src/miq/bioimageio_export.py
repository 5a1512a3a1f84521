"""Moved to :mod:`miq.export.bioimageio`; this name stays until the CLI imports from there."""

from .export.bioimageio import export_bioimageio  # noqa: F401
