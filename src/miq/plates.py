"""Plate layout from file names: well and site, and per-well aggregates of a run.

Recognised name patterns (case-insensitive; the first that matches wins):

* ``r01c01f01`` — Opera/Operetta (row number, column number, field) → well A01, site 1;
* ``A01_s1`` / ``a01_s1`` / ``A01-s1`` — MetaXpress/ImageXpress (BBBC-style) → well A01, site 1;
* ``_A01f00`` / ``_D03f00d0`` — CellProfiler/Cellomics style well + field;
* ``_A01_`` / ``-A01.`` … — a bare well between separators (site unknown).

Wells run A–P (rows, 384-well plates and smaller) × 1–48 (columns). A custom regular expression
with named groups ``well`` (e.g. ``B07``) or ``row`` (letter or number) and ``col``, and
optionally ``site``, replaces the built-in patterns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

__all__ = ["WellSite", "parse_well", "well_aggregates", "WELL_COLUMNS"]

_BUILT_IN = [
    re.compile(r"r(?P<row>\d{1,2})c(?P<col>\d{1,2})f(?P<site>\d{1,3})", re.I),
    re.compile(
        r"(?:^|[_\-. ])(?P<row>[A-P])(?P<col>\d{1,2})[_\-]+s(?P<site>\d{1,3})(?=\D|$)", re.I
    ),
    re.compile(r"(?:^|[_\-. ])(?P<row>[A-P])(?P<col>\d{2})f(?P<site>\d{1,3})", re.I),
    re.compile(r"(?:^|[_\-. ])(?P<row>[A-P])(?P<col>\d{2})(?=[_\-. ]|$)", re.I),
]


@dataclass(frozen=True)
class WellSite:
    """A plate position: ``well`` like ``"A01"``, ``row`` (0-based), ``col`` (1-based), ``site``
    (field number as named in the file, or None when the name does not say)."""

    well: str
    row: int
    col: int
    site: int | None


def _row_index(text: str) -> int:
    return int(text) - 1 if text.isdigit() else ord(text.upper()) - ord("A")


def parse_well(name: str, pattern: str | re.Pattern | None = None) -> WellSite | None:
    """Well and site of a file name (or path: only the last component is used); None if none."""
    base = PurePath(name).name
    patterns = (
        [re.compile(pattern, re.I) if isinstance(pattern, str) else pattern]
        if pattern
        else _BUILT_IN
    )
    for regex in patterns:
        m = regex.search(base)
        if not m:
            continue
        groups = m.groupdict()
        if groups.get("well"):
            well_match = re.fullmatch(r"([A-Za-z])(\d{1,2})", groups["well"])
            if not well_match:
                continue
            row_text, col_text = well_match.groups()
        else:
            row_text, col_text = groups.get("row"), groups.get("col")
            if row_text is None or col_text is None:
                continue
        row, col = _row_index(row_text), int(col_text)
        if not (0 <= row < 32 and 1 <= col <= 48):
            continue
        site = int(groups["site"]) if groups.get("site") else None
        return WellSite(f"{chr(ord('A') + row)}{col:02d}", row, col, site)
    return None


WELL_COLUMNS = [
    "well",
    "n_fields",
    "n_rated",
    "mean_level",
    "mean_level_mean",
    "fraction_out_of_focus",
    "mean_certainty",
    "worst_level",
]


def well_aggregates(rows: list[dict]) -> list[dict]:
    """Per-well summary of results rows (dicts with ``well``, ``level``, ``level_mean``,
    ``in_focus``, ``certainty``, ``error``): fields, rated fields, mean level, fraction out of
    focus, mean certainty, worst (highest) level. Wells in plate order (A01, A02, …, B01 …)."""
    wells: dict[str, list[dict]] = {}
    for row in rows:
        if row.get("well"):
            wells.setdefault(row["well"], []).append(row)
    out = []
    for well in sorted(wells, key=lambda w: (w[0], int(w[1:]))):
        members = wells[well]
        rated = [r for r in members if not r.get("error")]
        levels = np.array([float(r["level"]) for r in rated])
        out.append(
            {
                "well": well,
                "n_fields": len(members),
                "n_rated": len(rated),
                "mean_level": f"{levels.mean():.4g}" if rated else "",
                "mean_level_mean": (
                    f"{np.mean([float(r['level_mean']) for r in rated]):.4g}" if rated else ""
                ),
                "fraction_out_of_focus": (
                    f"{np.mean([str(r['in_focus']) == '0' for r in rated]):.4g}" if rated else ""
                ),
                "mean_certainty": (
                    f"{np.mean([float(r['certainty']) for r in rated]):.4g}" if rated else ""
                ),
                "worst_level": int(levels.max()) if rated else "",
            }
        )
    return out
