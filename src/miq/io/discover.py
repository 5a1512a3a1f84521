"""Inputs to files: folders (recursive), globs, OME-Zarr images and HCS plates; output names."""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from .folder import MANIFEST_NAME

__all__ = [
    "find_images",
    "file_stem",
    "special_file_kind",
    "is_zarr",
    "zarr_attributes",
    "zarr_plate_fields",
    "IMAGE_SUFFIXES",
]

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".btf", ".tf8")


def is_zarr(path: str | os.PathLike) -> bool:
    """True for a folder that is a zarr group or array (v2 ``.zgroup``/``.zattrs``, v3 ``zarr.json``)."""
    p = Path(path)
    return p.is_dir() and any((p / n).is_file() for n in ("zarr.json", ".zgroup", ".zattrs"))


def zarr_attributes(path: str | os.PathLike) -> dict:
    """The OME attributes of a zarr group: v2 ``.zattrs``, or v3 ``zarr.json`` → ``attributes``
    (→ ``ome`` in NGFF 0.5). Empty dict when none can be read."""
    import json

    p = Path(path)
    try:
        if (p / "zarr.json").is_file():
            attrs = json.loads((p / "zarr.json").read_text(encoding="utf-8")).get("attributes", {})
        elif (p / ".zattrs").is_file():
            attrs = json.loads((p / ".zattrs").read_text(encoding="utf-8"))
        else:
            return {}
    except (OSError, ValueError, AttributeError):
        return {}
    return attrs.get("ome", attrs) if isinstance(attrs, dict) else {}


def zarr_plate_fields(
    path: str | os.PathLike, problems: list[str] | None = None
) -> list[Path] | None:
    """The field images of an OME-Zarr HCS plate (``plate.zarr/A/1/0`` …) in plate order, or
    None when ``path`` is not a plate.

    Malformed entries (wells or images that are not objects, a missing ``path``, a path that
    is absolute, has ``..`` or leads outside the plate) are left out, never read; one line for
    the plate saying what was wrong is appended to ``problems``."""
    plate = zarr_attributes(path).get("plate")
    if not isinstance(plate, dict):
        return None
    root = Path(path)
    fields: list[Path] = []
    bad: list[str] = []
    wells = plate.get("wells", [])
    if not isinstance(wells, list):
        bad.append("'wells' is not a list")
        wells = []
    for i, well in enumerate(wells):
        well_dir = _plate_member(root, root, well, f"wells[{i}]", bad)
        if well_dir is None:
            continue
        images = zarr_attributes(well_dir).get("well", {})
        images = images.get("images", []) if isinstance(images, dict) else None
        if not isinstance(images, list):
            bad.append(f"{well_dir.relative_to(root)}: 'images' is not a list")
            continue
        for j, image in enumerate(images):
            where = f"{well_dir.relative_to(root)} images[{j}]"
            field = _plate_member(root, well_dir, image, where, bad)
            if field is not None:
                fields.append(field)
    if bad and problems is not None:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        left = "those entries skipped" if fields else "no field to rate"
        problems.append(f"{root}: malformed OME-Zarr plate metadata ({bad[0]}{more}); {left}")
    return fields


def _plate_member(root: Path, parent: Path, entry, where: str, bad: list[str]) -> Path | None:
    """``parent / entry["path"]`` when ``entry`` is an object whose ``path`` is a relative path
    that stays inside the plate ``root``; else None, with what was wrong added to ``bad``."""
    name = entry.get("path") if isinstance(entry, dict) else None
    if not isinstance(entry, dict):
        bad.append(f"{where} is not an object")
    elif not isinstance(name, str) or not name.strip():
        bad.append(f"{where} has no 'path'")
    elif Path(name).is_absolute() or ".." in Path(name).parts or Path(name).drive:
        bad.append(f"{where} path {name!r} leads outside the plate")
    else:
        member = parent / name
        try:
            inside = member.resolve().is_relative_to(root.resolve())
        except (OSError, RuntimeError):
            inside = False
        if inside:
            return member
        bad.append(f"{where} path {name!r} leads outside the plate (a link?)")
    return None


_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def special_file_kind(path: str | os.PathLike) -> str | None:
    """What ``path`` is, in words, when it exists but is neither a regular file nor a folder
    (``"a named pipe (FIFO)"``, ``"a socket"``, a device); None otherwise, also when it does
    not exist. Symbolic links are followed. Never opens it: opening a named pipe waits, forever,
    for a writer."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return next((kind for test, kind in _SPECIAL_KINDS if test(mode)), "a special file")


def find_images(
    inputs: Iterable[str | os.PathLike],
    on_missing: Callable[[str], None] | None = None,
    on_refused: Callable[[str], None] | None = None,
    on_skipped: Callable[[str], None] | None = None,
) -> list[Path]:
    """Expand files, folders (recursive, image suffixes only) and glob patterns into a sorted,
    de-duplicated file list. Inputs that match nothing are reported through ``on_missing``.

    A folder found inside a searched folder, or below the fixed start of a glob pattern, that
    holds a miq output manifest (`miq.io.folder.MANIFEST_NAME`: an earlier run's masks,
    overlays, curves …) is not searched, each reported once through ``on_skipped`` (one line,
    not an error); a folder named explicitly, or a pattern inside one, is always searched.

    An explicitly named file is kept whatever its extension (its content decides later).
    Named pipes, sockets and devices (named, matched or with an image suffix in a folder) are
    left out without being opened, each reported once through ``on_refused`` (one line:
    ``"PATH: a named pipe (FIFO), not an image file; skipped"``), and so is each OME-Zarr plate
    with malformed metadata (its valid fields are kept; `zarr_plate_fields`).
    """
    found: list[Path] = []
    refused: list[Path] = []
    problems: list[str] = []  # malformed plates, one line each
    skipped: list[Path] = []  # miq output folders met while searching a folder
    for item in inputs:
        text = os.fspath(item)
        p = Path(text)
        n_refused = len(refused) + len(problems)
        if is_zarr(p):
            matches = _zarr_images(p, problems)
        elif p.is_dir():
            matches = _images_in_folder(p, refused, problems, skipped)
        elif p.exists():
            matches = [p] if _regular(p, refused) else []
        elif glob.has_magic(text):
            matches = []
            root = _literal_root(text).resolve()
            for m in sorted(Path(m) for m in glob.glob(text, recursive=True)):
                output = _output_folder_between(root, m)
                if output is not None:
                    skipped.append(output)
                    continue
                matches.extend(
                    _zarr_images(m, problems) if is_zarr(m) else [m] if _regular(m, refused) else []
                )
        else:
            matches = []
        if not matches and len(refused) + len(problems) == n_refused and on_missing is not None:
            on_missing(text)
        found.extend(matches)
    if on_refused is not None:
        for f in _unique(refused):
            on_refused(f"{f}: {special_file_kind(f)}, not an image file; skipped")
        for line in dict.fromkeys(problems):
            on_refused(line)
    if on_skipped is not None:
        for folder in _unique(skipped):
            on_skipped(
                f"{folder}: holds the outputs of an earlier miq run ({MANIFEST_NAME}); "
                "not searched for images"
            )
    return _unique(found)


def _literal_root(pattern: str) -> Path:
    """The folder a glob pattern starts from: its leading path components without wildcards."""
    parts = Path(pattern).parts
    literal = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        literal.append(part)
    return Path(*literal) if literal else Path(".")


def _output_folder_between(root: Path, match: Path) -> Path | None:
    """The miq output folder strictly below ``root`` (resolved) that ``match`` lies in, if any:
    a glob from a plate folder does not pick up an earlier run's outputs, one written from
    inside the output folder does."""
    for folder in match.resolve().parents:
        if folder == root or root not in folder.parents:
            return None
        if _holds_outputs(folder):
            return folder
    return None


def _holds_outputs(folder: Path) -> bool:
    """True for a folder a miq command wrote its outputs to (its `MANIFEST_NAME` is there)."""
    return (folder / MANIFEST_NAME).is_file()


def _regular(path: Path, refused: list[Path]) -> bool:
    """True for a regular file (or a link to one); a named pipe, socket or device is added to
    ``refused`` instead (a folder or missing path: neither)."""
    if path.is_file():
        return True
    if special_file_kind(path):
        refused.append(path)
    return False


def _unique(found: list[Path]) -> list[Path]:
    """The paths without repeats of one file (by resolved path), in their order."""
    seen: set[Path] = set()
    unique = []
    for f in found:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def _zarr_images(path: Path, problems: list[str] | None = None) -> list[Path]:
    """An OME-Zarr image itself, or the fields of an HCS plate (what is malformed in the
    plate's metadata: one line in ``problems``)."""
    fields = zarr_plate_fields(path, problems)
    return [path] if fields is None else fields


def _images_in_folder(
    folder: Path,
    refused: list[Path],
    problems: list[str] | None = None,
    skipped: list[Path] | None = None,
) -> list[Path]:
    """Image files (by suffix) and OME-Zarr images under a folder, recursively, sorted by path;
    a zarr folder is not searched inside (a plate gives its fields), nor a miq output folder
    below ``folder`` (added to ``skipped``). Special files with an image suffix go to
    ``refused``."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        here = Path(root)
        for d in list(dirs):
            if is_zarr(here / d):
                found.extend(_zarr_images(here / d, problems))
                dirs.remove(d)
            elif _holds_outputs(here / d):
                if skipped is not None:
                    skipped.append(here / d)
                dirs.remove(d)
        found.extend(
            here / f
            for f in files
            if Path(f).suffix.lower() in IMAGE_SUFFIXES and _regular(here / f, refused)
        )
    return sorted(found)


def file_stem(path: str | os.PathLike) -> str:
    """Outputs' base name of an input: the file name without its extension (and without ``.ome``
    before it); a field inside an OME-Zarr plate is named by the plate and its path in it
    (``plate.ome.zarr/B/3/0`` → ``plate_B_3_0``)."""
    p = Path(path)
    inside = [i for i, part in enumerate(p.parts[:-1]) if part.lower().endswith(".zarr")]
    if inside:
        top = inside[0]
        return "_".join([file_stem(p.parts[top]), *p.parts[top + 1 :]])
    name = p.name
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return stem.removesuffix(".ome")
