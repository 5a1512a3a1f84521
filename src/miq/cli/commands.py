"""The body of each ``miq`` subcommand: check its arguments, make one API call, print.

Exit codes: 0 all good; 1 some inputs failed (the rest were processed); 2 usage error or nothing
could be done (no inputs, bad model, output folder problem).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    error,
    find_inputs,
    optics_from,
    warn,
)
from .model_commands import average_weights, calibrate, train
from .show import print_results_table, say

__all__ = ["COMMANDS", "EXIT_OK", "EXIT_SOME_FAILED", "EXIT_USAGE"]


def _note_missing_plots() -> None:
    from ..errors import install_hint
    from ..plots import plots_available

    if not plots_available():
        warn("PNG plots skipped: matplotlib is not installed (" + install_hint("plot") + ")")


def _run_predict(files, args, model, *, overwrite: bool | None = None) -> int:
    from ..errors import install_hint
    from ..io import ReadOptions
    from ..plots import plots_available
    from ..runs import PlaneSelection, predict_files
    from ..runs.outputs import OutputOptions

    if getattr(args, "report", False) and not plots_available():  # before rating anything
        error("--report needs matplotlib, not installed: " + install_hint("plot"))
        return EXIT_USAGE
    if not 1 <= args.in_focus_levels < model.n_levels:
        error(f"--in-focus-levels must be 1 to {model.n_levels - 1}, got {args.in_focus_levels}")
        return EXIT_USAGE
    options = _assess_options(
        args, in_focus_levels=args.in_focus_levels, in_focus_threshold=args.threshold
    )
    overwrite = args.overwrite if overwrite is None else overwrite
    summary = predict_files(
        files,
        args.output,
        model,
        options=options,
        outputs=OutputOptions(args.masks, args.overlays, args.overlay_size),
        read=ReadOptions(
            args.axes,
            samples_as_channels=args.channel is not None,
            memory_budget=args.memory_budget,
        ),
        resume=args.resume,
        overwrite=overwrite,
        well_pattern=args.well_pattern,
        select=PlaneSelection(args.channel, args.z, args.t),
        workers=getattr(args, "workers", 1),
        scheduler=getattr(args, "scheduler", None),
        on_error=error,
        on_warning=warn,
    )
    if not args.quiet:
        print_results_table(summary.rows)
    n_ok = sum(not row["error"] for row in summary.rows)
    n_empty = sum(str(row.get("empty")) == "1" for row in summary.rows)
    resumed = (
        f" ({summary.n_resumed_files} files taken from the interrupted run)"
        if summary.n_resumed_files
        else ""
    )
    empty = f" ({n_empty} empty: nothing above the noise)" if n_empty else ""
    say(
        f"{n_ok} planes rated from {summary.n_files} files{resumed}{empty}; "
        f"{summary.n_failed_files} files and {summary.n_failed_planes} planes failed; "
        f"results: {summary.csv_path}"
    )
    if getattr(args, "report", False):
        from ..report import write_report

        say(f"report: {write_report(args.output)}")
    return EXIT_OK if summary.ok else EXIT_SOME_FAILED


def _assess_options(args: argparse.Namespace, **more):
    """`miq.AssessOptions` with the pixel-size options every rating command has
    (``--pixel-size``, ``--ignore-file-pixel-size``: `miq.cli.options.add_pixel_size`)."""
    from ..assessment import AssessOptions

    return AssessOptions(
        pixel_size_um=args.pixel_size, use_file_pixel_size=not args.ignore_file_pixel_size, **more
    )


def predict(args: argparse.Namespace) -> int:
    from ..model.runtime import load_model

    files, missing = find_inputs(args.inputs, args.output)
    if not files:
        error("no input images found")
        return EXIT_USAGE
    threads = args.threads
    if threads is None and (args.workers > 1 or args.scheduler):
        threads = 1  # one inference thread per worker unless told otherwise
    model = load_model(args.model, threads=threads, device=args.device)
    code = _run_predict(files, args, model)
    return EXIT_SOME_FAILED if missing and code == EXIT_OK else code


def demo(args: argparse.Namespace) -> int:
    """Defocus the bundled sample by the simulator to a few levels and rate the results."""
    import tifffile

    from ..data import defocus_series
    from ..io import atomic_write
    from ..io.folder import OutputFolder
    from ..model.runtime import load_model

    if args.resume:
        error("miq demo always starts afresh (it rewrites its folder); --resume is for miq predict")
        return EXIT_USAGE
    depths_um = (0.0, 4.0, 10.0, 18.0)
    # the demo's folder holds its own inputs and is rewritten on every run (only ever a folder
    # of miq's own: anything else is refused)
    OutputFolder.prepare(args.output, command="predict", settings={}, overwrite=True).close()
    inputs = Path(args.output) / "demo_inputs"
    files = []
    for z_um, plane in zip(depths_um, defocus_series(depths_um)):
        path = inputs / f"bbbc022_A01_s3_defocus_{z_um:04.1f}um.tif"
        with atomic_write(path) as fh:
            tifffile.imwrite(fh, plane)
        files.append(path)
    say(
        f"demo: bundled BBBC022 Hoechst field, simulated at 0, 4, 10 and 18 um defocus "
        f"(true levels 0, 2, 5, 9) -> {inputs}"
    )
    return _run_predict(
        files,
        args,
        load_model(args.model, threads=args.threads, device=args.device),
        overwrite=True,
    )


def simulate(args: argparse.Namespace) -> int:
    from ..errors import MiqError
    from ..io import find_images
    from ..optics import LevelTable
    from ..simulate import simulate_file

    depths = list(args.z_um) + [LevelTable().defocus_um[k] for k in args.level]
    if not depths:
        error("give --z-um and/or --level")
        return EXIT_USAGE
    files = find_images(
        args.images,
        on_missing=lambda m: error(f"{m}: no such image"),
        on_refused=error,
        on_skipped=say,
    )
    failed = 0
    for f in files:
        try:
            written = simulate_file(
                f,
                args.output,
                depths,
                optics=optics_from(args),
                exposure=args.exposure,
                seed=args.seed,
                noise=not args.no_noise,
                memory_budget=args.memory_budget,
            )
        except MiqError as exc:
            error(str(exc))
            failed += 1
            continue
        for out in written:
            say(out)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def measure(args: argparse.Namespace) -> int:
    from ..io import ReadOptions
    from ..runs import measure_files

    files, missing = find_inputs(args.inputs, args.output)
    if not files:
        error("no input images found")
        return EXIT_USAGE

    options = _assess_options(args)
    path, failures = measure_files(
        files,
        args.output,
        options=options,
        overwrite=args.overwrite,
        read=ReadOptions(args.axes, memory_budget=args.memory_budget),
        on_error=error,
    )
    say(f"classical focus measures of {len(files)} files: {path}")
    return EXIT_SOME_FAILED if failures or missing else EXIT_OK


def evaluate(args: argparse.Namespace) -> int:
    from ..errors import MiqError
    from ..evaluation import evaluate as run_evaluation
    from ..evaluation import format_table
    from ..ground_truth import collect_items
    from ..measures import MEASURES
    from ..model.runtime import load_model

    if not (args.manifest or args.stack or args.synthetic):
        error("nothing to evaluate: give --manifest, --stack or --synthetic")
        return EXIT_USAGE
    if args.stack and not (len(args.z_step) == len(args.best_z) == len(args.stack)):
        error("give one --z-step and one --best-z for each --stack (in the same order)")
        return EXIT_USAGE
    measures = tuple(m.strip() for m in args.measures.split(",") if m.strip())
    unknown = [m for m in measures if m not in MEASURES]
    if unknown:
        error(f"unknown measure(s) {', '.join(unknown)}; choose from {', '.join(MEASURES)}")
        return EXIT_USAGE
    model = load_model(args.model, threads=args.threads, device=args.device)
    synthetic, missing = find_inputs(args.synthetic) if args.synthetic else ([], [])
    try:
        truth = collect_items(
            model,
            manifests=args.manifest,
            stacks=list(zip(args.stack, args.z_step, args.best_z)),
            synthetic=synthetic,
            seeds=args.seeds,
            in_focus_levels=args.in_focus_levels,
            in_focus_um=args.in_focus_um,
            use_file_pixel_size=not args.ignore_file_pixel_size,
            memory_budget=args.memory_budget,
            on_error=error,
        )
    except MiqError as exc:
        error(str(exc))
        return EXIT_SOME_FAILED
    failures = truth.failures + len(missing)
    if not truth.items:
        error("no images to evaluate")
        return EXIT_SOME_FAILED if failures else EXIT_USAGE
    _warn_if_trained_on(model, {item.source for item in truth.items if item.source})
    evaluation = run_evaluation(
        truth.items,
        args.output,
        model,
        overwrite=args.overwrite,
        measures=measures,
        options=_assess_options(args, in_focus_levels=args.in_focus_levels),
        n_splits=args.splits,
        seed=args.seed,
        datasets_info=truth.info,
        on_error=error,
    )
    print(format_table(evaluation.metrics))
    _note_missing_plots()
    n_failed = sum(bool(r.error) for r in evaluation.results)
    say(
        f"{len(truth.items) - n_failed} images evaluated, {n_failed} failed; results: {args.output}"
    )
    return EXIT_SOME_FAILED if failures or n_failed else EXIT_OK


def _warn_if_trained_on(model, sources: set[str]) -> None:
    """One warning line when the model, or a model it was built from, trained on some of the
    files evaluated (matched by folder and file name: `miq.model.lineage`)."""
    from ..model.lineage import lineage

    seen = lineage(model.package.path).seen(sorted(sources))
    if seen:
        by = ", ".join(sorted(set(seen.values())))
        warn(
            f"{len(seen)} of the {len(sources)} files evaluated were used to train {model.name} "
            f"or a model it was built from ({by}; e.g. {min(seen)}): their accuracy is not "
            "held out"
        )


def best_focus(args: argparse.Namespace) -> int:
    from ..io import ReadOptions
    from ..measures import MEASURES
    from ..model.runtime import load_model
    from ..runs import best_focus_files

    if args.fine_measure not in MEASURES:
        error(f"unknown measure {args.fine_measure}; choose from {', '.join(MEASURES)}")
        return EXIT_USAGE
    missing: list[str] = []
    if args.stack_from_files:  # each input: a folder of single-plane files, ordered by name
        stacks = []
        for folder in args.stacks:
            files, not_found = find_inputs([folder], args.output)
            missing += not_found
            if files:
                stacks.append(sorted(files, key=lambda p: p.name))
    else:
        stacks, missing = find_inputs(args.stacks, args.output)
    if not stacks:
        error("no stacks found")
        return EXIT_USAGE
    model = load_model(args.model, threads=args.threads, device=args.device)
    errors: list[str] = []

    def report(message: str) -> None:
        errors.append(message)
        error(message)

    curves = best_focus_files(
        stacks,
        args.output,
        model,
        overwrite=args.overwrite,
        read=ReadOptions(args.axes, memory_budget=args.memory_budget),
        fine_measure=args.fine_measure,
        plateau=args.plateau,
        options=_assess_options(args),
        save_best=args.save_best,
        on_error=report,
    )
    if not args.quiet:
        say(f"{'stack':<60} {'c':>2} {'best z':>6}  rule")
        for curve in curves:
            say(f"{curve.stack[-60:]:<60} {curve.c:>2} {curve.best_z:>6}  {curve.rule}")
    say(f"{len(curves)} stack channels; results: {Path(args.output) / 'best_focus.csv'}")
    _note_missing_plots()
    return EXIT_SOME_FAILED if errors or missing else EXIT_OK


def report(args: argparse.Namespace) -> int:
    from ..report import write_report

    path = write_report(args.run_dir, args.output, montage_size=args.montage)
    say(f"report: {path} (PNG versions in {path.parent / 'report'})")
    return EXIT_OK


def export_bioimageio(args: argparse.Namespace) -> int:
    from ..export import export_bioimageio

    path = export_bioimageio(args.output, args.model)
    say(f"bioimage.io package: {path}")
    return EXIT_OK


#: subcommand name -> its function
COMMANDS = {
    "predict": predict,
    "report": report,
    "export-bioimageio": export_bioimageio,
    "measure": measure,
    "demo": demo,
    "simulate": simulate,
    "evaluate": evaluate,
    "best-focus": best_focus,
    "calibrate": calibrate,
    "train": train,
    "average-weights": average_weights,
}
