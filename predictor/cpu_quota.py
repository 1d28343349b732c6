"""How many CPU threads this container may really use.

In a pod with ``resources.limits.cpu: 2`` on a 64-core node, ``os.cpu_count()``
says 64, and llama.cpp with 64 threads is throttled by the CFS quota into a
crawl. The quota lives in the cgroup: ``cpu.max`` (v2) or
``cpu.cfs_quota_us``/``cpu.cfs_period_us`` (v1).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def parse_cgroup_v2_cpu_max(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` line ("max 100000" means no limit)."""
    quota, _, period = text.strip().partition(" ")
    if quota == "max" or not period:
        return None
    return int(quota) / int(period)


def parse_cgroup_v1_quota(quota_text: str, period_text: str) -> float | None:
    """CPUs allowed by cgroup v1 ``cpu.cfs_quota_us`` (-1 means no limit)."""
    quota = int(quota_text.strip())
    if quota <= 0:
        return None
    return quota / int(period_text.strip())


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU limit of the current cgroup, or None when unlimited or unreadable."""
    try:
        return parse_cgroup_v2_cpu_max((root / "cpu.max").read_text())
    except (OSError, ValueError):
        pass
    try:
        return parse_cgroup_v1_quota(
            (root / "cpu" / "cpu.cfs_quota_us").read_text(),
            (root / "cpu" / "cpu.cfs_period_us").read_text(),
        )
    except (OSError, ValueError):
        return None


def usable_cpu_count(root: Path = CGROUP_ROOT) -> int:
    """Threads worth running: the CPU affinity mask, capped by the cgroup quota.

    A fractional quota rounds up (1.5 CPUs -> 2 threads), since a second thread
    still gets half a core of work done.
    """
    affinity = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    limit = cgroup_cpu_limit(root)
    if limit is None:
        return affinity
    return max(1, min(affinity, math.ceil(limit)))
