"""The orchestrator: files → planes → assessments → CSV rows, masks and overlays.

The CLI, the demo and any other front end call :func:`predict_files` (or :func:`assess_file`)
and never re-implement a step. Every output file is written atomically (temp file + rename).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .assessment import AssessOptions, ImageAssessment, assess
from .errors import ImageReadError, MiqError
from .io import atomic_write, file_stem, read_planes, write_rows_csv
from .plates import WELL_COLUMNS, WellSite, plate_position, well_aggregates
from .resampling import resample_to_pixel_size

__all__ = [
    "PlaneResult",
    "PlaneSelection",
    "assess_file",
    "predict_files",
    "measure_files",
    "RunSummary",
    "csv_columns",
    "write_csv",
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
    overlay: str = ""  # path of the overlay PNG relative to the output folder, once written


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
    path: str | os.PathLike,
    model=None,
    *,
    options: AssessOptions = AssessOptions(),
    keep_image: bool = False,
    rescale: bool = False,
    select: PlaneSelection | None = None,
    on_warning: Callable[[str], None] | None = None,
    preread: list | MiqError | None = None,
) -> list[PlaneResult]:
    """Assess every plane of an image file (or those ``select`` picks).

    A file that cannot be read gives one result with ``error`` set (c = z = −1); a plane that
    cannot be rated (too small, NaN, constant) gives a result with ``error`` for that plane.
    When ``options.pixel_size_um`` is None and the file records a pixel size (OME or ImageJ
    calibration) that differs from the model's: with ``rescale`` the planes are resampled to the
    model's pixel size; otherwise ``on_warning`` gets one line saying so. ``preread``: the
    file's planes (or the error reading them) when already read, e.g. by :func:`read_ahead`.
    """
    from .io import read_pixel_size
    from .large import LARGE_PLANE_PIXELS, assess_banded, lazy_planes
    from .model.runtime import default_model
    from .resampling import rescale_factor

    name = os.fspath(path)
    model = model or default_model()
    recorded = read_pixel_size(path) if options.pixel_size_um is None else None
    if recorded and rescale_factor(recorded, model.pixel_size_um) != 1.0:
        if rescale:
            options = dataclasses.replace(options, pixel_size_um=recorded)
        elif on_warning:
            on_warning(
                f"{name}: pixel size {recorded:.4g} µm (from the file) differs from the model's "
                f"{model.pixel_size_um:.4g} µm; levels assume the model's: use --rescale to "
                "resample (or --pixel-size)"
            )
    if preread is None and options.pixel_size_um is None:  # too large to load: in bands
        with lazy_planes(path) as lazy:
            if lazy and lazy[0].shape[0] * lazy[0].shape[1] > LARGE_PLANE_PIXELS:

                def rate_banded(plane, label: str) -> ImageAssessment:
                    try:
                        return assess_banded(plane, model, options=options, name=label)
                    except MiqError:
                        raise
                    except Exception as exc:  # a lazily read chunk can be corrupt
                        raise ImageReadError(
                            f"{label}: corrupt or unreadable image data ({type(exc).__name__}: "
                            f"{exc})"
                        ) from None

                return _rate_planes(name, lazy, select, rate_banded)
    try:
        if isinstance(preread, MiqError):
            raise preread
        planes = read_planes(path, native_integers=True) if preread is None else preread
    except MiqError as exc:
        return [PlaneResult(name, -1, -1, error=str(exc))]
    return _rate_planes(
        name,
        planes,
        select,
        lambda plane, label: assess(plane.data, model, options=options, name=label),
        keep_image=keep_image,
    )


def read_ahead(job: FileJob) -> list | MiqError | None:
    """A job's planes read in advance (to overlap reading the next file with rating this one),
    or the error reading them; None when the file is to be read in bands, or resampled."""
    from .large import LARGE_PLANE_PIXELS, lazy_planes

    if job.options.pixel_size_um is not None or job.rescale:
        return None
    with lazy_planes(job.path) as lazy:
        if lazy and lazy[0].shape[0] * lazy[0].shape[1] > LARGE_PLANE_PIXELS:
            return None
    try:
        return read_planes(job.path, native_integers=True)
    except MiqError as exc:
        return exc


def _rate_planes(
    name: str,
    planes: list,
    select: PlaneSelection | None,
    rate: Callable[[object, str], ImageAssessment],
    keep_image: bool = False,
) -> list[PlaneResult]:
    """Rate the selected planes (:class:`miq.io.Plane` or :class:`miq.large.LazyPlane`) of one
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
            image = plane.data if keep_image else None
            results.append(PlaneResult(name, plane.c, plane.z, a, image=image, **common))
        except MiqError as exc:
            results.append(PlaneResult(name, plane.c, plane.z, error=str(exc), **common))
    return results


def csv_columns(n_levels: int) -> list[str]:
    """Column names of ``results.csv``."""
    return (
        [
            "file",
            "t",
            "c",
            "z",
            "well",
            "site",
            "level",
            "level_mean",
            "defocus_um",
            "certainty",
            "certainty_mean",
            "certainty_max",
            "certainty_weighted",
            "p_in_focus",
            "in_focus",
            "n_patches",
        ]
        + [f"prob_{k}" for k in range(n_levels)]
        + ["overlay", "error"]
    )


def _row(result: PlaneResult, n_levels: int, position: WellSite | None = None) -> dict:
    row = {col: "" for col in csv_columns(n_levels)}
    row.update(
        file=result.file,
        t=result.t,
        c=result.c,
        z=result.z,
        overlay=result.overlay,
        error=result.error,
    )
    if position is not None:
        row.update(well=position.well, site="" if position.site is None else position.site)
    if result.assessment is not None:
        for key, value in result.assessment.summary().items():
            if isinstance(value, bool):
                row[key] = int(value)
            elif isinstance(value, float):
                row[key] = f"{value:.6g}"
            else:
                row[key] = value
    return row


def write_csv(path: str | os.PathLike, results: Iterable[PlaneResult], n_levels: int) -> None:
    """Write ``results.csv`` (one row per plane) atomically."""
    positions: dict[str, WellSite | None] = {}
    rows = []
    for r in results:
        if r.file not in positions:
            positions[r.file] = plate_position(r.file)
        rows.append(_row(r, n_levels, positions[r.file]))
    write_rows_csv(path, csv_columns(n_levels), rows)


def _output_stem(result: PlaneResult, base: str) -> str:
    if result.n_planes == 1:
        return base
    time = f"_t{result.t}" if result.time_series else ""
    return f"{base}{time}_c{result.c}_z{result.z}"


def _write_masks(out_dir: Path, stem: str, a: ImageAssessment, per_patch: bool = False) -> None:
    """Level, certainty and validity maps, per pixel (``{stem}_level.tif`` …), or with
    ``per_patch`` one pixel per patch (``{stem}_level_per_patch.tif`` …, grid rows × columns)."""
    import tifffile

    from .tiling import paint

    maps = {
        "level": a.patch_level.astype(np.int16),
        "certainty": a.patch_certainty.astype(np.float32),
        "valid": a.patch_valid.astype(np.uint8),
    }
    for kind, values in maps.items():
        data = values if per_patch else paint(values, a.grid)
        suffix = "_per_patch" if per_patch else ""
        with atomic_write(out_dir / "masks" / f"{stem}_{kind}{suffix}.tif") as fh:
            tifffile.imwrite(fh, data, compression="zlib", metadata={"axes": "YX"})


def _write_overlay(
    out_dir: Path, stem: str, image: np.ndarray, a: ImageAssessment, title: str, downsample: int = 1
) -> str:
    """Write ``overlays/{stem}.png``; returns that path relative to ``out_dir`` (POSIX form).
    ``image`` may be the plane subsampled by ``downsample`` (see :func:`miq.render.overlay_image`)."""
    from .render import overlay_image

    picture = overlay_image(image, a, title=title, downsample=downsample)
    relative = f"overlays/{stem}.png"
    with atomic_write(out_dir / relative) as fh:
        picture.save(fh, format="PNG")
    return relative


@dataclass
class RunSummary:
    """What a prediction run did."""

    results: list[PlaneResult]  # the first MAX_KEPT_RESULTS planes rated in this run
    # (in completion order; not those resumed): every plane is in ``rows``
    csv_path: Path
    n_files: int
    n_failed_files: int
    n_failed_planes: int
    rows: list[dict] = field(default_factory=list)  # every results.csv row, in input order
    n_resumed_files: int = 0  # files taken from an interrupted run's journal

    @property
    def ok(self) -> bool:
        return self.n_failed_files == 0 and self.n_failed_planes == 0


def _unique_stems(files: list[Path]) -> dict[str, str]:
    """Output base name per file: the file stem, suffixed _2, _3 … when stems repeat."""
    used: dict[str, int] = {}
    stems = {}
    for f in files:
        stem = file_stem(f)
        n = used.get(stem, 0) + 1
        used[stem] = n
        stems[str(f)] = stem if n == 1 else f"{stem}_{n}"
    return stems


JOURNAL_NAME = ".miq-progress.jsonl"


def _file_key(path: Path) -> str:
    """Identity of an input for --resume: its path, size and modification time."""
    try:
        st = path.stat()
        return f"{os.fspath(path)}|{st.st_size}|{st.st_mtime_ns}"
    except OSError:
        return f"{os.fspath(path)}|unreadable"


def _read_journal(path: Path) -> dict[str, dict]:
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


def _append_journal(path: Path, entry: dict) -> None:
    """Append one completed file durably (flushed and fsynced) before moving on."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _prepare_output(out: Path, resume: bool, overwrite: bool) -> dict[str, dict]:
    """Check the output folder and return the files a previous run already completed."""
    from .errors import OutputError

    out.mkdir(parents=True, exist_ok=True)
    journal = out / JOURNAL_NAME
    if resume:
        if journal.exists() and journal.stat().st_size:
            with open(journal, "rb+") as fh:  # end a line torn by the kill before appending
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")
        return _read_journal(journal)
    if any(out.iterdir()) and not overwrite:
        raise OutputError(
            f"{out}: output folder is not empty; use --resume to finish an interrupted run "
            "there, or --overwrite to replace its results"
        )
    journal.unlink(missing_ok=True)
    return {}


@dataclass(frozen=True)
class FileJob:
    """Everything needed to rate one input file and write its outputs (picklable: it travels to
    worker processes and Dask workers)."""

    path: Path
    stem: str  # output base name (unique within the run)
    out: Path
    options: AssessOptions = AssessOptions()
    write_masks: bool = True
    write_overlays: bool = True
    rescale: bool = False
    select: PlaneSelection | None = None
    well_pattern: str | None = None


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


def rate_file(job: FileJob, model, preread: list | MiqError | None = None) -> FileOutcome:
    """Rate every (selected) plane of one file, write its masks and overlays, build its rows.

    Never raises for a bad input or an unwritable output: they become errors of the outcome.
    ``preread``: the planes :func:`read_ahead` read for this job, if it did.
    """
    warnings: list[str] = []
    file_results = assess_file(
        job.path,
        model,
        options=job.options,
        keep_image=job.write_overlays,
        rescale=job.rescale,
        select=job.select,
        on_warning=warnings.append,
        preread=preread,
    )
    failed_file = bool(file_results and file_results[0].c == -1)
    failed_planes = 0
    errors = []
    for r in file_results:
        if r.error:
            if r.c != -1:  # a plane failed (a whole unreadable file is counted above)
                failed_planes += 1
            errors.append(r.error)
            continue
        stem = _output_stem(r, job.stem)
        banded = bool(r.assessment.extra.get("banded"))
        preview = r.assessment.extra.pop("preview", None)
        factor = r.assessment.extra.get("preview_factor", 1)
        if banded and (job.write_masks or job.write_overlays):
            warnings.append(
                f"{r.file}: plane of {r.assessment.grid.image_shape[1]}×"
                f"{r.assessment.grid.image_shape[0]} px rated in bands; masks are written with "
                f"one pixel per patch (*_per_patch.tif), the overlay at 1/{factor} scale"
            )
        try:
            if job.write_masks:
                _write_masks(job.out, stem, r.assessment, per_patch=banded)
            if job.write_overlays and banded:
                r.overlay = _write_overlay(
                    job.out, stem, preview, r.assessment, Path(r.file).name, downsample=factor
                )
            elif job.write_overlays:
                image = r.image
                if r.assessment.extra.get("scale", 1.0) != 1.0:  # patch maps are resampled
                    image = resample_to_pixel_size(
                        image, r.assessment.extra["pixel_size_um"], model.pixel_size_um
                    )
                r.overlay = _write_overlay(
                    job.out, stem, image, r.assessment, title=Path(r.file).name
                )
        except (OSError, MiqError) as exc:
            r.error = f"{r.file}: cannot write outputs ({exc})"
            failed_planes += 1
            errors.append(r.error)
        r.image = None
    position = plate_position(job.path, job.well_pattern)
    rows = [_row(r, model.n_levels, position) for r in file_results]
    return FileOutcome(file_results, rows, failed_file, failed_planes, errors, warnings)


def failed_outcome(job: FileJob, message: str, n_levels: int) -> FileOutcome:
    """The outcome of a file whose worker died or raised unexpectedly: one error row."""
    error = f"{job.path}: {message}"
    result = PlaneResult(str(job.path), -1, -1, error=error)
    try:
        position = plate_position(job.path, job.well_pattern)
    except Exception:  # the file itself may be what failed: no well then
        position = None
    return FileOutcome([result], [_row(result, n_levels, position)], True, 0, [error])


MAX_KEPT_RESULTS = 1000  # RunSummary.results keeps the first planes only (rows keep all)


def predict_files(
    files: list[Path],
    out_dir: str | os.PathLike,
    model=None,
    *,
    options: AssessOptions = AssessOptions(),
    write_masks: bool = True,
    write_overlays: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    well_pattern: str | None = None,
    rescale: bool = False,
    select: PlaneSelection | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    read_ahead: bool = True,
    progress: bool | None = None,
    on_error: Callable[[str], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> RunSummary:
    """Assess files and write ``results.csv``, masks (TIFF) and overlays (PNG) into ``out_dir``.

    The model is loaded once (per worker); a file that fails is reported through ``on_error``
    (one line) and gets a CSV row with ``error`` filled, and the run goes on. Each completed file
    is recorded in ``out_dir/.miq-progress.jsonl`` as it completes, so a killed run restarted
    with ``resume=True`` rates only the missing files and writes the same ``results.csv`` (rows
    in input order) as an uninterrupted run. A non-empty ``out_dir`` is refused unless
    ``resume`` or ``overwrite`` is given (raises :class:`miq.errors.OutputError`). Wells and
    sites come from OME plate metadata or file names (:func:`miq.plates.plate_position`; with
    ``well_pattern``, from names only); when any file has a well, ``wells.csv`` gets one row per
    well.

    ``workers`` > 1 rates files in that many local processes (one inference thread each unless
    the model was loaded with more); ``scheduler`` (a Dask distributed scheduler address such as
    ``tcp://host:8786``, or a ``distributed.Client``) sends them to a cluster whose workers see
    the same files and output folder. See :mod:`miq.parallel`. ``read_ahead`` (one process):
    read the next file in a thread while the current one is rated.
    """
    from tqdm import tqdm

    from .model.runtime import default_model
    from .parallel import run_jobs

    model = model or default_model()
    out = Path(out_dir)
    done = _prepare_output(out, resume, overwrite)
    journal = out / JOURNAL_NAME
    stems = _unique_stems(files)
    keys = [_file_key(f) for f in files]
    rows_of: list[list[dict] | None] = [None] * len(files)
    results: list[PlaneResult] = []
    failed_files = failed_planes = resumed = 0
    jobs: dict[int, FileJob] = {}
    for index, (f, key) in enumerate(zip(files, keys)):
        if key in done:
            entry = done[key]
            rows_of[index] = entry["rows"]
            failed_files += entry["failed_file"]
            failed_planes += entry["failed_planes"]
            resumed += 1
        else:
            jobs[index] = FileJob(
                f,
                stems[str(f)],
                out,
                options,
                write_masks,
                write_overlays,
                rescale,
                select,
                well_pattern,
            )
    bar = tqdm(
        total=len(files),
        initial=resumed,
        desc="miq predict",
        unit="file",
        disable=None if progress is None else not progress,
        file=sys.stderr,
    )
    outcomes = run_jobs(jobs, model, workers=workers, scheduler=scheduler, read_ahead=read_ahead)
    for index, outcome in outcomes:
        for line in outcome.warnings:
            if on_warning:
                on_warning(line)
        for line in outcome.errors:
            if on_error:
                on_error(line)
        _append_journal(
            journal,
            {
                "key": keys[index],
                "rows": outcome.rows,
                "failed_file": int(outcome.failed_file),
                "failed_planes": outcome.failed_planes,
            },
        )
        failed_files += outcome.failed_file
        failed_planes += outcome.failed_planes
        if len(results) < MAX_KEPT_RESULTS:
            results.extend(outcome.results[: MAX_KEPT_RESULTS - len(results)])
        rows_of[index] = outcome.rows
        bar.update()
    bar.close()
    rows = [row for file_rows in rows_of for row in file_rows or []]
    csv_path = out / "results.csv"
    write_rows_csv(csv_path, csv_columns(model.n_levels), rows)
    wells = well_aggregates(rows)
    if wells:
        write_rows_csv(out / "wells.csv", WELL_COLUMNS, wells)
    _write_run_info(
        out,
        model,
        options,
        len(files),
        rescale=rescale,
        selection=str(select or PlaneSelection()),
        well_pattern=well_pattern,
        resumed_files=resumed,
        workers=workers,
        scheduler=str(scheduler) if scheduler else None,
    )
    return RunSummary(results, csv_path, len(files), failed_files, failed_planes, rows, resumed)


def _write_run_info(out: Path, model, options: AssessOptions, n_files: int, **run) -> None:
    from . import __version__

    info = {
        "miq_version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "model": {
            "path": str(model.path),
            "name": model.name,
            "onnx_sha256": model.package.weight_sha256("onnx"),
            "um_per_level": model.um_per_level,
            "patch_size": model.patch_size,
        },
        "options": {
            "in_focus_levels": options.in_focus_levels,
            "in_focus_threshold": options.in_focus_threshold,
            "pixel_size_um": options.pixel_size_um,
            **run,
        },
        "n_files": n_files,
    }
    with atomic_write(out / "run.json", "w") as fh:
        fh.write(json.dumps(info, indent=2))


def measure_files(
    files: list[Path],
    out_dir: str | os.PathLike,
    *,
    on_error: Callable[[str], None] | None = None,
) -> tuple[Path, int]:
    """Classical focus measures of every plane of every file → ``out_dir/measures.csv``.

    Columns: ``file, t, c, z``, one per measure of :data:`miq.measures.MEASURES`, ``error``.
    Returns the CSV path and the number of failed files or planes.
    """
    from .io import check_plane
    from .measures import MEASURES, measure_all

    rows: list[dict] = []
    failures = 0
    for f in files:
        try:
            planes = read_planes(f)
        except MiqError as exc:
            planes, failures = [], failures + 1
            rows.append({"file": str(f), "t": -1, "c": -1, "z": -1, "error": str(exc)})
            if on_error:
                on_error(str(exc))
        for plane in planes:
            row: dict = {"file": str(f), "t": plane.t, "c": plane.c, "z": plane.z, "error": ""}
            try:
                check_plane(plane.data, str(f), min_side=3)
                row.update({k: f"{v:.8g}" for k, v in measure_all(plane.data).items()})
            except MiqError as exc:
                failures += 1
                row["error"] = str(exc)
                if on_error:
                    on_error(str(exc))
            rows.append(row)
    path = Path(out_dir) / "measures.csv"
    write_rows_csv(path, ["file", "t", "c", "z", *MEASURES, "error"], rows)
    return path, failures
