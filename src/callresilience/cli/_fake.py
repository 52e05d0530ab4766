"""`callresilience fake-servicenow`: serve the FakeServiceNow on 127.0.0.1 until stopped."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `fake-servicenow` subcommand."""
    parser = commands.add_parser(
        "fake-servicenow", help="serve a fake ServiceNow instance on 127.0.0.1"
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    raise SystemExit("fake-servicenow is not available yet")
