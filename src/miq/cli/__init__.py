"""Command line: a thin shell over the public API (``miq --help``).

`.parser` holds the grammar (argparse only; `.model_parser` that of train, average-weights and
calibrate), `.help` what ``--help`` says, and `.commands` each subcommand's body
(`.model_commands` those of train, average-weights and calibrate; `.common` what they share). Exit codes: 0 all good; 1 some inputs failed (the rest
were processed); 2 usage error or nothing could be done; 130 interrupted (Ctrl-C); 143 terminated
(SIGTERM: handled as an interruption, so that worker processes are stopped and temporary files
removed).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Sequence

from .parser import build_parser

__all__ = ["main", "build_parser"]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread: the run stops as after Ctrl-C (cleanly)."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    for stream in (sys.stdout, sys.stderr):  # file names that are not valid UTF-8 print as \xNN
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    import logging

    from .commands import COMMANDS
    from .common import EXIT_OK, EXIT_USAGE, error

    logging.getLogger("tifffile").setLevel(logging.ERROR)  # one line per bad file: ours
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from .. import __version__

        print(f"miq {__version__}")
        return EXIT_OK
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    from ..errors import MiqError

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        return COMMANDS[args.command](args)
    except MiqError as exc:
        error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        if args.command == "predict":
            error(
                f"{what}; the files rated so far are kept: run the same command with "
                "--resume to rate the rest"
            )
        else:
            error(what)
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
