"""Reading a process's CPU time and resident memory from /proc (Linux only).

Owns `cpu_seconds` (utime + stime of a process and its live descendants) and `rss_kb`.
Must not start or stop processes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            kids.extend(int(k) for k in task.read_text().split())
        except OSError:
            continue
    return kids


def _own_cpu_ticks(pid: int) -> int:
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    fields = raw[raw.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return utime + stime


def _own_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid} (a zombie?)")


def _tree_sum(pid: int, own: Callable[[int], int]) -> int:
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            total += own(p)
        except (OSError, ValueError, RuntimeError):
            if p == pid:
                raise
            continue
        todo.extend(_children(p))
    return total


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and its live descendants (all threads), in seconds."""
    return _tree_sum(pid, _own_cpu_ticks) / _TICKS


def rss_kb(pid: int) -> int:
    """VmRSS of `pid` plus that of its live descendants, in KiB."""
    return _tree_sum(pid, _own_rss_kb)
