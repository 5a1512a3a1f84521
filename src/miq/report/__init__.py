"""``miq report RUN_DIR``: one self-contained HTML page that summarises a ``miq predict`` run.

The page needs no network and no external file: CSS is inline, plots are inline SVG, montage
thumbnails are embedded JPEG (base64), and there is no JavaScript. Every plot and montage is also
written as a PNG next to it (``report/*.png``) for slides and lab notebooks.

Contents: counts per level, in/out-of-focus counts and failures; histograms of level and
certainty; certainty against level; montages of the most and least in-focus images with their
overlays; plate heat maps of mean level and of the fraction of out-of-focus fields when wells are
known; the fields to re-image; the legend; the run's configuration and versions.

Needs matplotlib (the ``plot`` extra).
"""

from __future__ import annotations

import html
import os
from datetime import datetime, timezone
from pathlib import Path

from ..errors import OutputError
from ..io import atomic_write
from ..io.folder import OutputFolder
from .figures import distribution_plots, input_pictures, montage, plate_maps, plate_shape
from .run import RunData, load_run
from .sections import (
    CSS,
    config_section,
    empty_section,
    failures_section,
    legend_section,
    reimage_section,
    summary_section,
)

__all__ = ["RunData", "load_run", "write_report", "plate_shape"]


def write_report(
    run_dir: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    montage_size: int = 12,
) -> Path:
    """Write the HTML report of a predict run and the PNGs of its plots and montages.

    Parameters
    ----------
    run_dir : output folder of ``miq predict`` (``results.csv``; ``wells.csv`` and ``run.json``
        and ``overlays/`` are used when present).
    output : HTML file to write (default ``run_dir/report.html``); PNGs go into a ``report``
        folder beside it.
    montage_size : planes in each montage (most and least in focus).

    Returns the path of the HTML file. Raises `MiqError` for a folder that is not a run.
    """
    data = load_run(run_dir)
    html_path = Path(output) if output else data.run_dir / "report.html"
    png_dir = html_path.parent / "report"
    # in a miq output folder, the report's files are recorded there, and an earlier report's
    # PNGs (e.g. plate maps of wells no longer in the run) are removed first
    folder = OutputFolder.existing(html_path.parent)  # locked until the report is written
    try:
        return _write_page(data, html_path, png_dir, folder, montage_size)
    finally:
        if folder is not None:
            folder.close()


def _write_page(
    data, html_path: Path, png_dir: Path, folder: OutputFolder | None, montage_size: int
) -> Path:
    """`write_report` once its folder is locked: the PNGs, then the HTML page."""
    if folder is not None:
        folder.remove_recorded("report/")
    try:
        png_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{png_dir}: cannot create ({exc.strerror or exc})") from None
    rated = data.rated
    parts = [summary_section(data)]
    if rated:
        plots = distribution_plots(data, png_dir)
        parts.append("<h2>Distributions</h2><div class='plots'>" + plots + "</div>")
    if data.wells:
        parts.append(
            f"<h2>Plate ({len(data.wells)} wells)</h2><div class='plots'>"
            + plate_maps(data, png_dir)
            + "</div>"
        )
    if rated:
        n = min(montage_size, -(-len(rated) // 2))  # small runs: split, do not repeat
        by_level = sorted(rated, key=lambda r: (float(r["level_mean"]), -float(r["certainty"])))
        least = sorted(rated, key=lambda r: (-float(r["level_mean"]), -float(r["certainty"])))
        pictures = input_pictures(data, by_level[:n] + least[:n])  # each input opened once
        parts.append(
            f"<h2>Most in focus ({n})</h2>"
            + montage(data, by_level[:n], png_dir / "montage_most_in_focus.png", pictures)
            + f"<h2>Least in focus ({n})</h2>"
            + montage(data, least[:n], png_dir / "montage_least_in_focus.png", pictures)
        )
    parts += [
        reimage_section(data),
        empty_section(data),
        failures_section(data),
        legend_section(data),
        config_section(data),
    ]
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = f"miq focus report — {data.run_dir.resolve().name}"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{CSS}</style></head>
<body><header><h1>{html.escape(title)}</h1>
<p>{html.escape(str(data.run_dir.resolve()))} · generated {generated} · PNG versions of the
plots in <code>{html.escape(str(png_dir.name))}/</code></p></header>
<main>{"".join(parts)}</main></body></html>
"""
    with atomic_write(html_path, "w") as fh:
        fh.write(page)
    if folder is not None:
        folder.record(html_path.name, *(f"report/{p.name}" for p in png_dir.glob("*.png")))
        folder.save()
    return html_path
