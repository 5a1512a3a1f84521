"""Per-plane output files of a predict run: masks (TIFF) and overlays (PNG), and their names."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..assessment import ImageAssessment
from ..io import atomic_write, file_stem

__all__ = [
    "OutputOptions",
    "output_stem",
    "unique_stems",
    "write_masks",
    "write_overlay",
    "MASK_KINDS",
    "OVERLAY_CHOICES",
]

MASK_KINDS = ("per-patch", "per-pixel", "none")
OVERLAY_CHOICES = ("flagged", "all", "none")
#: P(in focus) in this range makes a plane "uncertain": its overlay is written by default
UNCERTAIN_P_IN_FOCUS = (0.2, 0.8)


@dataclass(frozen=True)
class OutputOptions:
    """What a predict run writes per plane besides its ``results.csv`` row.

    masks : ``"per-patch"`` (default: level, certainty and validity maps with one pixel per
        84×84 patch, the patch grid recorded in the TIFF's metadata), ``"per-pixel"`` (the same
        maps painted at the plane's size) or ``"none"``.
    overlays : ``"flagged"`` (default: planes out of focus or uncertain, 0.2 ≤ P(in focus) <
        0.8 — the ones to look at), ``"all"`` or ``"none"``.
    overlay_size : longest side of an overlay in px (default 1024: a JPEG preview); 0 writes
        overlays at full resolution as PNG.
    """

    masks: str = "per-patch"
    overlays: str = "flagged"
    overlay_size: int = 1024

    def __post_init__(self) -> None:
        if self.masks not in MASK_KINDS:
            raise ValueError(f"masks must be one of {', '.join(MASK_KINDS)}, got {self.masks!r}")
        if self.overlays not in OVERLAY_CHOICES:
            raise ValueError(
                f"overlays must be one of {', '.join(OVERLAY_CHOICES)}, got {self.overlays!r}"
            )
        if not (isinstance(self.overlay_size, int) and self.overlay_size >= 0):
            raise ValueError(f"overlay_size must be ≥ 0 px, got {self.overlay_size!r}")

    @property
    def writes_overlays(self) -> bool:
        return self.overlays != "none"

    def wants_overlay(self, a: ImageAssessment) -> bool:
        """Whether the overlay of a rated plane is written."""
        if self.overlays == "all":
            return True
        if a.empty:  # nothing to look at
            return False
        low, high = UNCERTAIN_P_IN_FOCUS
        return self.overlays == "flagged" and (not a.in_focus or low <= a.p_in_focus < high)


def output_stem(result, base: str) -> str:
    """Output base name of one plane: the file's ``base``, with ``_t{t}_c{c}_z{z}`` when the
    file has several planes."""
    if result.n_planes == 1:
        return base
    time = f"_t{result.t}" if result.time_series else ""
    return f"{base}{time}_c{result.c}_z{result.z}"


def write_masks(
    out_dir: Path,
    stem: str,
    a: ImageAssessment,
    per_patch: bool = False,
    written: list[str] | None = None,
) -> list[str]:
    """Level, certainty and validity maps, per pixel (``{stem}_level.tif`` …), or with
    ``per_patch`` one pixel per patch (``{stem}_level_per_patch.tif`` …, grid rows × columns);
    returns their paths relative to ``out_dir``, each appended to ``written`` as soon as it is
    written (so that a caller knows them when a later one fails)."""
    import tifffile

    from ..tiling import paint

    maps = {
        "level": a.patch_level.astype(np.int16),
        "certainty": a.patch_certainty.astype(np.float32),
        "valid": a.patch_valid.astype(np.uint8),
    }
    grid = {  # how a per-patch pixel maps back onto the plane (px of the rated plane)
        "patch_size_px": int(a.grid.patch_size),
        "patch_top_px": [int(y) for y in a.grid.ys],
        "patch_left_px": [int(x) for x in a.grid.xs],
        "image_shape_px": [int(n) for n in a.grid.image_shape],
    }
    written = [] if written is None else written
    for kind, values in maps.items():
        data = values if per_patch else paint(values, a.grid)
        suffix = "_per_patch" if per_patch else ""
        metadata = {"axes": "YX", **grid} if per_patch else {"axes": "YX"}
        relative = f"masks/{stem}_{kind}{suffix}.tif"
        with atomic_write(out_dir / relative) as fh:
            tifffile.imwrite(fh, data, compression="zlib", metadata=metadata)
        written.append(relative)
    return written


def write_overlay(
    out_dir: Path,
    stem: str,
    image: np.ndarray,
    a: ImageAssessment,
    title: str,
    downsample: int = 1,
    max_side: int = 0,
) -> str:
    """Write the overlay of a rated plane; returns its path relative to ``out_dir`` (POSIX).

    ``image`` may be the plane subsampled by ``downsample`` (see `miq.render.overlay_image`).
    ``max_side`` > 0: a preview at most that many px a side (``overlays/{stem}.jpg``, JPEG
    quality 90); 0: full resolution (``overlays/{stem}.png``, lossless).
    """
    from ..render import overlay_image

    step = -(-max(image.shape) // max_side) if max_side else 1
    picture = overlay_image(image[::step, ::step], a, title=title, downsample=downsample * step)
    relative = f"overlays/{stem}.jpg" if max_side else f"overlays/{stem}.png"
    with atomic_write(out_dir / relative) as fh:
        if max_side:
            picture.save(fh, format="JPEG", quality=90)
        else:
            picture.save(fh, format="PNG")
    return relative


def unique_stems(files: list[Path], taken: dict[str, str] | None = None) -> dict[str, str]:
    """Output base name per file (keyed by ``str(file)``): the file stem, or when its outputs
    could share a name with another file's, the stem suffixed ``_2``, ``_3`` … (the first
    suffix free).

    Two base names clash when they are equal (letter case aside: case-insensitive file
    systems) or when a plane of one is named like the other (``s`` with planes ``s_c0_z1``
    and a file ``s_c0_z1.tif``; see `output_stem`). ``taken``: the names an interrupted run
    gave (input → name); those inputs keep them, and new names clash with none of them.
    """
    taken = taken or {}
    names: dict[str, str] = {}
    exact: set[str] = set()  # the names given, casefolded
    roots: set[str] = set()  # each name given and what it is with a plane suffix cut off
    for name in taken.values():
        exact.add(name.casefold())
        roots.update(_roots(name.casefold()))
    for f in files:
        key = str(f)
        if key in taken:
            names[key] = taken[key]
            continue
        stem = file_stem(f)
        candidate, n = stem, 1
        while candidate.casefold() in roots or exact & _roots(candidate.casefold()):
            n += 1
            candidate = f"{stem}_{n}"
        names[key] = candidate
        exact.add(candidate.casefold())
        roots.update(_roots(candidate.casefold()))
    return names


#: what `output_stem` appends to a file's base name for a plane (time, then channel and z)
_PLANE_SUFFIXES = (
    re.compile(r"_t\d+$"),
    re.compile(r"_c\d+_z\d+$"),
    re.compile(r"_t\d+_c\d+_z\d+$"),
)


def _roots(name: str) -> set[str]:
    """``name`` and the base names whose planes could be called ``name`` (or, for ``_t{t}``,
    whose planes could share names with those of ``name``)."""
    found = {name}
    for suffix in _PLANE_SUFFIXES:
        match = suffix.search(name)
        if match:
            found.add(name[: match.start()])
    return found
