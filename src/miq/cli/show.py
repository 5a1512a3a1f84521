"""What the commands print on the terminal besides errors: the result table of a predict run."""

from __future__ import annotations

from pathlib import Path

__all__ = ["print_results_table"]


def _short_name(path: str, width: int = 40) -> str:
    """A file's name (no folders) that fits ``width``: cut in the middle, so that both its
    start and its end (where plate names keep well, site and channel) stay readable."""
    name = Path(path).name or path
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return f"{name[:head]}…{name[-(width - 1 - head) :]}"


def print_results_table(rows: list[dict], limit: int = 40) -> None:
    """A short, aligned table of the first ``limit`` results.csv rows on stdout."""
    print(
        f"{'file':<40} {'well':>4} {'site':>4} {'c':>2} {'z':>3} {'level':>5} {'mean':>5} "
        f"{'~um':>5} {'cert':>5} {'P(in)':>5}  flag"
    )
    for row in rows[:limit]:
        name, well, site = _short_name(row["file"]), row.get("well", ""), row.get("site", "")
        failed_file = str(row["c"]) == "-1"
        c, z = ("", "") if failed_file else (row["c"], row["z"])
        where = f"{name:<40} {well:>4} {site:>4} {c:>2} {z:>3}"
        if row["error"]:
            print(f"{where}  ERROR: {row['error'].split(': ', 1)[-1]}")
            continue
        if str(row.get("empty")) == "1":
            print(f"{where}  {'':>35}  EMPTY (nothing above the noise)")
            continue
        flag = "in focus" if str(row["in_focus"]) == "1" else "OUT OF FOCUS"
        print(
            f"{where} {row['level']:>5} {float(row['level_mean']):>5.2f} "
            f"{float(row['defocus_um']):>5.1f} {float(row['certainty']):>5.2f} "
            f"{float(row['p_in_focus']):>5.2f}  {flag}"
        )
    if len(rows) > limit:
        print(f"... {len(rows) - limit} more rows in results.csv")
