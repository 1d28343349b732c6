"""Medians and ratios from the raw samples, as tables and as JSON.

Only medians over rounds and their ratios are reported: on a shared machine a
single timing says more about the neighbours than about the code.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Protocol, TypeVar

from bench.samples import BatchSample

# Below this many samples a 95th percentile is just the maximum.
MIN_SAMPLES_FOR_P95 = 20
# Ratios printed, numerator / denominator: kzero against each peer, and each
# server against the raw floor (the reference figures are c/a and d/a).
RATIO_PAIRS: tuple[tuple[str, str], ...] = (
    ("b", "a"),
    ("b", "c"),
    ("b", "d"),
    ("c", "a"),
    ("d", "a"),
)


@dataclass(frozen=True)
class Summary:
    """One setup at one concurrency level, over all rounds."""

    setup: str
    concurrency: int
    tokens_per_s: float
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    # Gaps between consecutive text events, pooled over every request.
    itl_p50_s: float | None
    itl_p95_s: float | None
    # Generated tokens per text event: 1.0 when every event carried one token,
    # so the gaps above are per-token latencies; above 1, tokens were coalesced.
    tokens_per_event: float | None
    completed: int
    requests: int
    batches: int


@dataclass(frozen=True)
class Ratio:
    """``numerator / denominator`` of the median figures at one concurrency level."""

    pair: str
    concurrency: int
    tokens_per_s: float | None
    ttft_p50: float | None
    # Median over rounds of the per-round ratio: the two batches of a round ran
    # seconds apart, so this cancels slow drift in load better than a ratio of medians.
    paired_tokens_per_s: float | None
    ttft_p95: float | None = None


@dataclass(frozen=True)
class Scaling:
    """One setup's aggregate tokens/s at ``concurrency`` over its own at ``base``."""

    setup: str
    concurrency: int
    base: int
    tokens_per_s: float | None
    paired_tokens_per_s: float | None


@dataclass(frozen=True)
class Target:
    """One of the targets, judged on this run's ratios (printed, never asserted)."""

    label: str
    value: float | None
    paired: float | None
    threshold: float
    higher_is_better: bool

    @property
    def verdict(self) -> str:
        figures = [v for v in (self.value, self.paired) if v is not None]
        if not figures:
            return "not measured"
        met = [
            (v >= self.threshold) if self.higher_is_better else (v <= self.threshold)
            for v in figures
        ]
        if all(met):
            return "met"
        return "not met" if not any(met) else "mixed (met by one figure only)"


def percentile_95(values: Sequence[float]) -> float | None:
    if len(values) < MIN_SAMPLES_FOR_P95:
        return None
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def summarize(samples: Sequence[BatchSample]) -> list[Summary]:
    groups: dict[tuple[str, int], list[BatchSample]] = {}
    for sample in samples:
        groups.setdefault((sample.setup, sample.concurrency), []).append(sample)
    return [_summary(setup, conc, batches) for (setup, conc), batches in sorted(groups.items())]


def _summary(setup: str, concurrency: int, batches: list[BatchSample]) -> Summary:
    requests = [request for batch in batches for request in batch.requests]
    ttfts = [request.ttft_s for request in requests if request.ttft_s is not None]
    gaps = [gap for request in requests for gap in request.gaps_s]
    events = sum(request.text_chunks for request in requests)
    return Summary(
        setup=setup,
        concurrency=concurrency,
        tokens_per_s=statistics.median(batch.tokens_per_s for batch in batches),
        ttft_p50_s=statistics.median(ttfts) if ttfts else None,
        ttft_p95_s=percentile_95(ttfts),
        itl_p50_s=statistics.median(gaps) if gaps else None,
        itl_p95_s=percentile_95(gaps),
        tokens_per_event=sum(r.tokens for r in requests) / events if events else None,
        completed=sum(request.completed for request in requests),
        requests=len(requests),
        batches=len(batches),
    )


def divide(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _per_round(samples: Sequence[BatchSample], setup: str, concurrency: int) -> dict[int, float]:
    return {
        sample.round_index: sample.tokens_per_s
        for sample in samples
        if sample.setup == setup and sample.concurrency == concurrency
    }


def paired_median(top: Mapping[int, float], bottom: Mapping[int, float]) -> float | None:
    """Median over the rounds both have of ``top[r] / bottom[r]``."""
    per_round = [divide(top[r], bottom.get(r)) for r in sorted(top)]
    valid = [value for value in per_round if value is not None]
    return statistics.median(valid) if valid else None


def _paired(
    samples: Sequence[BatchSample], top: str, bottom: str, concurrency: int
) -> float | None:
    return paired_median(
        _per_round(samples, top, concurrency), _per_round(samples, bottom, concurrency)
    )


class SetupSummary(Protocol):
    setup: str
    concurrency: int


S = TypeVar("S", bound=SetupSummary)


def summary_pairs(
    summaries: Sequence[S], pairs: Sequence[tuple[str, str]]
) -> Iterator[tuple[int, str, str, S, S]]:
    """(concurrency, top, bottom, top's summary, bottom's) for every pair both setups ran."""
    by_key = {(s.setup, s.concurrency): s for s in summaries}
    for concurrency in sorted({s.concurrency for s in summaries}):
        for top, bottom in pairs:
            num, den = by_key.get((top, concurrency)), by_key.get((bottom, concurrency))
            if num is not None and den is not None:
                yield concurrency, top, bottom, num, den


def ratios(
    summaries: Sequence[Summary],
    samples: Sequence[BatchSample],
    pairs: Sequence[tuple[str, str]] = RATIO_PAIRS,
) -> list[Ratio]:
    result = []
    for concurrency, top, bottom, num, den in summary_pairs(summaries, pairs):
        result.append(
            Ratio(
                pair=f"{top}/{bottom}",
                concurrency=concurrency,
                tokens_per_s=divide(num.tokens_per_s, den.tokens_per_s),
                ttft_p50=divide(num.ttft_p50_s, den.ttft_p50_s),
                paired_tokens_per_s=_paired(samples, top, bottom, concurrency),
                ttft_p95=divide(num.ttft_p95_s, den.ttft_p95_s),
            )
        )
    return result


def scaling(summaries: Sequence[Summary], samples: Sequence[BatchSample]) -> list[Scaling]:
    """Each setup's aggregate at every concurrency over its own at the lowest level."""
    by_key = {(s.setup, s.concurrency): s for s in summaries}
    result = []
    for setup in sorted({s.setup for s in summaries}):
        levels = sorted(conc for (name, conc) in by_key if name == setup)
        base = levels[0]
        for concurrency in levels[1:]:
            result.append(
                Scaling(
                    setup=setup,
                    concurrency=concurrency,
                    base=base,
                    tokens_per_s=divide(
                        by_key[(setup, concurrency)].tokens_per_s,
                        by_key[(setup, base)].tokens_per_s,
                    ),
                    paired_tokens_per_s=paired_median(
                        _per_round(samples, setup, concurrency), _per_round(samples, setup, base)
                    ),
                )
            )
    return result


def targets(ratio_items: Sequence[Ratio]) -> list[Target]:
    """The three targets for kzero (b) against llama-server (d): single stream
    tokens/s, aggregate tokens/s at the highest concurrency, and TTFT p95 there."""
    kzero_vs_server = {r.concurrency: r for r in ratio_items if r.pair == "b/d"}
    if not kzero_vs_server:
        return []
    single = kzero_vs_server.get(1)
    top_level = max(kzero_vs_server)
    top = kzero_vs_server[top_level]
    return [
        Target(
            "kzero / llama-server tokens/s, single stream",
            single.tokens_per_s if single else None,
            single.paired_tokens_per_s if single else None,
            1.0,
            higher_is_better=True,
        ),
        Target(
            f"kzero / llama-server aggregate tokens/s, concurrency {top_level}",
            top.tokens_per_s,
            top.paired_tokens_per_s,
            1.0,
            higher_is_better=True,
        ),
        Target(
            f"kzero / llama-server TTFT p95, concurrency {top_level}",
            top.ttft_p95,
            None,
            1.0,
            higher_is_better=False,
        ),
    ]


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_table(summaries: Sequence[Summary], names: Mapping[str, str]) -> str:
    width = max(len(name) for name in names.values()) + 2
    header = (
        f"{'setup':<{width}}{'conc':>5}{'tok/s median':>14}{'TTFT p50 ms':>13}{'TTFT p95 ms':>13}"
        f"{'ITL p50 ms':>12}{'ITL p95 ms':>12}{'tok/event':>11}  completed"
    )
    rows = [header]
    for s in summaries:
        per_event = "-" if s.tokens_per_event is None else f"{s.tokens_per_event:.2f}"
        rows.append(
            f"{names[s.setup]:<{width}}{s.concurrency:>5}{s.tokens_per_s:>14.1f}"
            f"{_ms(s.ttft_p50_s):>13}{_ms(s.ttft_p95_s):>13}"
            f"{_ms(s.itl_p50_s):>12}{_ms(s.itl_p95_s):>12}{per_event:>11}"
            f"  {s.completed}/{s.requests}"
        )
    return "\n".join(rows)


def format_ratios(items: Sequence[Ratio]) -> str:
    return "\n".join(
        f"ratio {r.pair} concurrency {r.concurrency}: tok/s {_num(r.tokens_per_s)}"
        f"  TTFT p50 {_num(r.ttft_p50)}  paired tok/s {_num(r.paired_tokens_per_s)}"
        f"  TTFT p95 {_num(r.ttft_p95)}"
        for r in items
    )


def format_scaling(items: Sequence[Scaling], names: Mapping[str, str]) -> str:
    return "\n".join(
        f"scaling {names[s.setup]}: concurrency {s.concurrency} / {s.base} aggregate tok/s "
        f"{_num(s.tokens_per_s)}  paired {_num(s.paired_tokens_per_s)}"
        for s in items
    )


def format_targets(items: Sequence[Target]) -> str:
    lines = []
    for t in items:
        sign = ">=" if t.higher_is_better else "<="
        paired = "" if t.paired is None else f" (paired {_num(t.paired)})"
        lines.append(
            f"target {t.label}: {_num(t.value)}{paired}, needs {sign} {t.threshold:.2f}: {t.verdict}"
        )
    return "\n".join(lines)


def notes(concurrency: Sequence[int], setups: Sequence[str]) -> list[str]:
    """What the figures mean, printed under the table."""
    lines = [
        "tok/s = tokens generated by a batch / the batch's wall time; median over rounds",
        "TTFT counts from the moment a batch is sent, so above concurrency 1 it includes queueing",
        "ITL = gaps between consecutive text events of a request, pooled over all requests; "
        "per-token when tok/event is 1.00",
        "completed = the stream ended with a finish_reason (and [DONE] over HTTP)",
        "ratios: of the medians; 'paired' is the median of per-round ratios",
    ]
    if any(level > 1 for level in concurrency):
        if "a" in setups:
            lines.append(
                "(a) above concurrency 1 runs its requests back to back in one process: "
                "one Llama context cannot decode two requests at once"
            )
        if "c" in setups:
            lines.append(
                "(c) runs with llama_cpp.server's defaults: a new request interrupts the "
                "running stream, which then ends without a finish_reason"
            )
    return lines


def to_json(
    facts: Mapping[str, object],
    samples: Sequence[BatchSample],
    summaries: Sequence[Summary],
    ratio_items: Sequence[Ratio],
    **extra: object,
) -> dict[str, object]:
    return {
        "facts": dict(facts),
        "samples": [
            {**asdict(sample), "tokens": sample.tokens, "tokens_per_s": sample.tokens_per_s}
            for sample in samples
        ],
        "summary": [asdict(summary) for summary in summaries],
        "ratios": [asdict(item) for item in ratio_items],
        **extra,
    }
