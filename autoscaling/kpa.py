"""One scaling decision of Knative's Pod Autoscaler (KPA), with its defaults.

Written from Knative Serving's ``pkg/autoscaler/scaling/autoscaler.go`` (the
decider) and ``pkg/reconciler/autoscaling/kpa/scaler.go`` (scale to zero):

- desired pods from the stable window = ceil(stable concurrency / target), from
  the panic window = ceil(panic concurrency / target), where target = per-pod
  concurrency target x target utilization;
- both are kept within [floor(ready / max scale-down rate), ceil(ready x max
  scale-up rate)], with ready counted as at least 1;
- panic starts when the panic-window count reaches the panic threshold times the
  ready pods; while panicking the count only goes up, and panic ends once a
  whole stable window has passed since the threshold was last crossed;
- a zero decision only takes effect once the revision has been active for a
  stable window (it is then marked inactive and the activator goes into the
  path) and inactive for the scale-to-zero grace period; until then one pod stays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class KpaConfig:
    """Knative's config-autoscaler defaults, plus the per-pod target of the service."""

    # Per-pod concurrency target: the service's containerConcurrency (or the
    # autoscaling.knative.dev/target annotation). Knative's default is 100;
    # the chart's default is 2 and its latency-first preset's 1.
    target: float = 100.0
    target_utilization: float = 0.70
    stable_window_s: float = 60.0
    panic_window_percentage: float = 10.0
    panic_threshold: float = 2.0  # 200%
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    tick_s: float = 2.0
    scale_to_zero_grace_s: float = 30.0
    min_scale: int = 0
    max_scale: int = 0  # 0: no upper bound

    def __post_init__(self) -> None:
        if self.target <= 0 or not 0 < self.target_utilization <= 1:
            raise ValueError("target must be positive and target_utilization in (0, 1]")
        if self.max_scale_down_rate <= 1 or self.max_scale_up_rate <= 1:
            raise ValueError("max scale rates must be above 1")
        if self.tick_s <= 0 or self.stable_window_s < self.tick_s:
            raise ValueError("tick must be positive and shorter than the stable window")

    @property
    def target_value(self) -> float:
        return self.target * self.target_utilization

    @property
    def panic_window_s(self) -> float:
        return self.stable_window_s * self.panic_window_percentage / 100.0

    @property
    def idle_before_zero_s(self) -> float:
        """Idle time from the last request to zero pods: the stable window empties,
        then the grace period passes; each step waits for the next tick."""
        return self.stable_window_s + self.scale_to_zero_grace_s + self.tick_s


@dataclass
class Decision:
    desired: int
    stable_pods: int
    panic_pods: int
    panicking: bool


class KpaDecider:
    """The autoscaler's state across ticks: panic mode and the highest panic count."""

    def __init__(self, config: KpaConfig) -> None:
        self.config = config
        self.panic_since: float | None = None  # last time the threshold was crossed
        self.max_panic_pods = 0

    def decide(
        self, now: float, ready_pods: int, stable_value: float, panic_value: float
    ) -> Decision:
        """Desired pods from the window averages of total concurrency (autoscaler.go Scale)."""
        cfg = self.config
        ready = max(1.0, float(ready_pods))
        max_up = math.ceil(cfg.max_scale_up_rate * ready)
        # With one pod floor(1/2) = 0, so the decider may ask for zero.
        max_down = math.floor(ready / cfg.max_scale_down_rate)
        stable_pods = math.ceil(stable_value / cfg.target_value - 1e-9)
        panic_pods = math.ceil(panic_value / cfg.target_value - 1e-9)
        desired_stable = int(min(max(stable_pods, max_down), max_up))
        desired_panic = int(min(max(panic_pods, max_down), max_up))

        over_threshold = panic_pods / ready >= cfg.panic_threshold
        if over_threshold:
            self.panic_since = now
        elif self.panic_since is not None and self.panic_since + cfg.stable_window_s < now:
            self.panic_since = None
            self.max_panic_pods = 0

        desired = desired_stable
        if self.panic_since is not None:
            desired = max(desired, desired_panic)
            # No scale-down while panicking.
            self.max_panic_pods = max(self.max_panic_pods, desired)
            desired = self.max_panic_pods
        return Decision(desired, stable_pods, panic_pods, self.panic_since is not None)


def apply_bounds(config: KpaConfig, desired: int) -> int:
    desired = max(desired, config.min_scale)
    if config.max_scale:
        desired = min(desired, config.max_scale)
    return desired


class ScaleToZeroGate:
    """When a zero decision may take effect (kpa/scaler.go handleScaleToZero).

    Active: requests go straight to pods. A zero decision marks the revision
    inactive once it has been active for a stable window (until then one pod
    stays). Inactive: the activator is in the path; pods go to zero once the
    revision has been inactive for the grace period.
    """

    def __init__(self, config: KpaConfig) -> None:
        self.config = config
        self.active = False
        self.since = 0.0

    def activate(self, now: float) -> None:
        if not self.active:
            self.active = True
            self.since = now

    def apply(self, now: float, desired: int) -> int:
        if desired > 0:
            self.activate(now)
            return desired
        if self.active:
            if now - self.since >= self.config.stable_window_s:
                self.active = False
                self.since = now
            return 1
        if now - self.since >= self.config.scale_to_zero_grace_s:
            return 0
        return 1
