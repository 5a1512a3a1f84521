"""The best-focused plane of a z-stack: the model's absolute curve, refined by a fine measure.

Rule (:func:`best_plane`), per stack and channel:

1. The model rates every plane; its expected level (``level_mean``) is an absolute focus curve.
2. The *in-focus plateau* is every plane whose expected level is within ``plateau`` levels
   (default 0.5) of the curve's minimum. A level is ~2 µm of defocus at NA 0.5, so on fine stacks
   (sub-µm steps) many planes share the minimum and the model alone cannot rank them.
3. One plane on the plateau → it is the best (rule ``model``). Several → the plateau plane with
   the highest fine sharpness measure (default CellProfiler's FocusScore, the normalised
   variance) is the best (rule ``model+focus_score``). The measure ranks planes of one stack only,
   where its dependence on gain and content does not matter; the model keeps it from picking a
   sharp-looking plane far from focus (dust, a bright out-of-focus blob).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .assessment import AssessOptions, assess
from .errors import MiqError
from .io import atomic_write, file_stem, read_planes, read_z_step, write_rows_csv
from .measures import MEASURES, defocus_score

__all__ = ["FocusCurve", "best_plane", "sharpness", "focus_curves", "best_focus_files"]

DEFAULT_FINE_MEASURE = "focus_score"


@dataclass
class FocusCurve:
    """Per-plane focus of one stack, channel and time point ``t``, and its best plane.

    ``z`` plane indices, ``files`` the file of each plane, ``level_mean`` and ``certainty`` from
    the model, ``fine`` the fine measure's value (its own units), ``best`` an index into these
    arrays, ``rule`` which step of :func:`best_plane` decided.
    """

    stack: str
    c: int
    z: list[int]
    files: list[str]
    level_mean: np.ndarray
    certainty: np.ndarray
    fine: np.ndarray
    fine_measure: str
    best: int
    rule: str
    t: int = 0
    z_step_um: float | None = None  # from the file's metadata, when recorded

    @property
    def best_z(self) -> int:
        return self.z[self.best]

    @property
    def best_file(self) -> str:
        return self.files[self.best]


def best_plane(
    level_mean, fine_sharpness, *, plateau: float = 0.5, fine_measure: str = "fine measure"
) -> tuple[int, str]:
    """Index of the best plane and the rule that decided (see the module docstring).

    level_mean : (Z,) the model's expected level per plane (lower = sharper).
    fine_sharpness : (Z,) a sharpness measure per plane (higher = sharper).
    """
    levels = np.asarray(level_mean, dtype=np.float64)
    sharpness = np.asarray(fine_sharpness, dtype=np.float64)
    if levels.size == 0:
        raise ValueError("no planes")
    if levels.size == 1:
        return 0, "single plane"
    plateau_planes = np.flatnonzero(levels <= levels.min() + plateau)
    if plateau_planes.size == 1:
        return int(plateau_planes[0]), "model"
    return int(plateau_planes[np.argmax(sharpness[plateau_planes])]), f"model+{fine_measure}"


def sharpness(plane: np.ndarray, fine_measure: str = DEFAULT_FINE_MEASURE) -> float:
    """A plane's sharpness by the fine measure (higher = sharper), as :func:`best_plane` takes
    it: the measure's value, sign-flipped for measures where blurrier scores higher."""
    return -defocus_score(fine_measure, MEASURES[fine_measure](plane))


def focus_curves(
    stacks: list[list[Path]] | list[Path],
    model=None,
    *,
    fine_measure: str = DEFAULT_FINE_MEASURE,
    plateau: float = 0.5,
    options: AssessOptions = AssessOptions(),
    on_error: Callable[[str], None] | None = None,
    progress: bool | None = None,
) -> list[FocusCurve]:
    """Focus curves of stacks: each item is one multi-plane file, or a list of single-plane files
    (one plane each, in the given order). One curve per stack, time point and channel; a plane
    or file that cannot be rated is reported through ``on_error`` and left out of its curve.
    """
    from tqdm import tqdm

    from .model.runtime import default_model

    if fine_measure not in MEASURES:
        raise ValueError(f"unknown measure {fine_measure!r}; choose from {', '.join(MEASURES)}")
    model = model or default_model()
    curves = []
    for stack in tqdm(
        stacks,
        desc="miq best-focus",
        unit="stack",
        file=sys.stderr,
        disable=None if progress is None else not progress,
    ):
        members = [Path(p) for p in stack] if isinstance(stack, list) else [Path(stack)]
        name = str(members[0].parent if len(members) > 1 else members[0])
        per_channel: dict[tuple[int, int], list[tuple]] = {}  # (t, c) → planes
        for index, path in enumerate(members):
            try:
                planes = read_planes(path)
            except MiqError as exc:
                if on_error:
                    on_error(str(exc))
                continue
            for plane in planes:
                z = index if len(members) > 1 else plane.z
                label = f"{path} [c={plane.c}, z={plane.z}]" if len(planes) > 1 else str(path)
                try:
                    a = assess(plane.data, model, options=options, name=label)
                except MiqError as exc:
                    if on_error:
                        on_error(str(exc))
                    continue
                sharp = sharpness(plane.data, fine_measure)
                per_channel.setdefault((plane.t, plane.c), []).append(
                    (z, str(path), a.level_mean, a.certainty, sharp)
                )
        for (t, c), rows in sorted(per_channel.items()):
            rows.sort(key=lambda r: r[0])
            z, files, levels, certainty, sharp = (list(x) for x in zip(*rows))
            best, rule = best_plane(levels, sharp, plateau=plateau, fine_measure=fine_measure)
            curves.append(
                FocusCurve(
                    name,
                    c,
                    z,
                    files,
                    np.array(levels),
                    np.array(certainty),
                    np.array(sharp),
                    fine_measure,
                    best,
                    rule,
                    t,
                    read_z_step(members[0]) if len(members) == 1 else None,
                )
            )
    return curves


def _curve_png(curve: FocusCurve, path: Path) -> None:
    from .plots import _figure, _save

    fig = _figure(6.0, 3.6)
    ax = fig.subplots()
    ax.plot(curve.z, curve.level_mean, "o-", color="#4c72b0", ms=3, label="miq expected level")
    step = f", {curve.z_step_um:.3g} µm apart" if curve.z_step_um else ""
    ax.set_xlabel(f"plane (z index{step})")
    ax.set_ylabel("expected defocus level", color="#4c72b0")
    ax.set_ylim(-0.3, max(10.3, float(curve.level_mean.max()) + 0.3))
    ax.axvline(curve.best_z, color="#c44e52", lw=1.5, label=f"best plane {curve.best_z}")
    twin = ax.twinx()
    twin.plot(curve.z, curve.fine, "s--", color="#8c8c8c", ms=2, lw=1, label=curve.fine_measure)
    twin.set_ylabel(curve.fine_measure, color="#8c8c8c")
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title(f"{Path(curve.stack).name} c={curve.c}: rule {curve.rule}", fontsize=8)
    _save(fig, path)


def _stem(curve: FocusCurve) -> str:
    time = f"_t{curve.t}" if curve.t else ""
    return f"{file_stem(curve.stack)}{time}_c{curve.c}"


def best_focus_files(
    stacks: list[list[Path]] | list[Path],
    out_dir: str | os.PathLike,
    model=None,
    *,
    fine_measure: str = DEFAULT_FINE_MEASURE,
    plateau: float = 0.5,
    options: AssessOptions = AssessOptions(),
    save_best: bool = False,
    on_error: Callable[[str], None] | None = None,
    progress: bool | None = None,
) -> list[FocusCurve]:
    """Find the best plane of each stack; write ``best_focus.csv`` (one row per stack and
    channel), ``curves.csv`` (one row per plane), ``curves/<stack>_c<c>.png`` (with matplotlib)
    and, with ``save_best``, ``best/<stack>_c<c>.tif`` (the best plane, original pixel type)."""
    import tifffile

    from .plots import plots_available

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    curves = focus_curves(
        stacks,
        model,
        fine_measure=fine_measure,
        plateau=plateau,
        options=options,
        on_error=on_error,
        progress=progress,
    )
    summary_rows, plane_rows = [], []
    stems: dict[str, int] = {}
    draw = plots_available()
    for curve in curves:
        stem = _stem(curve)
        stems[stem] = stems.get(stem, 0) + 1
        if stems[stem] > 1:
            stem = f"{stem}_{stems[stem]}"
        summary_rows.append(
            {
                "stack": curve.stack,
                "t": curve.t,
                "c": curve.c,
                "best_z": curve.best_z,
                "best_file": curve.best_file,
                "rule": curve.rule,
                "n_planes": len(curve.z),
                "best_level_mean": f"{curve.level_mean[curve.best]:.4g}",
                "best_certainty": f"{curve.certainty[curve.best]:.4g}",
                "z_step_um": "" if curve.z_step_um is None else f"{curve.z_step_um:.4g}",
            }
        )
        for i, z in enumerate(curve.z):
            plane_rows.append(
                {
                    "stack": curve.stack,
                    "t": curve.t,
                    "c": curve.c,
                    "z": z,
                    "file": curve.files[i],
                    "level_mean": f"{curve.level_mean[i]:.6g}",
                    "certainty": f"{curve.certainty[i]:.6g}",
                    curve.fine_measure: f"{curve.fine[i]:.8g}",
                    "best": int(i == curve.best),
                }
            )
        if draw:
            _curve_png(curve, out / "curves" / f"{stem}.png")
        if save_best:
            data = _integer_if_integral(_best_plane_data(curve))
            with atomic_write(out / "best" / f"{stem}.tif") as fh:
                tifffile.imwrite(fh, data, metadata={"axes": "YX"})
    write_rows_csv(
        out / "best_focus.csv",
        [
            "stack",
            "t",
            "c",
            "best_z",
            "best_file",
            "rule",
            "n_planes",
            "best_level_mean",
            "best_certainty",
            "z_step_um",
        ],
        summary_rows,
    )
    write_rows_csv(
        out / "curves.csv",
        ["stack", "t", "c", "z", "file", "level_mean", "certainty", fine_measure, "best"],
        plane_rows,
    )
    return curves


def _best_plane_data(curve: FocusCurve) -> np.ndarray:
    """The pixels of the best plane (re-read from its file)."""
    one_file_stack = len(set(curve.files)) == 1
    for plane in read_planes(curve.best_file):
        if (plane.t, plane.c) == (curve.t, curve.c) and (
            not one_file_stack or plane.z == curve.best_z
        ):
            return plane.data
    raise MiqError(f"{curve.best_file}: plane c={curve.c}, z={curve.best_z} no longer readable")


def _integer_if_integral(data: np.ndarray) -> np.ndarray:
    """Planes are read as float32: integer-valued ones are written as uint16 (uint32 above
    65535), anything else as float32."""
    if data.min() >= 0 and np.all(data == np.round(data)):
        return data.astype(np.uint16 if data.max() <= 65535 else np.uint32)
    return data
