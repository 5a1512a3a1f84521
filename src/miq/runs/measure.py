"""A measure run: the classical focus measures of every plane of every file (``measures.csv``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..assessment import AssessOptions
from ..errors import MiqError
from ..io import ReadOptions, write_rows_csv
from ..io.folder import OutputFolder
from ..optics import Optics

__all__ = ["measure_files"]


def measure_files(
    files: list[Path],
    out_dir: str | os.PathLike,
    *,
    options: AssessOptions = AssessOptions(),
    target_pixel_size_um: float = Optics().pixel_size_um,
    overwrite: bool = False,
    read: ReadOptions = ReadOptions(),
    on_error: Callable[[str], None] | None = None,
) -> tuple[Path, int]:
    """Classical focus measures of every plane of every file → ``out_dir/measures.csv``.

    Planes are resampled to ``target_pixel_size_um`` (the bundled model's 0.65 µm) by the same
    rule as `miq predict` (`miq.AssessOptions.for_file`: ``options.pixel_size_um``, else the
    pixel size the file records, else taken as the target), so that the measures compare with
    miq's ratings. Columns: ``file, t, c, z, pixel_size_um, pixel_size_from, resampled``, one
    per measure of `miq.measures.MEASURES`, ``error``. Returns the CSV path and the number of
    failed files or planes. Each file is opened once. ``out_dir`` follows
    `miq.io.folder.OutputFolder` (a non-empty folder needs ``overwrite``).
    """
    from ..large import whole_planes
    from ..measures import MEASURES
    from ..resampling import rescale_factor

    settings = {
        "pixel_size_um": options.pixel_size_um,
        "use_file_pixel_size": options.use_file_pixel_size,
        "target_pixel_size_um": target_pixel_size_um,
    }
    with OutputFolder.prepare(
        out_dir, command="measure", settings=settings, overwrite=overwrite, inputs=files
    ) as folder:  # locked until the end
        rows: list[dict] = []
        failures = 0
        for f in files:
            try:
                with read.open(f) as source:
                    file_options, size, origin = options.for_file(
                        source.pixel_size_um, target_pixel_size_um
                    )
                    scale = rescale_factor(size, target_pixel_size_um)
                    # all planes at once when they fit the memory budget, else one at a time
                    for plane in whole_planes(source, scale=scale):
                        row = _measure_plane(f, plane, size, origin, target_pixel_size_um)
                        failures += bool(row["error"])
                        if row["error"] and on_error:
                            on_error(row["error"])
                        rows.append(row)
            except MiqError as exc:  # unreadable, or over the memory budget
                failures += 1
                rows.append({"file": str(f), "t": -1, "c": -1, "z": -1, "error": str(exc)})
                if on_error:
                    on_error(str(exc))
        path = Path(out_dir) / "measures.csv"
        columns = ["file", "t", "c", "z", "pixel_size_um", "pixel_size_from", "resampled"]
        write_rows_csv(path, [*columns, *MEASURES, "error"], rows)
        folder.record("measures.csv")
        folder.save()
        return path, failures


def _measure_plane(f: Path, plane, size: float, origin: str, target_pixel_size_um: float) -> dict:
    """The ``measures.csv`` row of one plane of file ``f`` recorded at ``size`` µm/px (taken
    from ``origin``), resampled to ``target_pixel_size_um`` when they differ (error filled
    when it cannot be measured)."""
    from ..io import check_plane
    from ..measures import measure_all
    from ..resampling import resample_to_pixel_size, rescale_factor

    resampled = rescale_factor(size, target_pixel_size_um) != 1.0
    row: dict = {"file": str(f), "t": plane.t, "c": plane.c, "z": plane.z, "error": ""}
    row.update(pixel_size_um=f"{size:.6g}", pixel_size_from=origin, resampled=int(resampled))
    try:
        check_plane(plane.data, str(f), min_side=3)
        data = plane.data
        if resampled:
            data = resample_to_pixel_size(data, size, target_pixel_size_um)
            check_plane(data, f"{f} (resampled)", min_side=3)
        row.update({k: f"{v:.8g}" for k, v in measure_all(data).items()})
    except MiqError as exc:
        row["error"] = str(exc) if str(exc).startswith(str(f)) else f"{f}: {exc}"
    return row
