"""The command line's grammar: every subcommand and option (argparse lives here only).

Options shared by several commands (``-o/--output``, ``-m/--model``, ``--threads``, ``--device``,
``--pixel-size``, ``-q/--quiet``, ``--overwrite``) are defined once, by the ``add_*`` functions,
and offered by every command where they make sense.
"""

from __future__ import annotations

import argparse

from .help import CALIBRATE_OPTIONS, COMMANDS, MODEL_HELP, RATING_OPTIONS, TRAIN_OPTIONS

__all__ = ["build_parser"]


def index_set(text: str) -> frozenset[int]:
    try:
        values = frozenset(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected indices like 0 or 0,2, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected indices ≥ 0, got {text!r}")
    return values


def regex(text: str) -> str:
    import re

    try:
        compiled = re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"not a valid regular expression ({exc})") from None
    if not ({"well"} <= set(compiled.groupindex) or {"row", "col"} <= set(compiled.groupindex)):
        raise argparse.ArgumentTypeError(
            "needs named groups (?P<well>...) or (?P<row>...)(?P<col>...)"
        )
    return text


def _number(text: str, convert, ok, requirement: str):
    """``convert(text)`` checked by ``ok``; argparse's one-line error otherwise."""
    try:
        value = convert(text)
    except ValueError:
        kind = "a whole number" if convert is int else "a number"
        raise argparse.ArgumentTypeError(f"not {kind}: {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 1, "at least 1")


def compact_channels(text: str) -> list[int]:
    """Five comma-separated channel counts, e.g. ``8,24,24,48,48``."""
    counts = [positive_int(part.strip()) for part in text.split(",")]
    if len(counts) != 5:
        raise argparse.ArgumentTypeError(f"needs five channel counts, got {len(counts)}: {text}")
    return counts


def non_negative_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 0, "0 or more")


def probability(text: str) -> float:
    return _number(text, float, lambda v: 0.0 <= v <= 1.0, "between 0 and 1")


def positive_float(text: str) -> float:
    return _number(text, float, lambda v: 0 < v < float("inf"), "a positive number")


# --- options shared by several commands ------------------------------------------------------


def add_output(p: argparse.ArgumentParser, help: str, *, required: bool = True) -> None:
    p.add_argument("-o", "--output", required=required, default=None, help=help)


def add_model(p: argparse.ArgumentParser, *, required: bool = False, help: str = MODEL_HELP):
    p.add_argument("-m", "--model", required=required, default=None, help=help)


def add_threads(p: argparse.ArgumentParser, help: str = "inference threads (default: all cores)"):
    p.add_argument("--threads", type=positive_int, default=None, metavar="N", help=help)


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="run the model on the CPU (default) or a CUDA GPU (through onnxruntime-gpu, "
        "or else torch with CUDA)",
    )


def add_pixel_size(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pixel-size",
        type=positive_float,
        default=None,
        metavar="UM",
        help="the images' pixel size in µm, for every file (default: the pixel size each file "
        "records: OME PhysicalSizeX or an ImageJ calibration; else the model's 0.65 µm); "
        "images are resampled to the model's pixel size before rating",
    )
    p.add_argument(
        "--ignore-file-pixel-size",
        action="store_true",
        help="take every file to be at the model's pixel size, whatever it records",
    )
    p.add_argument("--rescale", action="store_true", help=argparse.SUPPRESS)  # now the default


def _parsed(text: str, parse):
    """``parse(text)``, its one-line `ValueError` as argparse's usage error."""
    try:
        return parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def axes(text: str) -> str:
    from ..io import parse_axes

    return _parsed(text, parse_axes)


def add_axes(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--axes",
        type=axes,
        default=None,
        metavar="ORDER",
        help="the axis order of plain TIFFs, one letter per dimension from T Z C Y X S (e.g. "
        "YXZ for a stack with Z last); default: as each file says",
    )


def memory_size(text: str) -> int:
    from ..io.budget import parse_memory_size

    return _parsed(text, parse_memory_size)


def add_memory_budget(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--memory-budget",
        type=memory_size,
        default=2 * 2**30,
        metavar="SIZE",
        help="memory one file may take to read and rate, e.g. 512M, 2G, 8G (default 2G); "
        "checked from each file's declared size before reading it: a file that needs more "
        "gets an error row saying how much it would need",
    )


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no result table on the terminal")


def add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results of an earlier run in OUTPUT: first removes the files miq "
        "wrote there, and nothing else (default: a non-empty OUTPUT is refused)",
    )


def add_exclude(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="TEXT",
        help="skip files whose path contains TEXT (repeatable), e.g. held-out test fields",
    )


def add_optics(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("optics (the simulator's defaults are Yang et al. 2018's)")
    g.add_argument("--wavelength-nm", type=positive_float, default=500.0)
    g.add_argument("--na", type=positive_float, default=0.5, help="numerical aperture")
    g.add_argument("--refractive-index", type=positive_float, default=1.0)
    g.add_argument(
        "--pixel-size",
        "--pixel-size-um",
        dest="pixel_size_um",
        type=positive_float,
        default=0.65,
        metavar="UM",
        help="the images' pixel size in µm (default 0.65)",
    )
    g.add_argument("--psf-width-px", type=positive_int, default=51)


def add_rating_options(p: argparse.ArgumentParser) -> None:
    """Options of every command that rates images into a predict run's folder."""
    h = RATING_OPTIONS
    add_output(p, "output folder")
    add_model(p)
    p.add_argument("--in-focus-levels", type=int, default=3, help=h["in_focus_levels"])
    p.add_argument("--threshold", type=probability, default=0.5, help=h["threshold"])
    add_pixel_size(p)
    for flag, what in (("--channel", "channel"), ("--z", "z"), ("--t", "t")):
        p.add_argument(flag, type=index_set, default=None, metavar="I[,J...]", help=h[what])
    add_axes(p)
    add_memory_budget(p)
    masks = ["per-patch", "per-pixel", "none"]
    p.add_argument("--masks", choices=masks, default="per-patch", help=h["masks"])
    p.add_argument("--no-masks", dest="masks", action="store_const", const="none")
    overlays = ["flagged", "all", "none"]
    p.add_argument("--overlays", choices=overlays, default="flagged", help=h["overlays"])
    p.add_argument("--no-overlays", dest="overlays", action="store_const", const="none")
    p.add_argument(
        "--overlay-size", type=non_negative_int, default=1024, metavar="PX", help=h["size"]
    )
    add_threads(p, h["threads"])
    add_device(p)
    add_quiet(p)
    p.add_argument("--well-pattern", type=regex, default=None, metavar="REGEX", help=h["wells"])
    p.add_argument("--resume", action="store_true", help=h["resume"])
    add_overwrite(p)
    p.add_argument("--report", action="store_true", help=h["report"])


# --- the commands ---------------------------------------------------------------------------


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

    p = _command(sub, "calibrate")
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

    _add_train(_command(sub, "train"))
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


def _add_train(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--channels", type=compact_channels, default=None, help=h["channels"])
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
