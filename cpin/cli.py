"""The `cpin` command line: parse, dispatch, map outcomes to the exit codes users rely on.

Exit codes (DESIGN.md §7): 0 success / certified, 1 a negative verdict (invalid spec, not
certified), 2 usage or configuration error (one line on stderr), 3 the tool itself broke.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from cpin import __version__

EXIT_USAGE = 2
EXIT_BROKEN = 3


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line: scripts grep it, people read it."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cpin", description="CPIN conformance kit")
    parser.add_argument("--version", action="version", version=f"cpin {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    spec = commands.add_parser("spec", help="work with the standard in spec/")
    spec_commands = spec.add_subparsers(dest="spec_command", required=True, parser_class=_Parser)
    validate = spec_commands.add_parser("validate", help="validate the spec folder")
    validate.add_argument(
        "--spec",
        type=Path,
        metavar="DIR",
        help="spec folder to validate (default: the shipped one)",
    )
    validate.set_defaults(run=_spec_validate)
    return parser


def _spec_validate(args: argparse.Namespace) -> int:
    from cpin.spec_command import run_validate

    if args.spec is not None and not args.spec.is_dir():
        print(f"cpin: error: spec folder {args.spec} does not exist", file=sys.stderr)
        return EXIT_USAGE
    return run_validate(args.spec)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        print("cpin: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # last resort: one line, not a traceback, and the "broke" code
        print(f"cpin: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_BROKEN
    return code
