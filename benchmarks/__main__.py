"""``python -m benchmarks [SUITE] [--quick] [--json PATH]``."""

from __future__ import annotations

import argparse
import sys

from . import _common, client, drain, engine, journal, memory, offer_path, router


def _journal(*, quick: bool) -> dict[str, object]:
    """The journal's own figures, then a backlog drained against a rate limit."""
    return {**journal.run(quick=quick), "drain": drain.run(quick=quick)}


SUITES = {
    "client": client.run,
    "engine": engine.run,
    "journal": _journal,
    "memory": memory.run,
    "offer_path": offer_path.run,
    "router": router.run,
}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen suites (all by default) and print their figures."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("suite", nargs="?", choices=sorted(SUITES), help="one suite (default all)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under 2 minutes")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    results: dict[str, object] = {}
    for name in [args.suite] if args.suite else sorted(SUITES):
        results[name] = SUITES[name](quick=args.quick)
    results["machine"] = _common.machine()
    _common.write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
