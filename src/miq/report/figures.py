"""The report's pictures: plots (matplotlib; each written as PNG and returned as inline SVG), plate
heat maps and montages of thumbnails (Pillow; written as PNG and returned as an HTML grid of
embedded JPEGs)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from ..errors import MiqError, install_hint
from ..io import ImageSource, atomic_write
from ..render import _gray8, level_colors
from .run import RunData

__all__ = ["plate_shape", "distribution_plots", "plate_maps", "montage"]

_THUMB_PX = 256  # montage thumbnail width, px


# ---------------------------------------------------------------- plots (matplotlib)


def _figure(width_in: float, height_in: float):
    from ..plots import _figure as new_figure
    from ..plots import plots_available

    if not plots_available():
        raise MiqError("miq report needs matplotlib for its plots: " + install_hint("plot"))
    return new_figure(width_in, height_in, dpi=110)


def _export(fig, png_path: Path) -> str:
    """Write the figure as PNG (atomically) and return it as inline SVG markup."""
    from ..plots import _save

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


def _placed(wells: list[dict]) -> list[tuple[int, int, dict]]:
    """(0-based row, 1-based column, row of wells.csv) of each well with a plate label (A01 …
    AF48); others (e.g. written by an older miq) are left off the map."""
    from ..plates import split_well

    placed = []
    for w in wells:
        try:
            row, col = split_well(str(w.get("well", "")))
        except ValueError:
            continue
        if row >= 0 and col >= 1:
            placed.append((row, col, w))
    return placed


def plate_shape(wells: list[dict]) -> tuple[int, int]:
    """(rows, columns) of the smallest standard plate (96, 384, 1536 wells) holding the wells."""
    positions = [(row, col) for row, col, _ in _placed(wells)] or [(0, 1)]
    max_row = max(row for row, _ in positions) + 1
    max_col = max(col for _, col in positions)
    for rows, cols in ((8, 12), (16, 24), (32, 48)):
        if max_row <= rows and max_col <= cols:
            return rows, cols
    return max_row, max_col


def _plate_heatmap(wells: list[dict], key: str, title: str, cmap, vmin: float, vmax: float):
    from matplotlib.colors import ListedColormap

    from ..plates import row_label

    rows, cols = plate_shape(wells)
    grid = np.full((rows, cols), np.nan)
    for row, col, w in _placed(wells):
        if w.get(key, "") != "":
            grid[row, col - 1] = float(w[key])
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
    ax.set_yticks(range(rows), [row_label(r) for r in range(rows)], fontsize=7)
    ax.xaxis.tick_top()
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def distribution_plots(data: RunData, png_dir: Path) -> str:
    """The level and certainty histograms and certainty against level of the rated planes, as
    inline SVG (PNGs in ``png_dir``)."""
    return "".join(
        [
            _export(_level_histogram(data), png_dir / "level_histogram.png"),
            _export(_certainty_histogram(data), png_dir / "certainty_histogram.png"),
            _export(_certainty_scatter(data), png_dir / "certainty_vs_level.png"),
        ]
    )


def plate_maps(data: RunData, png_dir: Path) -> str:
    """The plate heat maps of mean level and of the fraction of fields out of focus per well, as
    inline SVG (PNGs in ``png_dir``)."""
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
    return "".join(maps)


# ---------------------------------------------------------------- montages (Pillow)


def _has_overlay(data: RunData, row: dict) -> bool:
    overlay = row.get("overlay", "")
    return bool(overlay) and (data.run_dir / overlay).is_file()


def input_pictures(data: RunData, rows: list[dict]) -> dict[tuple, object]:
    """Gray pictures of the planes of ``rows`` that have no overlay, read from the input files,
    each file opened once: ``(file, t, c, z)`` → RGB image (planes that cannot be read are
    left out)."""
    from PIL import Image

    wanted: dict[str, set[tuple[int, int, int]]] = {}
    for row in rows:
        if not _has_overlay(data, row):
            try:
                index = (int(row["t"]), int(row["c"]), int(row["z"]))
            except (ValueError, KeyError):
                continue
            wanted.setdefault(row["file"], set()).add(index)
    pictures: dict[tuple, object] = {}
    for file, indices in wanted.items():
        try:
            with ImageSource.open(file) as source:
                for plane in source.planes():
                    if (plane.t, plane.c, plane.z) in indices:
                        picture = Image.fromarray(_gray8(plane.data)).convert("RGB")
                        pictures[(file, plane.t, plane.c, plane.z)] = picture
        except MiqError:
            continue
    return pictures


def _thumbnail(data: RunData, row: dict, pictures: dict[tuple, object]):
    """The row's overlay (or, without one, its plane from ``pictures``), ``_THUMB_PX`` wide;
    None when neither can be read."""
    from PIL import Image

    if _has_overlay(data, row):
        with Image.open(data.run_dir / row["overlay"]) as im:
            picture = im.convert("RGB")
    else:
        try:
            picture = pictures[(row["file"], int(row["t"]), int(row["c"]), int(row["z"]))]
        except (KeyError, ValueError):
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


def montage(data: RunData, rows: list[dict], png_path: Path, pictures: dict[tuple, object]) -> str:
    """Montage PNG of the rows' thumbnails (overlays, else the planes of ``pictures``, see
    `input_pictures`); returns the HTML grid of the same thumbnails."""
    thumbs, captions = [], []
    for row in rows:
        thumb = _thumbnail(data, row, pictures)
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
