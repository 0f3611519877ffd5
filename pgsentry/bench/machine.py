"""What the benchmark ran on: CPU, kernel, Python and the versions of the programs measured.

Owns collecting that description as (name, value) pairs. Must not measure performance.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

from pgsentry.bench.middles import pgbouncer_version


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) // 1024} MiB"
    except OSError:
        pass
    return "unknown"


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
    except OSError:
        return "not found"
    lines = out.stdout.strip().splitlines()
    return lines[0] if lines else "unknown"


def describe(bindir: Path, server_version: str) -> list[tuple[str, str]]:
    """The machine and software versions, for the report header."""
    affinity = len(os.sched_getaffinity(0))
    return [
        ("nproc", f"{affinity} (os.cpu_count {os.cpu_count()})"),
        ("CPU", _cpu_model()),
        ("memory", _mem_total()),
        ("kernel", f"{platform.system()} {platform.release()}"),
        ("Python", f"{platform.python_implementation()} {sys.version.split()[0]}"),
        ("PostgreSQL", server_version),
        ("pgbench", _first_line([str(bindir / "pgbench"), "--version"])),
        ("pgbouncer", pgbouncer_version() or "not installed"),
    ]
