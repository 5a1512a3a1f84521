"""What each subcommand's ``--help`` says: a description, the files it writes, and an example.

Plain text only (no argparse here): `.parser` attaches it to the subcommands.
"""

from __future__ import annotations

__all__ = ["COMMANDS", "MODEL_HELP", "RATING_OPTIONS", "TRAIN_OPTIONS", "CALIBRATE_OPTIONS"]

MODEL_HELP = (
    "model folder or model.json, or a bundled model by name: default and fast (both fast-v4), "
    "or a version kept for comparison (fast-v3, fast-v2, v3-slim, v3, v2, fast-v1); "
    "default: default"
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
            "run.json, masks/*_per_patch.tif (or per pixel), overlays/*.jpg (previews of the "
            "planes out of focus or uncertain), .miq-progress.jsonl (resume journal), "
            ".miq-outputs.json (what miq wrote there), and "
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
            "100 DN, as in the original simulator; a plane reaching below 100 DN, e.g. 8-bit, gets its "
            "darkest pixel put on the offset); output is uint16.",
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
            "defocused to every level, and store them in the model's model.json, or in a "
            "calibrated copy of the model with -o (e.g. the bundled model fitted to a screen's "
            "own in-focus fields).",
            "the model's model.json (its 'calibration' entry, replaced atomically); with -o, "
            "the folder's model.json, model.onnx and model.safetensors",
            "miq calibrate my_screen/in_focus/ -m default -o my-screen-model",
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
    "average-weights": (
        "average the weights of several training runs into one model (needs the 'train' extra)",
        *_text(
            "Average the weights of two or more runs of one network (e.g. the same fine-tune "
            "with different --seed): about the accuracy of their ensemble at the cost of one "
            "network. The batch-norm statistics of the average are measured again on batches "
            "simulated from the training images, as the first run's training simulated them. "
            "Calibrate the result with miq calibrate.",
            "OUTPUT/model.json (listing every run averaged), model.onnx, model.safetensors",
            "miq average-weights runs/seed1 runs/seed2 runs/seed3 --images in-focus/ "
            "-o runs/averaged",
        ),
    ),
}


#: help of ``miq train``'s longer options
TRAIN_OPTIONS = {
    "architecture": "compact (v3's and v3-slim's), stride4 (about 3x fewer multiply-adds), "
    "separable (stride4's stem, then 5 depthwise-separable blocks; about stride4's speed; the "
    "default model's) or "
    "yang2018",
    "width": "channels of the first layer (compact: default 16, 8 is ~4x faster; stride4 and "
    "separable: 32); with --init-from a wider separable model, training starts from it pruned "
    "to this width",
    "channels": "the layers' output channels: compact, five (e.g. 8,24,24,48,48: half v3's "
    "multiply-adds); separable, six, the stem's and the five blocks' (e.g. "
    "16,16,64,64,128,128: the default's width 32 but for the 21² px stage); with --init-from "
    "a wider model, training starts from it pruned to these channels",
    "procedural": "share of samples from procedural in-focus content (0..1)",
    "clipped_sensor": "share of simulated images from a sensor that records nothing below a "
    "threshold: flat backgrounds with single photon counts (0..1, default 0.2; 0 = none)",
    "teacher": "distil: also learn this trained model's predictions (folder or model.json)",
    "distill": "share of the loss from the teacher (default 0.7)",
    "group": "simulate batches as images of M patches sharing content, level and camera "
    "(default 1: every patch independent)",
    "image_loss_weight": "add this × the --image-loss of each simulated image's "
    "certainty-weighted level distribution (as `miq predict` aggregates) to the loss; needs "
    "--image-group-size ≥ 2 (default 0)",
    "image_loss": "the per-image loss: ranked probability score (default) or log loss",
    "temperature": "sharpen each simulated image's distribution by p^(1/T) before its loss, as "
    "the model's image temperature does at inference (default 1: none)",
    "image_distill": "share (0..1) of the image loss taken from the --teacher's calibrated "
    "whole-image distribution (cross-entropy against it, the teacher's stored calibration "
    "applied as `miq predict` does) instead of the true level (default 0)",
    "init_from": "fine-tune: start from a bundled model's name (as --model), a model folder, its "
    "model.safetensors (sha256-checked) or a checkpoint.pt of the same architecture; the new "
    "model inherits what it learned (--exclude warns when that covers excluded images)",
    "train_device": "train on the CPU (default) or a CUDA GPU (torch with CUDA): the network "
    "and the defocus simulation run there; crops are drawn on the CPU, on --threads threads",
}


#: ``miq calibrate``'s option help, by option (`.parser`)
CALIBRATE_OPTIONS = {
    "model": "model folder or model.json to update, or (with -o) any model, bundled ones by name "
    "(default, fast, v3-slim …)",
    "output": "calibrate a copy of the model written to this new folder (the model given by -m "
    "is left as it is; needed for a model shipped with miq)",
    "content_temperature": "image temperature that depends on each image (softer where "
    "confident patches disagree) instead of one number",
    "keep_patch_calibration": "keep the stored per-level biases and patch temperature; refit "
    "the image temperature only",
}

#: help of the options of ``miq predict`` and ``miq demo``
RATING_OPTIONS = {
    "in_focus_levels": "levels 0..N-1 count as in focus (default 3: levels 0-2); the reported "
    "level is the most probable one on the side of the in/out call",
    "threshold": "flag in focus when P(in focus) >= this, 0-1 (default 0.5); the level follows "
    "the call",
    "channel": "rate only these channels (0-based, comma-separated; default all); on RGB "
    "images the colours (0 red, 1 green, 2 blue)",
    "z": "rate only these z planes (0-based, comma-separated; default all)",
    "t": "rate only these time points (0-based, comma-separated; default all)",
    "masks": "level, certainty and validity maps: one pixel per 84-px patch (default; the "
    "grid recorded in the TIFF), per pixel of the plane, or none (--no-masks)",
    "overlays": "annotated overlays of the planes out of focus or uncertain (default: 0.2 <= "
    "P(in focus) < 0.8), of all planes, or none (--no-overlays)",
    "size": "longest side of an overlay: a JPEG preview (default 1024 px); 0 = full resolution PNG",
    "threads": "inference threads per process (default: all cores; 1 with --workers or "
    "--scheduler)",
    "wells": "regular expression with named groups well (or row and col) and optionally site, "
    "matched in file names (default: built-in plate naming patterns)",
    "resume": "finish an interrupted run in OUTPUT: rate only the files it had not completed "
    "(refused when an option that changes results differs)",
    "report": "also write OUTPUT/report.html (as miq report does; needs matplotlib)",
}
