"""What the commands print on the terminal: every line through `say` (one line, whatever the
file names hold), and the result table of a predict run."""

from __future__ import annotations

import sys
from pathlib import Path

from ..messages import one_line

__all__ = ["print_results_table", "say"]


def say(text: str, file=None) -> None:
    """Print ``text`` as one line (on stdout, or ``file``): the one place the commands print.

    Line breaks and other control characters (from file names, error messages) are shown as
    escapes (`miq.messages.one_line`), so that no file name can forge a line of output."""
    print(one_line(text), file=sys.stdout if file is None else file)


def _short_name(path: str, width: int = 40) -> str:
    """A file's name (no folders) that fits ``width``: cut in the middle, so that both its
    start and its end (where plate names keep well, site and channel) stay readable."""
    name = one_line(Path(path).name or path)  # escaped first: the width is what is shown
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return f"{name[:head]}…{name[-(width - 1 - head) :]}"


def print_results_table(rows: list[dict], limit: int = 40) -> None:
    """A short, aligned table of the first ``limit`` results.csv rows on stdout."""
    say(
        f"{'file':<40} {'well':>4} {'site':>4} {'c':>2} {'z':>3} {'level':>5} {'mean':>5} "
        f"{'~um':>5} {'cert':>5} {'P(in)':>5}  flag"
    )
    for row in rows[:limit]:
        name, well, site = _short_name(row["file"]), row.get("well", ""), row.get("site", "")
        failed_file = str(row["c"]) == "-1"
        c, z = ("", "") if failed_file else (row["c"], row["z"])
        where = f"{name:<40} {well:>4} {site:>4} {c:>2} {z:>3}"
        if row["error"]:
            say(f"{where}  ERROR: {row['error'].split(': ', 1)[-1]}")
            continue
        if str(row.get("empty")) == "1":
            say(f"{where}  {'':>35}  EMPTY (nothing above the noise)")
            continue
        flag = "in focus" if str(row["in_focus"]) == "1" else "OUT OF FOCUS"
        say(
            f"{where} {row['level']:>5} {float(row['level_mean']):>5.2f} "
            f"{float(row['defocus_um']):>5.1f} {float(row['certainty']):>5.2f} "
            f"{float(row['p_in_focus']):>5.2f}  {flag}"
        )
    if len(rows) > limit:
        say(f"... {len(rows) - limit} more rows in results.csv")
