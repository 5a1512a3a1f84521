"""Command line: a thin shell over the public API (``miq --help``).

Exit codes: 0 all good; 1 some inputs failed (the rest were processed); 2 usage error or nothing
could be done (no inputs, bad model, output folder problem).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


def _err(msg: str) -> None:
    print(f"miq: error: {msg}", file=sys.stderr)


def _warn(msg: str) -> None:
    print(f"miq: warning: {msg}", file=sys.stderr)


def _note_missing_plots() -> None:
    from .plots import plots_available

    if not plots_available():
        _warn("PNG plots skipped: matplotlib is not installed (pip install 'miq[plot]')")


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
    files = _without_excluded(files, args.exclude)
    if not files and args.procedural_fraction < 1:
        _err(
            "no training images found (use --procedural-fraction 1 to train on procedural content only)"
        )
        return EXIT_USAGE
    if args.width and args.architecture == "yang2018":
        _err("--width applies to the compact, stride4 and separable architectures only")
        return EXIT_USAGE
    if args.batch_size % args.image_group_size:
        _err(
            f"--image-group-size {args.image_group_size} must be ≥ 1 and divide --batch-size "
            f"{args.batch_size}"
        )
        return EXIT_USAGE
    if not args.image_loss_temperature > 0:
        _err("--image-loss-temperature must be > 0")
        return EXIT_USAGE
    if args.image_loss_weight > 0 and args.image_group_size < 2:
        _err("--image-loss-weight needs --image-group-size ≥ 2 (patches per simulated image)")
        return EXIT_USAGE
    if not 0 <= args.image_distill_weight <= 1:
        _err(f"--image-distill-weight must be in [0, 1], got {args.image_distill_weight}")
        return EXIT_USAGE
    if args.image_distill_weight > 0 and not (args.teacher and args.image_loss_weight > 0):
        _err("--image-distill-weight needs --teacher and --image-loss-weight > 0")
        return EXIT_USAGE
    config = TrainConfig(
        architecture=args.architecture,
        architecture_kwargs={"width": args.width} if args.width else {},
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
        procedural_fraction=args.procedural_fraction,
        max_minutes=args.max_minutes,
        checkpoint_every=args.checkpoint_every,
        threads=args.threads,
        init_from=args.init_from,
        teacher=args.teacher,
        distill_weight=args.distill_weight,
        image_group_size=args.image_group_size,
        image_loss_weight=args.image_loss_weight,
        image_loss_temperature=args.image_loss_temperature,
        image_loss=args.image_loss,
        image_distill_weight=args.image_distill_weight,
        optics=_optics(args),
    )
    command = "miq " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("miq") else None
    meta = train([str(f) for f in files], args.output, config, resume=args.resume, command=command)
    print(f"model written: {meta.parent}")
    return EXIT_OK


def _print_table(results, limit: int = 40) -> None:
    """A short, aligned result table on stdout."""
    header = f"{'file':<44} {'c':>2} {'z':>3} {'level':>5} {'mean':>5} {'~um':>5} {'cert':>5} {'P(in)':>5}  flag"
    print(header)
    for r in results[:limit]:
        name = r.file if len(r.file) <= 44 else "..." + r.file[-41:]
        if r.assessment is None:
            print(f"{name:<44} {r.c:>2} {r.z:>3}  ERROR: {r.error.split(': ', 1)[-1]}")
        else:
            a = r.assessment
            flag = "in focus" if a.in_focus else "OUT OF FOCUS"
            print(
                f"{name:<44} {r.c:>2} {r.z:>3} {a.level:>5} {a.level_mean:>5.2f} {a.defocus_um:>5.1f} "
                f"{a.certainty_aggregate:>5.2f} {a.p_in_focus:>5.2f}  {flag}"
            )
    if len(results) > limit:
        print(f"... {len(results) - limit} more rows in results.csv")


def _run_predict(files, args, model, *, overwrite: bool | None = None) -> int:
    from .assessment import AssessOptions
    from .runs import PlaneSelection, predict_files

    options = AssessOptions(
        in_focus_levels=args.in_focus_levels,
        in_focus_threshold=args.threshold,
        pixel_size_um=args.pixel_size,
    )
    overwrite = args.overwrite if overwrite is None else overwrite
    summary = predict_files(
        files,
        args.output,
        model,
        options=options,
        write_masks=not args.no_masks,
        write_overlays=not args.no_overlays,
        resume=args.resume,
        overwrite=overwrite,
        well_pattern=args.well_pattern,
        rescale=args.rescale,
        select=PlaneSelection(args.channel, args.z, args.t),
        workers=getattr(args, "workers", 1),
        scheduler=getattr(args, "scheduler", None),
        on_error=_err,
        on_warning=_warn,
    )
    if not args.quiet:
        _print_table(summary.results)
    n_ok = sum(not row["error"] for row in summary.rows)
    resumed = (
        f" ({summary.n_resumed_files} files taken from the interrupted run)"
        if summary.n_resumed_files
        else ""
    )
    print(
        f"{n_ok} planes rated from {summary.n_files} files{resumed}; {summary.n_failed_files} "
        f"files and {summary.n_failed_planes} planes failed; results: {summary.csv_path}"
    )
    if getattr(args, "report", False):
        from .report import write_report

        print(f"report: {write_report(args.output)}")
    return EXIT_OK if summary.ok else EXIT_SOME_FAILED


def _find_inputs(inputs: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Expand files/folders/globs; report each input that matched nothing on stderr."""
    from .io import find_images

    missing: list[str] = []
    files = find_images(inputs, on_missing=missing.append)
    for m in missing:
        _err(f"{m}: no such file, or no image in that folder / matching that pattern")
    return files, missing


def _cmd_predict(args: argparse.Namespace) -> int:
    from .model.runtime import load_model

    files, missing = _find_inputs(args.inputs)
    if not files:
        _err("no input images found")
        return EXIT_USAGE
    threads = args.threads
    if threads is None and (args.workers > 1 or args.scheduler):
        threads = 1  # one inference thread per worker unless told otherwise
    model = load_model(args.model, threads=threads, device=args.device)
    code = _run_predict(files, args, model)
    return EXIT_SOME_FAILED if missing and code == EXIT_OK else code


def _cmd_demo(args: argparse.Namespace) -> int:
    """Defocus the bundled sample by the simulator to a few levels and rate the results."""
    import numpy as np
    import tifffile

    from .io import atomic_write
    from .model.runtime import load_model
    from .optics import Optics, degrade

    sample = Path(__file__).parent / "data" / "bbbc022_A01_s3_hoechst.tif"
    image = tifffile.imread(sample).astype(np.float64) / 65535.0
    inputs = Path(args.output) / "demo_inputs"
    files = []
    for z_um in (0.0, 4.0, 10.0, 18.0):
        out = image if z_um == 0 else degrade(image, z_um, optics=Optics(), rng=int(z_um))
        path = inputs / f"bbbc022_A01_s3_defocus_{z_um:04.1f}um.tif"
        with atomic_write(path) as fh:
            tifffile.imwrite(fh, np.round(out * 65535).astype(np.uint16))
        files.append(path)
    print(
        f"demo: bundled BBBC022 Hoechst field, simulated at 0, 4, 10 and 18 um defocus "
        f"(true levels 0, 2, 5, 9) -> {inputs}"
    )
    # the demo's folder holds its own inputs and is rewritten on every run
    return _run_predict(
        files,
        args,
        load_model(args.model, threads=args.threads, device=args.device),
        overwrite=True,
    )


def _cmd_simulate(args: argparse.Namespace) -> int:
    import numpy as np
    import tifffile

    from .io import atomic_write, find_images, read_planes
    from .optics import LevelTable, degrade

    optics = _optics(args)
    table = LevelTable()
    depths = list(args.z_um) + [table.defocus_um[k] for k in args.level]
    if not depths:
        _err("give --z-um and/or --level")
        return EXIT_USAGE
    files = find_images(args.images, on_missing=lambda m: _err(f"{m}: no such image"))
    failed = 0
    for f in files:
        try:
            planes = read_planes(f)
        except Exception as exc:
            _err(str(exc))
            failed += 1
            continue
        for z_um in depths:
            stack = []
            for plane in planes:
                unit = plane.data.astype(np.float64) / 65535.0
                stack.append(
                    degrade(
                        unit,
                        z_um,
                        optics=optics,
                        exposure_factor=args.exposure,
                        rng=args.seed,
                        noise=not args.no_noise,
                    )
                    * 65535.0
                )
            data = np.round(np.stack(stack)).clip(0, 65535).astype(np.uint16)
            out = Path(args.output) / f"{f.stem}_defocus_{z_um:g}um.tif"
            with atomic_write(out) as fh:
                tifffile.imwrite(fh, data[0] if len(stack) == 1 else data)
            print(out)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _cmd_measure(args: argparse.Namespace) -> int:
    from .runs import measure_files

    files, missing = _find_inputs(args.inputs)
    if not files:
        _err("no input images found")
        return EXIT_USAGE
    path, failures = measure_files(files, args.output, on_error=_err)
    print(f"classical focus measures of {len(files)} files: {path}")
    return EXIT_SOME_FAILED if failures or missing else EXIT_OK


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .assessment import AssessOptions
    from .errors import MiqError
    from .evaluation import evaluate, format_table
    from .ground_truth import manifest_items, stack_items, synthetic_items
    from .measures import MEASURES
    from .model.runtime import load_model

    if not (args.manifest or args.stack or args.synthetic):
        _err("nothing to evaluate: give --manifest, --stack or --synthetic")
        return EXIT_USAGE
    if args.stack and not (len(args.z_step) == len(args.best_z) == len(args.stack)):
        _err("give one --z-step and one --best-z for each --stack (in the same order)")
        return EXIT_USAGE
    measures = tuple(m.strip() for m in args.measures.split(",") if m.strip())
    unknown = [m for m in measures if m not in MEASURES]
    if unknown:
        _err(f"unknown measure(s) {', '.join(unknown)}; choose from {', '.join(MEASURES)}")
        return EXIT_USAGE
    model = load_model(args.model, threads=args.threads)  # a bad model: main() reports it
    options = AssessOptions(in_focus_levels=args.in_focus_levels, pixel_size_um=args.pixel_size)
    items, info, failures = [], {}, 0
    for manifest in args.manifest:
        try:
            found = manifest_items(
                manifest,
                um_per_level=model.um_per_level,
                n_levels=model.n_levels,
                in_focus_levels=args.in_focus_levels,
            )
        except (MiqError, OSError) as exc:
            _err(str(exc))
            failures += 1
            continue
        items += found
        info[found[0].dataset] = {"kind": "manifest", "source": str(manifest)}
    for path, z_step, best in zip(args.stack, args.z_step, args.best_z):
        try:
            found = stack_items(path, z_step, best, in_focus_um=args.in_focus_um)
        except (MiqError, OSError) as exc:
            _err(str(exc))
            failures += 1
            continue
        items += found
        info[found[0].dataset] = {
            "kind": "focal stack",
            "source": str(path),
            "z_step_um": z_step,
            "best_z": best,
            "in_focus_um": args.in_focus_um,
        }
    if args.synthetic:
        files, missing = _find_inputs(args.synthetic)
        failures += len(missing)
        optics, levels = model.optics, model.levels  # simulate with the model's own optics
        try:
            found = synthetic_items(
                files,
                seeds=args.seeds,
                optics=optics,
                levels=levels,
                in_focus_levels=args.in_focus_levels,
            )
        except MiqError as exc:
            _err(str(exc))
            return EXIT_SOME_FAILED
        items += found
        info["synthetic"] = {
            "kind": "synthetic defocus of in-focus images",
            "files": [str(f) for f in files],
            "seeds": args.seeds,
            "noise_seed_rule": "1000 * level + seed",
            "optics": dataclasses.asdict(optics),
            "levels_um": list(levels.defocus_um),
            "sensor": "miq.optics.degrade defaults (offset 100 DN, 1 e-/DN)",
        }
    if not items:
        _err("no images to evaluate")
        return EXIT_SOME_FAILED if failures else EXIT_USAGE
    evaluation = evaluate(
        items,
        args.output,
        model,
        measures=measures,
        options=options,
        n_splits=args.splits,
        seed=args.seed,
        datasets_info=info,
        on_error=_err,
    )
    print(format_table(evaluation.metrics))
    _note_missing_plots()
    n_failed = sum(bool(r.error) for r in evaluation.results)
    print(f"{len(items) - n_failed} images evaluated, {n_failed} failed; results: {args.output}")
    return EXIT_SOME_FAILED if failures or n_failed else EXIT_OK


def _cmd_best_focus(args: argparse.Namespace) -> int:
    from .assessment import AssessOptions
    from .measures import MEASURES
    from .model.runtime import load_model
    from .runs import best_focus_files

    if args.fine_measure not in MEASURES:
        _err(f"unknown measure {args.fine_measure}; choose from {', '.join(MEASURES)}")
        return EXIT_USAGE
    missing: list[str] = []
    if args.stack_from_files:  # each input: a folder of single-plane files, ordered by name
        stacks = []
        for folder in args.stacks:
            files, not_found = _find_inputs([folder])
            missing += not_found
            if files:
                stacks.append(sorted(files, key=lambda p: p.name))
    else:
        stacks, missing = _find_inputs(args.stacks)
    if not stacks:
        _err("no stacks found")
        return EXIT_USAGE
    model = load_model(args.model, threads=args.threads)  # a bad model: main() reports it
    errors: list[str] = []

    def report(message: str) -> None:
        errors.append(message)
        _err(message)

    curves = best_focus_files(
        stacks,
        args.output,
        model,
        fine_measure=args.fine_measure,
        plateau=args.plateau,
        options=AssessOptions(pixel_size_um=args.pixel_size),
        save_best=args.save_best,
        on_error=report,
    )
    print(f"{'stack':<60} {'c':>2} {'best z':>6}  rule")
    for curve in curves:
        print(f"{curve.stack[-60:]:<60} {curve.c:>2} {curve.best_z:>6}  {curve.rule}")
    print(f"{len(curves)} stack channels; results: {Path(args.output) / 'best_focus.csv'}")
    _note_missing_plots()
    return EXIT_SOME_FAILED if errors or missing else EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    path = write_report(args.run_dir, args.output, montage_size=args.montage)
    print(f"report: {path} (PNG versions in {path.parent / 'report'})")
    return EXIT_OK


def _cmd_export_bioimageio(args: argparse.Namespace) -> int:
    from .bioimageio_export import export_bioimageio

    path = export_bioimageio(args.output, args.model)
    print(f"bioimage.io package: {path}")
    return EXIT_OK


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibration import calibrate_model
    from .errors import MiqError

    files, missing = _find_inputs(args.images)
    files = _without_excluded(files, args.exclude)
    if not files:
        _err("no validation images found")
        return EXIT_USAGE
    try:
        calibrate_model(args.model, files, seeds=args.seeds)
    except MiqError as exc:
        _err(str(exc))
        return EXIT_SOME_FAILED
    print(f"calibration written to {args.model}")
    return EXIT_SOME_FAILED if missing else EXIT_OK


def _without_excluded(files: list[Path], patterns: Sequence[str]) -> list[Path]:
    """Files whose path contains none of ``patterns`` (``--exclude``)."""
    return [f for f in files if not any(p in str(f) for p in patterns)]


def _index_set(text: str) -> frozenset[int]:
    try:
        values = frozenset(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected indices like 0 or 0,2, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected indices ≥ 0, got {text!r}")
    return values


def _regex(text: str) -> str:
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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


_MODEL_HELP = (
    "model folder or model.json, or a bundled model: default (most accurate) or fast (~2.5x "
    "faster, less well calibrated); default: default"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="miq",
        description="Microscope image focus quality: absolute defocus level per patch and image.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")

    def add_exclude_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--exclude",
            action="append",
            default=[],
            metavar="TEXT",
            help="skip files whose path contains TEXT (repeatable), e.g. held-out test fields",
        )

    def add_pixel_size_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--pixel-size",
            type=_positive_float,
            default=None,
            metavar="UM",
            help="the images' pixel size in µm: resample to the model's (0.65 µm) before rating; "
            "without it images are taken to be at the model's pixel size",
        )

    def add_predict_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("-o", "--output", required=True, help="output folder")
        p.add_argument("-m", "--model", default=None, help=_MODEL_HELP)
        p.add_argument(
            "--in-focus-levels",
            type=int,
            default=3,
            help="levels 0..N-1 count as in focus (default 3: levels 0-2)",
        )
        p.add_argument(
            "--threshold",
            type=float,
            default=0.5,
            help="flag in focus when P(in focus) >= this (default 0.5)",
        )
        add_pixel_size_option(p)
        for flag, what in (("--channel", "channels"), ("--z", "z planes"), ("--t", "time points")):
            p.add_argument(
                flag,
                type=_index_set,
                default=None,
                metavar="I[,J...]",
                help=f"rate only these {what} (0-based, comma-separated; default all)",
            )
        p.add_argument(
            "--rescale",
            action="store_true",
            help="resample each file to the model's pixel size using the pixel size the file "
            "records (OME or ImageJ calibration); files without one are taken as they are",
        )
        p.add_argument("--no-masks", action="store_true", help="do not write mask TIFFs")
        p.add_argument("--no-overlays", action="store_true", help="do not write overlay PNGs")
        p.add_argument(
            "--threads",
            type=_positive_int,
            default=None,
            help="inference threads per process (default: all cores; 1 with --workers or "
            "--scheduler)",
        )
        p.add_argument(
            "--device",
            choices=["cpu", "cuda"],
            default="cpu",
            help="run the model on the CPU (default) or a CUDA GPU (through onnxruntime-gpu, "
            "or else torch with CUDA)",
        )
        p.add_argument("-q", "--quiet", action="store_true", help="no result table on the terminal")
        p.add_argument(
            "--well-pattern",
            type=_regex,
            default=None,
            metavar="REGEX",
            help="regular expression with named groups well (or row and col) and optionally "
            "site, matched in file names (default: built-in plate naming patterns)",
        )
        p.add_argument(
            "--resume",
            action="store_true",
            help="finish an interrupted run in OUTPUT: rate only the files it had not completed",
        )
        p.add_argument(
            "--overwrite",
            action="store_true",
            help="write into a non-empty OUTPUT, replacing its results (default: refuse)",
        )
        p.add_argument(
            "--report",
            action="store_true",
            help="also write OUTPUT/report.html (as miq report does; needs matplotlib)",
        )

    p = sub.add_parser("predict", help="rate the focus of images (files, folders, globs)")
    p.add_argument("inputs", nargs="+", help="image files, folders (searched recursively) or globs")
    add_predict_options(p)
    scale = p.add_mutually_exclusive_group()
    scale.add_argument(
        "--workers",
        type=_positive_int,
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
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "report", help="one self-contained HTML report (and PNGs) of a predict run's folder"
    )
    p.add_argument("run_dir", help="output folder of miq predict (with results.csv)")
    p.add_argument(
        "-o", "--output", default=None, help="HTML file to write (default RUN_DIR/report.html)"
    )
    p.add_argument(
        "--montage",
        type=_positive_int,
        default=12,
        metavar="N",
        help="images in each montage of most and least in-focus planes (default 12)",
    )
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser(
        "export-bioimageio",
        help="write a model as a bioimage.io model package (needs the 'bioimageio' extra)",
    )
    p.add_argument("-o", "--output", required=True, help="package to write (.zip)")
    p.add_argument("-m", "--model", default=None, help=_MODEL_HELP)
    p.set_defaults(func=_cmd_export_bioimageio)

    p = sub.add_parser("measure", help="classical focus measures (CellProfiler definitions)")
    p.add_argument("inputs", nargs="+", help="image files, folders or globs")
    p.add_argument("-o", "--output", required=True, help="output folder (measures.csv)")
    p.set_defaults(func=_cmd_measure)

    p = sub.add_parser("demo", help="run predict on the bundled sample, defocused by the simulator")
    add_predict_options(p)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "simulate",
        help="defocus images with the physical simulator",
        description="Pixel values are taken as DN of a 16-bit camera (1 photoelectron per DN, "
        "offset 100 DN, as in the original simulator); output is uint16.",
    )
    p.add_argument("images", nargs="+", help="in-focus image files, folders or globs")
    p.add_argument("-o", "--output", required=True, help="output folder (uint16 TIFFs)")
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
    _add_optics(p)
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser(
        "evaluate",
        help="compare miq with classical focus measures on images of known focus",
        description="Rate images of known focus with miq and the classical measures; write "
        "summary.json, predictions.csv, metrics.csv, confusion matrices, reliability diagrams.",
    )
    p.add_argument("-o", "--output", required=True, help="output folder")
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
        type=_positive_float,
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
        type=_positive_float,
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
    p.add_argument("--seeds", type=_positive_int, default=2, help="noise seeds per synthetic level")
    p.add_argument(
        "--measures",
        default=",".join(
            (
                "plls",
                "focus_score",
                "local_focus_score_20",
                "variance_of_laplacian",
                "tenengrad",
                "brenner",
                "correlation_20",
            )
        ),
        help="comma-separated classical measures to compare",
    )
    p.add_argument(
        "--splits", type=_positive_int, default=100, help="random 10/90 splits for the F-score"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random splits")
    p.add_argument("-m", "--model", default=None, help=_MODEL_HELP)
    p.add_argument(
        "--in-focus-levels", type=int, default=3, help="levels 0..N-1 count as in focus (default 3)"
    )
    p.add_argument("--threads", type=int, default=None, help="inference threads")
    add_pixel_size_option(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "best-focus",
        help="the best-focused plane of each z-stack (per channel)",
        description="Per stack and channel: the model's focus curve (expected level per plane), "
        "its in-focus plateau (within --plateau levels of the minimum), and on it the plane "
        "with the highest fine sharpness measure. Writes best_focus.csv, curves.csv, "
        "curves/*.png and, with --save-best, best/*.tif.",
    )
    p.add_argument("stacks", nargs="+", help="stack files (with a Z axis), folders or globs")
    p.add_argument("-o", "--output", required=True, help="output folder")
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
    p.add_argument("-m", "--model", default=None, help=_MODEL_HELP)
    p.add_argument("--threads", type=int, default=None, help="inference threads")
    add_pixel_size_option(p)
    p.set_defaults(func=_cmd_best_focus)

    p = sub.add_parser(
        "calibrate",
        help="fit a model's calibration on synthetic defocus of in-focus validation images",
        description="Fit per-level bias and temperatures (see miq.calibration) on in-focus "
        "images defocused to every level, and store them in the model's model.json.",
    )
    p.add_argument("images", nargs="+", help="in-focus validation images (not test fields)")
    p.add_argument("-m", "--model", required=True, help="model folder or model.json to update")
    add_exclude_option(p)
    p.add_argument("--seeds", type=_positive_int, default=1, help="noise seeds per level")
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser("train", help="train a model on in-focus images (needs the 'train' extra)")
    p.add_argument("images", nargs="+", help="in-focus image files, folders or globs")
    p.add_argument("-o", "--output", required=True, help="output folder for the model")
    add_exclude_option(p)
    p.add_argument(
        "--architecture",
        default="compact",
        choices=["compact", "stride4", "separable", "yang2018"],
        help="compact (the default model's), stride4 (about 3x fewer multiply-adds), separable "
        "(stride4's stem, then 5 depthwise-separable blocks; about stride4's speed) or yang2018",
    )
    p.add_argument(
        "--width",
        type=_positive_int,
        default=None,
        help="channels of the first layer (compact: default 16, 8 is ~4x faster; stride4 and "
        "separable: 32)",
    )
    p.add_argument("--steps", type=int, default=20000, help="optimisation steps")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (one-cycle)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--procedural-fraction",
        type=float,
        default=0.3,
        help="share of samples from procedural in-focus content (0..1)",
    )
    p.add_argument(
        "--teacher",
        default=None,
        metavar="MODEL",
        help="distil: also learn this trained model's predictions (folder or model.json)",
    )
    p.add_argument(
        "--distill-weight",
        type=float,
        default=0.7,
        help="share of the loss from the teacher (default 0.7)",
    )
    p.add_argument(
        "--image-group-size",
        type=_positive_int,
        default=1,
        metavar="M",
        help="simulate batches as images of M patches sharing content, level and camera "
        "(default 1: every patch independent)",
    )
    p.add_argument(
        "--image-loss-weight",
        type=float,
        default=0.0,
        help="add this × the --image-loss of each simulated image's certainty-weighted level "
        "distribution (as `miq predict` aggregates) to the loss; needs --image-group-size ≥ 2 "
        "(default 0)",
    )
    p.add_argument(
        "--image-loss",
        choices=["rps", "nll"],
        default="rps",
        help="the per-image loss: ranked probability score (default) or log loss",
    )
    p.add_argument(
        "--image-loss-temperature",
        type=float,
        default=1.0,
        help="sharpen each simulated image's distribution by p^(1/T) before its loss, as the "
        "model's image temperature does at inference (default 1: none)",
    )
    p.add_argument(
        "--image-distill-weight",
        type=float,
        default=0.0,
        help="share (0..1) of the image loss taken from the --teacher's calibrated whole-image "
        "distribution (cross-entropy against it, the teacher's stored calibration applied as "
        "`miq predict` does) instead of the true level (default 0)",
    )
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and export) after this")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pt")
    p.add_argument(
        "--init-from",
        default=None,
        metavar="WEIGHTS",
        help="fine-tune: start from a model.safetensors or checkpoint.pt of the same architecture",
    )
    _add_optics(p)
    p.set_defaults(func=_cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    for stream in (sys.stdout, sys.stderr):  # file names that are not valid UTF-8 print as \xNN
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    import logging

    logging.getLogger("tifffile").setLevel(logging.ERROR)  # one line per bad file: ours
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
