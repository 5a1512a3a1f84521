"""Writing outputs: atomically (temp file + rename), and CSV tables."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import OutputError

__all__ = ["atomic_write", "write_rows_csv", "umask"]


def umask() -> int:
    """The process umask (read without changing it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator:
    """Open a temporary file next to ``path``; on success it is renamed over ``path``.

    A crash or exception leaves any previous ``path`` untouched and no half-written file. An
    `OSError` while writing (a full disk, a quota, a read-only file system) is raised as one
    `miq.errors.OutputError` naming ``path``.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write ({exc.strerror or exc})") from None
    try:
        os.close(fd)
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes it private; outputs follow the umask
        text_args = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
        with open(tmp, mode, **text_args) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise OutputError(f"{target}: cannot write ({exc.strerror or exc})") from None
        raise


def _valid_utf8(value):
    """Text with undecodable file-name bytes (kept by Python as surrogates) shown as \\xNN."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value


def write_rows_csv(path: str | os.PathLike, columns: list[str], rows: Iterable[dict]) -> None:
    """Write dict rows as a UTF-8, comma-separated CSV atomically (missing values empty).

    Always valid UTF-8: bytes of non-UTF-8 file names appear as ``\\xNN``.
    """
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _valid_utf8(v) for k, v in row.items()} for row in rows)
    with atomic_write(path, "w") as fh:
        fh.write(buffer.getvalue())
