"""The output folder contract shared by every command that writes a folder (predict, best-focus,
measure, evaluate; report writes into a predict run's folder).

* ``-o`` naming a file, or a folder that cannot be created, is a one-line error.
* A new or empty folder is used as it is. A non-empty folder is refused unless it holds miq's
  outputs (a ``.miq-outputs.json`` manifest, written before anything else) and
  ``overwrite`` is given — which first removes the files the manifest (and an interrupted
  run's journal) lists, and nothing else — or ``resume`` (predict), which refuses, naming the
  difference, when the miq version, the model or any setting that changes results differs.
* The manifest lists every file the command wrote (relative POSIX paths), its settings and the
  miq version; it is rewritten atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import OutputError
from .write import atomic_write

__all__ = ["OutputFolder", "MANIFEST_NAME"]

MANIFEST_NAME = ".miq-outputs.json"
_FORMAT = "miq-outputs/1"


class OutputFolder:
    """A command's output folder, prepared by :meth:`prepare`; :meth:`record` the files written
    and :meth:`save` the manifest."""

    def __init__(self, path: Path, command: str, settings: dict, files: list[str]) -> None:
        self.path, self.command, self.settings = path, command, settings
        self._files: set[str] = set(files)
        self._present = _files_under(path)  # what was there before this command wrote

    @classmethod
    def prepare(
        cls,
        path: str | os.PathLike,
        *,
        command: str,
        settings: dict,
        overwrite: bool = False,
        resume: bool = False,
        also_written: tuple[str, ...] = (),
        earlier_outputs: Callable[[Path], list[str]] | None = None,
        keep: tuple[str | os.PathLike, ...] = (),
    ) -> OutputFolder:
        """Check and prepare ``path`` for ``command`` (see the module docstring).

        ``settings``: what determines the results (compared on ``resume``; JSON-serialisable).
        ``also_written``: files the command writes besides those it records (e.g. its journal),
        removed by ``overwrite`` too, and ``earlier_outputs(path)`` the files an interrupted
        run wrote before it could record them (e.g. from its journal). ``keep``: files never
        removed (the command's inputs, should they lie in the folder). Raises
        `miq.errors.OutputError` (one line).
        """
        out = Path(path)
        settings = json.loads(json.dumps(settings))  # as it will be read back
        if out.exists() and not out.is_dir():
            raise OutputError(f"{out}: is a file, not a folder; give a new or empty folder to -o")
        try:
            out.mkdir(parents=True, exist_ok=True)
            empty = not any(out.iterdir())
        except OSError as exc:
            raise OutputError(f"{out}: cannot create or read ({exc.strerror or exc})") from None
        if empty:
            return cls._fresh(out, command, settings)
        manifest = _read_manifest(out)
        if manifest is None:
            raise OutputError(
                f"{out}: folder is not empty and holds no miq outputs ({MANIFEST_NAME} missing; "
                "a folder written by miq before 0.2.0 has none: delete it); choose a new or empty "
                "folder"
            )
        if resume:
            if manifest.get("command") != command:
                raise OutputError(
                    f"{out}: --resume, but the folder holds the outputs of miq "
                    f"{manifest.get('command')}, not {command}"
                )
            different = _differences(manifest.get("settings", {}), settings)
            if different:
                raise OutputError(
                    f"{out}: --resume with other settings than the interrupted run ({different}); "
                    "run again with the same options, or use --overwrite to start afresh"
                )
            folder = cls(out, command, settings, manifest.get("files", []))
            folder.save()
            return folder
        if not overwrite:
            raise OutputError(
                f"{out}: output folder is not empty; use --resume to finish an interrupted run "
                "there, or --overwrite to replace its results"
            )
        earlier = earlier_outputs(out) if earlier_outputs else []
        kept = {Path(k).resolve() for k in keep}
        listed = [*manifest.get("files", []), *also_written, *earlier]
        _remove_listed(out, [n for n in listed if (out / n).resolve() not in kept])
        return cls._fresh(out, command, settings)

    @classmethod
    def existing(cls, path: str | os.PathLike) -> OutputFolder | None:
        """The folder of an earlier miq command (to add files to its manifest), or None when
        ``path`` holds no manifest."""
        manifest = _read_manifest(Path(path))
        if manifest is None:
            return None
        files = manifest.get("files", [])
        return cls(Path(path), str(manifest.get("command")), manifest.get("settings", {}), files)

    def remove_recorded(self, prefix: str) -> None:
        """Remove the recorded files whose path starts with ``prefix`` (e.g. an earlier report's
        PNGs, before a new report is written) and forget them."""
        gone = [name for name in self._files if name.startswith(prefix)]
        _remove_listed(self.path, gone, keep_manifest=True)
        self._files.difference_update(gone)

    @classmethod
    def _fresh(cls, out: Path, command: str, settings: dict) -> OutputFolder:
        folder = cls(out, command, settings, [])
        folder.save()
        return folder

    @property
    def files(self) -> list[str]:
        return sorted(self._files)

    def record(self, *relative: str | os.PathLike) -> None:
        """Note files written (paths relative to the folder, or absolute inside it)."""
        for name in relative:
            p = Path(name)
            if p.is_absolute():
                p = p.relative_to(self.path)
            self._files.add(p.as_posix())

    def record_new_files(self) -> None:
        """Note every file that appeared in the folder since it was prepared."""
        self.record(*(_files_under(self.path) - self._present - {MANIFEST_NAME}))

    def save(self) -> None:
        """Write the manifest (atomically)."""
        from .. import __version__

        manifest = {
            "format": _FORMAT,
            "command": self.command,
            "miq_version": __version__,
            "settings": self.settings,
            "files": self.files,
        }
        with atomic_write(self.path / MANIFEST_NAME, "w") as fh:
            fh.write(json.dumps(manifest, indent=1))


def _files_under(out: Path) -> set[str]:
    """Every file under ``out`` (relative POSIX paths; links not followed)."""
    found = set()
    for root, _, files in os.walk(out):
        for name in files:
            found.add((Path(root) / name).relative_to(out).as_posix())
    return found


def _read_manifest(out: Path) -> dict | None:
    try:
        manifest = json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == _FORMAT else None


def _differences(before: dict, now: dict, prefix: str = "") -> str:
    """The settings that differ, as ``name: before → now`` (nested keys dotted)."""
    found = []
    for key in sorted(set(before) | set(now)):
        old, new = before.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            inner = _differences(old, new, f"{prefix}{key}.")
            if inner:
                found.append(inner)
        elif old != new:
            found.append(f"{prefix}{key}: {old!r} → {new!r}")
    return "; ".join(found)


def _remove_listed(out: Path, names: list[str], keep_manifest: bool = False) -> None:
    """Remove the listed files (only regular files or links inside ``out``), then folders left
    empty by that, and the manifest (unless ``keep_manifest``)."""
    root = out.resolve()
    parents: set[Path] = set()
    for name in {*names} if keep_manifest else {*names, MANIFEST_NAME}:
        target = out / name
        try:
            inside = target.parent.resolve().is_relative_to(root) and ".." not in Path(name).parts
        except OSError:
            inside = False
        if not inside or Path(name).is_absolute():
            continue
        try:
            if target.is_symlink() or target.is_file():
                target.unlink()
                parents.add(target.parent)
        except OSError as exc:
            raise OutputError(f"{target}: cannot remove ({exc.strerror or exc})") from None
    for folder in sorted(parents, key=lambda p: -len(p.parts)):
        while folder != out and folder.is_relative_to(out):
            try:
                folder.rmdir()  # only when empty
            except OSError:
                break
            folder = folder.parent
