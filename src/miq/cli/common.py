"""What the subcommands share: exit codes, one-line errors and warnings, finding the input
images, and the optics options."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .show import say

__all__ = [
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "EXIT_USAGE",
    "error",
    "warn",
    "find_inputs",
    "without_excluded",
    "optics_from",
    "error_collector",
]

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


def error(msg: str) -> None:
    """One ``miq: error:`` line on stderr (newlines in file names shown as escapes)."""
    say(f"miq: error: {msg}", file=sys.stderr)


def warn(msg: str) -> None:
    """One ``miq: warning:`` line on stderr."""
    say(f"miq: warning: {msg}", file=sys.stderr)


def optics_from(args: argparse.Namespace):
    """`miq.optics.Optics` from the optics options of ``miq train`` and ``miq simulate``
    (wavelength nm, NA, refractive index, pixel size µm, PSF width px)."""
    from ..optics import Optics

    return Optics(
        wavelength_nm=args.wavelength_nm,
        numerical_aperture=args.na,
        refractive_index=args.refractive_index,
        pixel_size_um=args.pixel_size_um,
        psf_width_px=args.psf_width_px,
    )


def find_inputs(inputs: Sequence[str], output: str | None = None) -> tuple[list[Path], list[str]]:
    """Expand files/folders/globs, leaving out anything inside the ``output`` folder (a run's
    own masks and overlays are never inputs); report each input that matched nothing, and each
    named pipe, socket or device (never opened: they count as missing)."""
    from ..io import find_images

    missing: list[str] = []
    refused: list[str] = []
    files = find_images(
        inputs, on_missing=missing.append, on_refused=refused.append, on_skipped=say
    )
    for line in refused:
        error(line)
    if output is not None:
        out = Path(output).resolve()
        for item in inputs:  # a file named explicitly: say why it is not rated
            if Path(item).is_file() and Path(item).resolve().is_relative_to(out):
                error(
                    f"{item}: lies inside the output folder {output}; miq never rates its outputs"
                )
        files = [f for f in files if not f.resolve().is_relative_to(out)]
    for m in missing:
        error(f"{m}: no such file, or no image in that folder / matching that pattern")
    return files, missing + refused


def without_excluded(files: list[Path], patterns: Sequence[str]) -> list[Path]:
    """Files whose path contains none of ``patterns`` (``--exclude``)."""
    return [f for f in files if not any(p in str(f) for p in patterns)]


def error_collector() -> tuple[Callable[[str], None], list[str]]:
    """An ``on_error`` callback for inputs left out of a run that goes on with the rest: it
    prints each line as an error and keeps it in the list returned beside it (non-empty: the
    command exits 1)."""
    lines: list[str] = []

    def on_error(line: str) -> None:
        error(line)
        lines.append(line)

    return on_error, lines
