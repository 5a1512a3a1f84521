"""Command line: a thin shell over the public API (``miq --help``).

Exit codes: 0 all good; 1 some inputs failed (the rest were processed); 2 usage error or nothing
could be done (no inputs, bad model, output folder problem).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


def _err(msg: str) -> None:
    print(f"miq: error: {msg}", file=sys.stderr)


def _add_optics(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("optics (the simulator's defaults are Yang et al. 2018's)")
    g.add_argument("--wavelength-nm", type=float, default=500.0)
    g.add_argument("--na", type=float, default=0.5, help="numerical aperture")
    g.add_argument("--refractive-index", type=float, default=1.0)
    g.add_argument("--pixel-size-um", type=float, default=0.65)
    g.add_argument("--psf-width-px", type=int, default=51)


def _optics(args: argparse.Namespace):
    from .optics import Optics

    return Optics(
        wavelength_nm=args.wavelength_nm,
        numerical_aperture=args.na,
        refractive_index=args.refractive_index,
        pixel_size_um=args.pixel_size_um,
        psf_width_px=args.psf_width_px,
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from .io import find_images
    from .training.train import TrainConfig, train

    missing: list[str] = []
    files = find_images(args.images, on_missing=missing.append)
    for m in missing:
        _err(f"{m}: no such file, folder or matching image")
    files = [f for f in files if not any(x in str(f) for x in args.exclude)]
    if not files and args.procedural_fraction < 1:
        _err("no training images found (use --procedural-fraction 1 to train on procedural content only)")
        return EXIT_USAGE
    config = TrainConfig(
        architecture=args.architecture,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
        procedural_fraction=args.procedural_fraction,
        max_minutes=args.max_minutes,
        checkpoint_every=args.checkpoint_every,
        threads=args.threads,
        optics=_optics(args),
    )
    command = "miq " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("miq") else None
    meta = train([str(f) for f in files], args.output, config, resume=args.resume, command=command)
    print(f"model written: {meta.parent}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="miq",
        description="Microscope image focus quality: absolute defocus level per patch and image.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("train", help="train a model on in-focus images (needs the 'train' extra)")
    p.add_argument("images", nargs="+", help="in-focus image files, folders or globs")
    p.add_argument("-o", "--output", required=True, help="output folder for the model")
    p.add_argument("--exclude", action="append", default=[], metavar="TEXT",
                   help="skip files whose path contains TEXT (repeatable), e.g. held-out fields")
    p.add_argument("--architecture", default="compact", choices=["compact", "yang2018"])
    p.add_argument("--steps", type=int, default=20000, help="optimisation steps")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (one-cycle)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--procedural-fraction", type=float, default=0.3,
                   help="share of samples from procedural in-focus content (0..1)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and export) after this")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pt")
    _add_optics(p)
    p.set_defaults(func=_cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(f"miq {__version__}")
        return EXIT_OK
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    from .errors import MiqError

    try:
        return args.func(args)
    except MiqError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
