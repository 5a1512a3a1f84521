"""One input file of a predict run: open it once, rate its planes, write its masks and overlays,
and build its ``results.csv`` rows.

`assess_file` rates a file's planes; `rate_file` does everything a run needs for one
`FileJob` and never raises for a bad input or an unwritable output.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..assessment import AssessOptions, ImageAssessment, assess
from ..errors import ImageReadError, MiqError
from ..io import ImageSource, ReadOptions
from ..io.lazy import LazyPlane
from ..messages import collapse_errors
from ..plates import plate_position
from ..resampling import resample_to_pixel_size
from .outputs import OutputOptions, output_stem, write_masks, write_overlay
from .tables import result_row

__all__ = [
    "PlaneResult",
    "PlaneSelection",
    "FileJob",
    "FileOutcome",
    "assess_file",
    "read_ahead",
    "rate_file",
    "failed_outcome",
]


@dataclass
class PlaneResult:
    """Result for one plane of one file; ``assessment`` is None when ``error`` is set."""

    file: str
    c: int
    z: int
    assessment: ImageAssessment | None = None
    error: str = ""
    image: np.ndarray | None = field(default=None, repr=False)
    n_planes: int = 1
    t: int = 0
    time_series: bool = False  # the file has several time points (output names get _t{t})
    overlay: str = ""  # path of the overlay relative to the output folder, once written
    pixel_size_um: float | None = None  # the pixel size the plane was taken to have (µm)
    pixel_size_from: str = ""  # where that came from: "option", "file" or "model"


@dataclass(frozen=True)
class PlaneSelection:
    """Which planes to rate: sets of channel, z and time indices (None = all)."""

    c: frozenset[int] | None = None
    z: frozenset[int] | None = None
    t: frozenset[int] | None = None

    def wants(self, plane) -> bool:
        return all(
            chosen is None or index in chosen
            for chosen, index in ((self.c, plane.c), (self.z, plane.z), (self.t, plane.t))
        )

    def __str__(self) -> str:
        parts = [
            f"{k} in {sorted(v)}"
            for k, v in (("c", self.c), ("z", self.z), ("t", self.t))
            if v is not None
        ]
        return " and ".join(parts) or "all planes"


def assess_file(
    path: str | os.PathLike | ImageSource,
    model=None,
    *,
    options: AssessOptions = AssessOptions(),
    keep_image: bool = False,
    select: PlaneSelection | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> list[PlaneResult]:
    """Assess every plane of an image file (or those ``select`` picks).

    ``path`` may be an open `miq.io.ImageSource` (then it is used, not reopened, and left
    open). A file that cannot be read gives one result with ``error`` set (c = z = −1); a plane
    that cannot be rated (too small, NaN, constant) gives a result with ``error`` for that plane.
    The pixel size follows `miq.AssessOptions.for_file`: ``options.pixel_size_um`` when given,
    else the one the file records (unless ``options.use_file_pixel_size`` is False; a recorded
    value that cannot be used gets one ``on_warning`` line), else the model's; planes are
    resampled to the model's pixel size when it differs, and each result records the size
    used and where it came from. Planes larger than `miq.large.LARGE_PLANE_PIXELS` are read and
    rated in bands (not resampled: they would have to be loaded whole; one warning line).
    """
    from ..model.runtime import default_model

    model = model or default_model()
    if isinstance(path, ImageSource):
        return _assess_source(path, model, options, keep_image, select, on_warning)
    name = os.fspath(path)
    try:
        source = ImageSource.open(path)
    except MiqError as exc:
        return [PlaneResult(name, -1, -1, error=str(exc))]
    with source:
        return _assess_source(source, model, options, keep_image, select, on_warning)


def _assess_source(
    source: ImageSource,
    model,
    options: AssessOptions,
    keep_image: bool,
    select: PlaneSelection | None,
    on_warning: Callable[[str], None] | None,
) -> list[PlaneResult]:
    from ..resampling import trusted_pixel_size

    name = source.name
    recorded = source.pixel_size_um if options.pixel_size_um is None else None
    trusted = trusted_pixel_size(recorded)
    if on_warning and recorded is not None and trusted is None and options.use_file_pixel_size:
        on_warning(f"{name}: recorded pixel size {recorded!r} µm is not usable; ignored")
    options, pixel_size, origin = options.for_file(trusted, model.pixel_size_um)
    if origin == "file" and options.pixel_size_um is not None and not _planes_read(source):
        from .. import large

        if source.largest_plane_pixels() > large.LARGE_PLANE_PIXELS:  # resampling: whole plane
            options = dataclasses.replace(options, pixel_size_um=None)
            if on_warning:
                on_warning(
                    f"{name}: planes too large to resample in memory; rated in bands at the "
                    f"recorded {pixel_size:.4g} µm/px (levels assume the model's "
                    f"{model.pixel_size_um:.4g}): give --pixel-size to resample them anyway"
                )
    results = _rate_source(source, model, options, keep_image, select)
    for r in results:
        if r.c != -1:
            r.pixel_size_um, r.pixel_size_from = pixel_size, origin
    return results


def _rate_source(
    source: ImageSource,
    model,
    options: AssessOptions,
    keep_image: bool,
    select: PlaneSelection | None,
) -> list[PlaneResult]:
    """Rate the planes of an open file with options fixed for it, within its memory budget
    (`miq.large.reading_plan`): all planes read at once, one plane at a time, or in bands when
    a plane is too large to load."""
    from .. import large
    from ..resampling import rescale_factor

    name = source.name
    try:
        scale = 1.0
        if options.pixel_size_um is not None:
            scale = rescale_factor(options.pixel_size_um, model.pixel_size_um)
        plan = large.reading_plan(source, scale=scale, patch_size=model.patch_size)
    except MiqError as exc:
        return [PlaneResult(name, -1, -1, error=str(exc))]
    if plan == "planes" and not _planes_read(source):  # memory ∝ one plane

        def rate_one(plane, label: str) -> ImageAssessment:
            data = large.read_plane(plane, label)
            return assess(data, model, options=options, name=label)

        return _rate_planes(name, source.lazy_planes(), select, rate_one, keep_image=keep_image)
    if plan == "bands" and not _planes_read(source):
        lazy = source.lazy_planes()
        if scale == 1.0:  # a pixel size within 2 % of the model's: nothing to resample
            options = dataclasses.replace(options, pixel_size_um=None)

        def rate_banded(plane, label: str) -> ImageAssessment:
            try:
                return large.assess_banded(plane, model, options=options, name=label)
            except MiqError:
                raise
            except Exception as exc:  # a lazily read chunk can be corrupt
                raise ImageReadError(
                    f"{label}: corrupt or unreadable image data ({type(exc).__name__}: {exc})"
                ) from None

        return _rate_planes(name, lazy, select, rate_banded)
    try:
        planes = source.planes(native_integers=True)
    except MiqError as exc:
        return [PlaneResult(name, -1, -1, error=str(exc))]
    return _rate_planes(
        name,
        planes,
        select,
        lambda plane, label: assess(plane.data, model, options=options, name=label),
        keep_image=keep_image,
    )


def _planes_read(source: ImageSource) -> bool:
    """True when the source's planes are already in memory (read ahead)."""
    return source.has_planes(native_integers=True)


def _rate_planes(
    name: str,
    planes: list,
    select: PlaneSelection | None,
    rate: Callable[[object, str], ImageAssessment],
    keep_image: bool = False,
) -> list[PlaneResult]:
    """Rate the selected planes (`miq.io.Plane` or `miq.io.lazy.LazyPlane`) of one
    file with ``rate(plane, label)``; a plane that cannot be rated gets a result with ``error``."""
    if select is not None:
        planes = [p for p in planes if select.wants(p)]
        if not planes:
            return [PlaneResult(name, -1, -1, error=f"{name}: no plane matches {select}")]
    time_series = len({p.t for p in planes}) > 1
    results = []
    for plane in planes:
        where = f"c={plane.c}, z={plane.z}"
        if time_series:
            where = f"t={plane.t}, {where}"
        label = name if len(planes) == 1 else f"{name} [{where}]"
        common = dict(n_planes=len(planes), t=plane.t, time_series=time_series)
        try:
            a = rate(plane, label)
            # a plane read on demand is kept as such (read again for its overlay), not its pixels
            image = (plane if isinstance(plane, LazyPlane) else plane.data) if keep_image else None
            results.append(PlaneResult(name, plane.c, plane.z, a, image=image, **common))
        except MiqError as exc:
            results.append(PlaneResult(name, plane.c, plane.z, error=str(exc), **common))
    return results


@dataclass(frozen=True)
class FileJob:
    """Everything needed to rate one input file and write its outputs (picklable: it travels to
    worker processes and Dask workers)."""

    path: Path
    stem: str  # output base name (unique within the run)
    out: Path
    options: AssessOptions = AssessOptions()
    outputs: OutputOptions = OutputOptions()
    select: PlaneSelection | None = None
    well_pattern: str | None = None
    read: ReadOptions = ReadOptions()


@dataclass
class FileOutcome:
    """What rating one file gave: its plane results (without pixels), CSV rows, failure counts,
    and the error and warning lines to report."""

    results: list[PlaneResult]
    rows: list[dict]
    failed_file: bool
    failed_planes: int
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)  # files written, relative to the folder
    complete: bool = True  # False when some output could not be written: not done yet


def read_ahead(job: FileJob) -> ImageSource | MiqError | None:
    """A job's file opened, with its planes read when it is to be rated whole (to overlap
    reading the next file with rating this one), or the error opening or reading it."""
    from .. import large

    try:
        source = job.read.open(job.path)
    except MiqError as exc:
        return exc
    try:
        if large.reading_plan(source) == "whole":  # fits the memory budget
            source.planes(native_integers=True)
    except MiqError:
        pass  # assess_file reports it, from the same source
    return source


def rate_file(job: FileJob, model, preread: ImageSource | MiqError | None = None) -> FileOutcome:
    """Rate every (selected) plane of one file, write its masks and overlays, build its rows.

    Never raises for a bad input or an unwritable output: they become errors of the outcome.
    ``preread``: the file `read_ahead` opened for this job (closed here), or the error it
    met. The file is opened once: ratings, pixel size and plate position all come from it.
    """
    warnings: list[str] = []
    if isinstance(preread, MiqError):
        source_or_error: ImageSource | MiqError = preread
    elif preread is not None:
        source_or_error = preread
    else:
        try:
            source_or_error = job.read.open(job.path)
        except MiqError as exc:
            source_or_error = exc
    if isinstance(source_or_error, MiqError):
        file_results = [PlaneResult(os.fspath(job.path), -1, -1, error=str(source_or_error))]
        position = plate_position(job.path, job.well_pattern, read_file=False)
        hint = None
    else:  # closed once the outputs are written: planes rated one at a time are read again
        source = source_or_error
        try:
            file_results = assess_file(
                source,
                model,
                options=job.options,
                keep_image=job.outputs.writes_overlays,
                select=job.select,
                on_warning=warnings.append,
            )
            position = plate_position(job.path, job.well_pattern, source=source)
            hint = _axis_hint(source, file_results, model.patch_size)
        except BaseException:
            source.close()
            raise
    failed_file = bool(file_results and file_results[0].c == -1)
    failed_planes = 0
    errors: list[str] = []
    outputs: list[str] = []
    complete = True
    for r in file_results:
        if r.error:
            if r.c != -1:  # a plane failed (a whole unreadable file is counted above)
                failed_planes += 1
            errors.append(r.error)
            continue
        written: list[str] = []  # known even when a later output fails: recorded, removable
        try:
            _write_plane_outputs(job, r, model, warnings, written)
        except (OSError, MiqError) as exc:
            r.error = f"{r.file}: cannot write outputs ({exc})"
            failed_planes += 1
            errors.append(r.error)
            complete = False
        outputs += written
        r.image = None
    if not isinstance(source_or_error, MiqError):
        source_or_error.close()
    rows = [result_row(r, model.n_levels, position) for r in file_results]
    errors = collapse_errors(errors)  # one line per file and kind of error, with a count
    if hint:
        errors = [f"{e} ({hint})" if _TOO_SMALL in e else e for e in errors]
    return FileOutcome(
        file_results, rows, failed_file, failed_planes, errors, warnings, outputs, complete
    )


_TOO_SMALL = "smaller than one"


def _axis_hint(source: ImageSource, results: list[PlaneResult], patch_size: int) -> str | None:
    """A hint about the file's axis order when every plane was too small to rate."""
    if not results or not all(_TOO_SMALL in r.error for r in results):
        return None
    try:
        return source.axis_hint(patch_size)
    except MiqError:
        return None


def _write_plane_outputs(
    job: FileJob, r: PlaneResult, model, warnings: list[str], written: list[str]
) -> None:
    """Masks and overlay of one rated plane (as the job asks); sets ``r.overlay``; appends
    each file to ``written`` (relative to the output folder) as soon as it is written."""
    stem = output_stem(r, job.stem)
    a, want = r.assessment, job.outputs
    overlay = want.wants_overlay(a)
    if a.banded and (want.masks == "per-pixel" or (overlay and not want.overlay_size)):
        warnings.append(
            f"{r.file}: plane of {a.grid.image_shape[1]}×{a.grid.image_shape[0]} px rated in "
            f"bands; masks are written with one pixel per patch (*_per_patch.tif), the overlay "
            f"at 1/{a.preview_factor} scale"
        )
    preview, a.preview = a.preview, None
    if want.masks != "none":
        per_patch = a.banded or want.masks == "per-patch"
        write_masks(job.out, stem, a, per_patch=per_patch, written=written)
    if not overlay:
        return
    title = Path(r.file).name
    if a.banded:
        r.overlay = write_overlay(
            job.out, stem, preview, a, title, a.preview_factor, want.overlay_size
        )
        written.append(r.overlay)
        return
    image = r.image
    if isinstance(image, LazyPlane):  # rated one plane at a time: read again
        from ..large import read_plane

        image = read_plane(image, r.file)
    if a.scale != 1.0:  # patch maps are resampled
        image = resample_to_pixel_size(image, a.pixel_size_um, model.pixel_size_um)
    r.overlay = write_overlay(job.out, stem, image, a, title, max_side=want.overlay_size)
    written.append(r.overlay)


def failed_outcome(job: FileJob, message: str, n_levels: int) -> FileOutcome:
    """The outcome of a file whose worker died or raised unexpectedly: one error row."""
    error = f"{job.path}: {message}"
    result = PlaneResult(str(job.path), -1, -1, error=error)
    try:
        position = plate_position(job.path, job.well_pattern)
    except Exception:  # the file itself may be what failed: no well then
        position = None
    return FileOutcome([result], [result_row(result, n_levels, position)], True, 0, [error])
