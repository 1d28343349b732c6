"""Seconds since this process started, for the cold-start phases.

Measured from the kernel's process start time, not from when Python got to our
code, so interpreter start-up and imports are counted in ``process_start``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

_IMPORTED_AT = time.monotonic()


def seconds_since_process_start() -> float:
    """Age of this process (Linux ``/proc``; elsewhere, time since this module was imported)."""
    try:
        # Field 22 of /proc/self/stat is the start time in clock ticks since boot;
        # the command name (field 2) may contain spaces, so split after its ')'.
        fields = Path("/proc/self/stat").read_text().rpartition(")")[2].split()
        started_after_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - started_after_boot)
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED_AT
