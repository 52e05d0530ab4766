"""Run one lifecycle variant in a fresh interpreter, for the engine suite.

``python -m benchmarks._lifecycle_run NAME CALLS`` runs the variant `NAME` of
`benchmarks.engine.VARIANTS` once with `CALLS` calls, pinned to one CPU where the OS allows
it, and prints one JSON line: its figures and ``"one_cpu"``. Each run starts from a new
process, so no run inherits the heap, the caches or the garbage of another (the latency
scenario's, or another variant's): the figures do not depend on the order they run in.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from .engine import VARIANTS, one_cpu


def main() -> None:
    """Parse the arguments, run the variant, print its figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("name", choices=sorted(VARIANTS))
    parser.add_argument("calls", type=int)
    args = parser.parse_args()
    variant = VARIANTS[args.name]
    with one_cpu() as pinned:
        figures = asyncio.run(
            variant.scenario(args.calls, variant.concurrency, variant.per_request)
        )
    print(json.dumps({**figures, "one_cpu": pinned}), flush=True)


if __name__ == "__main__":
    main()
