"""A best-focus run: stacks (multi-plane files, or folders of single-plane files) in, the best
plane of each stack and channel out (``best_focus.csv``, ``curves.csv``, ``curves/*.png``,
``best/*.tif``). The rule is `miq.best_focus.best_plane`."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..assessment import AssessOptions
from ..best_focus import DEFAULT_FINE_MEASURE, FocusCurveBuilder
from ..errors import MiqError
from ..io import ReadOptions, atomic_write, file_stem, write_rows_csv
from ..io.folder import OutputFolder

__all__ = ["FocusCurve", "focus_curves", "best_focus_files"]


@dataclass
class FocusCurve:
    """Per-plane focus of one stack, channel and time point ``t``, and its best plane.

    ``z`` plane indices, ``files`` the file of each plane, ``level_mean`` and ``certainty`` from
    the model, ``fine`` the fine measure's value (its own units), ``best`` an index into these
    arrays, ``rule`` which step of `best_plane` decided.
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
    best_data: np.ndarray | None = field(default=None, repr=False)  # with keep_best
    pixel_size_um: float | None = None  # the pixel size the planes were taken to have
    pixel_size_from: str = ""  # "option", "file" or "model"
    resampled: bool = False  # planes resampled to the model's pixel size

    @property
    def best_z(self) -> int:
        return self.z[self.best]

    @property
    def best_file(self) -> str:
        return self.files[self.best]


def focus_curves(
    stacks: list[list[Path]] | list[Path],
    model=None,
    *,
    fine_measure: str = DEFAULT_FINE_MEASURE,
    plateau: float = 0.5,
    options: AssessOptions = AssessOptions(),
    keep_best: bool = False,
    read: ReadOptions = ReadOptions(),
    on_error: Callable[[str], None] | None = None,
    progress: bool | None = None,
) -> list[FocusCurve]:
    """Focus curves of stacks: each item is one multi-plane file, or a list of single-plane files
    (one plane each, in the given order). One curve per stack, time point and channel; a plane
    or file that cannot be rated is reported through ``on_error`` and left out of its curve.
    Each file is opened once. ``keep_best``: keep each curve's best plane pixels (``best_data``).
    """
    from tqdm import tqdm

    from ..large import whole_planes
    from ..measures import MEASURES
    from ..model.runtime import default_model
    from ..resampling import rescale_factor

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
        builders: dict[tuple[int, int], FocusCurveBuilder] = {}  # (t, c) → its curve
        z_step = None
        pixel: tuple[float, str, bool] | None = None  # (µm, from, resampled) of the first file
        for index, path in enumerate(members):
            try:
                source = read.open(path)
            except MiqError as exc:
                if on_error:
                    on_error(str(exc))
                continue
            with source:
                try:
                    if len(members) == 1:
                        z_step = source.z_step_um
                    file_options, size, origin = options.for_file(
                        source.pixel_size_um, model.pixel_size_um
                    )
                    scale = rescale_factor(size, model.pixel_size_um)
                    several = len(source.lazy_planes() or source.planes(native_integers=True)) > 1
                    # all planes at once when they fit the memory budget, else one at a time
                    for plane in whole_planes(source, scale=scale, patch_size=model.patch_size):
                        if pixel is None:
                            pixel = (size, origin, scale != 1.0)
                        z = index if len(members) > 1 else plane.z
                        label = f"{path} [c={plane.c}, z={plane.z}]" if several else str(path)
                        builder = builders.setdefault(
                            (plane.t, plane.c),
                            FocusCurveBuilder(
                                model,
                                fine_measure=fine_measure,
                                plateau=plateau,
                                options=options,
                                keep_best=keep_best,
                            ),
                        )
                        try:
                            builder.add(z, plane.data, label, tag=str(path), options=file_options)
                        except MiqError as exc:
                            if on_error:
                                on_error(str(exc))
                except MiqError as exc:  # unreadable, or over the memory budget
                    if on_error:
                        on_error(str(exc))
        for (t, c), builder in sorted(builders.items()):
            found = builder.finish()
            if found is None:
                continue
            curves.append(
                FocusCurve(
                    name,
                    c,
                    found.z,
                    found.tags,
                    found.level_mean,
                    found.certainty,
                    found.fine,
                    fine_measure,
                    found.best,
                    found.rule,
                    t,
                    z_step,
                    found.best_data,
                    *(pixel or (None, "", False)),
                )
            )
    return curves


def _curve_png(curve: FocusCurve, path: Path) -> None:
    from ..plots import _figure, _save

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
    overwrite: bool = False,
    fine_measure: str = DEFAULT_FINE_MEASURE,
    plateau: float = 0.5,
    options: AssessOptions = AssessOptions(),
    save_best: bool = False,
    read: ReadOptions = ReadOptions(),
    on_error: Callable[[str], None] | None = None,
    progress: bool | None = None,
) -> list[FocusCurve]:
    """Find the best plane of each stack; write ``best_focus.csv`` (one row per stack and
    channel), ``curves.csv`` (one row per plane), ``curves/<stack>_c<c>.png`` (with matplotlib)
    and, with ``save_best``, ``best/<stack>_c<c>.tif`` (the best plane as read: integers in their own type with
    their exact values, floats as float32).
    ``out_dir`` follows `miq.io.folder.OutputFolder` (a non-empty folder needs ``overwrite``)."""
    import tifffile

    from ..plots import plots_available

    out = Path(out_dir)
    folder = OutputFolder.prepare(
        out,
        command="best-focus",
        settings={"fine_measure": fine_measure, "plateau": plateau, "save_best": save_best},
        overwrite=overwrite,
        inputs=[f for s in stacks for f in (s if isinstance(s, list | tuple) else [s])],
    )
    with folder:  # locked until the end, however it ends
        curves = focus_curves(
            stacks,
            model,
            fine_measure=fine_measure,
            plateau=plateau,
            options=options,
            keep_best=save_best,
            read=read,
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
                    "pixel_size_um": ""
                    if curve.pixel_size_um is None
                    else f"{curve.pixel_size_um:.6g}",
                    "pixel_size_from": curve.pixel_size_from,
                    "resampled": int(curve.resampled),
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
            if save_best:  # the plane as read: integers in their own type, floats as float32
                with atomic_write(out / "best" / f"{stem}.tif") as fh:
                    tifffile.imwrite(fh, curve.best_data, metadata={"axes": "YX"})
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
                "pixel_size_um",
                "pixel_size_from",
                "resampled",
            ],
            summary_rows,
        )
        write_rows_csv(
            out / "curves.csv",
            ["stack", "t", "c", "z", "file", "level_mean", "certainty", fine_measure, "best"],
            plane_rows,
        )
        folder.record_new_files()
        folder.save()
    return curves
