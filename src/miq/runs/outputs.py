"""Per-plane output files of a predict run: masks (TIFF) and overlays (PNG), and their names."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..assessment import ImageAssessment
from ..io import atomic_write, file_stem

__all__ = ["output_stem", "unique_stems", "write_masks", "write_overlay"]


def output_stem(result, base: str) -> str:
    """Output base name of one plane: the file's ``base``, with ``_t{t}_c{c}_z{z}`` when the
    file has several planes."""
    if result.n_planes == 1:
        return base
    time = f"_t{result.t}" if result.time_series else ""
    return f"{base}{time}_c{result.c}_z{result.z}"


def write_masks(out_dir: Path, stem: str, a: ImageAssessment, per_patch: bool = False) -> None:
    """Level, certainty and validity maps, per pixel (``{stem}_level.tif`` …), or with
    ``per_patch`` one pixel per patch (``{stem}_level_per_patch.tif`` …, grid rows × columns)."""
    import tifffile

    from ..tiling import paint

    maps = {
        "level": a.patch_level.astype(np.int16),
        "certainty": a.patch_certainty.astype(np.float32),
        "valid": a.patch_valid.astype(np.uint8),
    }
    for kind, values in maps.items():
        data = values if per_patch else paint(values, a.grid)
        suffix = "_per_patch" if per_patch else ""
        with atomic_write(out_dir / "masks" / f"{stem}_{kind}{suffix}.tif") as fh:
            tifffile.imwrite(fh, data, compression="zlib", metadata={"axes": "YX"})


def write_overlay(
    out_dir: Path, stem: str, image: np.ndarray, a: ImageAssessment, title: str, downsample: int = 1
) -> str:
    """Write ``overlays/{stem}.png``; returns that path relative to ``out_dir`` (POSIX form).
    ``image`` may be the plane subsampled by ``downsample`` (see `miq.render.overlay_image`)."""
    from ..render import overlay_image

    picture = overlay_image(image, a, title=title, downsample=downsample)
    relative = f"overlays/{stem}.png"
    with atomic_write(out_dir / relative) as fh:
        picture.save(fh, format="PNG")
    return relative


def unique_stems(files: list[Path]) -> dict[str, str]:
    """Output base name per file: the file stem, suffixed _2, _3 … when stems repeat."""
    used: dict[str, int] = {}
    stems = {}
    for f in files:
        stem = file_stem(f)
        n = used.get(stem, 0) + 1
        used[stem] = n
        stems[str(f)] = stem if n == 1 else f"{stem}_{n}"
    return stems
