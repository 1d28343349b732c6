"""The simulator's pods, activator buffering and scale to zero, timed by hand."""

from __future__ import annotations

import pytest

from autoscaling.cost import SelfHosted
from autoscaling.kpa import KpaConfig
from autoscaling.prices import load_prices
from autoscaling.simulator import PodModel, simulate
from autoscaling.traces import Lengths, TraceRequest, bursty, diurnal, poisson

# One pod per in-flight request, so that the hand arithmetic stays short.
ONE_PER_POD = KpaConfig(target=1, target_utilization=1.0)
POD = PodModel(tokens_per_s=10.0, cold_start_s=3.0, prefill_tokens_per_s=1000.0)


def test_one_request_cold_starts_then_the_pod_goes_away_after_window_and_grace() -> None:
    result = simulate([TraceRequest(0.5, 0, 10)], POD, ONE_PER_POD)
    (request,) = result.requests
    # Activator poke at 0.5, pod ready at 3.5, first token one decode step later.
    assert request.waited_for_cold_start
    assert request.ttft_s == pytest.approx(3.1)
    assert request.end_s == pytest.approx(4.5)
    # Concurrency ends in the bucket [4, 5). The 60 s stable window is empty from
    # t = 65, so the tick at 66 asks for zero and marks the revision inactive;
    # the 30 s grace period ends at the tick at 96.
    pods = {tick.time_s: tick.pods for tick in result.ticks}
    assert pods[64.0] == 1 and pods[94.0] == 1 and pods[96.0] == 0
    assert result.pod_seconds == pytest.approx(96.0 - 0.5)
    assert result.pods_started == 1


def test_requests_arriving_during_a_cold_start_wait_in_the_activator_in_order() -> None:
    trace = [TraceRequest(t, 0, 10) for t in (0.0, 1.0, 2.0)]
    config = KpaConfig(target=1, target_utilization=1.0, max_scale=1)
    result = simulate(trace, POD, config)
    starts = [r.start_s for r in result.requests]
    assert starts == pytest.approx([3.0, 4.0, 5.0])
    assert all(r.waited_for_cold_start for r in result.requests)


def test_warm_pod_with_min_scale_one_never_cold_starts_and_bills_the_whole_time() -> None:
    config = KpaConfig(target=1, target_utilization=1.0, min_scale=1)
    trace = [TraceRequest(10.0 + 20 * i, 0, 10) for i in range(5)]
    result = simulate(trace, POD, config, duration_s=200.0)
    assert not any(r.waited_for_cold_start for r in result.requests)
    assert result.latency()["ttft_p99"] == pytest.approx(0.1)
    assert result.pod_seconds == pytest.approx(200.0, abs=2.0)


def test_aggregate_throughput_is_interpolated_between_measured_levels_and_flat_beyond() -> None:
    pod = PodModel(10.0, 0.0, parallel=8, batched_tokens_per_s={4: 20.0, 8: 24.0})
    assert pod.aggregate_tokens_per_s(1) == 10.0
    assert pod.aggregate_tokens_per_s(2) == pytest.approx(10.0 + 10.0 / 3)
    assert pod.aggregate_tokens_per_s(6) == pytest.approx(22.0)
    assert pod.aggregate_tokens_per_s(8) == 24.0
    assert PodModel(10.0, 0.0, parallel=8).aggregate_tokens_per_s(5) == 10.0
    with pytest.raises(ValueError):
        PodModel(10.0, 0.0, batched_tokens_per_s={1: 12.0})


def test_a_batching_pod_shares_its_throughput_between_the_requests_it_decodes() -> None:
    # Two requests at t = 10 on a warm pod that decodes 2 together at 16 tok/s
    # in all (8 each) and one alone at 10 tok/s. No prompt cost.
    config = KpaConfig(target=2, target_utilization=1.0, min_scale=1)
    batching = PodModel(
        10.0, 0.0, prefill_tokens_per_s=1e12, parallel=2, batched_tokens_per_s={2: 16.0}
    )
    trace = [TraceRequest(10.0, 0, 8), TraceRequest(10.0, 0, 16)]
    short, long = simulate(trace, batching, config, duration_s=30.0).requests
    # Both decode their first token in 1/8 s; the short one ends after 8 tokens at 8 tok/s.
    assert short.first_token_s == pytest.approx(10.125)
    assert long.first_token_s == pytest.approx(10.125)
    assert short.end_s == pytest.approx(11.0)
    # The long one has 8 tokens left and then decodes alone at 10 tok/s.
    assert long.end_s == pytest.approx(11.8)
    # One at a time, the second waits for the first: 10.8, then 1.6 s more.
    serial = PodModel(10.0, 0.0, prefill_tokens_per_s=1e12)
    first, second = simulate(trace, serial, config, duration_s=30.0).requests
    assert first.end_s == pytest.approx(10.8)
    assert second.first_token_s == pytest.approx(10.9)
    assert second.end_s == pytest.approx(12.4)


def test_requests_beyond_the_parallel_slots_queue_in_the_pod_and_prompts_share_it_too() -> None:
    # Three requests, two slots; prompts of 100 tokens at 1000 tok/s prefill
    # cost 1 token of work each (0.1 s alone). Alone or together: 10 tok/s in all.
    config = KpaConfig(target=3, target_utilization=1.0, min_scale=1)
    pod = PodModel(10.0, 0.0, prefill_tokens_per_s=1000.0, parallel=2)
    trace = [TraceRequest(10.0, 100, 4) for _ in range(3)]
    a, b, c = simulate(trace, pod, config, duration_s=30.0).requests
    # a and b share 10 tok/s: 5 each. First token after 2 units (prompt + 1): 0.4 s;
    # done after 5 units: 1.0 s. c starts then, alone: 0.2 s to its first token.
    assert (a.first_token_s, b.first_token_s) == pytest.approx((10.4, 10.4))
    assert (a.end_s, b.end_s) == pytest.approx((11.0, 11.0))
    assert c.start_s == pytest.approx(11.0)
    assert c.first_token_s == pytest.approx(11.2)
    assert c.end_s == pytest.approx(11.5)


def test_a_burst_scales_out_through_panic_mode() -> None:
    trace = [TraceRequest(0.1 * i, 0, 100) for i in range(20)]  # 20 requests in 2 s
    result = simulate(trace, POD, KpaConfig(target=1))
    assert any(tick.panicking for tick in result.ticks)
    assert max(tick.pods for tick in result.ticks) >= 10
    assert result.ticks[-1].pods == 0


def test_closed_form_scale_to_zero_cost_agrees_with_the_replay_at_light_load() -> None:
    config = KpaConfig(target=1, target_utilization=1.0)
    pod = PodModel(tokens_per_s=50.0, cold_start_s=5.0, prefill_tokens_per_s=1e9)
    rate, duration = 1 / 120, 20 * 3600.0
    trace = poisson(rate, duration, lengths=Lengths((0, 0), (500, 500)), seed=7)
    replay = simulate(trace, pod, config, duration_s=duration)
    model = SelfHosted(
        load_prices().node("aws_c7i_xlarge"), 2, 50.0, 5.0, config.idle_before_zero_s
    )
    expected = model.scale_to_zero_pod_seconds_per_s(rate) * duration
    assert replay.pod_seconds == pytest.approx(expected, rel=0.1)


def test_traces_are_seeded_and_shaped() -> None:
    assert poisson(1.0, 100.0, seed=3) == poisson(1.0, 100.0, seed=3)
    assert 800 < len(poisson(1.0, 1000.0, seed=1)) < 1200
    on_off = bursty(2.0, on_s=10.0, off_s=50.0, duration_s=600.0, seed=1)
    assert all(r.arrival_s % 60.0 < 10.0 for r in on_off)
    day = diurnal(0.01, 86400.0, seed=1)
    night = sum(r.arrival_s < 21600 or r.arrival_s > 64800 for r in day)
    assert night < len(day) - night  # fewer requests in the night half than the day half
    with pytest.raises(ValueError, match="duration"):
        poisson(1.0, 0.0)
