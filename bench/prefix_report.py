"""``kzero bench prefix``: what one run records, and its medians, ratios and tables.

Only medians, 95th percentiles and ratios are reported, never a single timing,
and nothing is judged pass or fail: on a shared machine one request's time says
more about the neighbours than about the server.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from bench.report import divide, paired_median, percentile_95, summary_pairs

# Numerator / denominator setups; a pair is printed when both were measured.
RATIO_PAIRS: tuple[tuple[str, str], ...] = (
    ("kzero", "llama-server"),
    ("kzero", "llama_cpp.server"),
    ("kzero", "kzero-no-ram"),
    ("kzero", "kzero-no-prefix-cache"),
)
COLD_STATES = ("with", "without")


@dataclass(frozen=True)
class TurnSample:
    """One request: one turn of one conversation, streamed."""

    setup: str
    concurrency: int
    round_index: int
    conversation: int
    turn: int  # 0: the first user turn, after the system prompt alone
    # From the moment the request was sent to its first content token.
    ttft_s: float | None
    prompt_tokens: int | None
    # usage.prompt_tokens_details.cached_tokens; None when the server does not report it.
    cached_tokens: int | None
    completion_tokens: int
    completed: bool
    error: str | None = None


@dataclass(frozen=True)
class MetricsDelta:
    """How kzero's prompt-token counters moved over one batch (one setup, level, round)."""

    setup: str
    concurrency: int
    round_index: int
    cached_by_source: Mapping[str, float]
    computed: float


@dataclass(frozen=True)
class Summary:
    """One setup at one concurrency level, over every turn of every round."""

    setup: str
    concurrency: int
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    # The first turn shares only the system prompt with earlier requests; later
    # turns share the conversation so far as well.
    first_turn_ttft_p50_s: float | None
    later_turns_ttft_p50_s: float | None
    prompt_tokens_p50: float | None
    # Sums over the requests whose usage reported cached tokens (None: none did).
    cached_tokens: int | None
    prompt_tokens_with_cached: int | None
    completed: int
    requests: int
    # Requests that got a first content token: the TTFT figures are theirs alone.
    timed: int = 0

    @property
    def cached_share(self) -> float | None:
        if self.cached_tokens is None or not self.prompt_tokens_with_cached:
            return None
        return self.cached_tokens / self.prompt_tokens_with_cached


@dataclass(frozen=True)
class Ratio:
    """``numerator / denominator`` TTFT at one concurrency level."""

    pair: str
    concurrency: int
    ttft_p50: float | None
    ttft_p95: float | None
    # Median over rounds of the per-round ratio of TTFT medians: the two ran
    # seconds apart, so this cancels slow drift in the machine's load.
    paired_ttft_p50: float | None


@dataclass(frozen=True)
class MetricsTotal:
    """kzero's counter deltas summed over every round at one concurrency level."""

    setup: str
    concurrency: int
    cached_by_source: dict[str, float]
    computed: float

    @property
    def cached(self) -> float:
        return sum(self.cached_by_source.values())

    @property
    def cached_share(self) -> float | None:
        total = self.cached + self.computed
        return self.cached / total if total else None


@dataclass(frozen=True)
class ColdRun:
    """One fresh ``kzero serve`` and its first request, with or without a warmed prefix dir."""

    state: str
    round_index: int
    ready_s: float  # spawn -> the model's readiness answers 200
    ttft_s: float | None  # the first request: sent -> first content token
    first_token_s: float | None  # spawn -> first content token
    prompt_tokens: int | None
    cached_tokens: int | None
    # kzero_prompt_tokens_cached_total{source="disk"} after the request.
    cached_from_disk: float
    completed: bool
    error: str | None = None


@dataclass(frozen=True)
class ColdSummary:
    state: str
    runs: int
    ready_p50_s: float | None
    ttft_p50_s: float | None
    first_token_p50_s: float | None
    cached_tokens_p50: float | None
    cached_from_disk_p50: float | None


@dataclass(frozen=True)
class ColdRatio:
    """with / without, of the medians and paired round by round."""

    ttft_p50: float | None
    paired_ttft: float | None
    ready_p50: float | None
    first_token_p50: float | None


@dataclass(frozen=True)
class WarmedDirectory:
    """What the warming kzero process left in its prefix directory."""

    files: int
    bytes: int
    requests: int
    exit_code: int | None
    contents: tuple[str, ...] = field(default=())


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(samples: Sequence[TurnSample]) -> list[Summary]:
    groups: dict[tuple[str, int], list[TurnSample]] = {}
    for sample in samples:
        groups.setdefault((sample.setup, sample.concurrency), []).append(sample)
    return [_summary(setup, level, group) for (setup, level), group in groups.items()]


def _summary(setup: str, concurrency: int, group: list[TurnSample]) -> Summary:
    ttfts = [s.ttft_s for s in group if s.ttft_s is not None]
    reporting = [s for s in group if s.cached_tokens is not None and s.prompt_tokens is not None]
    return Summary(
        setup=setup,
        concurrency=concurrency,
        ttft_p50_s=statistics.median(ttfts) if ttfts else None,
        ttft_p95_s=percentile_95(ttfts),
        first_turn_ttft_p50_s=_median(s.ttft_s for s in group if s.turn == 0),
        later_turns_ttft_p50_s=_median(s.ttft_s for s in group if s.turn > 0),
        prompt_tokens_p50=_median(s.prompt_tokens for s in group),
        cached_tokens=sum(s.cached_tokens or 0 for s in reporting) if reporting else None,
        prompt_tokens_with_cached=(
            sum(s.prompt_tokens or 0 for s in reporting) if reporting else None
        ),
        completed=sum(s.completed for s in group),
        requests=len(group),
        timed=len(ttfts),
    )


def _round_medians(samples: Sequence[TurnSample], setup: str, concurrency: int) -> dict[int, float]:
    per_round: dict[int, list[float]] = {}
    for s in samples:
        if s.setup == setup and s.concurrency == concurrency and s.ttft_s is not None:
            per_round.setdefault(s.round_index, []).append(s.ttft_s)
    return {r: statistics.median(values) for r, values in per_round.items()}


def ratios(
    summaries: Sequence[Summary],
    samples: Sequence[TurnSample],
    pairs: Sequence[tuple[str, str]] = RATIO_PAIRS,
) -> list[Ratio]:
    result = []
    for concurrency, top, bottom, num, den in summary_pairs(summaries, pairs):
        result.append(
            Ratio(
                pair=f"{top}/{bottom}",
                concurrency=concurrency,
                ttft_p50=divide(num.ttft_p50_s, den.ttft_p50_s),
                ttft_p95=divide(num.ttft_p95_s, den.ttft_p95_s),
                paired_ttft_p50=paired_median(
                    _round_medians(samples, top, concurrency),
                    _round_medians(samples, bottom, concurrency),
                ),
            )
        )
    return result


def counter_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """``after - before`` per key; a key missing before counts from 0."""
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


def metrics_totals(deltas: Sequence[MetricsDelta]) -> list[MetricsTotal]:
    groups: dict[tuple[str, int], list[MetricsDelta]] = {}
    for delta in deltas:
        groups.setdefault((delta.setup, delta.concurrency), []).append(delta)
    totals = []
    for (setup, concurrency), group in groups.items():
        sources: dict[str, float] = {}
        for delta in group:
            for source, value in delta.cached_by_source.items():
                sources[source] = sources.get(source, 0.0) + value
        totals.append(MetricsTotal(setup, concurrency, sources, sum(d.computed for d in group)))
    return totals


def summarize_cold(runs: Sequence[ColdRun]) -> list[ColdSummary]:
    result = []
    for state in COLD_STATES:
        mine = [run for run in runs if run.state == state]
        if not mine:
            continue
        result.append(
            ColdSummary(
                state=state,
                runs=len(mine),
                ready_p50_s=_median(run.ready_s for run in mine),
                ttft_p50_s=_median(run.ttft_s for run in mine),
                first_token_p50_s=_median(run.first_token_s for run in mine),
                cached_tokens_p50=_median(run.cached_tokens for run in mine),
                cached_from_disk_p50=_median(run.cached_from_disk for run in mine),
            )
        )
    return result


def cold_ratio(runs: Sequence[ColdRun]) -> ColdRatio | None:
    by_state = {s.state: s for s in summarize_cold(runs)}
    with_, without = by_state.get("with"), by_state.get("without")
    if with_ is None or without is None:
        return None

    def per_round(state: str) -> dict[int, float]:
        return {
            run.round_index: run.ttft_s
            for run in runs
            if run.state == state and run.ttft_s is not None
        }

    return ColdRatio(
        ttft_p50=divide(with_.ttft_p50_s, without.ttft_p50_s),
        paired_ttft=paired_median(per_round("with"), per_round("without")),
        ready_p50=divide(with_.ready_p50_s, without.ready_p50_s),
        first_token_p50=divide(with_.first_token_p50_s, without.first_token_p50_s),
    )


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _cached(summary: Summary) -> str:
    if summary.cached_tokens is None or summary.cached_share is None:
        return "not reported"
    return f"{summary.cached_tokens} ({summary.cached_share:.0%})"


def format_table(summaries: Sequence[Summary], order: Sequence[str]) -> str:
    rank = {name: i for i, name in enumerate(order)}
    rows = sorted(summaries, key=lambda s: (s.concurrency, rank.get(s.setup, len(rank))))
    width = max([len("setup"), *(len(s.setup) for s in rows)]) + 2
    lines = [
        f"{'setup':<{width}}{'conc':>5}{'TTFT p50 ms':>13}{'TTFT p95 ms':>13}"
        f"{'turn 1 p50':>12}{'turns 2+ p50':>14}{'prompt tok p50':>16}"
        f"  {'cached tokens (share of prompt)':<32}{'first token':<13}completed"
    ]
    for s in rows:
        lines.append(
            f"{s.setup:<{width}}{s.concurrency:>5}{_ms(s.ttft_p50_s):>13}{_ms(s.ttft_p95_s):>13}"
            f"{_ms(s.first_turn_ttft_p50_s):>12}{_ms(s.later_turns_ttft_p50_s):>14}"
            f"{_num(s.prompt_tokens_p50, 0):>16}  {_cached(s):<32}"
            f"{f'{s.timed}/{s.requests}':<13}{s.completed}/{s.requests}"
        )
    return "\n".join(lines)


def format_ratios(items: Sequence[Ratio]) -> str:
    return "\n".join(
        f"ratio {r.pair} concurrency {r.concurrency}: TTFT p50 {_num(r.ttft_p50)}"
        f"  paired {_num(r.paired_ttft_p50)}  TTFT p95 {_num(r.ttft_p95)}"
        for r in items
    )


def format_metrics(totals: Sequence[MetricsTotal]) -> str:
    lines = []
    for t in sorted(totals, key=lambda t: (t.setup, t.concurrency)):
        sources = ", ".join(f"{k} {v:.0f}" for k, v in sorted(t.cached_by_source.items()))
        share = "n/a" if t.cached_share is None else f"{t.cached_share:.0%}"
        lines.append(
            f"/metrics {t.setup} concurrency {t.concurrency}: kzero_prompt_tokens_cached_total "
            f"+{t.cached:.0f} ({sources or 'no source yet'}), "
            f"kzero_prompt_tokens_computed_total +{t.computed:.0f}; cached share {share}"
        )
    return "\n".join(lines)


def format_cold(
    summaries: Sequence[ColdSummary], ratio: ColdRatio | None, warmed: WarmedDirectory | None
) -> str:
    lines = []
    if warmed is not None:
        lines.append(
            f"warmed prefix directory: {warmed.files} files, {warmed.bytes} bytes, after "
            f"{warmed.requests} requests sharing the system prompt and SIGTERM "
            f"(exit code {warmed.exit_code})"
        )
        if warmed.files == 0:
            lines.append(
                "  it is empty: this kzero saved no prefix, so warmed and empty starts are alike"
            )
    lines.append(
        f"{'prefix dir':<12}{'starts':>7}{'ready s p50':>13}{'first req TTFT ms p50':>23}"
        f"{'spawn->1st token s p50':>24}{'cached tok p50':>16}{'from disk p50':>15}"
    )
    for s in summaries:
        label = "warmed" if s.state == "with" else "empty"
        lines.append(
            f"{label:<12}{s.runs:>7}{_num(s.ready_p50_s, 2):>13}{_ms(s.ttft_p50_s):>23}"
            f"{_num(s.first_token_p50_s, 2):>24}{_num(s.cached_tokens_p50, 0):>16}"
            f"{_num(s.cached_from_disk_p50, 0):>15}"
        )
    if ratio is not None:
        lines.append(
            f"ratio warmed/empty: first-request TTFT {_num(ratio.ttft_p50)} "
            f"(paired {_num(ratio.paired_ttft)}), ready {_num(ratio.ready_p50)}, "
            f"spawn->first token {_num(ratio.first_token_p50)}"
        )
    return "\n".join(lines)


def notes(setups: Sequence[str], concurrency: Sequence[int]) -> list[str]:
    lines = [
        "TTFT: from sending a request to its first content token; each conversation sends "
        "its next turn when the previous answer has ended; requests that never got a token "
        "(first token column) are left out of the TTFT figures",
        "p95 needs at least 20 requests ('-' below that); medians and p95 pool every round",
        "paired: the median over rounds of the per-round ratio of TTFT medians",
        "cached tokens: usage.prompt_tokens_details.cached_tokens, summed over the requests "
        "that report it",
    ]
    if "llama_cpp.server" in setups and any(level > 1 for level in concurrency):
        lines.append(
            "llama_cpp.server above concurrency 1: a new request interrupts the running "
            "stream (its default), so those turns end early and count as not completed"
        )
    return lines
