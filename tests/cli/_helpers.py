"""Run one subcommand module the way `callresilience` would, without its `_COMMANDS` table."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

Register = Callable[..., None]


def parser_for(register: Register, **hidden: Any) -> argparse.ArgumentParser:
    """Return a `callresilience` parser holding only the subcommand `register` adds."""
    parser = argparse.ArgumentParser(prog="callresilience")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    register(commands, **hidden)
    return parser


def run(register: Register, argv: Sequence[str], **hidden: Any) -> int:
    """Parse `argv` with the subcommand's parser and return what its handler returns."""
    args = parser_for(register, **hidden).parse_args(list(argv))
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)
