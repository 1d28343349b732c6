"""KPA decisions against steps computed by hand from Knative's algorithm.

Target 10 at 70% utilization: the target value per pod is 7 concurrent requests.
"""

from __future__ import annotations

import pytest

from autoscaling.kpa import KpaConfig, KpaDecider, ScaleToZeroGate, apply_bounds

CONFIG = KpaConfig(target=10)


def test_knative_defaults() -> None:
    config = KpaConfig()
    assert (config.stable_window_s, config.panic_window_s) == (60.0, 6.0)
    assert (config.panic_threshold, config.target_utilization, config.tick_s) == (2.0, 0.7, 2.0)
    assert (config.scale_to_zero_grace_s, config.max_scale_up_rate) == (30.0, 1000.0)
    assert config.max_scale_down_rate == 2.0
    assert config.target_value == pytest.approx(70.0)


def test_stable_mode_asks_for_ceil_of_concurrency_over_target_value() -> None:
    decider = KpaDecider(CONFIG)
    # 20 / 7 = 2.86 -> 3 pods; 3 / 3 ready is under the 200% panic threshold.
    assert decider.decide(0.0, ready_pods=3, stable_value=20, panic_value=20).desired == 3
    # 22 / 7 = 3.14 -> 4 pods.
    assert decider.decide(2.0, ready_pods=3, stable_value=22, panic_value=22).desired == 4


def test_scale_down_at_most_halves_the_ready_pods_per_decision() -> None:
    decision = KpaDecider(CONFIG).decide(0.0, ready_pods=8, stable_value=1, panic_value=1)
    # ceil(1 / 7) = 1, but floor(8 / 2) = 4 is the lowest allowed.
    assert (decision.stable_pods, decision.desired) == (1, 4)


def test_scale_up_is_capped_by_the_max_scale_up_rate() -> None:
    decider = KpaDecider(KpaConfig(target=10, max_scale_up_rate=2.0))
    # 70 / 7 = 10 pods wanted, ceil(2 x 2 ready) = 4 allowed.
    assert decider.decide(0.0, ready_pods=2, stable_value=70, panic_value=70).desired == 4


def test_panic_starts_at_twice_the_ready_pods_and_keeps_the_peak_for_a_stable_window() -> None:
    decider = KpaDecider(CONFIG)
    # Panic window: 28 / 7 = 4 pods = 2 x 2 ready -> panic; stable says 1.
    first = decider.decide(0.0, ready_pods=2, stable_value=7, panic_value=28)
    assert (first.panicking, first.desired) == (True, 4)
    # The burst is gone: stable 8 -> 2 pods, but no scale-down while panicking.
    calm = decider.decide(2.0, ready_pods=4, stable_value=8, panic_value=7)
    assert (calm.panicking, calm.desired) == (True, 4)
    # Panic ends only once a full stable window passed since the threshold was crossed.
    assert decider.decide(60.0, ready_pods=4, stable_value=8, panic_value=7).desired == 4
    after = decider.decide(62.0, ready_pods=4, stable_value=8, panic_value=7)
    assert (after.panicking, after.desired) == (False, 2)


def test_just_under_the_panic_threshold_stays_in_stable_mode() -> None:
    # 20.9 / 7 = 2.99 -> 3 pods = 1.5 x 2 ready: no panic; stable 7 -> 1, floor(2/2) = 1.
    decision = KpaDecider(CONFIG).decide(0.0, ready_pods=2, stable_value=7, panic_value=20.9)
    assert (decision.panicking, decision.desired) == (False, 1)


def test_zero_ready_pods_count_as_one_for_the_panic_ratio() -> None:
    # Scale from zero: 14 / 7 = 2 pods over max(1, 0) ready = 200% -> panic.
    decision = KpaDecider(CONFIG).decide(0.0, ready_pods=0, stable_value=1, panic_value=14)
    assert (decision.panicking, decision.desired) == (True, 2)


def test_one_idle_pod_may_be_asked_to_go_to_zero() -> None:
    decision = KpaDecider(CONFIG).decide(0.0, ready_pods=1, stable_value=0, panic_value=0)
    assert decision.desired == 0


def test_zero_waits_a_stable_window_active_then_the_grace_period_inactive() -> None:
    gate = ScaleToZeroGate(KpaConfig())
    gate.activate(0.0)
    assert gate.apply(30.0, 0) == 1  # active for less than the stable window: keep one pod
    assert gate.apply(60.0, 0) == 1  # marked inactive now; the activator takes the traffic
    assert not gate.active
    assert gate.apply(88.0, 0) == 1  # inactive for 28 s of the 30 s grace period
    assert gate.apply(90.0, 0) == 0
    assert gate.apply(92.0, 1) == 1 and gate.active


def test_min_and_max_scale_bound_the_decision() -> None:
    config = KpaConfig(min_scale=1, max_scale=3)
    assert apply_bounds(config, 0) == 1
    assert apply_bounds(config, 7) == 3
