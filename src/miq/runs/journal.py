"""The output folder of a predict run and its resume journal (one line per completed file)."""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["JOURNAL_NAME", "file_key", "read_journal", "append_journal", "prepare_output"]

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


def prepare_output(out: Path, resume: bool, overwrite: bool) -> dict[str, dict]:
    """Check the output folder and return the files a previous run already completed."""
    from ..errors import OutputError

    out.mkdir(parents=True, exist_ok=True)
    journal = out / JOURNAL_NAME
    if resume:
        if journal.exists() and journal.stat().st_size:
            with open(journal, "rb+") as fh:  # end a line torn by the kill before appending
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")
        return read_journal(journal)
    if any(out.iterdir()) and not overwrite:
        raise OutputError(
            f"{out}: output folder is not empty; use --resume to finish an interrupted run "
            "there, or --overwrite to replace its results"
        )
    journal.unlink(missing_ok=True)
    return {}
