"""The train / held-out split of ../shared/data used for the bundled model and its evaluation.

Split by field of view: every channel of a held-out field is held out. The bundled model was
trained with ``miq train ../shared/data/in-focus --exclude P ...`` for each pattern P below.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA = Path(
    os.environ.get(
        "MIQ_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    )
)

# Substrings of held-out file paths (whole fields of view, all channels).
HELD_OUT = [
    "A01_s3",  # BBBC022 Hoechst field A01 site 3
    "E05_s6",  # BBBC022 Hoechst field E05 site 6
    "POS218",  # CellProfiler fly field 218 (DAPI, FITC, rhodamine)
    "nuclear_protein_treated",  # NEUBIAS nuclear protein, treated field
    "nuclei_golgi",  # NEUBIAS nuclei + Golgi (2 channels)
]
# Not a fluorescence image (a label mask): never used.
NOT_IMAGES = ["mask2d"]


def in_focus_files() -> list[Path]:
    root = SHARED_DATA / "in-focus"
    suffixes = (".tif", ".tiff", ".png")
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in suffixes and not any(n in str(p) for n in NOT_IMAGES)
    )


def held_out_files() -> list[Path]:
    return [p for p in in_focus_files() if any(h in str(p) for h in HELD_OUT)]


def training_files() -> list[Path]:
    return [p for p in in_focus_files() if not any(h in str(p) for h in HELD_OUT)]
