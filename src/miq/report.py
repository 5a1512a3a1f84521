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

import base64
import csv
import html
import io
import json
import os
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .errors import MiqError, OutputError
from .io import atomic_write, read_planes
from .render import _gray8, level_colors

__all__ = ["RunData", "load_run", "write_report", "plate_shape"]

_THUMB_PX = 256  # montage thumbnail width, px


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
        return [r for r in self.rows if not r["error"]]

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["error"]]

    @property
    def um_per_level(self) -> float:
        return float(self.info.get("model", {}).get("um_per_level", 2.0))


def _read_csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


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


# ---------------------------------------------------------------- figures (matplotlib)


def _figure(width_in: float, height_in: float):
    from .plots import _figure as new_figure
    from .plots import plots_available

    if not plots_available():
        raise MiqError("miq report needs matplotlib for its plots: pip install 'miq[plot]'")
    return new_figure(width_in, height_in, dpi=110)


def _export(fig, png_path: Path) -> str:
    """Write the figure as PNG (atomically) and return it as inline SVG markup."""
    from .plots import _save

    _save(fig, png_path)
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]  # drop the XML declaration and DOCTYPE for inline use


def _level_histogram(data: RunData):
    k = data.n_levels
    counts = np.bincount([int(r["level"]) for r in data.rated], minlength=k)[:k]
    fig = _figure(5.0, 3.0)
    ax = fig.subplots()
    ax.bar(range(k), counts, color=level_colors(k) / 255.0, edgecolor="black", linewidth=0.5)
    ax.set_xticks(range(k))
    ax.set_xlabel(f"defocus level (about {data.um_per_level:g} µm per level)")
    ax.set_ylabel("planes")
    ax.set_title("Level of each rated plane", fontsize=10)
    return fig


def _certainty_histogram(data: RunData):
    fig = _figure(5.0, 3.0)
    ax = fig.subplots()
    bins = np.linspace(0, 1, 21)
    for flag, label, colour in (("1", "in focus", "#d62728"), ("0", "out of focus", "#1f77b4")):
        values = [float(r["certainty"]) for r in data.rated if str(r["in_focus"]) == flag]
        ax.hist(values, bins=bins, alpha=0.7, color=colour, label=f"{label} ({len(values)})")
    ax.set_xlim(0, 1)
    ax.set_xlabel("certainty (1 − entropy / ln K)")
    ax.set_ylabel("planes")
    ax.set_title("Certainty of each rated plane", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def _certainty_scatter(data: RunData):
    rated = data.rated
    x = np.array([float(r["level_mean"]) for r in rated])
    y = np.array([float(r["certainty"]) for r in rated])
    focused = np.array([str(r["in_focus"]) == "1" for r in rated], dtype=bool)
    fig = _figure(5.0, 3.4)
    ax = fig.subplots()
    many = len(rated) > 2000  # thousands of points: rasterised inside the SVG to keep it small
    for mask, label, colour in ((focused, "in focus", "#d62728"), (~focused, "out", "#1f77b4")):
        ax.scatter(x[mask], y[mask], s=10, alpha=0.6, color=colour, label=label, rasterized=many)
    ax.set_xlim(-0.3, data.n_levels - 0.7)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("mean level (probability-weighted)")
    ax.set_ylabel("certainty")
    ax.set_title("Certainty against level", fontsize=10)
    ax.legend(fontsize=8)
    return fig


def plate_shape(wells: list[dict]) -> tuple[int, int]:
    """(rows, columns) of the smallest standard plate (96, 384, 1536 wells) holding the wells."""
    max_row = max(ord(w["well"][0].upper()) - ord("A") + 1 for w in wells)
    max_col = max(int(w["well"][1:]) for w in wells)
    for rows, cols in ((8, 12), (16, 24), (32, 48)):
        if max_row <= rows and max_col <= cols:
            return rows, cols
    return max_row, max_col


def _plate_heatmap(wells: list[dict], key: str, title: str, cmap, vmin: float, vmax: float):
    from matplotlib.colors import ListedColormap

    rows, cols = plate_shape(wells)
    grid = np.full((rows, cols), np.nan)
    for w in wells:
        if w.get(key, "") != "":
            grid[ord(w["well"][0].upper()) - ord("A"), int(w["well"][1:]) - 1] = float(w[key])
    if isinstance(cmap, np.ndarray):
        cmap = ListedColormap(cmap / 255.0)
    fig = _figure(min(1.6 + cols * 0.3, 14.0), min(1.0 + rows * 0.3, 9.0))
    ax = fig.subplots()
    ax.set_facecolor("#e8e8e8")  # wells with no rated field
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=vmin, vmax=vmax)
    if cols <= 24:
        for i in range(rows):
            for j in range(cols):
                if np.isfinite(grid[i, j]):
                    r, g, b, _ = image.cmap(image.norm(grid[i, j]))
                    dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
                    ax.text(
                        j,
                        i,
                        f"{grid[i, j]:.1f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if dark else "black",
                    )
    ax.set_xticks(range(cols), [str(c + 1) for c in range(cols)], fontsize=7)
    ax.set_yticks(range(rows), [chr(ord("A") + r) for r in range(rows)], fontsize=7)
    ax.xaxis.tick_top()
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


# ---------------------------------------------------------------- montages (Pillow)


def _thumbnail(data: RunData, row: dict):
    """The row's overlay (or, without one, its plane from the input file), ``_THUMB_PX`` wide;
    None when neither can be read."""
    from PIL import Image

    picture = None
    overlay = row.get("overlay", "")
    if overlay and (data.run_dir / overlay).is_file():
        with Image.open(data.run_dir / overlay) as im:
            picture = im.convert("RGB")
    else:
        try:
            planes = read_planes(row["file"])
            index = (int(row["t"]), int(row["c"]), int(row["z"]))
            plane = next(p for p in planes if (p.t, p.c, p.z) == index)
            picture = Image.fromarray(_gray8(plane.data)).convert("RGB")
        except (MiqError, StopIteration, ValueError, KeyError):
            return None
    scale = _THUMB_PX / picture.width
    return picture.resize((_THUMB_PX, max(1, round(picture.height * scale))), Image.LANCZOS)


def _caption(row: dict) -> str:
    where = []
    if row.get("well"):
        where.append(f"well {row['well']}" + (f" s{row['site']}" if row.get("site") else ""))
    if any(row.get(k, "0") not in ("0", "") for k in "tcz"):
        where.append(f"t{row['t']} c{row['c']} z{row['z']}")
    head = Path(row["file"]).name + (f" ({', '.join(where)})" if where else "")
    return f"{head} — level {row['level']} (mean {float(row['level_mean']):.2f}), certainty {float(row['certainty']):.2f}"


def _montage_png(thumbs: list, captions: list[str], path: Path, columns: int = 4) -> None:
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    text_h = 28
    cell_h = max(t.height for t in thumbs) + text_h
    n_rows = -(-len(thumbs) // columns)
    sheet = Image.new("RGB", (columns * (_THUMB_PX + 6), n_rows * (cell_h + 6)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (thumb, caption) in enumerate(zip(thumbs, captions)):
        x, y = (i % columns) * (_THUMB_PX + 6) + 3, (i // columns) * (cell_h + 6) + 3
        sheet.paste(thumb, (x, y))
        name, _, rest = caption.partition(" — ")
        draw.text((x, y + thumb.height + 2), name[:42], fill=(0, 0, 0), font=font)
        draw.text((x, y + thumb.height + 14), rest[:42], fill=(60, 60, 60), font=font)
    with atomic_write(path) as fh:
        sheet.save(fh, format="PNG")


def _montage(data: RunData, rows: list[dict], png_path: Path) -> str:
    """Montage PNG of the rows' thumbnails; returns the HTML grid of the same thumbnails."""
    thumbs, captions = [], []
    for row in rows:
        thumb = _thumbnail(data, row)
        if thumb is not None:
            thumbs.append(thumb)
            captions.append(_caption(row))
    if not thumbs:
        return "<p class='note'>No overlay or input image could be read for these planes.</p>"
    _montage_png(thumbs, captions, png_path)
    cells = []
    for thumb, caption in zip(thumbs, captions):
        buffer = io.BytesIO()
        thumb.save(buffer, format="JPEG", quality=85)
        encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
        cells.append(
            f"<figure><img alt='{html.escape(caption, quote=True)}' "
            f"src='data:image/jpeg;base64,{encoded}'><figcaption>{html.escape(caption)}"
            "</figcaption></figure>"
        )
    return "<div class='montage'>" + "".join(cells) + "</div>"


# ---------------------------------------------------------------- HTML


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;
background:#fafafa}
header{background:#1d3557;color:#fff;padding:16px 28px}
header h1{margin:0 0 4px;font-size:22px} header p{margin:0;opacity:.85;font-size:13px}
header code{background:transparent;color:#fff;font-weight:bold}
main{padding:8px 28px 40px;max-width:1300px}
h2{border-bottom:2px solid #1d3557;padding-bottom:4px;margin-top:32px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 16px;min-width:120px}
.card b{display:block;font-size:24px} .card.bad b{color:#c0392b} .card.good b{color:#1e7d32}
table{border-collapse:collapse;background:#fff;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left} th{background:#eef1f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.plots{display:flex;flex-wrap:wrap;gap:16px} .plots svg{background:#fff;border:1px solid #ddd;
max-width:100%;height:auto}
.montage{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:12px}
figure{margin:0;background:#fff;border:1px solid #ddd;padding:4px}
figure img{width:100%;height:auto;display:block}
figcaption{font-size:12px;word-break:break-all;padding-top:4px}
.swatch{display:inline-block;width:22px;height:14px;vertical-align:middle;border:1px solid #555}
.note{color:#555;font-size:13px} code{background:#eef1f5;padding:1px 4px}
"""


def _table(header: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f"<td class='num'>{html.escape(str(v))}</td>"
            if i in numeric
            else f"<td>{html.escape(str(v))}</td>"
            for i, v in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _hex(rgb) -> str:
    """CSS colour ``#rrggbb`` of an RGB uint8 triple."""
    return "#" + "".join(f"{int(v):02x}" for v in rgb)


def _card(label: str, value, kind: str = "") -> str:
    return f"<div class='card {kind}'><b>{html.escape(str(value))}</b>{html.escape(label)}</div>"


def _summary_section(data: RunData) -> str:
    rated, failed = data.rated, data.failed
    files = {r["file"] for r in data.rows}
    failed_files = {r["file"] for r in failed if r.get("c") == "-1"}
    n_in = sum(str(r["in_focus"]) == "1" for r in rated)
    cards = "".join(
        [
            _card("files", len(files)),
            _card("planes rated", len(rated)),
            _card("in focus", n_in, "good"),
            _card("out of focus", len(rated) - n_in, "bad" if len(rated) - n_in else ""),
            _card("files failed", len(failed_files), "bad" if failed_files else ""),
            _card("planes failed", len(failed) - len(failed_files), "bad" if failed else ""),
        ]
    )
    k = data.n_levels
    counts = np.bincount([int(r["level"]) for r in rated], minlength=k)[:k]
    colours = level_colors(k)
    level_rows = []
    for level in range(k):
        swatch = _hex(colours[level])
        share = f"{counts[level] / len(rated):.1%}" if rated else ""
        level_rows.append(
            f"<tr><td><span class='swatch' style='background:{swatch}'></span> {level}</td>"
            f"<td class='num'>{level * data.um_per_level:g}</td>"
            f"<td class='num'>{counts[level]}</td><td class='num'>{share}</td></tr>"
        )
    level_table = (
        "<table><thead><tr><th>level</th><th>≈ defocus (µm)</th><th>planes</th>"
        f"<th>share</th></tr></thead><tbody>{''.join(level_rows)}</tbody></table>"
    )
    return f"<h2>Summary</h2><div class='cards'>{cards}</div><h3>Planes per level</h3>{level_table}"


def _reimage_section(data: RunData, limit: int = 200) -> str:
    out = [r for r in data.rated if str(r["in_focus"]) == "0"]
    if not out:
        return "<h2>Fields to re-image</h2><p>None: every rated plane is in focus.</p>"
    out.sort(key=lambda r: -float(r["level_mean"]))
    rows = [
        [
            r["file"],
            r.get("well", ""),
            r.get("site", ""),
            r["t"],
            r["c"],
            r["z"],
            r["level"],
            f"{float(r['level_mean']):.2f}",
            f"{float(r['certainty']):.2f}",
            f"{float(r['p_in_focus']):.2f}" if r.get("p_in_focus") else "",
        ]
        for r in out[:limit]
    ]
    more = (
        f"<p class='note'>{len(out) - limit} more out-of-focus planes are in results.csv.</p>"
        if len(out) > limit
        else ""
    )
    header = ["file", "well", "site", "t", "c", "z", "level", "mean", "certainty", "P(in)"]
    return (
        f"<h2>Fields to re-image ({len(out)} out of focus)</h2>"
        "<p class='note'>Most out of focus first.</p>"
        + _table(header, rows, numeric=set(range(3, 10)))
        + more
    )


def _failures_section(data: RunData, limit: int = 500) -> str:
    failed = data.failed
    if not failed:
        return "<h2>Failures</h2><p>None.</p>"
    rows = [[r["file"], r["error"].split(": ", 1)[-1]] for r in failed[:limit]]
    more = (
        f"<p class='note'>{len(failed) - limit} more in results.csv.</p>"
        if len(failed) > limit
        else ""
    )
    return f"<h2>Failures ({len(failed)})</h2>" + _table(["file", "problem"], rows) + more


def _legend_section(data: RunData) -> str:
    opts = data.info.get("options", {})
    n_in = opts.get("in_focus_levels", 3)
    threshold = opts.get("in_focus_threshold", 0.5)
    k = data.n_levels
    colours = level_colors(k)
    swatches = " ".join(
        f"<span class='swatch' style='background:{_hex(colours[level])}' title='level {level}'>"
        "</span>"
        for level in range(k)
    )
    return f"""<h2>Legend</h2>
<ul>
<li><b>Level</b> 0–{k - 1}: absolute defocus class of an 84×84 px patch, about
{data.um_per_level:g} µm of defocus per level at the model's optics (level 0 in focus).
The image level is the certainty-weighted aggregate of its patches; <b>mean</b> is the
probability-weighted mean level.</li>
<li><b>Certainty</b>: 1 − entropy / ln {k} of the probability vector (1 = all mass on one level,
0 = uniform). Empty background patches are uncertain and weigh little.</li>
<li><b>In focus</b>: P(level &lt; {n_in}) ≥ {threshold} (levels 0–{n_in - 1}).</li>
<li><b>Overlay colours</b> (patch borders): hue = level, {swatches} (0 red … {k - 1} blue);
brightness = certainty (dark border = uncertain patch).</li>
<li><b>Plate maps</b>: grey wells have no rated field.</li>
</ul>"""


def _config_section(data: RunData) -> str:
    from . import __version__

    def flatten(prefix: str, value) -> list[list[str]]:
        if isinstance(value, dict):
            out = []
            for key, sub in value.items():
                out.extend(flatten(f"{prefix}.{key}" if prefix else str(key), sub))
            return out
        return [[prefix, json.dumps(value, ensure_ascii=False) if value is not None else "—"]]

    rows = flatten("", data.info) if data.info else [["run.json", "not found"]]
    try:
        import matplotlib

        mpl = matplotlib.__version__
    except ImportError:  # pragma: no cover - the report needs it
        mpl = "—"
    rows += [
        ["report.miq_version", __version__],
        ["report.python", platform.python_version()],
        ["report.numpy", np.__version__],
        ["report.matplotlib", mpl],
    ]
    return "<h2>Configuration and versions</h2>" + _table(["setting", "value"], rows)


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

    Returns the path of the HTML file. Raises :class:`MiqError` for a folder that is not a run.
    """
    data = load_run(run_dir)
    html_path = Path(output) if output else data.run_dir / "report.html"
    png_dir = html_path.parent / "report"
    try:
        png_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{png_dir}: cannot create ({exc.strerror or exc})") from None
    rated = data.rated
    parts = [_summary_section(data)]
    if rated:
        plots = [
            _export(_level_histogram(data), png_dir / "level_histogram.png"),
            _export(_certainty_histogram(data), png_dir / "certainty_histogram.png"),
            _export(_certainty_scatter(data), png_dir / "certainty_vs_level.png"),
        ]
        parts.append("<h2>Distributions</h2><div class='plots'>" + "".join(plots) + "</div>")
    if data.wells:
        n_levels = data.n_levels
        maps = [
            _export(
                _plate_heatmap(
                    data.wells,
                    "mean_level",
                    "Mean level per well",
                    level_colors(n_levels),
                    0,
                    n_levels - 1,
                ),
                png_dir / "plate_mean_level.png",
            ),
            _export(
                _plate_heatmap(
                    data.wells,
                    "fraction_out_of_focus",
                    "Fraction of fields out of focus",
                    "Reds",
                    0,
                    1,
                ),
                png_dir / "plate_fraction_out_of_focus.png",
            ),
        ]
        parts.append(
            f"<h2>Plate ({len(data.wells)} wells)</h2><div class='plots'>"
            + "".join(maps)
            + "</div>"
        )
    if rated:
        n = min(montage_size, -(-len(rated) // 2))  # small runs: split, do not repeat
        by_level = sorted(rated, key=lambda r: (float(r["level_mean"]), -float(r["certainty"])))
        least = sorted(rated, key=lambda r: (-float(r["level_mean"]), -float(r["certainty"])))
        parts.append(
            f"<h2>Most in focus ({n})</h2>"
            + _montage(data, by_level[:n], png_dir / "montage_most_in_focus.png")
            + f"<h2>Least in focus ({n})</h2>"
            + _montage(data, least[:n], png_dir / "montage_least_in_focus.png")
        )
    parts += [
        _reimage_section(data),
        _failures_section(data),
        _legend_section(data),
        _config_section(data),
    ]
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = f"miq focus report — {data.run_dir.resolve().name}"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{_CSS}</style></head>
<body><header><h1>{html.escape(title)}</h1>
<p>{html.escape(str(data.run_dir.resolve()))} · generated {generated} · PNG versions of the
plots in <code>{html.escape(str(png_dir.name))}/</code></p></header>
<main>{"".join(parts)}</main></body></html>
"""
    with atomic_write(html_path, "w") as fh:
        fh.write(page)
    return html_path
