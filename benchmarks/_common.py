"""What every benchmark shares: the machine description and the output helpers."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """Describe the machine the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "cpu": cpu,
        "cores": os.cpu_count(),
    }


def write_json(path: str | None, results: dict[str, Any]) -> None:
    """Write the results to `path` (when given) as indented JSON."""
    if path:
        Path(path).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {path}")


def table(title: str, rows: list[tuple[str, str, str]]) -> None:
    """Print a three-column table: measure, figure, target."""
    width = max(len(r[0]) for r in rows)
    print(f"\n{title}")
    print("-" * len(title))
    for name, figure, target in rows:
        print(f"  {name:<{width}}  {figure:>14}  {target}")
