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
from ..io import atomic_write, write_rows_csv
from ..plates import WELL_COLUMNS, well_aggregates
from .file_job import FileJob, PlaneResult, PlaneSelection
from .journal import JOURNAL_NAME, append_journal, file_key, prepare_output
from .outputs import unique_stems
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

    @property
    def ok(self) -> bool:
        return self.n_failed_files == 0 and self.n_failed_planes == 0


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
    ``resume`` or ``overwrite`` is given (raises `miq.errors.OutputError`). Wells and
    sites come from OME plate metadata or file names (`miq.plates.plate_position`; with
    ``well_pattern``, from names only); when any file has a well, ``wells.csv`` gets one row per
    well.

    ``workers`` > 1 rates files in that many local processes (one inference thread each unless
    the model was loaded with more); ``scheduler`` (a Dask distributed scheduler address such as
    ``tcp://host:8786``, or a ``distributed.Client``) sends them to a cluster whose workers see
    the same files and output folder. See `miq.runs.workers`. ``read_ahead`` (one process):
    read the next file in a thread while the current one is rated.
    """
    from tqdm import tqdm

    from ..model.runtime import default_model
    from .workers import run_jobs

    model = model or default_model()
    out = Path(out_dir)
    done = prepare_output(out, resume, overwrite)
    journal = out / JOURNAL_NAME
    stems = unique_stems(files)
    keys = [file_key(f) for f in files]
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
        append_journal(
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
