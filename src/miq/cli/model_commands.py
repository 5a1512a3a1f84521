"""The subcommands that make and fit models: ``miq train``, ``miq average-weights`` and
``miq calibrate``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    error,
    error_collector,
    find_inputs,
    optics_from,
    warn,
    without_excluded,
)
from .show import say

__all__ = ["train", "calibrate", "average_weights"]


def train(args: argparse.Namespace) -> int:
    from ..io import find_images
    from ..training.synthetic import SimulationConfig
    from ..training.train import TrainConfig, train

    missing: list[str] = []
    files = find_images(args.images, on_missing=missing.append, on_refused=error, on_skipped=say)
    for m in missing:
        error(f"{m}: no such file, folder or matching image")
    files = without_excluded(files, args.exclude)
    if not files and args.procedural_fraction < 1:
        error(
            "no training images found (use --procedural-fraction 1 to train on procedural content only)"
        )
        return EXIT_USAGE
    if args.width and args.architecture == "yang2018":
        error("--width applies to the compact, stride4 and separable architectures only")
        return EXIT_USAGE
    if args.channels:
        wanted = {"compact": 5, "separable": 6}.get(args.architecture)
        if wanted is None:
            error("--channels applies to the compact and separable architectures only")
            return EXIT_USAGE
        if len(args.channels) != wanted:
            error(
                f"--channels: the {args.architecture} architecture needs {wanted} channel "
                f"counts, got {len(args.channels)}"
            )
            return EXIT_USAGE
    if args.channels and args.width:
        error("give --width or --channels, not both")
        return EXIT_USAGE
    if args.batch_size % args.image_group_size:
        error(
            f"--image-group-size {args.image_group_size} must be ≥ 1 and divide --batch-size "
            f"{args.batch_size}"
        )
        return EXIT_USAGE
    if not args.image_loss_temperature > 0:
        error("--image-loss-temperature must be > 0")
        return EXIT_USAGE
    if args.image_loss_weight > 0 and args.image_group_size < 2:
        error("--image-loss-weight needs --image-group-size ≥ 2 (patches per simulated image)")
        return EXIT_USAGE
    if not 0 <= args.image_distill_weight <= 1:
        error(f"--image-distill-weight must be in [0, 1], got {args.image_distill_weight}")
        return EXIT_USAGE
    if args.image_distill_weight > 0 and not (args.teacher and args.image_loss_weight > 0):
        error("--image-distill-weight needs --teacher and --image-loss-weight > 0")
        return EXIT_USAGE
    config = TrainConfig(
        architecture=args.architecture,
        architecture_kwargs=_architecture_kwargs(args),
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
        procedural_fraction=args.procedural_fraction,
        max_minutes=args.max_minutes,
        checkpoint_every=args.checkpoint_every,
        threads=args.threads,
        device=args.device,
        init_from=args.init_from,
        teacher=args.teacher,
        distill_weight=args.distill_weight,
        image_group_size=args.image_group_size,
        image_loss_weight=args.image_loss_weight,
        image_loss_temperature=args.image_loss_temperature,
        image_loss=args.image_loss,
        image_distill_weight=args.image_distill_weight,
        use_file_pixel_size=not args.ignore_file_pixel_size,
        source_weighting=args.source_weighting,
        optics=optics_from(args),
        simulation=SimulationConfig(clipped_sensor_fraction=args.clipped_sensor_fraction),
    )
    _warn_inherited(args.exclude, config.built_from())
    command = "miq " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("miq") else None
    left_out, unreadable = error_collector()  # files that could not be read: the rest is used
    from ..errors import MiqError

    try:
        meta = train(
            [str(f) for f in files],
            args.output,
            config,
            resume=args.resume,
            command=command,
            on_error=left_out,
            memory_budget=args.memory_budget,
        )
    except (MiqError, ValueError) as exc:  # a bad --init-from or --teacher …: nothing written
        error(str(exc))
        return EXIT_USAGE
    say(f"model written: {meta.parent}")
    return EXIT_SOME_FAILED if unreadable else EXIT_OK


def _warn_inherited(patterns: list[str], references: list[tuple[str, str]]) -> None:
    """One warning per ``--exclude`` TEXT that matches images the models the new one is built
    from (``references``: (model, how it is used)), or their own ancestors, trained on: the new
    model inherits what they learned, so excluding those images does not hold them out."""
    if not patterns or not references:
        return
    from ..model.lineage import lineage_record

    inherited = lineage_record(references)["files"]
    for pattern in patterns:
        hits = [f for f in inherited if pattern in f.get("path", "")]
        if hits:
            models = ", ".join(sorted({f["model"] for f in hits}))
            warn(
                f"--exclude {pattern}: {models} trained on {len(hits)} image(s) it matches (e.g. "
                f"{Path(hits[0]['path']).name}), and the new model starts from what they "
                "learned: those images are not held out from it"
            )


def calibrate(args: argparse.Namespace) -> int:
    from ..calibration import calibrate_model
    from ..errors import MiqError
    from ..model.package import ModelPackage

    files, missing = find_inputs(args.images)
    files = without_excluded(files, args.exclude)
    if not files:
        error("no validation images found")
        return EXIT_USAGE
    left_out, unreadable = error_collector()  # files that could not be read: the rest is used

    def fit(model_json: Path) -> None:
        calibrate_model(
            model_json,
            files,
            seeds=args.seeds,
            content_temperature=args.content_temperature,
            keep_patch_calibration=args.keep_patch_calibration,
            on_warning=warn,
            memory_budget=args.memory_budget,
            on_error=left_out,
        )

    try:
        package = ModelPackage.open(args.model)
        if args.output:
            written = _calibrated_copy(package, Path(args.output), fit)
        elif package.is_shipped:
            error(
                f"{args.model}: a model shipped with miq is never rewritten; give -o FOLDER "
                "to write a calibrated copy of it there"
            )
            return EXIT_USAGE
        else:
            fit(package.path)
            written = package.path
    except MiqError as exc:  # a bad model, no plane that could be rated …: nothing written
        error(str(exc))
        return EXIT_USAGE
    say(f"calibration written to {written}")
    return EXIT_SOME_FAILED if missing or unreadable else EXIT_OK


def average_weights(args: argparse.Namespace) -> int:
    from ..errors import MiqError
    from ..training.average import average_models

    if len(args.models) < 2:
        error("give at least two runs to average")
        return EXIT_USAGE
    if args.bn_batches > 0 and args.batch_size < 2:
        error("--batch-size must be at least 2 to measure batch-norm statistics")
        return EXIT_USAGE
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        error(f"{out}: exists and is not a folder; give a new folder")
        return EXIT_USAGE
    if (out / "model.json").exists():
        error(f"{out}: already holds a model.json; give a new folder")
        return EXIT_USAGE
    files: list[Path] = []
    missing: list[str] = []
    if args.bn_batches > 0:
        files, missing = find_inputs(args.images)  # each one missing is reported
        files = without_excluded(files, args.exclude)
        if not files:
            error(
                "no training images found: give the runs' training images with --images "
                "(or --bn-batches 0 to keep the mean of the runs' batch-norm statistics)"
            )
            return EXIT_USAGE
    _warn_inherited(args.exclude, [(m, "averaged") for m in args.models])
    left_out, unreadable = error_collector()  # files that could not be read: the rest is used
    command = "miq " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("miq") else None
    try:
        meta = average_models(
            args.models,
            out,
            [str(f) for f in files],
            bn_batches=args.bn_batches,
            batch_size=args.batch_size,
            seed=args.seed,
            threads=args.threads,
            log=say,
            command=command,
            on_error=left_out,
            memory_budget=args.memory_budget,
        )
    except (MiqError, ValueError) as exc:
        error(str(exc))
        return EXIT_USAGE
    except OSError as exc:  # the output folder cannot be made or written
        error(f"{exc.filename or out}: cannot write the averaged model ({exc.strerror or exc})")
        return EXIT_USAGE
    say(f"averaged model written: {meta.parent} (uncalibrated: run miq calibrate on it)")
    return EXIT_SOME_FAILED if missing or unreadable else EXIT_OK


def _calibrated_copy(package, folder: Path, fit) -> Path:
    """Copy ``package`` into a hidden folder beside ``folder``, ``fit`` its model.json there,
    then move it to ``folder`` (which may exist only empty): a failed or interrupted fit leaves
    no uncalibrated copy behind. The copy is named after ``folder``, so that reports tell it
    from the model it came from. Returns the copy's model.json."""
    import shutil

    from ..errors import ModelError, OutputError
    from ..io import part_path

    folder = folder.resolve()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ModelError(f"{folder}: exists and is not an empty folder; give a new folder")
    staging = Path(part_path(folder))  # made inside the try: an interruption removes it
    try:
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            staging.mkdir()
        except OSError as exc:
            raise OutputError(f"{folder}: cannot write there ({exc.strerror or exc})") from None
        copy = package.copy_to(staging, name=f"{package.name}+{folder.name}")
        fit(copy.path)
        if folder.exists():
            folder.rmdir()
        staging.replace(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder / "model.json"


def _architecture_kwargs(args) -> dict:
    """The network's keyword arguments that `miq train` options set (model.json's
    ``architecture_kwargs``, with n_levels and patch_size added by training)."""
    if args.channels:
        return {"channels": list(args.channels)}
    return {"width": args.width} if args.width else {}
