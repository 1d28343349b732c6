"""``kzero report``'s content: inputs -> cost sweep, simulations, charts and markdown.

Everything in the report is computed here from the measured inputs (a bench
file and/or a Prometheus), the price file and the KPA simulator; the markdown
says which figure came from where.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from autoscaling import charts
from autoscaling.cost import (
    TOKENS_PER_REQUEST,
    ManagedServerless,
    SelfHosted,
    break_even_rate,
    compare,
    per_million_tokens,
)
from autoscaling.kpa import KpaConfig
from autoscaling.simulator import PodModel, SimulationResult, simulate
from autoscaling.traces import Lengths, TraceRequest, bursty, diurnal, poisson

T = TypeVar("T")
Progress = Callable[[Iterable[T], str, int], Iterable[T]]
HOUR = 3600.0
TABLE_RATES_PER_HOUR = (1, 10, 100, 1000)
# Poisson rates (per hour) replayed through the simulator next to the closed form.
SIMULATED_RATES_PER_HOUR = (1, 4, 15, 60, 200)
MIN_SIMULATED_REQUESTS = 60
MAX_SIMULATED_HOURS = 48.0
LENGTHS = Lengths(prompt=(50, 200), output=(TOKENS_PER_REQUEST, TOKENS_PER_REQUEST))


@dataclass(frozen=True)
class Inputs:
    """What the report is computed from, and where each figure came from."""

    tokens_per_s: float
    tokens_per_s_source: str
    cold_start_s: float
    cold_start_source: str
    measured_ttft_s: dict[str, dict[str, float]]  # scenario -> {"ttft_p50": ...}
    self_hosted: SelfHosted
    managed: list[ManagedServerless]
    kpa: KpaConfig
    prefill_tokens_per_s: float
    # Continuous batching: requests one pod decodes together, and its aggregate
    # tokens/s at measured levels above 1. Only the KPA replays use them.
    parallel: int = 1
    batched_tokens_per_s: dict[int, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TraceRun:
    name: str
    trace: list[TraceRequest]
    duration_s: float
    scale_to_zero: SimulationResult
    always_on: SimulationResult


def _rates_per_hour(lo: float = 0.1, hi: float = 3600.0, points: int = 90) -> list[float]:
    ratio = (hi / lo) ** (1 / (points - 1))
    return [lo * ratio**i for i in range(points)]


def cost_curves(inputs: Inputs) -> list[charts.CostCurve]:
    rates = _rates_per_hour()
    sh = inputs.self_hosted

    def curve(label: str, style: str, cost_per_s: Callable[[float], float]) -> charts.CostCurve:
        values = [per_million_tokens(cost_per_s(r / HOUR), r / HOUR) for r in rates]
        return charts.CostCurve(label, rates, values, style)

    curves = [
        curve("self-hosted, always on (minReplicas 1)", "-", sh.always_on_cost_per_s),
        curve("self-hosted, scale to zero (closed form)", "-", sh.scale_to_zero_cost_per_s),
    ]
    curves += [curve(offer.name, "--", offer.cost_per_s) for offer in inputs.managed]
    return curves


def break_evens(inputs: Inputs) -> list[charts.BreakEven]:
    sh = inputs.self_hosted
    points = []
    modes = (("always on", sh.always_on_cost_per_s), ("scale to zero", sh.scale_to_zero_cost_per_s))
    for mode, cost_fn in modes:
        for offer in inputs.managed:
            rate = break_even_rate(cost_fn, offer.cost_per_s)
            if rate is None or rate <= 1.0 / 86400 * 1.0001:
                continue
            short = offer.name.split(" (")[0]
            points.append(
                charts.BreakEven(
                    f"{mode} = {short}", rate * HOUR, per_million_tokens(cost_fn(rate), rate)
                )
            )
    return points


def pod_model(inputs: Inputs) -> PodModel:
    return PodModel(
        inputs.tokens_per_s,
        inputs.cold_start_s,
        inputs.prefill_tokens_per_s,
        parallel=inputs.parallel,
        batched_tokens_per_s=inputs.batched_tokens_per_s,
    )


def batching_line(inputs: Inputs) -> str:
    if inputs.parallel == 1:
        return "- Batching: none; a pod decodes one request at a time."
    measured = ", ".join(
        f"{tps:.1f} tok/s at {n}" for n, tps in sorted(inputs.batched_tokens_per_s.items())
    )
    return (
        f"- Batching: a pod decodes up to {inputs.parallel} requests together"
        + (f" (aggregate {measured}, from the same bench)" if measured else " at no gain")
        + "; the KPA replays share that throughput between the requests a pod runs, while "
        "the closed-form cost lines count one request at a time, so they overstate the "
        "cost of a loaded pod."
    )


def simulated_cost_points(inputs: Inputs, progress: Progress) -> list[tuple[float, float]]:
    """Scale-to-zero cost per 1M tokens from KPA replays of Poisson traffic."""
    points = []
    for index, rate_per_hour in enumerate(
        progress(
            SIMULATED_RATES_PER_HOUR, "cost sweep (KPA replays)", len(SIMULATED_RATES_PER_HOUR)
        )
    ):
        hours = min(MAX_SIMULATED_HOURS, max(2.0, MIN_SIMULATED_REQUESTS / rate_per_hour))
        trace = poisson(rate_per_hour / HOUR, hours * HOUR, lengths=LENGTHS, seed=100 + index)
        result = simulate(trace, pod_model(inputs), inputs.kpa, duration_s=hours * HOUR)
        tokens = sum(r.output_tokens for r in trace)
        if tokens:
            cost = result.pod_seconds * inputs.self_hosted.pod_rate_per_s
            points.append((len(trace) / hours, cost / tokens * 1e6))
    return points


def trace_scenarios(inputs: Inputs) -> list[tuple[str, list[TraceRequest], float]]:
    """Traffic shapes sized to the pod: a busy hour is about one pod's worth of requests."""
    pod_capacity_per_hour = HOUR * inputs.tokens_per_s / TOKENS_PER_REQUEST
    burst_rps = 3 * pod_capacity_per_hour / HOUR  # three pods' worth during a burst
    return [
        (
            "Poisson, 6 requests/h, 6 h",
            poisson(6 / HOUR, 6 * HOUR, lengths=LENGTHS, seed=1),
            6 * HOUR,
        ),
        (
            f"bursty: 2 min at {burst_rps * HOUR:.0f}/h every 20 min, 2 h",
            bursty(burst_rps, 120.0, 1080.0, 2 * HOUR, lengths=LENGTHS, seed=2),
            2 * HOUR,
        ),
        (
            f"diurnal: mean {0.2 * pod_capacity_per_hour:.0f}/h, peak at noon, 24 h",
            diurnal(0.2 * pod_capacity_per_hour / HOUR, 24 * HOUR, lengths=LENGTHS, seed=3),
            24 * HOUR,
        ),
    ]


def run_traces(inputs: Inputs, progress: Progress) -> list[TraceRun]:
    scenarios = trace_scenarios(inputs)
    always_on = KpaConfig(**{**inputs.kpa.__dict__, "min_scale": 1})
    runs = []
    for name, trace, duration in progress(scenarios, "traces (KPA replays)", len(scenarios)):
        runs.append(
            TraceRun(
                name,
                trace,
                duration,
                simulate(trace, pod_model(inputs), inputs.kpa, duration_s=duration),
                simulate(trace, pod_model(inputs), always_on, duration_s=duration),
            )
        )
    return runs


def _money(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    return f"${value:.6f}" if value < 0.01 else f"${value:,.4f}"


def _seconds(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.2f} s"


def _rate_text(rate: float | None) -> str:
    if rate is None:
        return "never (up to 1000/s)"
    if rate <= 1.0 / 86400 * 1.0001:
        return "at every rate"
    return f"{rate * HOUR:,.1f} requests/h ({rate:.4g}/s)"


def cost_section(inputs: Inputs) -> list[str]:
    lines = ["| | " + " | ".join(f"{n}/h" for n in TABLE_RATES_PER_HOUR) + " |"]
    lines.append("|---|" + "---:|" * len(TABLE_RATES_PER_HOUR))
    table: dict[str, list[str]] = {}
    for per_hour in TABLE_RATES_PER_HOUR:
        for row in compare(inputs.self_hosted, inputs.managed, per_hour / HOUR):
            table.setdefault(row.label, []).append(
                f"{_money(row.per_request)} ({row.per_million_tokens:,.2f})"
            )
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in table.items()]
    lines.append("")
    lines.append(
        "Break-even request rates (self-hosted costs no more than the managed cloud from):"
    )
    lines.append("")
    sh = inputs.self_hosted
    modes = (("always on", sh.always_on_cost_per_s), ("scale to zero", sh.scale_to_zero_cost_per_s))
    for mode, cost_fn in modes:
        for offer in inputs.managed:
            rate = break_even_rate(cost_fn, offer.cost_per_s)
            lines.append(f"- {mode} vs {offer.name}: {_rate_text(rate)}")
    return lines


def summary_section(inputs: Inputs) -> list[str]:
    """The findings in words, each one computed from the same model as the tables."""
    sh = inputs.self_hosted
    lines = []
    for offer in inputs.managed:
        always = break_even_rate(sh.always_on_cost_per_s, offer.cost_per_s)
        to_zero = break_even_rate(sh.scale_to_zero_cost_per_s, offer.cost_per_s)
        text = f"- Against {offer.name}, an always-on pod breaks even at {_rate_text(always)}"
        if to_zero is not None and (always is None or to_zero < always * 0.99):
            text += f"; scaling to zero moves that down to {_rate_text(to_zero)}."
        else:
            text += "; scaling to zero does not move it, because at that traffic the pod is rarely idle long enough to go."
        lines.append(text)
    rare = 1.0 / HOUR
    idle_share = sh.idle_before_zero_s / (sh.idle_before_zero_s + sh.busy_s() + sh.cold_start_s)
    lines.append(
        f"- At one request an hour, scale to zero costs {_money(sh.scale_to_zero_cost_per_s(rare) / rare)}"
        f" per request against {_money(sh.always_on_cost_per_s(rare) / rare)} always on; "
        f"{idle_share:.0%} of what it pays is the {sh.idle_before_zero_s:g} s an idle pod lives "
        f"before Knative removes it (a request keeps a pod busy {sh.busy_s():.1f} s)."
    )
    return lines


def trace_section(inputs: Inputs, runs: Sequence[TraceRun]) -> list[str]:
    lines = [
        "| trace | mode | requests | pods started | pod-hours | cost | $/1M tokens | "
        + " | ".join(f"{offer.name.split(' (')[0]} cost" for offer in inputs.managed)
        + " |",
        "|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(inputs.managed),
    ]
    for run in runs:
        tokens = sum(r.output_tokens for r in run.trace)
        managed = [
            _money(sum(offer.cost_per_request(r.output_tokens) for r in run.trace))
            for offer in inputs.managed
        ]
        for mode, result in (("scale to zero", run.scale_to_zero), ("always on", run.always_on)):
            cost = result.pod_seconds * inputs.self_hosted.pod_rate_per_s
            per_m = cost / tokens * 1e6 if tokens else math.nan
            lines.append(
                f"| {run.name} | {mode} | {len(run.trace)} | {result.pods_started} | "
                f"{result.pod_seconds / HOUR:.2f} | {_money(cost)} | {_money(per_m)} | "
                + " | ".join(managed)
                + " |"
            )
    return lines


def latency_rows(inputs: Inputs, runs: Sequence[TraceRun]) -> dict[str, dict[str, float]]:
    rows = {f"measured: {name}": values for name, values in inputs.measured_ttft_s.items()}
    for run in runs:
        short = run.name.split(":")[0].split(",")[0]
        rows[f"{short}, scale to zero"] = run.scale_to_zero.latency()
        rows[f"{short}, always on"] = run.always_on.latency()
    return rows


def latency_section(rows: dict[str, dict[str, float]]) -> list[str]:
    lines = [
        "| scenario | TTFT p50 | TTFT p95 | TTFT p99 | e2e p50 | e2e p99 | waited for a cold start |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        share = row.get("cold_start_share")
        lines.append(
            f"| {name} | {_seconds(row.get('ttft_p50', math.nan))} | "
            f"{_seconds(row.get('ttft_p95', math.nan))} | {_seconds(row.get('ttft_p99', math.nan))} | "
            f"{_seconds(row.get('e2e_p50', math.nan))} | {_seconds(row.get('e2e_p99', math.nan))} | "
            f"{'-' if share is None else f'{share:.1%}'} |"
        )
    return lines


def write_report(
    inputs: Inputs, out_dir: Path, title: str, command: str, progress: Progress
) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    simulated = simulated_cost_points(inputs, progress)
    runs = run_traces(inputs, progress)
    charts.cost_chart(
        cost_curves(inputs),
        simulated,
        break_evens(inputs),
        "Cost per 1M tokens against traffic",
        out_dir / "cost.png",
    )
    rows = latency_rows(inputs, runs)
    charts.latency_chart(rows, "Time to first token, cold starts included", out_dir / "latency.png")
    charts.pods_chart(
        {run.name: run.scale_to_zero for run in runs if not run.name.startswith("Poisson")},
        out_dir / "pods.png",
    )
    sh, kpa = inputs.self_hosted, inputs.kpa
    lines = [
        f"# {title}",
        "",
        f"Generated by `{command}`. Every figure below is computed from the inputs listed here;",
        "regenerate the report rather than editing it.",
        "",
        "## Inputs",
        "",
        f"- Throughput of one pod: {inputs.tokens_per_s:.2f} tokens/s ({inputs.tokens_per_s_source}).",
        batching_line(inputs),
        f"- Cold start: {inputs.cold_start_s:.2f} s ({inputs.cold_start_source}).",
        f"- Node: {sh.node.name}, ${sh.node.per_hour}/h ({sh.node.unit}); {sh.pods_per_node} pods "
        f"per node, so a pod costs ${sh.pod_rate_per_s * HOUR:.4f}/h.",
        f"- Knative KPA: target {kpa.target:g} concurrent requests per pod at "
        f"{kpa.target_utilization:.0%} utilization, stable window {kpa.stable_window_s:g} s, "
        f"panic window {kpa.panic_window_s:g} s at {kpa.panic_threshold:.0%}, tick {kpa.tick_s:g} s, "
        f"scale-to-zero grace {kpa.scale_to_zero_grace_s:g} s: an idle pod lives about "
        f"{kpa.idle_before_zero_s:g} s after its last request.",
        f"- Prefill: {inputs.prefill_tokens_per_s:g} prompt tokens/s (assumed); prompts of "
        f"{LENGTHS.prompt[0]}-{LENGTHS.prompt[1]} tokens, {TOKENS_PER_REQUEST} output tokens.",
        *(f"- {offer.name}: {offer.detail}." for offer in inputs.managed),
        *(f"- {note}" for note in inputs.notes),
        "",
        "## Summary",
        "",
        *summary_section(inputs),
        "",
        "## Cost per request and per 1M tokens",
        "",
        "$ per 500-token request, and in brackets $ per 1M tokens, at four traffic levels.",
        "",
        *cost_section(inputs),
        "",
        "![cost per 1M tokens against traffic](cost.png)",
        "",
        "The green dots replay Poisson traffic through the KPA simulator (pods billed from",
        "creation to removal); the scale-to-zero line is the closed form in `autoscaling/cost.py`.",
        "",
        "## Traces: pods, cost and latency",
        "",
        "Each trace is replayed twice: scaled to zero (`minReplicas: 0`) and always on",
        "(`minReplicas: 1`); both scale out under load. The managed columns bill the same",
        "requests.",
        "",
        *trace_section(inputs, runs),
        "",
        "![pods over time](pods.png)",
        "",
        "## Latency, cold starts included",
        "",
        "Measured rows come from the benchmark or Prometheus; the others from the KPA",
        "simulator, where a request that finds no ready pod waits in the activator for the",
        "cold start.",
        "",
        *latency_section(rows),
        "",
        "![time to first token](latency.png)",
        "",
        "## Caveats",
        "",
        "- A self-hosted pod pays its share of a node only while it exists: this assumes a",
        "  shared cluster whose other pods (or the cluster autoscaler) use the freed share.",
        "- Managed clouds are billed for the same engine time at the same tokens/s; their own",
        "  cold starts (Lambda INIT, Cloud Run startup) are not billed here, which favours them.",
        "- The cold start is the predictor's own (process start to ready); pod scheduling and",
        "  image pulls on a real cluster add to it.",
        "",
    ]
    path = out_dir / "README.md"
    path.write_text("\n".join(lines))
    return path
