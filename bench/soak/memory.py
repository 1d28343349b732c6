"""The server's process tree from /proc: resident memory, threads, descriptors; and its growth."""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The bound: resident memory may grow less than this after warm-up.
RSS_GROWTH_LIMIT = 0.05
# Baseline and final RSS are medians over this much time (or a third of the
# post-warm-up samples on short runs), so one allocator spike decides nothing.
RSS_WINDOW_S = 60.0


@dataclass
class RssSample:
    """The server process tree's memory and handles at one moment of the run."""

    t_s: float
    rss_bytes: int
    threads: int
    open_fds: int


def _status_fields(pid: int) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _children(pid: int) -> list[int]:
    """Direct children of ``pid``, found by each process's PPid (works on any kernel)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # The command name may hold spaces and parentheses; fields resume after the last ')'.
        after_name = stat.rpartition(")")[2].split()
        if len(after_name) > 1 and int(after_name[1]) == pid:
            found.append(int(entry.name))
    return found


def process_tree(pid: int) -> list[int]:
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(_children(current))
    return tree


def sample_process_tree(pid: int, t_s: float) -> RssSample:
    """VmRSS, threads and open descriptors summed over ``pid`` and its descendants.

    Threads and descriptors are not criteria; a steady climb in either is the
    first sign of a leaked worker or socket, so they are kept next to RSS.
    """
    rss_kb = threads = fds = 0
    for member in process_tree(pid):
        try:
            fields = _status_fields(member)
            fds += len(os.listdir(f"/proc/{member}/fd"))
        except OSError:
            if member == pid:
                raise
            continue  # a child that exited between the scan and the read
        rss_kb += int(fields.get("VmRSS", "0 kB").split()[0])
        threads += int(fields.get("Threads", "0"))
    return RssSample(round(t_s, 3), rss_kb * 1024, threads, fds)


def peak_rss_bytes(pid: int) -> int:
    """VmHWM (the most resident memory each process has held) summed over ``pid``'s tree.

    A sum of per-process peaks: an upper bound on the tree's peak when the children
    peaked at different moments (one process, as a server here, is exact).
    """
    peak_kb = 0
    for member in process_tree(pid):
        try:
            fields = _status_fields(member)
        except OSError:
            if member == pid:
                raise
            continue
        peak_kb += int(fields.get("VmHWM", "0 kB").split()[0])
    return peak_kb * 1024


def rss_window(count_after_warmup: int, sample_every_s: float) -> int:
    """Samples per median window: RSS_WINDOW_S worth, but at most a third of the run."""
    return max(1, min(round(RSS_WINDOW_S / sample_every_s), count_after_warmup // 3))


def rss_growth(
    samples: Sequence[RssSample], warmup_s: float, sample_every_s: float
) -> dict[str, Any]:
    """(median of the last window - median of the first window after warm-up) / first."""
    after = [s for s in samples if s.t_s >= warmup_s]
    if len(after) < 2:
        return {"growth": None, "samples_after_warmup": len(after)}
    window = rss_window(len(after), sample_every_s)
    baseline = statistics.median(s.rss_bytes for s in after[:window])
    final = statistics.median(s.rss_bytes for s in after[-window:])
    return {
        "growth": (final - baseline) / baseline,
        "baseline_bytes": baseline,
        "final_bytes": final,
        "peak_bytes": max(s.rss_bytes for s in samples),
        "window_samples": window,
        "samples_after_warmup": len(after),
    }
