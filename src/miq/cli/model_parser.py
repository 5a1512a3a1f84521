"""The grammar of the subcommands that make and fit models (``miq train``, ``miq
average-weights``, ``miq calibrate``; their bodies are in `.model_commands`)."""

from __future__ import annotations

import argparse

from .help import CALIBRATE_OPTIONS, TRAIN_OPTIONS
from .options import (
    add_exclude,
    add_memory_budget,
    add_model,
    add_optics,
    add_output,
    add_threads,
    channel_counts,
    non_negative_int,
    positive_int,
    probability,
)


def add_calibrate(p: argparse.ArgumentParser) -> None:
    h = CALIBRATE_OPTIONS
    p.add_argument("images", nargs="+", help="in-focus validation images (not test fields)")
    add_model(p, required=True, help=h["model"])
    add_output(p, h["output"], required=False)
    add_exclude(p)
    p.add_argument("--seeds", type=positive_int, default=1, help="noise seeds per level")
    p.add_argument("--content-temperature", action="store_true", help=h["content_temperature"])
    p.add_argument(
        "--keep-patch-calibration", action="store_true", help=h["keep_patch_calibration"]
    )
    add_memory_budget(p)


def add_train(p: argparse.ArgumentParser) -> None:
    h = TRAIN_OPTIONS
    p.add_argument("images", nargs="+", help="in-focus image files, folders or globs")
    add_output(p, "output folder for the model")
    add_exclude(p)
    add_memory_budget(p)
    p.add_argument(
        "--architecture",
        default="compact",
        choices=["compact", "stride4", "separable", "yang2018"],
        help=h["architecture"],
    )
    p.add_argument("--width", type=positive_int, default=None, help=h["width"])
    p.add_argument("--channels", type=channel_counts, default=None, help=h["channels"])
    p.add_argument("--steps", type=int, default=20000, help="optimisation steps")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (one-cycle)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--procedural-fraction", type=float, default=0.3, help=h["procedural"])
    p.add_argument(
        "--clipped-sensor-fraction", type=probability, default=0.2, help=h["clipped_sensor"]
    )
    p.add_argument("--teacher", default=None, metavar="MODEL", help=h["teacher"])
    p.add_argument("--distill-weight", type=float, default=0.7, help=h["distill"])
    p.add_argument("--image-group-size", type=positive_int, default=1, metavar="M", help=h["group"])
    p.add_argument("--image-loss-weight", type=float, default=0.0, help=h["image_loss_weight"])
    p.add_argument("--image-loss", choices=["rps", "nll"], default="rps", help=h["image_loss"])
    p.add_argument("--image-loss-temperature", type=float, default=1.0, help=h["temperature"])
    p.add_argument("--image-distill-weight", type=float, default=0.0, help=h["image_distill"])
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and export) after this")
    p.add_argument("--checkpoint-every", type=int, default=500)
    add_threads(p, "torch CPU threads (the defocus simulation runs on them)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help=h["train_device"])
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pt")
    p.add_argument("--init-from", default=None, metavar="WEIGHTS", help=h["init_from"])
    p.add_argument(
        "--source-weighting",
        choices=["sqrt", "plane"],
        default="sqrt",
        help="how real samples pick their image: sqrt (default: each folder weighted by the "
        "square root of its number of planes) or plane (every plane alike)",
    )
    p.add_argument(
        "--ignore-file-pixel-size",
        action="store_true",
        help="take every training file to be at the optics' pixel size, whatever it records "
        "(default: files recording another pixel size are resampled to it first)",
    )
    add_optics(p)


def add_average_weights(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "models",
        nargs="+",
        metavar="MODEL",
        help="the runs to average: model folders or bundled names",
    )
    add_output(p, "new output folder for the averaged model")
    p.add_argument(
        "--images",
        nargs="+",
        default=[],
        metavar="IMAGE",
        help="in-focus training images (files, folders or globs) to measure the batch-norm "
        "statistics on: the runs' own training images",
    )
    add_exclude(p)
    p.add_argument(
        "--bn-batches",
        type=non_negative_int,
        default=40,
        help="simulated batches for the batch-norm statistics (default 40; 0 = keep the mean of "
        "the runs' statistics, no images needed)",
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=128, help="patches per simulated batch"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated batches")
    add_threads(p, "torch CPU threads")
    add_memory_budget(p)
