"""Files to result folders: one file job, the predict run (journal, ``run.json``, tables, masks,
overlays), best-focus, measure, and where jobs run (this process, local processes, Dask).

* `.file_job`: one input file opened once, rated, its outputs and rows (`assess_file`);
* `.predict`: `predict_files`, the whole run and its output folder;
* `.journal`, `.tables`, `.outputs`: the resume journal, ``results.csv`` rows,
  masks and overlays;
* `.workers`: where file jobs run;
* `.best_focus`: `best_focus_files`; `.measure`: `measure_files`.
"""

from .best_focus import FocusCurve, best_focus_files, focus_curves
from .file_job import PlaneResult, PlaneSelection, assess_file
from .measure import measure_files
from .predict import RunSummary, predict_files
from .tables import csv_columns

__all__ = [
    "assess_file",
    "predict_files",
    "measure_files",
    "best_focus_files",
    "focus_curves",
    "FocusCurve",
    "PlaneResult",
    "PlaneSelection",
    "RunSummary",
    "csv_columns",
]
