"""Writing outputs: atomically (temp file + rename), and CSV tables."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import OutputError

__all__ = [
    "atomic_write",
    "write_rows_csv",
    "read_rows_csv",
    "csv_cell",
    "csv_text",
    "json_ready",
    "part_path",
]


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator:
    """Open a temporary file next to ``path`` (``mode`` "wb" or "w": UTF-8 text); on success
    it is renamed over ``path``.

    A crash or exception leaves any previous ``path`` untouched and no half-written file. An
    `OSError` while writing (a full disk, a quota, a read-only file system) is raised as one
    `miq.errors.OutputError` naming ``path``.
    """
    target = Path(path)
    tmp: str | None = None  # named before it exists: an interruption at any point removes it
    text_args = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fh = None
        while fh is None:
            tmp = part_path(target)
            try:  # "x": created only if new; permissions 0o666 less the umask, as any output
                fh = open(tmp, mode.replace("w", "x"), **text_args)
            except FileExistsError:  # another writer drew the same name
                tmp = None
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(exc, OSError):
            raise OutputError(f"{target}: cannot write ({exc.strerror or exc})") from None
        raise


def part_path(target: Path, suffix: str = ".part") -> str:
    """A new temporary name beside ``target``: ``.{name}.{8 random hex digits}{suffix}`` (the
    pattern `miq.io.folder` recognises as left by a killed command)."""
    return os.fspath(target.parent / f".{target.name}.{secrets.token_hex(4)}{suffix}")


def _valid_utf8(value):
    """Text with undecodable file-name bytes (kept by Python as surrogates) shown as \\xNN."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value


# text a spreadsheet reads as a formula (OWASP "CSV injection"): its first character
_FORMULA_START = frozenset("=+-@\t\r")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:inf|nan)", re.I)
_NEUTRALISED = re.compile("'+[=+\\-@\t\r]")


def csv_cell(value):
    """A table value as written to a CSV cell: text that a spreadsheet would run as a formula
    (starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return, such as a file named
    ``=HYPERLINK(…).tif``) gets a leading ``'``, which spreadsheets read as "this is text";
    numbers (``-1``, ``-0.5``, ``-1e-05``) and everything else are kept as they are. Text that
    already starts with quotes before such a character gets one more, so that `csv_text`
    gives back exactly the value."""
    if not isinstance(value, str):
        return value
    start = value.lstrip("'")[:1]
    if start and start in _FORMULA_START and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_text(cell: str) -> str:
    """The value of a CSV cell written by `csv_cell` (its neutralising quote removed)."""
    return cell[1:] if _NEUTRALISED.match(cell) else cell


def write_rows_csv(path: str | os.PathLike, columns: list[str], rows: Iterable[dict]) -> None:
    """Write dict rows as a UTF-8, comma-separated CSV atomically (missing values empty).

    Always valid UTF-8: bytes of non-UTF-8 file names appear as ``\\xNN``. Text cells that a
    spreadsheet would read as a formula are neutralised with a leading ``'`` (`csv_cell`);
    `read_rows_csv` reads them back as written.
    """
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        cells = {k: csv_cell(_valid_utf8(v)) for k, v in row.items()}
        if any(isinstance(v, str) and "\r" in v for v in cells.values()):
            buffer.write(_quoted_line([cells.get(k, "") for k in columns]))
        else:
            writer.writerow(cells)
    with atomic_write(path, "w") as fh:
        fh.write(buffer.getvalue())


def _quoted_line(values: list) -> str:
    """One CSV line as `csv.writer` writes it, except that a cell holding a carriage return is
    quoted too (the writer quotes only the characters of its line terminator, ``\\n``, and a
    reader would split the row at the ``\\r``)."""
    cells = []
    for value in values:
        text = "" if value is None else str(value)
        if any(c in text for c in ',"\n\r'):
            text = '"' + text.replace('"', '""') + '"'
        cells.append(text)
    return ",".join(cells) + "\n"


def read_rows_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a CSV table written by `write_rows_csv`, as dicts of text (cells neutralised
    against spreadsheet formulas given back as they were: `csv_text`).

    Raises OSError, UnicodeDecodeError or csv.Error for a file that cannot be read."""
    import csv

    with open(path, encoding="utf-8", newline="") as fh:
        return [
            {k: csv_text(v) if isinstance(v, str) else v for k, v in row.items()}
            for row in csv.DictReader(fh)
        ]


def json_ready(value):
    """``value`` as JSON can hold it: NaN → None (JSON has no NaN) and numpy numbers → Python
    numbers, recursively through dicts, lists and tuples; everything else as it is."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    import numpy as np

    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value
