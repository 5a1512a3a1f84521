"""User-visible message lines: each on one line, and per-plane repeats of one file collapsed.

Pure functions on strings (no I/O), for whatever prints or writes messages for people (the CLI,
run logs, reports).
"""

from __future__ import annotations

import re

__all__ = ["collapse_errors", "one_line"]

# "PATH [t=1, c=0, z=3] (NOTE): MESSAGE": a plane's label, then an optional note without colons
_PLANE_LINE = re.compile(
    r"^(?P<path>.*?) \[(?P<label>[tcz]=\d+(?:, [tcz]=\d+)*)\](?P<note>[^:\[\]]*): (?P<msg>.*)$",
    re.DOTALL,
)
_BREAKS = {
    "\n": "\\n",
    "\r": "\\r",
    "\v": "\\v",
    "\f": "\\f",
    "\x1c": "\\x1c",
    "\x1d": "\\x1d",
    "\x1e": "\\x1e",
    "\x85": "\\x85",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_ESCAPED = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029\ud800-\udfff]")


def _escape(match: re.Match) -> str:
    char = match.group()
    if char in _BREAKS:
        return _BREAKS[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte of a file name (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(text: str) -> str:
    """``text`` as a single printable line: line breaks (``\\n``, ``\\r``, and the others
    `str.splitlines` splits at) and other control characters written as visible escapes
    (``"\\n"``), undecodable bytes of file names (lone surrogates) as ``"\\xNN"``; tabs kept.

    Idempotent: a line already made single is returned unchanged."""
    return _ESCAPED.sub(_escape, str(text))


def collapse_errors(lines: list[str]) -> list[str]:
    """Lines of per-plane errors that differ only in their plane label collapsed into one.

    ``"PATH [c=0, z=3]: MESSAGE"`` (or ``"PATH [t=1, c=0, z=3]: MESSAGE"``, possibly with a
    note after the label such as ``" (resampled ×0.541)"``) repeated for several planes of one
    file with the same message become ``"PATH: 201 planes: MESSAGE (planes c=0, z=0 … c=0,
    z=200)"`` at the place of the first; a line that does not repeat, different messages of one
    file and every other line stay as they are, in their order.

    Parameters
    ----------
    lines : message lines, e.g. the errors of a run in the order they were reported.

    Returns
    -------
    The lines, collapsed (a new list).
    """
    groups: dict[tuple[str, str, str], list[str]] = {}
    parsed: list[tuple[str, str, str] | None] = []
    for line in lines:
        match = _PLANE_LINE.match(line)
        if match is None:
            parsed.append(None)
            continue
        key = (match["path"], match["note"], match["msg"])
        groups.setdefault(key, []).append(match["label"])
        parsed.append(key)
    out: list[str] = []
    done: set[tuple[str, str, str]] = set()
    for line, key in zip(lines, parsed):
        if key is None or len(groups[key]) == 1:
            out.append(line)
        elif key not in done:
            done.add(key)
            path, note, msg = key
            labels = groups[key]
            if len(labels) == 2:
                which = f"{labels[0]} and {labels[1]}"
            else:
                which = f"{labels[0]} … {labels[-1]}"
            out.append(f"{path}{note}: {len(labels)} planes: {msg} (planes {which})")
    return out
