"""Command line: a thin shell over the public API (``miq --help``).

`.parser` holds the grammar (argparse only), `.help` what ``--help`` says, and
`.commands` each subcommand's body. Exit codes: 0 all good; 1 some inputs failed (the rest
were processed); 2 usage error or nothing could be done; 130 interrupted.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .parser import build_parser

__all__ = ["main", "build_parser"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    for stream in (sys.stdout, sys.stderr):  # file names that are not valid UTF-8 print as \xNN
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    import logging

    from .commands import COMMANDS, EXIT_OK, EXIT_USAGE, error

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

    try:
        return COMMANDS[args.command](args)
    except MiqError as exc:
        error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        if args.command == "predict":
            error(
                "interrupted; the files rated so far are kept: run the same command with "
                "--resume to rate the rest"
            )
        else:
            error("interrupted")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
