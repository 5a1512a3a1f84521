"""Plate layout: well and site of each input, from OME plate metadata or file names, and
per-well aggregates of a run.

OME plate metadata comes first: an OME-TIFF whose OME-XML has a ``Plate`` with a ``WellSample``
referring to the file's image (well from the ``Well``'s 0-based ``Row``/``Column``, site = the
sample's position in the well, 0-based), or a field of an OME-Zarr HCS plate
(``plate.zarr/B/3/0`` → well B03, site 0). Otherwise the file name is matched.

Recognised name patterns (case-insensitive; the first that matches wins):

* ``r01c01f01`` — Opera/Operetta (row number, column number, field) → well A01, site 1;
* ``A01_s1`` / ``a01_s1`` / ``A01-s1`` — MetaXpress/ImageXpress (BBBC-style) → well A01, site 1;
* ``_A01f00`` / ``_D03f00d0`` — CellProfiler/Cellomics style well + field;
* ``_A01_`` / ``-A01.`` … — a bare well between separators (site unknown).

Names match wells A–P (rows, 384-well plates and smaller) × 1–48 (columns); plate metadata
and custom patterns reach the 32 rows of a 1536-well plate, labelled A–Z, AA–AF (as the standard
layout does). A custom regular expression
with named groups ``well`` (e.g. ``B07``) or ``row`` (letter or number) and ``col``, and
optionally ``site``, replaces the built-in patterns.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .io import ImageSource

__all__ = [
    "WellSite",
    "parse_well",
    "plate_position",
    "well_aggregates",
    "WELL_COLUMNS",
    "row_label",
    "split_well",
]

#: rows of the largest plate (1536 wells: A–Z, AA–AF) and its columns
MAX_ROWS, MAX_COLUMNS = 32, 48

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
    """0-based row of a row number (1-based) or label (A … Z, AA … AF); −1 for anything else."""
    if text.isdigit():
        return int(text) - 1
    text = text.upper()
    if not text.isascii() or not text.isalpha() or len(text) > 2:
        return -1
    index = 0
    for char in text:  # bijective base 26: A = 1 … Z = 26, AA = 27
        index = index * 26 + ord(char) - ord("A") + 1
    return index - 1


def row_label(row: int) -> str:
    """The label of a 0-based plate row: A … Z, then AA, AB … (row 31 = AF, 1536-well plates)."""
    label, n = "", int(row) + 1
    while n > 0:
        n, rem = divmod(n - 1, 26)
        label = chr(ord("A") + rem) + label
    return label


def split_well(well: str) -> tuple[int, int]:
    """(0-based row, 1-based column) of a well label such as ``"B07"`` or ``"AF48"``."""
    match = re.fullmatch(r"([A-Za-z]{1,2})(\d{1,3})", well)
    if not match:
        raise ValueError(f"not a well label: {well!r}")
    return _row_index(match.group(1)), int(match.group(2))


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
            well_match = re.fullmatch(r"([A-Za-z]{1,2})(\d{1,2})", groups["well"])
            if not well_match:
                continue
            row_text, col_text = well_match.groups()
        else:
            row_text, col_text = groups.get("row"), groups.get("col")
            if row_text is None or col_text is None:
                continue
        site = int(groups["site"]) if groups.get("site") else None
        position = _well(_row_index(row_text), int(col_text), site)
        if position is not None:
            return position
    return None


def _well(row: int, col: int, site: int | None) -> WellSite | None:
    """WellSite from a 0-based row and 1-based column; None outside a 1536-well plate."""
    if not (0 <= row < MAX_ROWS and 1 <= col <= MAX_COLUMNS):
        return None
    return WellSite(f"{row_label(row)}{col:02d}", row, col, site)


def _zarr_field_position(path: Path) -> WellSite | None:
    from .io import zarr_attributes

    well_dir, plate_dir = path.parent, path.parent.parent.parent
    if path.parent == path or not isinstance(zarr_attributes(plate_dir).get("plate"), dict):
        return None
    row_name, col_name = well_dir.parent.name, well_dir.name
    if not col_name.isdigit() or not (row_name.isalpha() or row_name.isdigit()):
        return None
    well = zarr_attributes(well_dir).get("well")  # malformed metadata: no site, never a crash
    images = well.get("images") if isinstance(well, dict) else None
    names = (
        [i.get("path") for i in images if isinstance(i, dict)] if isinstance(images, list) else []
    )
    site = names.index(path.name) if path.name in names else None
    return _well(_row_index(row_name), int(col_name), site)


def _ome_tiff_position(ome_xml: str | None) -> WellSite | None:
    """Well and site of the first image of an OME-XML that holds a ``Plate``."""
    import xml.etree.ElementTree as ET

    try:
        if not ome_xml or "Plate" not in ome_xml:
            return None
        root = ET.fromstring(ome_xml)
    except Exception:  # not a TIFF, or metadata unreadable: no plate position
        return None

    def local(tag: str) -> str:
        return tag.rsplit("}", 1)[-1]

    images = [e.get("ID") for e in root if local(e.tag) == "Image"]
    if not images:
        return None
    for well in root.iter():
        if local(well.tag) != "Well":
            continue
        samples = [e for e in well if local(e.tag) == "WellSample"]
        for site, sample in enumerate(samples):
            refs = [e.get("ID") for e in sample if local(e.tag) == "ImageRef"]
            if images[0] in refs:
                try:
                    return _well(int(well.get("Row")), int(well.get("Column")) + 1, site)
                except (TypeError, ValueError):
                    return None
    return None


def plate_position(
    path: str | os.PathLike,
    pattern: str | None = None,
    *,
    source: ImageSource | None = None,
    read_file: bool = True,
) -> WellSite | None:
    """Well and site of an input: with ``pattern``, from its name only; otherwise from OME plate
    metadata (OME-TIFF ``Plate``, OME-Zarr HCS layout) and, failing that, its name.

    ``source``: the input already open (its OME-XML is used; the file is not opened again).
    ``read_file=False``: do not open the file (e.g. it could not be read): layout and name only.
    """
    if pattern:
        return parse_well(os.fspath(path), pattern)
    p = Path(path)
    if p.is_dir():
        position = _zarr_field_position(p)
    elif p.suffix.lower() in (".tif", ".tiff", ".btf", ".tf8") and (source or read_file):
        position = _ome_tiff_position(_ome_xml(p) if source is None else source.ome_xml)
    else:
        position = None
    return position or parse_well(os.fspath(path))


def _ome_xml(path: Path) -> str | None:
    """The OME-XML of a file, or None when it has none or cannot be opened."""
    from .io import ImageSource

    try:
        with ImageSource.open(path) as source:
            return source.ome_xml
    except Exception:  # not a TIFF, or unreadable: no plate position
        return None


WELL_COLUMNS = [
    "well",
    "n_fields",
    "n_rated",
    "n_empty",
    "mean_level",
    "mean_level_mean",
    "fraction_out_of_focus",
    "mean_certainty",
    "worst_level",
]


def _well_order(well: str) -> tuple:
    """Plate order of a well label (A01 … AF48); labels of other shapes last, by name."""
    try:
        return (0, *split_well(well), "")
    except ValueError:
        return (1, 0, 0, well)


def well_aggregates(rows: list[dict]) -> list[dict]:
    """Per-well summary of results rows (dicts with ``well``, ``level``, ``level_mean``,
    ``in_focus``, ``certainty``, ``empty``, ``error``): fields, rated fields, empty fields
    (nothing above the noise: not rated), mean level, fraction out of focus, mean certainty,
    worst (highest) level. Wells in plate order (A01, A02, …, B01 …)."""
    wells: dict[str, list[dict]] = {}
    for row in rows:
        if row.get("well"):
            wells.setdefault(row["well"], []).append(row)
    out = []
    for well in sorted(wells, key=_well_order):
        members = wells[well]
        rated = [r for r in members if not r.get("error") and str(r.get("empty")) != "1"]
        n_empty = sum(not r.get("error") and str(r.get("empty")) == "1" for r in members)
        levels = np.array([float(r["level"]) for r in rated])
        out.append(
            {
                "well": well,
                "n_fields": len(members),
                "n_rated": len(rated),
                "n_empty": n_empty,
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
