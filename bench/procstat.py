"""CPU time and resident memory of a process and its descendants, read from /proc.

Some servers run their worker in a child process (granian always does, even with one worker),
so every figure is summed over the whole process tree under the launched pid.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Final

CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (which may hold spaces)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def children(pid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants that are alive now."""
    pids, index = [pid], 0
    while index < len(pids):
        pids.extend(children(pids[index]))
        index += 1
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time of ``pids`` (fields 14 and 15 of /proc/PID/stat)."""
    return sum(cpu_times(pids))


def cpu_times(pids: list[int]) -> tuple[float, float]:
    """User and system CPU time of ``pids``, apart."""
    user = system = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            user += int(fields[11])
            system += int(fields[12])
    return user / CLOCK_TICKS, system / CLOCK_TICKS


def rss_bytes(pids: list[int]) -> int:
    """Resident set size of ``pids``, summed (the second field of /proc/PID/statm)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return total * PAGE_SIZE
