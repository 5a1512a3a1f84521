"""A ``miq predict`` run read back from its folder: ``results.csv``, ``wells.csv``, ``run.json``."""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import MiqError

__all__ = ["RunData", "load_run"]


@dataclass
class RunData:
    """A predict run read back from its folder.

    ``rows``: ``results.csv`` as dicts (strings); ``wells``: ``wells.csv`` rows (empty list when
    no well was recognised); ``info``: ``run.json`` (empty dict when absent)."""

    run_dir: Path
    rows: list[dict]
    wells: list[dict]
    info: dict
    n_levels: int

    @property
    def rated(self) -> list[dict]:
        """Planes with a level: not failed, not empty."""
        return [r for r in self.rows if not _failed(r, self.n_levels) and not _empty(r)]

    @property
    def empty(self) -> list[dict]:
        """Planes with nothing above the camera noise (no level, no in/out call)."""
        return [r for r in self.rows if not r["error"] and _empty(r)]

    @property
    def failed(self) -> list[dict]:
        """Planes with an error, and rows without a usable level (level outside 0 … K − 1, or
        a level mean or certainty that is not a finite number: the "−1, NaN" rows of planes
        without a valid patch written by earlier versions of miq)."""
        return [r for r in self.rows if _failed(r, self.n_levels)]

    @property
    def um_per_level(self) -> float:
        return float(self.info.get("model", {}).get("um_per_level", 2.0))


def _empty(row: dict) -> bool:
    return str(row.get("empty", "0")) == "1"


def _failed(row: dict, n_levels: int) -> bool:
    """The row has an error, or (not empty) no usable level, level mean or certainty."""
    if row["error"]:
        return True
    if _empty(row):
        return False
    try:
        level = int(row["level"])
        numbers = (float(row["level_mean"]), float(row["certainty"]))
    except (TypeError, ValueError):
        return True
    return not (0 <= level < n_levels and all(math.isfinite(x) for x in numbers))


def _read_csv(path: Path) -> list[dict]:
    from ..io import read_rows_csv  # formula-neutralised cells read back as the values

    return read_rows_csv(path)


def load_run(run_dir: str | os.PathLike) -> RunData:
    """Read ``results.csv`` (required), ``wells.csv`` and ``run.json`` of a predict run."""
    run = Path(run_dir)
    results = run / "results.csv"
    if not run.is_dir():
        raise MiqError(f"{run}: no such folder (give the output folder of miq predict)")
    if not results.is_file():
        raise MiqError(f"{run}: no results.csv here; is this the output folder of miq predict?")
    try:
        rows = _read_csv(results)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MiqError(f"{results}: cannot read ({exc})") from None
    needed = {"file", "level", "level_mean", "certainty", "in_focus", "error"}
    if rows and not needed <= set(rows[0]):
        missing = ", ".join(sorted(needed - set(rows[0])))
        raise MiqError(f"{results}: not a miq results table (missing columns: {missing})")
    n_levels = sum(1 for k in (rows[0] if rows else {}) if k.startswith("prob_")) or 11
    wells = _read_csv(run / "wells.csv") if (run / "wells.csv").is_file() else []
    info: dict = {}
    if (run / "run.json").is_file():
        try:
            info = json.loads((run / "run.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            info = {}
    return RunData(run, rows, wells, info, n_levels)
