"""The output folder of a predict run and its resume journal (one line per completed file)."""

from __future__ import annotations

import json
import os
from pathlib import Path

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
    """Append one completed file durably (flushed and fsynced) before moving on."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def completed_files(out: Path) -> dict[str, dict]:
    """The files an interrupted run in ``out`` completed, from its journal (a line torn by a
    kill is ended first, so that appending goes on cleanly)."""
    journal = out / JOURNAL_NAME
    if journal.exists() and journal.stat().st_size:
        with open(journal, "rb+") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                fh.write(b"\n")
    return read_journal(journal)


def journal_outputs(out: Path) -> list[str]:
    """The output files an interrupted run in ``out`` wrote, from its journal."""
    entries = read_journal(out / JOURNAL_NAME).values()
    return [name for entry in entries for name in entry.get("outputs", [])]
