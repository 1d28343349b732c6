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
