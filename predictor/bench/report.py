"""Medians and ratios from the raw samples, as a table and as JSON.

Only medians over rounds and their ratios are reported: on a shared machine a
single timing says more about the neighbours than about the code.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from predictor.bench.samples import BatchSample

# Below this many TTFT samples a 95th percentile is just the maximum.
MIN_SAMPLES_FOR_P95 = 20
# Ratios printed: kzero against the raw floor, and against llama_cpp.server.
RATIO_PAIRS: tuple[tuple[str, str], ...] = (("b", "a"), ("b", "c"))


@dataclass(frozen=True)
class Summary:
    """One setup at one concurrency level, over all rounds."""

    setup: str
    concurrency: int
    tokens_per_s: float
    ttft_p50_s: float | None
    ttft_p95_s: float | None
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


def summarize(samples: Sequence[BatchSample]) -> list[Summary]:
    groups: dict[tuple[str, int], list[BatchSample]] = {}
    for sample in samples:
        groups.setdefault((sample.setup, sample.concurrency), []).append(sample)
    return [_summary(setup, conc, batches) for (setup, conc), batches in sorted(groups.items())]


def _summary(setup: str, concurrency: int, batches: list[BatchSample]) -> Summary:
    requests = [request for batch in batches for request in batch.requests]
    ttfts = [request.ttft_s for request in requests if request.ttft_s is not None]
    p95 = None
    if len(ttfts) >= MIN_SAMPLES_FOR_P95:
        p95 = statistics.quantiles(ttfts, n=20, method="inclusive")[18]
    return Summary(
        setup=setup,
        concurrency=concurrency,
        tokens_per_s=statistics.median(batch.tokens_per_s for batch in batches),
        ttft_p50_s=statistics.median(ttfts) if ttfts else None,
        ttft_p95_s=p95,
        completed=sum(request.completed for request in requests),
        requests=len(requests),
        batches=len(batches),
    )


def _divide(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _paired(
    samples: Sequence[BatchSample], top: str, bottom: str, concurrency: int
) -> float | None:
    by_round: dict[tuple[str, int], float] = {
        (sample.setup, sample.round_index): sample.tokens_per_s
        for sample in samples
        if sample.concurrency == concurrency
    }
    rounds = sorted({round_index for _, round_index in by_round})
    per_round = [_divide(by_round.get((top, r)), by_round.get((bottom, r))) for r in rounds]
    valid = [value for value in per_round if value is not None]
    return statistics.median(valid) if valid else None


def ratios(summaries: Sequence[Summary], samples: Sequence[BatchSample]) -> list[Ratio]:
    by_key = {(s.setup, s.concurrency): s for s in summaries}
    result = []
    for concurrency in sorted({s.concurrency for s in summaries}):
        for top, bottom in RATIO_PAIRS:
            num, den = by_key.get((top, concurrency)), by_key.get((bottom, concurrency))
            if num is None or den is None:
                continue
            result.append(
                Ratio(
                    pair=f"{top}/{bottom}",
                    concurrency=concurrency,
                    tokens_per_s=_divide(num.tokens_per_s, den.tokens_per_s),
                    ttft_p50=_divide(num.ttft_p50_s, den.ttft_p50_s),
                    paired_tokens_per_s=_paired(samples, top, bottom, concurrency),
                )
            )
    return result


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_table(summaries: Sequence[Summary], names: Mapping[str, str]) -> str:
    width = max(len(name) for name in names.values()) + 2
    header = f"{'setup':<{width}}{'conc':>5}{'tok/s median':>14}{'TTFT p50 ms':>13}{'TTFT p95 ms':>13}  completed"
    rows = [header]
    for s in summaries:
        rows.append(
            f"{names[s.setup]:<{width}}{s.concurrency:>5}{s.tokens_per_s:>14.1f}"
            f"{_ms(s.ttft_p50_s):>13}{_ms(s.ttft_p95_s):>13}  {s.completed}/{s.requests}"
        )
    return "\n".join(rows)


def format_ratios(items: Sequence[Ratio]) -> str:
    return "\n".join(
        f"ratio {r.pair} concurrency {r.concurrency}: tok/s {_num(r.tokens_per_s)}"
        f"  TTFT p50 {_num(r.ttft_p50)}  paired tok/s {_num(r.paired_tokens_per_s)}"
        for r in items
    )


def notes(concurrency: Sequence[int]) -> list[str]:
    """What the figures mean, printed under the table."""
    lines = [
        "tok/s = tokens generated by a batch / the batch's wall time; median over rounds",
        "TTFT counts from the moment a batch is sent, so above concurrency 1 it includes queueing",
        "completed = the stream ended with a finish_reason (and [DONE] over HTTP)",
        "ratios: of the medians; 'paired' is the median of per-round ratios",
    ]
    if any(level > 1 for level in concurrency):
        lines.append(
            "(a) above concurrency 1 runs its requests back to back in one process: "
            "one Llama context cannot decode two requests at once"
        )
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
) -> dict[str, object]:
    return {
        "facts": dict(facts),
        "samples": [
            {**asdict(sample), "tokens": sample.tokens, "tokens_per_s": sample.tokens_per_s}
            for sample in samples
        ],
        "summary": [asdict(summary) for summary in summaries],
        "ratios": [asdict(item) for item in ratio_items],
    }
