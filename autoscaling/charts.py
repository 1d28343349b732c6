"""The report's PNG charts (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in CI

import matplotlib.pyplot as plt

from autoscaling.simulator import SimulationResult


@dataclass(frozen=True)
class CostCurve:
    label: str
    rates_per_hour: Sequence[float]
    per_million_tokens: Sequence[float]
    style: str


@dataclass(frozen=True)
class BreakEven:
    label: str
    rate_per_hour: float
    per_million_tokens: float


def cost_chart(
    curves: Sequence[CostCurve],
    simulated: Sequence[tuple[float, float]],
    break_evens: Sequence[BreakEven],
    title: str,
    path: Path,
) -> None:
    """Cost per 1M tokens against requests per hour, log-log, break-even points marked."""
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for curve in curves:
        ax.plot(curve.rates_per_hour, curve.per_million_tokens, curve.style, label=curve.label)
    if simulated:
        xs, ys = zip(*simulated, strict=True)
        ax.plot(xs, ys, "o", color="tab:green", label="scale to zero, KPA simulation")
    # Points closer than the text would overlap: stack their labels.
    for index, point in enumerate(sorted(break_evens, key=lambda p: p.rate_per_hour)):
        ax.plot(point.rate_per_hour, point.per_million_tokens, "kx", markersize=9)
        ax.annotate(
            f"{point.label}: {point.rate_per_hour:,.0f}/h",
            (point.rate_per_hour, point.per_million_tokens),
            textcoords="offset points",
            xytext=(-40, 40 + 12 * index),
            fontsize=8,
            arrowprops={"arrowstyle": "-", "alpha": 0.4},
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("traffic, requests per hour (500 tokens each)")
    ax.set_ylabel("$ per 1M generated tokens")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def latency_chart(rows: Mapping[str, Mapping[str, float]], title: str, path: Path) -> None:
    """TTFT p50/p95/p99 per scenario (bars, log scale: cold starts dwarf warm TTFT)."""
    names = list(rows)
    fig, ax = plt.subplots(figsize=(10, 5.5))
    width = 0.27
    for offset, q in enumerate(("p50", "p95", "p99")):
        values = [rows[name].get(f"ttft_{q}", float("nan")) for name in names]
        positions = [i + (offset - 1) * width for i in range(len(names))]
        bars = ax.bar(positions, values, width, label=f"TTFT {q}")
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=7, rotation=90, padding=2)
    ax.set_xticks(range(len(names)), names, fontsize=8, rotation=15, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("time to first token, s (cold-start waits included)")
    ax.set_title(title)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _binned(
    result: SimulationResult, max_points: int
) -> tuple[list[float], list[int], list[int], list[float]]:
    """Long runs: per bin, the most pods and the mean requests in flight (2 s ticks
    over a day would draw 43,200 steps)."""
    ticks = result.ticks
    size = max(1, -(-len(ticks) // max_points))
    minutes, pods, ready, flight = [], [], [], []
    for start in range(0, len(ticks), size):
        chunk = ticks[start : start + size]
        minutes.append(chunk[0].time_s / 60)
        pods.append(max(t.pods for t in chunk))
        ready.append(max(t.ready_pods for t in chunk))
        flight.append(sum(t.concurrency for t in chunk) / len(chunk))
    return minutes, pods, ready, flight


def pods_chart(runs: Mapping[str, SimulationResult], path: Path, max_points: int = 720) -> None:
    """Pods (created and ready) and in-flight requests over time, one panel per trace."""
    fig, axes = plt.subplots(len(runs), 1, figsize=(10, 3.2 * len(runs)), squeeze=False)
    for ax, (name, result) in zip(axes[:, 0], runs.items(), strict=True):
        minutes, pods, ready, flight = _binned(result, max_points)
        binned = len(minutes) < len(result.ticks)
        ax.step(minutes, pods, where="post", label="pods" + (" (max per bin)" if binned else ""))
        ax.step(minutes, ready, where="post", linestyle="--", label="ready pods")
        ax.plot(
            minutes,
            flight,
            alpha=0.6,
            label="requests in flight" + (" (mean per bin)" if binned else ""),
        )
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("minutes")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
