"""Options and argument types shared by several subcommands: each defined once, by an ``add_*``
function (``-o/--output``, ``-m/--model``, ``--threads``, ``--device``, ``--pixel-size``,
``-q/--quiet``, ``--overwrite`` …), and offered by every command where it makes sense
(`.parser`, `.model_parser`)."""

from __future__ import annotations

import argparse

from .help import MODEL_HELP, RATING_OPTIONS


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


def channel_counts(text: str) -> list[int]:
    """Comma-separated channel counts, e.g. ``8,24,24,48,48`` (how many the architecture
    needs is checked by `miq train`)."""
    return [positive_int(part.strip()) for part in text.split(",")]


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
