"""The output folder contract shared by every command that writes a folder (predict, best-focus,
measure, evaluate; report writes into a predict run's folder).

* ``-o`` naming a file, or a folder that cannot be created, is a one-line error.
* A new or empty folder is used as it is. A non-empty folder is refused unless it holds miq's
  outputs (a ``.miq-outputs.json`` manifest, written before anything else) and
  ``overwrite`` is given — which first removes the files the manifest (and an interrupted
  run's journal) lists, and nothing else — or ``resume`` (predict), which refuses, naming the
  difference, when the miq version, the model or any setting that changes results differs.
* The manifest lists every file the command wrote (relative POSIX paths), its settings and the
  miq version, and the output names given to its inputs (so that a resumed run keeps them); it
  is rewritten atomically.
* One command per folder at a time: :meth:`OutputFolder.prepare` takes an exclusive lock
  (``flock`` on ``.miq-lock``, which names the holder's pid) for the whole command; a second
  command into the same folder is refused at once. The lock dies with the process (even on
  SIGKILL); :meth:`OutputFolder.close` releases it and removes the lock file.
* Inputs are never written: an input that lies where the command writes (``masks/``,
  ``overlays/``, a file it lists …) is refused before anything is removed or written, and
  links inside the folder where miq writes (``masks`` → elsewhere) are refused, never followed.
* Temporary files (``.NAME.XXXXXXXX.part``) that a killed command left are removed when the
  folder is prepared again.
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import OutputError
from .write import atomic_write

__all__ = ["OutputFolder", "MANIFEST_NAME", "LOCK_NAME"]

MANIFEST_NAME = ".miq-outputs.json"
LOCK_NAME = ".miq-lock"
_FORMAT = "miq-outputs/1"
#: folders inside an output folder that miq commands write into (predict, report, best-focus)
WRITTEN_FOLDERS = ("masks", "overlays", "report", "curves", "best")
#: the temporary files of `miq.io.write.atomic_write` (``.{name}.{8 random chars}.part``)
_PART = re.compile(r"\..+\.[a-z0-9_]{8}\.part")


class OutputFolder:
    """A command's output folder, prepared by :meth:`prepare`; :meth:`record` the files written
    and :meth:`save` the manifest."""

    def __init__(
        self,
        path: Path,
        command: str,
        settings: dict,
        files: list[str],
        names: dict[str, str] | None = None,
        lock: int | None = None,
    ) -> None:
        self.path, self.command, self.settings = path, command, settings
        self._files: set[str] = set(files)
        #: output base name given to each input (its path as given): kept by a resumed run
        self.names: dict[str, str] = dict(names or {})
        self._lock = lock
        self._present = _files_under(path)  # what was there before this command wrote

    def __enter__(self) -> OutputFolder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # a folder dropped without close() still frees its lock
        self.close()

    def close(self) -> None:
        """Release the folder's lock (and remove the lock file); idempotent."""
        fd, self._lock = getattr(self, "_lock", None), None
        if fd is None:
            return
        try:
            os.unlink(self.path / LOCK_NAME)  # while still holding it: see _lock
        except OSError:
            pass
        os.close(fd)

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
        inputs: Iterable[str | os.PathLike] = (),
    ) -> OutputFolder:
        """Check and prepare ``path`` for ``command`` (see the module docstring), holding its
        lock until :meth:`close` (or the end of the process).

        ``settings``: what determines the results (compared on ``resume``; JSON-serialisable).
        ``also_written``: files the command writes besides those it records (e.g. its journal),
        removed by ``overwrite`` too, and ``earlier_outputs(path)`` the files an interrupted
        run wrote before it could record them (e.g. from its journal). ``inputs``: the
        command's input files: never removed, and refused when one lies where the command
        writes. Raises `miq.errors.OutputError` (one line).
        """
        out = Path(path)
        settings = json.loads(json.dumps(settings))  # as it will be read back
        if out.exists() and not out.is_dir():
            raise OutputError(f"{out}: is a file, not a folder; give a new or empty folder to -o")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{out}: cannot create ({exc.strerror or exc})") from None
        lock = _lock(out)
        try:
            return cls._prepare_locked(
                out, lock, command, settings, overwrite, resume, also_written,
                earlier_outputs, [Path(i) for i in inputs],
            )  # fmt: skip
        except BaseException:
            _unlock(out, lock)
            raise

    @classmethod
    def _prepare_locked(
        cls,
        out: Path,
        lock: int | None,
        command: str,
        settings: dict,
        overwrite: bool,
        resume: bool,
        also_written: tuple[str, ...],
        earlier_outputs: Callable[[Path], list[str]] | None,
        inputs: list[Path],
    ) -> OutputFolder:
        try:
            empty = not any(p.name != LOCK_NAME for p in out.iterdir())
        except OSError as exc:
            raise OutputError(f"{out}: cannot read ({exc.strerror or exc})") from None
        manifest = None if empty else _read_manifest(out)
        _check_inputs(out, inputs, {*also_written, *(manifest or {}).get("files", [])})
        if empty:
            return cls._fresh(out, command, settings, lock)
        if manifest is None:
            raise OutputError(
                f"{out}: folder is not empty and holds no miq outputs ({MANIFEST_NAME} missing; "
                "a folder written by miq before 0.2.0 has none: delete it); choose a new or empty "
                "folder"
            )
        _check_links(out, [*also_written, *manifest.get("files", [])])
        _remove_parts(out)
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
            names = _valid_names(manifest.get("names"))
            folder = cls(out, command, settings, manifest.get("files", []), names, lock)
            folder.save()
            return folder
        if not overwrite:
            raise OutputError(
                f"{out}: output folder is not empty; use --resume to finish an interrupted run "
                "there, or --overwrite to replace its results"
            )
        earlier = earlier_outputs(out) if earlier_outputs else []
        kept = {k.resolve() for k in inputs}
        listed = [*manifest.get("files", []), *also_written, *earlier]
        _remove_listed(out, [n for n in listed if (out / n).resolve() not in kept])
        return cls._fresh(out, command, settings, lock)

    @classmethod
    def existing(cls, path: str | os.PathLike) -> OutputFolder | None:
        """The folder of an earlier miq command (to add files to its manifest), locked until
        :meth:`close`, or None when ``path`` holds no manifest."""
        out = Path(path)
        if _read_manifest(out) is None:
            return None
        lock = _lock(out)
        try:
            manifest = _read_manifest(out)  # again, now that no other command writes it
            if manifest is None:
                raise OutputError(f"{out}: its {MANIFEST_NAME} vanished; run the command again")
            files = manifest.get("files", [])
            _check_links(out, files)
            _remove_parts(out)
        except BaseException:
            _unlock(out, lock)
            raise
        names = _valid_names(manifest.get("names"))
        settings = manifest.get("settings", {})
        return cls(out, str(manifest.get("command")), settings, files, names, lock)

    def remove_recorded(self, prefix: str) -> None:
        """Remove the recorded files whose path starts with ``prefix`` (e.g. an earlier report's
        PNGs, before a new report is written) and forget them."""
        gone = [name for name in self._files if name.startswith(prefix)]
        _remove_listed(self.path, gone, keep_manifest=True)
        self._files.difference_update(gone)

    @classmethod
    def _fresh(cls, out: Path, command: str, settings: dict, lock: int | None) -> OutputFolder:
        folder = cls(out, command, settings, [], None, lock)
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
        self.record(*(_files_under(self.path) - self._present - {MANIFEST_NAME, LOCK_NAME}))

    def save(self) -> None:
        """Write the manifest (atomically)."""
        from .. import __version__

        manifest = {
            "format": _FORMAT,
            "command": self.command,
            "miq_version": __version__,
            "settings": self.settings,
            "files": self.files,
            "names": self.names,
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


def _valid_names(names) -> dict[str, str]:
    """The output names of a manifest that are plain file names (a name with a path
    separator, ``..`` or a NUL would lead outputs elsewhere: dropped, the input is named
    afresh)."""
    if not isinstance(names, dict):
        return {}
    return {
        key: name
        for key, name in names.items()
        if isinstance(key, str)
        and isinstance(name, str)
        and name.strip(".")
        and not any(c in name for c in "/\\\0")
    }


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


def _lock(out: Path) -> int | None:
    """Take the exclusive lock of an output folder: ``flock`` on ``out/.miq-lock`` (created;
    our pid written into it). Returns its descriptor, or None where the file system has no
    locks. Raises `miq.errors.OutputError` naming the holder's pid when another process holds
    it. The holder removes the file before releasing it (:meth:`OutputFolder.close`), so a
    lock taken on a file that was removed meanwhile is taken again on the new one."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        return None
    path = out / LOCK_NAME
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        except OSError as exc:
            raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _holder(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputError(
                    f"{out}: output folder is in use by another miq run ({holder}); wait for "
                    "it to end, or choose another folder with -o"
                ) from None
            return None  # a file system without locks (ENOLCK, EOPNOTSUPP): go on unlocked
        try:
            same = os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
        except OSError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError:
        pass  # a full disk: the lock holds, only its pid is not told
    return fd


def _holder(fd: int) -> str:
    """``pid N`` of the process holding a lock file, as it wrote it (or "pid unknown")."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "pid unknown"


def _unlock(out: Path, fd: int | None) -> None:
    if fd is None:
        return
    try:
        os.unlink(out / LOCK_NAME)
    except OSError:
        pass
    os.close(fd)


def _written_places(out: Path, listed: Iterable[str]) -> set[str]:
    """Top-level names inside ``out`` that a command writes: its folders, its listed files."""
    top = {Path(name).parts[0] for name in listed if Path(name).parts}
    return {*WRITTEN_FOLDERS, MANIFEST_NAME, LOCK_NAME, *top}


def _check_inputs(out: Path, inputs: list[Path], listed: Iterable[str]) -> None:
    """Refuse an input that lies where the command writes (it could be written over)."""
    if not inputs:
        return
    root = out.resolve()
    places = _written_places(out, listed)
    for f in inputs:
        try:
            relative = f.resolve().relative_to(root)
        except (ValueError, OSError):
            continue
        if relative.parts and relative.parts[0] in places:
            raise OutputError(
                f"{f}: input lies where miq writes its outputs ({out / relative.parts[0]}); "
                "move it, or choose another folder with -o (inputs are never written)"
            )


def _check_links(out: Path, listed: Iterable[str]) -> None:
    """Refuse links inside ``out`` where a command writes: they would lead its writes (and
    removals) out of the folder."""
    for name in sorted(_written_places(out, listed)):
        if (out / name).is_symlink():
            raise OutputError(
                f"{out / name}: is a symbolic link; miq writes only inside its output folder "
                "and never through links there: remove the link, or choose another -o"
            )


def _remove_parts(out: Path) -> None:
    """Remove the temporary files a killed command left (``.NAME.XXXXXXXX.part``) at the top
    of ``out`` and in the folders miq writes into (links are not followed)."""
    for folder in (out, *(out / name for name in WRITTEN_FOLDERS)):
        try:
            entries = list(os.scandir(folder)) if not folder.is_symlink() else []
        except OSError:
            continue
        for entry in entries:
            if _PART.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                try:
                    os.unlink(entry.path)
                except OSError as exc:
                    raise OutputError(
                        f"{entry.path}: cannot remove ({exc.strerror or exc})"
                    ) from None
