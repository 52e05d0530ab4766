"""`callresilience fake-servicenow`: serve the FakeServiceNow on 127.0.0.1 until stopped."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `fake-servicenow` subcommand."""
    parser = commands.add_parser(
        "fake-servicenow",
        help="serve a fake ServiceNow instance on 127.0.0.1",
        description=(
            "Serve an in-memory ServiceNow Table API and OAuth token endpoint on 127.0.0.1, "
            "seeded with agent users, until SIGINT or SIGTERM. Prints the base URL first."
        ),
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    parser.add_argument("--user", help="basic-auth user (default: no authentication)")
    parser.add_argument("--password", help="basic-auth password")
    parser.add_argument("--seed", type=int, default=0, help="seed for sys_ids and faults")
    parser.add_argument(
        "--lenient-tables",
        action="store_true",
        help="create unknown tables on first use instead of answering 'Invalid table'",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    if (args.user is None) != (args.password is None):
        print("error: give both --user and --password, or neither", file=sys.stderr)
        return 2
    return asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    from ..testing import FakeServiceNow  # noqa: PLC0415 (keep `callresilience --help` light)

    fake = FakeServiceNow(
        seed=args.seed,
        user=args.user,
        password=args.password,
        strict_tables=not args.lenient_tables,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with fake.serve(port=args.port) as base_url:
            print(base_url, flush=True)
            await stop.wait()
    except RuntimeError as exc:  # uvicorn missing
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0
