"""Error hierarchy for miq.

Every error raised for a user's input carries a message that names the file (when there is one)
and what to do about it, so the CLI can print it on one line.
"""

from __future__ import annotations

__all__ = [
    "MiqError",
    "ImageReadError",
    "ImageContentError",
    "ModelError",
    "OutputError",
    "install_hint",
]


def install_hint(extra: str) -> str:
    """How to install one of miq's extras, for an installed miq and for a clone of it."""
    return f"pip install 'miq[{extra}]' (in a clone of miq: pip install -e '.[{extra}]')"


class MiqError(Exception):
    """Base class of all errors miq raises on purpose."""


class ImageReadError(MiqError):
    """A file could not be read as an image (missing, unreadable, corrupt, unknown format)."""


class ImageContentError(MiqError):
    """An image was read but its content cannot be rated (too small, NaN, constant, wrong shape)."""


class ModelError(MiqError):
    """A model file is missing, corrupt or not a miq model."""


class OutputError(MiqError):
    """An output folder or file cannot be written as asked."""
