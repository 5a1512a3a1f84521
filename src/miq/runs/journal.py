"""The output folder of a predict run and its resume journal (one line per completed file)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import OutputError

__all__ = [
    "JOURNAL_NAME",
    "file_key",
    "read_journal",
    "append_journal",
    "completed_files",
    "journal_outputs",
]

JOURNAL_NAME = ".miq-progress.jsonl"


def file_key(path: Path) -> str:
    """Identity of an input for --resume: its path, size and modification time."""
    try:
        st = path.stat()
        return f"{os.fspath(path)}|{st.st_size}|{st.st_mtime_ns}"
    except OSError:
        return f"{os.fspath(path)}|unreadable"


def read_journal(path: Path) -> dict[str, dict]:
    """Completed files of an interrupted run (a torn last line is ignored)."""
    done: dict[str, dict] = {}
    if not path.exists():
        return done
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            try:
                entry = json.loads(line)
                done[entry["key"]] = entry
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return done


def append_journal(path: Path, entry: dict) -> None:
    """Append one completed file durably (written whole, fsynced) before moving on.

    A write that fails part-way (a full disk) is cut back off, so the journal never holds a
    torn line; raises `miq.errors.OutputError` naming the journal."""
    data = (json.dumps(entry) + "\n").encode("utf-8", "surrogateescape")
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        start = os.fstat(fd).st_size
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError as exc:
        try:
            os.ftruncate(fd, start)
        except OSError:
            pass
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def completed_files(out: Path) -> dict[str, dict]:
    """The files an interrupted run in ``out`` completed, from its journal (a line torn by a
    kill is cut off first, so that appending goes on cleanly; cutting needs no disk space)."""
    journal = out / JOURNAL_NAME
    try:
        if journal.exists() and journal.stat().st_size:
            with open(journal, "rb+") as fh:
                data = fh.read()
                if not data.endswith(b"\n"):
                    fh.truncate(data.rfind(b"\n") + 1)
        return read_journal(journal)
    except OSError as exc:
        raise OutputError(f"{journal}: cannot read or repair ({exc.strerror or exc})") from None


def journal_outputs(out: Path) -> list[str]:
    """The output files an interrupted run in ``out`` wrote, from its journal."""
    entries = read_journal(out / JOURNAL_NAME).values()
    return [name for entry in entries for name in entry.get("outputs", [])]
