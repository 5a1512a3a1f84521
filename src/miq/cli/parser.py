"""The command line's grammar: every subcommand and its options (argparse lives here, in
`.model_parser` for the subcommands that make and fit models, and in `.options` for the options
several subcommands share).
"""

from __future__ import annotations

import argparse

from .help import COMMANDS
from .options import (
    add_axes,
    add_device,
    add_memory_budget,
    add_model,
    add_optics,
    add_output,
    add_overwrite,
    add_pixel_size,
    add_quiet,
    add_rating_options,
    add_threads,
    positive_float,
    positive_int,
)

__all__ = ["build_parser"]


def _command(sub, name: str) -> argparse.ArgumentParser:
    short, description, epilog = COMMANDS[name]
    return sub.add_parser(
        name,
        help=short,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``miq`` argument parser; each subcommand's ``command`` default names its function
    in `miq.cli.commands.COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="miq",
        description="Microscope image focus quality: absolute defocus level per patch and image.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")

    p = _command(sub, "predict")
    p.add_argument("inputs", nargs="+", help="image files, folders (searched recursively) or globs")
    add_rating_options(p)
    scale = p.add_mutually_exclusive_group()
    scale.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="rate files in N local processes (model loaded once in each; default 1)",
    )
    scale.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on a Dask distributed cluster (e.g. tcp://host:8786; needs the dask extra); "
        "workers must see the inputs and OUTPUT at the same paths",
    )

    p = _command(sub, "report")
    p.add_argument("run_dir", help="output folder of miq predict (with results.csv)")
    add_output(p, "HTML file to write (default RUN_DIR/report.html)", required=False)
    p.add_argument(
        "--montage",
        type=positive_int,
        default=12,
        metavar="N",
        help="images in each montage of most and least in-focus planes (default 12)",
    )

    p = _command(sub, "export-bioimageio")
    add_output(p, "package to write (.zip)")
    add_model(p)

    p = _command(sub, "measure")
    p.add_argument("inputs", nargs="+", help="image files, folders or globs")
    add_output(p, "output folder (measures.csv)")
    add_pixel_size(p)
    add_axes(p)
    add_memory_budget(p)
    add_overwrite(p)

    p = _command(sub, "demo")
    add_rating_options(p)

    p = _command(sub, "simulate")
    p.add_argument("images", nargs="+", help="in-focus image files, folders or globs")
    add_output(p, "output folder (uint16 TIFFs)")
    p.add_argument(
        "--z-um", type=float, action="append", default=[], help="defocus in um (repeatable)"
    )
    p.add_argument(
        "--level",
        type=int,
        action="append",
        default=[],
        help="defocus level 0-10 of the default table (level k = 2k um; repeatable)",
    )
    p.add_argument("--exposure", type=float, default=1.0, help="exposure factor above the offset")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--no-noise", action="store_true", help="skip Poisson noise")
    add_optics(p)
    add_memory_budget(p)

    _add_evaluate(_command(sub, "evaluate"))
    _add_best_focus(_command(sub, "best-focus"))

    from .model_parser import add_average_weights, add_calibrate, add_train

    add_calibrate(_command(sub, "calibrate"))
    add_train(_command(sub, "train"))
    add_average_weights(_command(sub, "average-weights"))
    return parser


def _add_evaluate(p: argparse.ArgumentParser) -> None:
    add_output(p, "output folder")
    add_memory_budget(p)
    p.add_argument(
        "--manifest",
        action="append",
        default=[],
        metavar="CSV",
        help="CSV with columns file and level, defocus_um and/or in_focus (repeatable)",
    )
    p.add_argument(
        "--stack",
        action="append",
        default=[],
        metavar="FILE",
        help="focal stack file (repeatable; each needs --z-step and --best-z)",
    )
    p.add_argument(
        "--z-step",
        action="append",
        type=positive_float,
        default=[],
        metavar="UM",
        help="z step of the matching --stack in µm",
    )
    p.add_argument(
        "--best-z",
        action="append",
        type=int,
        default=[],
        metavar="INDEX",
        help="in-focus plane index (0-based) of the matching --stack",
    )
    p.add_argument(
        "--in-focus-um",
        type=positive_float,
        default=None,
        metavar="UM",
        help="stack planes within this defocus count as in focus (for F-score/AUC)",
    )
    p.add_argument(
        "--synthetic",
        nargs="+",
        default=[],
        metavar="IMAGE",
        help="in-focus images to defocus to every level with the simulator",
    )
    p.add_argument("--seeds", type=positive_int, default=2, help="noise seeds per synthetic level")
    p.add_argument(
        "--measures",
        default="plls,focus_score,local_focus_score_20,variance_of_laplacian,tenengrad,brenner,"
        "correlation_20",
        help="comma-separated classical measures to compare",
    )
    p.add_argument(
        "--splits", type=positive_int, default=100, help="random 10/90 splits for the F-score"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random splits")
    add_model(p)
    p.add_argument(
        "--in-focus-levels", type=int, default=3, help="levels 0..N-1 count as in focus (default 3)"
    )
    add_threads(p)
    add_device(p)
    add_pixel_size(p)
    add_overwrite(p)


def _add_best_focus(p: argparse.ArgumentParser) -> None:
    p.add_argument("stacks", nargs="+", help="stack files (with a Z axis), folders or globs")
    add_output(p, "output folder")
    p.add_argument(
        "--stack-from-files",
        action="store_true",
        help="each input is a folder of single-plane files forming one stack, ordered by name",
    )
    p.add_argument(
        "--fine-measure",
        default="focus_score",
        help="sharpness measure that ranks the planes of the in-focus plateau (default focus_score)",
    )
    p.add_argument(
        "--plateau",
        type=float,
        default=0.5,
        help="planes within this many levels of the sharpest count as in focus (default 0.5)",
    )
    p.add_argument("--save-best", action="store_true", help="write the best plane as a TIFF")
    add_model(p)
    add_threads(p)
    add_device(p)
    add_pixel_size(p)
    add_axes(p)
    add_memory_budget(p)
    add_quiet(p)
    add_overwrite(p)
