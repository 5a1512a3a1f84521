"""The rows of ``results.csv``: its columns and one row per rated (or failed) plane."""

from __future__ import annotations

from ..plates import WellSite

__all__ = ["csv_columns", "result_row"]


def csv_columns(n_levels: int) -> list[str]:
    """Column names of ``results.csv``."""
    return (
        [
            "file",
            "t",
            "c",
            "z",
            "well",
            "site",
            "level",
            "level_mean",
            "defocus_um",
            "certainty",
            "certainty_mean",
            "certainty_max",
            "certainty_weighted",
            "p_in_focus",
            "in_focus",
            "empty",
            "n_patches",
            "n_foreground",
            "pixel_size_um",
            "pixel_size_from",
            "resampled",
        ]
        + [f"prob_{k}" for k in range(n_levels)]
        + ["overlay", "error"]
    )


def result_row(result, n_levels: int, position: WellSite | None = None) -> dict:
    """The ``results.csv`` row of a `miq.runs.file_job.PlaneResult`."""
    row = {col: "" for col in csv_columns(n_levels)}
    row.update(
        file=result.file,
        t=result.t,
        c=result.c,
        z=result.z,
        overlay=result.overlay,
        error=result.error,
    )
    if position is not None:
        row.update(well=position.well, site="" if position.site is None else position.site)
    if result.pixel_size_from:
        row.update(
            pixel_size_um=f"{result.pixel_size_um:.6g}", pixel_size_from=result.pixel_size_from
        )
    if result.assessment is not None:
        row["resampled"] = int(result.assessment.scale != 1.0)
        row["empty"] = int(result.assessment.empty)
        if result.assessment.empty:  # camera background only: no level, no in/out call
            row["n_patches"] = result.assessment.n_patches
            row["n_foreground"] = result.assessment.n_foreground
            return row
        for key, value in result.assessment.summary().items():
            if isinstance(value, bool):
                row[key] = int(value)
            elif isinstance(value, float):
                row[key] = f"{value:.6g}"
            else:
                row[key] = value
    return row
