"""The report page's HTML: its style sheet and the sections built from the run's tables."""

from __future__ import annotations

import html
import json
import platform

import numpy as np

from ..render import level_colors
from .run import RunData

__all__ = [
    "CSS",
    "summary_section",
    "reimage_section",
    "failures_section",
    "legend_section",
    "config_section",
]

CSS = """
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


def summary_section(data: RunData) -> str:
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
            _card("empty", len(data.empty)),
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
    return (
        f"<h2>Summary</h2><div class='cards'>{cards}</div><h3>Planes per level</h3>{level_table}"
        + _pixel_size_table(rated)
    )


_PIXEL_SIZE_FROM = {
    "file": "recorded in the file",
    "option": "given with --pixel-size",
    "model": "none recorded: taken as the model's",
}


def _pixel_size_table(rated: list[dict]) -> str:
    """Planes per pixel size, where it came from, and whether they were resampled."""
    groups: dict[tuple[str, str, str], int] = {}
    for r in rated:
        key = (r.get("pixel_size_um", ""), r.get("pixel_size_from", ""), r.get("resampled", ""))
        groups[key] = groups.get(key, 0) + 1
    if not any(key[1] for key in groups):  # a run of an older miq: no pixel size columns
        return ""
    rows = [
        [
            f"{size} µm" if size else "",
            _PIXEL_SIZE_FROM.get(origin, origin),
            "yes" if resampled == "1" else "no",
            n,
        ]
        for (size, origin, resampled), n in sorted(groups.items(), key=lambda g: -g[1])
    ]
    header = ["pixel size", "from", "resampled to the model's", "planes"]
    return "<h3>Pixel size</h3>" + _table(header, rows, numeric={3})


def reimage_section(data: RunData, limit: int = 200) -> str:
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
            r.get("pixel_size_um", ""),
        ]
        for r in out[:limit]
    ]
    more = (
        f"<p class='note'>{len(out) - limit} more out-of-focus planes are in results.csv.</p>"
        if len(out) > limit
        else ""
    )
    header = ["file", "well", "site", "t", "c", "z", "level", "mean", "certainty", "P(in)", "µm/px"]
    return (
        f"<h2>Fields to re-image ({len(out)} out of focus)</h2>"
        "<p class='note'>Most out of focus first.</p>"
        + _table(header, rows, numeric=set(range(3, 11)))
        + more
    )


def empty_section(data: RunData, limit: int = 200) -> str:
    """The planes with nothing above the camera noise, apart from the rated ones."""
    empty = data.empty
    if not empty:
        return ""
    rows = [
        [r["file"], r.get("well", ""), r.get("site", ""), r["t"], r["c"], r["z"]]
        for r in empty[:limit]
    ]
    more = (
        f"<p class='note'>{len(empty) - limit} more in results.csv.</p>"
        if len(empty) > limit
        else ""
    )
    return (
        f"<h2>Empty fields ({len(empty)})</h2><p class='note'>Nothing above the camera's noise "
        "(background only): no level and no in/out call; not counted as in or out of focus.</p>"
        + _table(["file", "well", "site", "t", "c", "z"], rows, numeric={3, 4, 5})
        + more
    )


def failures_section(data: RunData, limit: int = 500) -> str:
    failed = data.failed
    if not failed:
        return "<h2>Failures</h2><p>None.</p>"
    rows = [
        [r["file"], r["error"].split(": ", 1)[-1] or "no usable level (no patch could be rated)"]
        for r in failed[:limit]
    ]
    more = (
        f"<p class='note'>{len(failed) - limit} more in results.csv.</p>"
        if len(failed) > limit
        else ""
    )
    return f"<h2>Failures ({len(failed)})</h2>" + _table(["file", "problem"], rows) + more


def legend_section(data: RunData) -> str:
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
The image's distribution is the certainty-weighted aggregate of its patches'; its level is the
most probable level on the side of its in/out call (0–{n_in - 1} when in focus, else
{n_in}–{k - 1}); <b>mean</b> is the probability-weighted mean level.</li>
<li><b>Certainty</b>: 1 − entropy / ln {k} of the probability vector (1 = all mass on one level,
0 = uniform). Empty background patches are uncertain and weigh little.</li>
<li><b>In focus</b>: P(level &lt; {n_in}) ≥ {threshold} (levels 0–{n_in - 1}).</li>
<li><b>Overlay colours</b> (patch borders): hue = level, {swatches} (0 red … {k - 1} blue);
brightness = certainty (dark border = uncertain patch).</li>
<li><b>Plate maps</b>: grey wells have no rated field.</li>
</ul>"""


def config_section(data: RunData) -> str:
    from .. import __version__

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
