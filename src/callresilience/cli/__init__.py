"""The `callresilience` command line.

Each subcommand lives in its own module and registers itself through `_COMMANDS`: a function
that adds an `argparse` sub-parser and sets `handler` on it. A handler returns the exit status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from . import _check, _fake, _journal, _simulate

__all__ = ["main"]

_COMMANDS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (
    _simulate.register,
    _journal.register,
    _check.register,
    _fake.register,
)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="callresilience",
        description="Offer every call whatever the state of ServiceNow.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for register in _COMMANDS:
        register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
