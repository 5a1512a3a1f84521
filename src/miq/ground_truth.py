"""Ground truth for evaluation: images paired with what is known about their focus.

Three sources, each giving a list of `Item` (one 2D image each, loaded on demand):

* `manifest_items` — a CSV with a ``file`` column and ``level``, ``defocus_um`` and/or
  ``in_focus`` columns (optional ``c`` / ``z`` columns pick one plane of a multi-plane file).
* `stack_items` — a focal stack with a known z step (µm) and a known best (in-focus) plane:
  defocus of plane z = |z − best| · step.
* `synthetic_items` — real in-focus images defocused by the simulator to every level, with
  the optics and noise seeds recorded.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import MiqError
from .io import ImageSource
from .io.budget import DEFAULT_MEMORY_BUDGET
from .optics import LevelTable, Optics, degrade, restore_offset

__all__ = [
    "Item",
    "GroundTruth",
    "collect_items",
    "ManifestError",
    "manifest_items",
    "stack_items",
    "synthetic_items",
    "to_camera_range",
    "camera_plane",
    "SYNTHETIC_SENSOR",
]

#: how `synthetic_items` turns an in-focus plane into a defocused one, in words (recorded in
#: evaluation summaries and with each calibration)
SYNTHETIC_SENSOR = (
    "miq.optics.degrade defaults (offset 100 DN, 1 e-/DN); planes brought there by "
    "miq.ground_truth.to_camera_range (the offset put back under planes that lost it: "
    "miq.optics.restore_offset)"
)


class ManifestError(MiqError, ValueError):
    """A ground-truth description (manifest CSV, stack specification) is unusable."""


@dataclass
class Item:
    """One image with its ground truth. Unknown truth fields are None.

    name : how reports refer to it (file, plane and, for synthetic items, level and seed).
    dataset : the ground-truth source it belongs to (metrics are computed per dataset).
    level : true defocus level (0 = in focus).
    defocus_um : true defocus in µm (absolute value).
    in_focus : true binary label.
    stack, z : focal-stack id (file and channel) and plane index, for best-plane metrics.
    best_z : the stack's true best plane.
    source : the file the image is (or, for synthetic items, was simulated from).
    draw_of : for synthetic items, the image (file, plane and defocus) this item is one noise
        draw of: items with the same ``draw_of`` differ only by their noise seed.
    """

    name: str
    dataset: str
    load: Callable[[], np.ndarray] = field(repr=False)
    level: int | None = None
    defocus_um: float | None = None
    in_focus: bool | None = None
    stack: str | None = None
    z: int | None = None
    best_z: int | None = None
    pixel_size_um: float | None = None  # what the file records (None: nothing recorded)
    source: str | None = None
    draw_of: str | None = None

    @property
    def image(self) -> str:
        """The image this item is a draw of: ``draw_of``, or its own ``name`` when it is not a
        noise draw (items with the same ``image`` share one outcome in
        `miq.metrics.calibration_floor`)."""
        return self.draw_of or self.name


@lru_cache(maxsize=2)
def _read(path: str, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> tuple[list, float | None]:
    """Planes of a file and the pixel size it records (µm), the file opened once and cached so
    that the items of one stack or synthetic series read it once; refused (one line) when its
    planes would not fit in ``memory_budget`` bytes."""
    with ImageSource.open(path, memory_budget=memory_budget) as source:
        return source.planes(native_integers=True), source.pixel_size_um  # exact DN


def _planes(path: str, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> list:
    return _read(path, memory_budget)[0]


def _plane_loader(path: Path, index: int, memory_budget: int) -> Callable[[], np.ndarray]:
    return lambda: _planes(str(path), memory_budget)[index].data


def _parse_bool(text: str, where: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "y", "in", "in_focus"}:
        return True
    if value in {"0", "false", "no", "n", "out", "out_of_focus"}:
        return False
    raise ManifestError(f"{where}: in_focus must be 1/0, true/false or yes/no, got {text!r}")


def manifest_items(
    manifest: str | os.PathLike,
    *,
    dataset: str | None = None,
    um_per_level: float = 2.0,
    n_levels: int = 11,
    in_focus_levels: int = 3,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> list[Item]:
    """Items from a manifest CSV (``memory_budget``: bytes one file may take to read, see
    `miq.io.budget`).

    Columns: ``file`` (required; relative paths are relative to the manifest's folder), and at
    least one of ``level`` (integer), ``defocus_um`` (µm, sign ignored), ``in_focus`` (1/0).
    Optional ``c`` and ``z`` select one plane; otherwise every plane of the file is an item.
    Optional ``stack`` (a name) and ``stack_z`` (plane index) group single-plane rows into a focal
    stack stored as one file per plane; its true best plane is the row with the least defocus,
    and (as for `stack_items`) no level is derived from defocus_um on such rows.
    Missing truth is derived where it can be: level = round(defocus_um / um_per_level) capped at
    the top level; in_focus = level < ``in_focus_levels``.
    """
    path = Path(manifest)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(f"{path}: cannot read manifest ({exc})") from None
    if not rows:
        raise ManifestError(f"{path}: manifest has no rows")
    columns = {c.strip() for c in rows[0] if c}
    if "file" not in columns or not columns & {"level", "defocus_um", "in_focus"}:
        raise ManifestError(
            f"{path}: manifest needs a 'file' column and one of 'level', 'defocus_um', "
            f"'in_focus' (found: {', '.join(sorted(columns)) or 'none'})"
        )
    name = dataset or path.stem
    items: list[Item] = []
    for line, raw in enumerate(rows, start=2):
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
        where = f"{path}:{line}"
        try:
            level = int(row["level"]) if row.get("level") else None
            defocus = abs(float(row["defocus_um"])) if row.get("defocus_um") else None
            want_c, want_z, stack_z = (
                int(row[key]) if row.get(key) else None for key in ("c", "z", "stack_z")
            )
        except ValueError:
            raise ManifestError(
                f"{where}: level, c, z and stack_z must be integers and defocus_um a number"
            ) from None
        if level is not None and not 0 <= level < n_levels:
            raise ManifestError(f"{where}: level {level} outside 0..{n_levels - 1}")
        stack_row = bool(row.get("stack"))  # stack optics rarely match the model's: no levels
        if level is None and defocus is not None and not stack_row:
            level = min(n_levels - 1, int(round(defocus / um_per_level)))
        in_focus = _parse_bool(row["in_focus"], where) if row.get("in_focus") else None
        if in_focus is None and level is not None:
            in_focus = level < in_focus_levels
        file = Path(row["file"])
        if not file.is_absolute():
            file = path.parent / file
        found = _file_items(
            file, want_c, want_z, name, level, defocus, in_focus, where, memory_budget
        )
        if stack_row:
            if len(found) != 1 or stack_z is None:
                raise ManifestError(
                    f"{where}: a 'stack' row needs a 'stack_z' plane index and one plane per row"
                )
            found[0].stack, found[0].z = row["stack"], stack_z
        items.extend(found)
    _set_best_planes(items, path)
    return items


def _set_best_planes(items: list[Item], where: Path) -> None:
    """For manifest stacks, the true best plane is the plane with the least defocus."""
    stacks: dict[str, list[Item]] = {}
    for item in items:
        if item.stack is not None:
            stacks.setdefault(item.stack, []).append(item)
    for stack, members in stacks.items():
        if any(m.defocus_um is None for m in members):
            raise ManifestError(f"{where}: stack {stack!r} needs defocus_um on every row")
        best = min(members, key=lambda m: m.defocus_um)
        for m in members:
            m.best_z = best.z


def _file_items(
    file: Path, want_c, want_z, dataset, level, defocus, in_focus, where, memory_budget: int
) -> list[Item]:
    """Items for the planes of one manifest file (only plane c / z when given)."""
    try:
        planes = _planes(str(file), memory_budget)
    except MiqError as exc:  # unreadable: an item that reports the error when rated
        error = exc

        def fail(error=error):
            raise error

        return [Item(str(file), dataset, fail, level, defocus, in_focus)]
    out = []
    for index, plane in enumerate(planes):
        if (want_c is not None and plane.c != want_c) or (want_z is not None and plane.z != want_z):
            continue
        label = str(file) if len(planes) == 1 else f"{file} [c={plane.c}, z={plane.z}]"
        loader = _plane_loader(file, index, memory_budget)
        item = Item(label, dataset, loader, level, defocus, in_focus)
        item.pixel_size_um = _read(str(file), memory_budget)[1]
        out.append(item)
    if not out:
        raise ManifestError(f"{where}: {file} has no plane c={want_c}, z={want_z}")
    return out


def stack_items(
    path: str | os.PathLike,
    z_step_um: float,
    best_z: int,
    *,
    dataset: str | None = None,
    in_focus_um: float | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> list[Item]:
    """Items for every plane of a focal stack (each channel is its own stack; its planes
    refused in one line when they would not fit in ``memory_budget`` bytes).

    defocus_um = |z − best_z| · ``z_step_um``; in_focus = defocus_um ≤ ``in_focus_um`` when that
    is given (otherwise unknown). No level is assigned: a stack's optics (NA, pixel size) rarely
    match the model's, so µm of defocus do not translate into the model's levels.
    """
    file = Path(path)
    if not z_step_um > 0:
        raise ManifestError(f"{file}: z step must be positive, got {z_step_um}")
    planes = _planes(str(file), memory_budget)
    zs = sorted({p.z for p in planes})
    if len(zs) < 2:
        raise ManifestError(f"{file}: a focal stack needs several z planes, found {len(zs)}")
    if not zs[0] <= best_z <= zs[-1]:
        raise ManifestError(f"{file}: best plane {best_z} outside the stack's z {zs[0]}..{zs[-1]}")
    name = dataset or file.stem
    items = []
    for index, plane in enumerate(planes):
        defocus = abs(plane.z - best_z) * float(z_step_um)
        in_focus = None if in_focus_um is None else defocus <= in_focus_um
        items.append(
            Item(
                f"{file} [c={plane.c}, z={plane.z}]",
                name,
                _plane_loader(file, index, memory_budget),
                None,
                defocus,
                in_focus,
                stack=f"{file} [c={plane.c}]",
                z=plane.z,
                best_z=best_z,
                pixel_size_um=_read(str(file), memory_budget)[1],
            )
        )
    return items


def to_camera_range(data: np.ndarray, offset_dn: float = 100.0) -> np.ndarray:
    """In-focus plane → unit range for `degrade` (1.0 = 65535 DN), on a camera with
    ``offset_dn`` of offset and 1 photoelectron per DN.

    The offset is put back under a plane that lost it (`miq.optics.restore_offset`); a plane
    whose signal peaks under 1900 DN above the offset (8-bit files, dim exposures) then has its
    signal scaled up to that, a 16-bit camera's brightness.
    """
    signal = restore_offset(data, offset_dn) - offset_dn
    peak = float(signal.max())
    if peak < 2000.0 - offset_dn:
        signal = signal * ((2000.0 - offset_dn) / max(peak, 1e-12))
    return (signal + offset_dn) / 65535.0


def camera_plane(
    data: np.ndarray,
    recorded_um: float | None,
    optics: Optics = Optics(),
    use_file_pixel_size: bool = True,
) -> np.ndarray:
    """An in-focus plane (Y, X) as `synthetic_items` takes it before the blur: resampled to
    ``optics.pixel_size_um`` from the pixel size its file records (``recorded_um`` µm; None:
    taken as at it; `miq.resampling.pixel_size_rule`, area-averaging when finer) unless
    ``use_file_pixel_size`` is False, then brought to a camera's unit range (`to_camera_range`).
    """
    from .resampling import pixel_size_rule, resample_to_pixel_size

    size, _, resample = pixel_size_rule(
        None, recorded_um, use_file_pixel_size, optics.pixel_size_um
    )
    if resample:
        data = resample_to_pixel_size(data, size, optics.pixel_size_um)
    return to_camera_range(data)


def synthetic_items(
    files: list[str | os.PathLike],
    *,
    dataset: str = "synthetic",
    levels: LevelTable = LevelTable(),
    optics: Optics = Optics(),
    seeds: int = 2,
    in_focus_levels: int = 3,
    use_file_pixel_size: bool = True,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    first_seed: int = 0,
) -> list[Item]:
    """Every plane of every in-focus file, defocused to each level with ``seeds`` noise seeds
    (``first_seed`` … ``first_seed + seeds − 1``; a file whose planes would not fit in
    ``memory_budget`` bytes is refused in one line).

    Defocus = the level table's nominal µm; sensor model of `miq.optics.degrade` with noise
    seed 1000·level + seed; 8-bit planes are first brought to a 16-bit camera's range. A plane
    whose file records a pixel size other than ``optics.pixel_size_um`` is first resampled to
    it (area-averaging when finer), unless ``use_file_pixel_size`` is False, so that the
    simulated defocus is what the optics give at that pixel size.
    """
    items = []
    for f in files:
        path = Path(f)
        planes, recorded = _read(str(path), memory_budget)
        for index, plane in enumerate(planes):
            label = str(path) if len(planes) == 1 else f"{path} [c={plane.c}, z={plane.z}]"
            for level, z_um in enumerate(levels.defocus_um):
                for seed in range(first_seed, first_seed + seeds):

                    def load(
                        path=path, index=index, z_um=z_um, rng=1000 * level + seed, px=recorded
                    ):
                        data = _planes(str(path), memory_budget)[index].data
                        unit = camera_plane(data, px, optics, use_file_pixel_size)
                        return degrade(unit, z_um, optics=optics, rng=rng)

                    items.append(
                        Item(
                            f"{label} @{z_um:g}um seed{seed}",
                            dataset,
                            load,
                            level,
                            float(z_um),
                            level < in_focus_levels,
                            source=str(path),
                            draw_of=f"{label} @{z_um:g}um",
                        )
                    )
    return items


@dataclass
class GroundTruth:
    """Images of known focus gathered for ``miq evaluate``: the ``items``, a provenance entry per
    dataset (``info``: what it is, where it comes from, how it was made) and how many sources
    could not be read (``failures``, each reported through ``on_error``)."""

    items: list[Item]
    info: dict[str, dict]
    failures: int = 0


def collect_items(
    model,
    *,
    manifests: list[str | os.PathLike] = (),
    stacks: list[tuple[str | os.PathLike, float, int]] = (),
    synthetic: list[Path] = (),
    seeds: int = 2,
    in_focus_levels: int = 3,
    in_focus_um: float | None = None,
    use_file_pixel_size: bool = True,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    on_error: Callable[[str], None] | None = None,
) -> GroundTruth:
    """Items and provenance from manifests, focal stacks (``(file, z step µm, best plane)``) and
    in-focus files to defocus synthetically with the model's own optics and levels.
    ``memory_budget``: bytes one file may take to read (`miq.io.budget`; ``--memory-budget``).

    A manifest or stack that cannot be read is reported through ``on_error`` and counted; a
    synthetic file that cannot be read raises `miq.errors.MiqError`.
    """
    import dataclasses

    items: list[Item] = []
    info: dict[str, dict] = {}
    failures = 0

    def read(load: Callable[[], list[Item]]) -> list[Item]:
        """Items of one source; [] (reported and counted) when it cannot be read."""
        nonlocal failures
        try:
            return load()
        except (MiqError, OSError) as exc:
            failures += 1
            if on_error:
                on_error(str(exc))
            return []

    for manifest in manifests:
        found = read(
            lambda manifest=manifest: manifest_items(
                manifest,
                um_per_level=model.um_per_level,
                n_levels=model.n_levels,
                in_focus_levels=in_focus_levels,
                memory_budget=memory_budget,
            )
        )
        if found:
            items += found
            info[found[0].dataset] = {"kind": "manifest", "source": str(manifest)}
    for path, z_step, best in stacks:
        found = read(
            lambda path=path, z_step=z_step, best=best: stack_items(
                path, z_step, best, in_focus_um=in_focus_um, memory_budget=memory_budget
            )
        )
        if not found:
            continue
        items += found
        info[found[0].dataset] = {
            "kind": "focal stack",
            "source": str(path),
            "z_step_um": z_step,
            "best_z": best,
            "in_focus_um": in_focus_um,
        }
    if synthetic:
        optics, levels = model.optics, model.levels  # simulate with the model's own optics
        items += synthetic_items(
            synthetic,
            seeds=seeds,
            optics=optics,
            levels=levels,
            in_focus_levels=in_focus_levels,
            use_file_pixel_size=use_file_pixel_size,
            memory_budget=memory_budget,
        )
        info["synthetic"] = {
            "kind": "synthetic defocus of in-focus images",
            "files": [str(f) for f in synthetic],
            "seeds": seeds,
            "noise_seed_rule": "1000 * level + seed",
            "optics": dataclasses.asdict(optics),
            "levels_um": list(levels.defocus_um),
            "sensor": SYNTHETIC_SENSOR,
        }
    return GroundTruth(items, info, failures)
