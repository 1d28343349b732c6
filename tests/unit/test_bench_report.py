"""The report's arithmetic on scripted samples: ITL, p95, ratios, scaling, targets."""

from __future__ import annotations

import pytest

from bench.report import (
    MIN_SAMPLES_FOR_P95,
    Ratio,
    Target,
    format_targets,
    ratios,
    scaling,
    summarize,
    targets,
)
from bench.samples import BatchSample, RequestSample


def request(ttft: float, gaps: tuple[float, ...], tokens: int | None = None) -> RequestSample:
    events = len(gaps) + 1
    return RequestSample(ttft, tokens or events, events, True, None, gaps)


def batch(setup: str, concurrency: int, round_index: int, tokens: int, wall: float) -> BatchSample:
    per = tokens // concurrency
    requests = tuple(request(0.1, (0.01,) * (per - 1)) for _ in range(concurrency))
    return BatchSample(setup, concurrency, round_index, wall, requests)


def test_itl_pools_the_gaps_of_every_request():
    sample = BatchSample(
        "b", 2, 0, 1.0, (request(0.1, (0.01, 0.03)), request(0.2, (0.02, 0.04, 0.05)))
    )
    (summary,) = summarize([sample])
    assert summary.itl_p50_s == pytest.approx(0.03)
    assert summary.itl_p95_s is None  # 5 gaps: too few for a 95th percentile
    assert summary.tokens_per_event == 1.0


def test_itl_p95_needs_enough_gaps():
    gaps = tuple(0.01 * (i + 1) for i in range(MIN_SAMPLES_FOR_P95))
    (summary,) = summarize([BatchSample("b", 1, 0, 1.0, (request(0.1, gaps),))])
    assert summary.itl_p95_s is not None
    assert 0.19 <= summary.itl_p95_s <= 0.20


def test_coalesced_events_show_as_more_than_one_token_per_event():
    (summary,) = summarize([BatchSample("b", 1, 0, 1.0, (request(0.1, (0.02,), tokens=4),))])
    assert summary.tokens_per_event == 2.0


def test_ratios_cover_kzero_against_every_peer_and_peers_against_raw():
    samples = [batch(setup, 1, 0, 64, 1.0) for setup in "abcd"]
    pairs = {r.pair for r in ratios(summarize(samples), samples)}
    assert pairs == {"b/a", "b/c", "b/d", "c/a", "d/a"}


def test_ratio_of_ttft_p95_at_high_concurrency():
    samples = [
        BatchSample("b", 8, r, 1.0, tuple(request(0.5, (0.01,)) for _ in range(8)))
        for r in range(3)
    ] + [
        BatchSample("d", 8, r, 1.0, tuple(request(0.25, (0.01,)) for _ in range(8)))
        for r in range(3)
    ]
    (ratio,) = ratios(summarize(samples), samples)
    assert ratio.pair == "b/d"
    assert ratio.ttft_p95 == pytest.approx(2.0)


def test_scaling_is_each_setups_own_aggregate_over_its_single_stream():
    samples = [
        batch("d", 1, 0, 64, 1.0),  # 64 tok/s
        batch("d", 8, 0, 512, 4.0),  # 128 tok/s
        batch("d", 1, 1, 64, 0.5),  # 128 tok/s
        batch("d", 8, 1, 512, 2.0),  # 256 tok/s
    ]
    (item,) = scaling(summarize(samples), samples)
    assert (item.setup, item.concurrency, item.base) == ("d", 8, 1)
    assert item.paired_tokens_per_s == pytest.approx(2.0)
    assert item.tokens_per_s == pytest.approx(192.0 / 96.0)


def test_targets_judge_kzero_against_llama_server_at_one_and_the_top_level():
    items = targets(
        [
            Ratio("b/d", 1, 1.02, 0.9, 1.01),
            Ratio("b/d", 4, 0.5, 0.9, 0.5),
            Ratio("b/d", 8, 0.95, 0.9, 1.01, ttft_p95=0.8),
            Ratio("b/a", 1, 2.0, 1.0, 2.0),
        ]
    )
    assert [t.label for t in items] == [
        "kzero / llama-server tokens/s, single stream",
        "kzero / llama-server aggregate tokens/s, concurrency 8",
        "kzero / llama-server TTFT p95, concurrency 8",
    ]
    assert [t.verdict for t in items] == ["met", "mixed (met by one figure only)", "met"]


def test_a_slower_first_token_misses_the_ttft_target():
    target = Target("ttft", 1.3, None, 1.0, higher_is_better=False)
    assert target.verdict == "not met"
    assert "needs <= 1.00: not met" in format_targets([target])


def test_targets_without_llama_server_are_not_judged():
    assert targets([Ratio("b/a", 1, 1.0, 1.0, 1.0)]) == []
    assert Target("x", None, None, 1.0, True).verdict == "not measured"
