"""What each subcommand's ``--help`` says: a description, the files it writes, and an example.

Plain text only (no argparse here): `.parser` attaches it to the subcommands.
"""

from __future__ import annotations

__all__ = ["COMMANDS", "MODEL_HELP"]

MODEL_HELP = (
    "model folder or model.json, or a bundled model: default (most accurate) or fast (~2.5x "
    "faster, less well calibrated); default: default"
)


def _text(description: str, writes: str, example: str) -> tuple[str, str]:
    import textwrap

    wrapped = textwrap.fill(writes, width=88, initial_indent="  ", subsequent_indent="  ")
    return description, f"writes:\n{wrapped}\n\nexample:\n  {example}"


#: subcommand -> (one-line help, description, epilog with what it writes and an example)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "predict": (
        "rate the focus of images (files, folders, globs)",
        *_text(
            "Rate every plane (channel, z, time point) of every image: per-patch defocus level "
            "probabilities and certainty, the whole-image level, defocus in µm, certainty and "
            "in/out-of-focus flag.",
            "OUTPUT/results.csv (one row per plane), wells.csv (when wells are recognised), "
            "run.json, masks/*.tif, overlays/*.png, .miq-progress.jsonl (resume journal), and "
            "with --report report.html",
            "miq predict plate/ -o qc/ --report",
        ),
    ),
    "report": (
        "one self-contained HTML report (and PNGs) of a predict run's folder",
        *_text(
            "Summarise a miq predict run: summary table, histograms, certainty-ranked montages "
            "of the most and least in-focus planes, plate heat maps when wells are recognised, "
            "the fields to re-image and the run's configuration.",
            "RUN_DIR/report.html (or -o) and its PNG figures in RUN_DIR/report/",
            "miq report qc/",
        ),
    ),
    "export-bioimageio": (
        "write a model as a bioimage.io model package (needs the 'bioimageio' extra)",
        *_text(
            "Package a model (its weights in ONNX and torch formats, calibration, sample "
            "tensors, cover and documentation) for the bioimage.io model zoo; the package is "
            "validated and tested with bioimageio.core before it is written.",
            "OUTPUT (a .zip bioimage.io package)",
            "miq export-bioimageio -o miq-focus.zip",
        ),
    ),
    "measure": (
        "classical focus measures (CellProfiler definitions)",
        *_text(
            "The classical focus measures (PLLS, FocusScore, LocalFocusScore, variance of "
            "Laplacian, Tenengrad, Brenner, correlation) of every plane of every image.",
            "OUTPUT/measures.csv (one row per plane, one column per measure)",
            "miq measure images/ -o measures/",
        ),
    ),
    "demo": (
        "run predict on the bundled sample, defocused by the simulator",
        *_text(
            "Defocus the bundled BBBC022 Hoechst field by the simulator to 0, 4, 10 and 18 µm "
            "(true levels 0, 2, 5, 9) and rate the four images as miq predict does.",
            "OUTPUT/demo_inputs/*.tif and everything miq predict writes; the folder is "
            "rewritten on every run",
            "miq demo -o miq-demo",
        ),
    ),
    "simulate": (
        "defocus images with the physical simulator",
        *_text(
            "Defocus in-focus images with the physical simulator (defocus PSF, Poisson noise). "
            "Pixel values are taken as DN of a 16-bit camera (1 photoelectron per DN, offset "
            "100 DN, as in the original simulator); output is uint16.",
            "OUTPUT/{stem}_defocus_{z}um.tif for each input and depth",
            "miq simulate field.tif -o blurred/ --level 3 --level 6",
        ),
    ),
    "evaluate": (
        "compare miq with classical focus measures on images of known focus",
        *_text(
            "Rate images of known focus (manifests, focal stacks, or in-focus images defocused "
            "by the simulator) with miq and the classical measures, and score both.",
            "OUTPUT/summary.json, predictions.csv, metrics.csv, best_plane.csv (stacks), "
            "confusion_*.csv/png and reliability_*.csv/png",
            "miq evaluate --synthetic held-out/ --seeds 2 -o eval/",
        ),
    ),
    "best-focus": (
        "the best-focused plane of each z-stack (per channel)",
        *_text(
            "Per stack and channel: the model's focus curve (expected level per plane), its "
            "in-focus plateau (within --plateau levels of the minimum), and on it the plane "
            "with the highest fine sharpness measure.",
            "OUTPUT/best_focus.csv (one row per stack and channel), curves.csv (one row per "
            "plane), curves/*.png (with matplotlib) and with --save-best best/*.tif",
            "miq best-focus stacks/ -o best/ --save-best",
        ),
    ),
    "calibrate": (
        "fit a model's calibration on synthetic defocus of in-focus validation images",
        *_text(
            "Fit per-level bias and temperatures (see miq.calibration) on in-focus images "
            "defocused to every level, and store them in the model's model.json.",
            "the model's model.json (its 'calibration' entry, replaced atomically)",
            "miq calibrate validation/ -m runs/my-model",
        ),
    ),
    "train": (
        "train a model on in-focus images (needs the 'train' extra)",
        *_text(
            "Train a focus model on in-focus images, defocused on the fly by the simulator "
            "with the given optics, and export it.",
            "OUTPUT/model.json, model.onnx, model.safetensors, checkpoint.pt (resumable), "
            "train_log.csv, train_config.json",
            "miq train in-focus/ -o runs/my-model --steps 20000",
        ),
    ),
}
