"""A measure run: the classical focus measures of every plane of every file (``measures.csv``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..errors import MiqError
from ..io import read_planes, write_rows_csv

__all__ = ["measure_files"]


def measure_files(
    files: list[Path],
    out_dir: str | os.PathLike,
    *,
    on_error: Callable[[str], None] | None = None,
) -> tuple[Path, int]:
    """Classical focus measures of every plane of every file → ``out_dir/measures.csv``.

    Columns: ``file, t, c, z``, one per measure of `miq.measures.MEASURES`, ``error``.
    Returns the CSV path and the number of failed files or planes.
    """
    from ..io import check_plane
    from ..measures import MEASURES, measure_all

    rows: list[dict] = []
    failures = 0
    for f in files:
        try:
            planes = read_planes(f)
        except MiqError as exc:
            planes, failures = [], failures + 1
            rows.append({"file": str(f), "t": -1, "c": -1, "z": -1, "error": str(exc)})
            if on_error:
                on_error(str(exc))
        for plane in planes:
            row: dict = {"file": str(f), "t": plane.t, "c": plane.c, "z": plane.z, "error": ""}
            try:
                check_plane(plane.data, str(f), min_side=3)
                row.update({k: f"{v:.8g}" for k, v in measure_all(plane.data).items()})
            except MiqError as exc:
                failures += 1
                row["error"] = str(exc)
                if on_error:
                    on_error(str(exc))
            rows.append(row)
    path = Path(out_dir) / "measures.csv"
    write_rows_csv(path, ["file", "t", "c", "z", *MEASURES, "error"], rows)
    return path, failures
