"""A predict run: files in, one output folder out (``results.csv``, ``wells.csv``, ``run.json``,
masks, overlays), resumable after a kill, in this process, local processes or on Dask."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..assessment import AssessOptions
from ..errors import OutputError
from ..io import ReadOptions, atomic_write, write_rows_csv
from ..io.folder import OutputFolder
from ..plates import WELL_COLUMNS, well_aggregates
from .file_job import FileJob, PlaneResult, PlaneSelection
from .journal import JOURNAL_NAME, append_journal, completed_files, file_key, journal_outputs
from .outputs import OutputOptions, unique_stems
from .tables import csv_columns

__all__ = ["predict_files", "RunSummary", "MAX_KEPT_RESULTS"]


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
    write_errors: list[str] = field(default_factory=list)  # run files that could not be written

    @property
    def ok(self) -> bool:
        return self.n_failed_files == 0 and self.n_failed_planes == 0 and not self.write_errors


MAX_KEPT_RESULTS = 1000  # RunSummary.results keeps the first planes only (rows keep all)


def predict_files(
    files: list[Path],
    out_dir: str | os.PathLike,
    model=None,
    *,
    options: AssessOptions = AssessOptions(),
    outputs: OutputOptions = OutputOptions(),
    read: ReadOptions = ReadOptions(),
    resume: bool = False,
    overwrite: bool = False,
    well_pattern: str | None = None,
    select: PlaneSelection | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    read_ahead: bool = True,
    progress: bool | None = None,
    on_error: Callable[[str], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> RunSummary:
    """Assess files and write ``results.csv``, masks (TIFF) and overlays into ``out_dir``.

    ``outputs`` says which masks and overlays (default: per-patch masks, JPEG previews of the
    planes out of focus or uncertain; see `miq.runs.outputs.OutputOptions`).

    The model is loaded once (per worker); a file that fails is reported through ``on_error``
    (one line) and gets a CSV row with ``error`` filled, and the run goes on. Each completed file
    is recorded in ``out_dir/.miq-progress.jsonl`` as it completes, so a killed run restarted
    with ``resume=True`` rates only the missing files and writes the same ``results.csv`` (rows
    in input order) as an uninterrupted run. ``out_dir`` follows `miq.io.folder.OutputFolder`:
    a non-empty folder needs ``overwrite`` (removes only what miq wrote there) or ``resume``
    (refused, naming the setting, when a result-changing setting differs; raises
    `miq.errors.OutputError`). Wells and
    sites come from OME plate metadata or file names (`miq.plates.plate_position`; with
    ``well_pattern``, from names only); when any file has a well, ``wells.csv`` gets one row per
    well.

    ``workers`` > 1 rates files in that many local processes (one inference thread each unless
    the model was loaded with more); ``scheduler`` (a Dask distributed scheduler address such as
    ``tcp://host:8786``, or a ``distributed.Client``) sends them to a cluster whose workers see
    the same files and output folder. See `miq.runs.workers`. ``read_ahead`` (one process):
    read the next file in a thread while the current one is rated.
    """
    from ..model.runtime import default_model

    model = model or default_model()
    out = Path(out_dir)
    settings = _result_settings(model, options, outputs, select, well_pattern, read)
    folder = OutputFolder.prepare(
        out,
        command="predict",
        settings=settings,
        overwrite=overwrite,
        resume=resume,
        also_written=(JOURNAL_NAME, *RUN_FILES),
        earlier_outputs=journal_outputs,
        inputs=files,
    )
    try:
        return _predict_into(
            folder, files, model, options, outputs, read, resume, well_pattern, select,
            workers, scheduler, read_ahead, progress, on_error, on_warning,
        )  # fmt: skip
    finally:
        folder.close()


def _predict_into(
    folder: OutputFolder,
    files: list[Path],
    model,
    options: AssessOptions,
    outputs: OutputOptions,
    read: ReadOptions,
    resume: bool,
    well_pattern: str | None,
    select: PlaneSelection | None,
    workers: int,
    scheduler,
    read_ahead: bool,
    progress: bool | None,
    on_error: Callable[[str], None] | None,
    on_warning: Callable[[str], None] | None,
) -> RunSummary:
    """`predict_files` in its prepared (and locked) output folder."""
    from tqdm import tqdm

    from .workers import run_jobs

    out = folder.path
    done = completed_files(out) if resume else {}
    journal = out / JOURNAL_NAME
    # output names: those an interrupted run gave stay; new files get names no file has
    stems = unique_stems(files, taken=folder.names)
    folder.names.update(stems)
    folder.save()  # the names are recorded before any output is written
    keys = [file_key(f) for f in files]
    rows_of: list[list[dict] | None] = [None] * len(files)
    results: list[PlaneResult] = []
    failed_files = failed_planes = resumed = 0
    write_errors: list[str] = []
    jobs: dict[int, FileJob] = {}
    for index, (f, key) in enumerate(zip(files, keys)):
        if key in done:
            entry = done[key]
            rows_of[index] = entry["rows"]
            folder.record(*entry.get("outputs", []))
            failed_files += entry["failed_file"]
            failed_planes += entry["failed_planes"]
            resumed += 1
        else:
            jobs[index] = FileJob(
                f,
                stems[str(f)],
                out,
                options,
                outputs,
                select,
                well_pattern,
                read,
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
        folder.record(*outcome.outputs)
        if outcome.complete:  # a file whose outputs are not all written is done again on resume
            try:
                append_journal(
                    journal,
                    {
                        "key": keys[index],
                        "rows": outcome.rows,
                        "failed_file": int(outcome.failed_file),
                        "failed_planes": outcome.failed_planes,
                        "outputs": outcome.outputs,
                    },
                )
            except OutputError as exc:  # e.g. disk full: the file is rated again on resume
                if not write_errors and on_error:
                    on_error(f"{exc}; --resume rates the files not recorded there again")
                write_errors.append(str(exc))
        failed_files += outcome.failed_file
        failed_planes += outcome.failed_planes
        if len(results) < MAX_KEPT_RESULTS:
            results.extend(outcome.results[: MAX_KEPT_RESULTS - len(results)])
        rows_of[index] = outcome.rows
        bar.update()
    bar.close()
    rows = [row for file_rows in rows_of for row in file_rows or []]
    csv_path = out / "results.csv"
    folder.record(JOURNAL_NAME, "results.csv", "run.json")
    folder.save()  # first: should results.csv not fit, --overwrite still knows every file
    write_rows_csv(csv_path, csv_columns(model.n_levels), rows)
    wells = well_aggregates(rows)
    pooled = pooled_plates(rows)
    if pooled and on_warning:
        on_warning(
            f"wells.csv pools the wells of {len(pooled)} plates (the same wells come from "
            f"{', '.join(pooled[:3])}{' …' if len(pooled) > 3 else ''}); run one plate per "
            "output folder for per-plate well summaries"
        )
    if wells:
        folder.record("wells.csv")
        folder.save()
        write_rows_csv(out / "wells.csv", WELL_COLUMNS, wells)
    _write_run_info(
        out,
        model,
        options,
        len(files),
        use_file_pixel_size=options.use_file_pixel_size,
        masks=outputs.masks,
        overlays=outputs.overlays,
        overlay_size=outputs.overlay_size,
        selection=str(select or PlaneSelection()),
        well_pattern=well_pattern,
        resumed_files=resumed,
        workers=workers,
        scheduler=str(scheduler) if scheduler else None,
    )
    folder.save()
    return RunSummary(
        results, csv_path, len(files), failed_files, failed_planes, rows, resumed, write_errors
    )


RUN_FILES = ("results.csv", "wells.csv", "run.json")  # written at the end of a run


def _result_settings(model, options: AssessOptions, outputs, select, well_pattern, read) -> dict:
    """What determines a run's results and output files: ``--resume`` requires the same."""
    from .. import __version__

    return {
        "miq_version": __version__,
        "model": {  # the weights and what model.json says changes their ratings
            "name": model.name,
            "onnx_sha256": model.package.weight_sha256("onnx"),
            "calibration": model.package.describe("calibration"),
            "um_per_level": model.um_per_level,
            "pixel_size_um": model.pixel_size_um,
        },
        "in_focus_levels": options.in_focus_levels,
        "in_focus_threshold": options.in_focus_threshold,
        "pixel_size_um": options.pixel_size_um,
        "use_file_pixel_size": options.use_file_pixel_size,
        "masks": outputs.masks,
        "overlays": outputs.overlays,
        "overlay_size": outputs.overlay_size,
        "selection": str(select or PlaneSelection()),
        "well_pattern": well_pattern,
        "axes": read.axes,
        "samples_as_channels": read.samples_as_channels,
    }


def _write_run_info(out: Path, model, options: AssessOptions, n_files: int, **run) -> None:
    from .. import __version__

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


def pooled_plates(rows: list[dict]) -> list[str]:
    """The plates (an OME-Zarr plate, else the folder of the files) whose wells are pooled in
    ``wells.csv`` when a well occurs in more than one of them; [] when they do not mix."""
    plates_of: dict[str, set[str]] = {}
    for row in rows:
        if row.get("well"):
            plates_of.setdefault(row["well"], set()).add(_plate_of(row["file"]))
    mixed = sorted({p for plates in plates_of.values() if len(plates) > 1 for p in plates})
    return mixed


def _plate_of(file: str) -> str:
    parts = Path(file).parts
    for i, part in enumerate(parts):
        if part.lower().endswith(".zarr"):
            return str(Path(*parts[: i + 1]))
    return str(Path(file).parent)
