"""Per-source level errors of a model on the training fields (synthetic defocus, every level).

Rates the in-focus training files of ``benchmarks.common.training_files`` (the fields
`miq calibrate` uses: no held-out field, no held-out laboratory) defocused to every level, the
way `miq calibrate` builds its validation images, and prints per source folder (or per folder
and file-name prefix, e.g. BBBC013's ``Channel1`` / ``Channel2``) the exact and within-one
accuracy of the calibrated whole-image level and the mean signed error at each level.

``--old-ground-truth`` defocuses the planes as the evaluation did before 2026-11-30: an 8-bit
or offset-free plane kept its 0 at 0 DN, under the simulated camera's 100 DN offset, so its
dim background was cut off (docs/lab-notebook/black-level.md). It exists to reproduce that
entry's comparison; nothing else uses the old rule.

    python -m benchmarks.per_source --model default --by-file-prefix
    python -m benchmarks.per_source --model v3-slim --by-file-prefix --old-ground-truth
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from benchmarks.common import limit_threads, training_files


def old_to_camera_range(data):
    """The rule before 2026-11-30: negative values shifted to 0, a plane whose maximum is under
    2000 DN scaled to 2000 DN, its 0 left at 0 DN (under the 100 DN offset)."""
    import numpy as np

    dn = np.asarray(data, dtype=np.float64)
    dn = dn - min(0.0, float(dn.min()))
    return dn * max(1.0, 2000.0 / max(float(dn.max()), 1e-12)) / 65535.0


def source_of(name: str, by_file_prefix: bool) -> str:
    """The source folder of a validation image's name ("DIR/FILE [c=.., z=..] @4um seed0"),
    with the file name's prefix before its first '-' or '_' when ``by_file_prefix``."""
    path = Path(name.split(" @")[0].split(" [")[0])
    if not by_file_prefix:
        return path.parent.name
    return f"{path.parent.name}/{re.split(r'[-_]', path.name)[0]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="bundled name or model folder")
    parser.add_argument("--seeds", type=int, default=1, help="noise seeds per level (default 1)")
    parser.add_argument("--by-file-prefix", action="store_true")
    parser.add_argument("--old-ground-truth", action="store_true")
    args = parser.parse_args()
    limit_threads()

    import numpy as np

    import miq
    import miq.ground_truth
    from miq.assessment import content_temperature, level_on_call_side
    from miq.calibration import collect_validation, sharpen

    if args.old_ground_truth:
        miq.ground_truth.to_camera_range = old_to_camera_range
    files = training_files()
    truth = "old (offset cut off)" if args.old_ground_truth else "current"
    for name in args.model or ["default"]:
        model = miq.load_model(name, threads=1)
        start = time.perf_counter()
        data = collect_validation(
            model, files, seeds=args.seeds, progress=False, log=lambda _: None
        )
        bias, patch_t = np.asarray(model.class_bias), model.patch_temperature
        q = data.image_distributions(bias, patch_t)
        image_t = model.image_temperature
        if model.image_temperature_slope:  # as miq predict applies it (`aggregate`)
            image_t = content_temperature(
                image_t,
                model.image_temperature_slope,
                model.image_temperature_centre,
                data.certainty_gap(bias, patch_t),
            )
        rated = data.rated
        level = np.full(len(q), -1)
        level[rated] = level_on_call_side(sharpen(q, image_t)[rated])
        truth_level = data.image_labels
        sources = np.array([source_of(n, args.by_file_prefix) for n in data.image_names])
        k = model.n_levels
        print(
            f"\n{name} ({model.name}); {len(files)} training files, ground truth: {truth}, "
            f"{args.seeds} seed(s), {time.perf_counter() - start:.0f} s"
        )
        print(f"| source | images | exact | within-one | mean signed error at levels 0…{k - 1} |")
        print("|---|---|---|---|---|")
        for source in sorted(set(sources)):
            own = (sources == source) & rated
            error = level[own] - truth_level[own]
            by_level = " ".join(
                f"{error[truth_level[own] == lvl].mean():+.1f}"
                if (truth_level[own] == lvl).any()
                else "–"
                for lvl in range(k)
            )
            print(
                f"| {source} | {own.sum()} | {np.mean(error == 0):.3f} | "
                f"{np.mean(np.abs(error) <= 1):.3f} | {by_level} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
