"""Cost per token and per request: self-hosted on Knative against managed serverless.

Units: dollars, seconds, tokens; traffic as requests per second. A request
generates ``tokens`` output tokens at the measured tokens/s of one pod (or one
managed instance), so it occupies its pod for ``tokens / tokens_per_s`` seconds.

Self-hosted assumptions (they are stated in every table this module feeds):
- a pod pays its share of a node's on-demand price for as long as it exists;
  the node's other shares go to other pods (a shared, bin-packed cluster);
- a request holds its pod for its whole decode at the single-stream tokens/s,
  and the autoscaler keeps pods at most ``max_utilization`` busy (Knative's
  target utilization). kzero's llama.cpp engine decodes several requests
  together, so under load this overstates the cost; ``simulator`` models the
  batching;
- scale-to-zero: a pod lives on for ``idle_before_zero_s`` after its last
  request (the KPA's stable window plus the scale-to-zero grace period), and a
  request that finds no pod pays a cold start, billed too.

Managed serverless is billed per second of request duration plus a request fee,
with the same tokens/s as the self-hosted pod unless told otherwise. Managed
cold starts (Lambda INIT billing, Cloud Run startup) are left out, which favours
the managed clouds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from autoscaling.prices import NodePrice, Prices

TOKENS_PER_REQUEST = 500
SECONDS_PER_HOUR = 3600.0
# Traffic range searched for break-even points: one request a day to 1000/s.
MIN_RATE_RPS = 1.0 / 86400
MAX_RATE_RPS = 1000.0


@dataclass(frozen=True)
class ManagedServerless:
    """A managed serverless offer billed per second of each request, plus a request fee."""

    name: str
    rate_per_s: float
    request_fee: float
    tokens_per_s: float
    detail: str

    def cost_per_request(self, tokens: int = TOKENS_PER_REQUEST) -> float:
        return self.rate_per_s * tokens / self.tokens_per_s + self.request_fee

    def compute_cost_per_token(self) -> float:
        """Compute only, as the seed study counts it (no request fee)."""
        return self.rate_per_s / self.tokens_per_s

    def cost_per_s(self, rate_rps: float, tokens: int = TOKENS_PER_REQUEST) -> float:
        return rate_rps * self.cost_per_request(tokens)


def usd(value: float) -> str:
    """A unit price without scientific notation: 0.0000166667, not 1.66667e-05."""
    return "$" + f"{value:.10f}".rstrip("0").rstrip(".")


def aws_lambda(
    prices: Prices, memory_gb: float, tokens_per_s: float, *, arm: bool = False
) -> ManagedServerless:
    gb_second = prices.lambda_["arm_gb_second" if arm else "x86_gb_second"].value
    return ManagedServerless(
        name=f"AWS Lambda ({'arm' if arm else 'x86'}, {memory_gb:g} GB)",
        rate_per_s=memory_gb * gb_second,
        request_fee=prices.lambda_["request"].value,
        tokens_per_s=tokens_per_s,
        detail=f"{memory_gb:g} GB x {usd(gb_second)}/GB-s + {usd(prices.lambda_['request'].value)}/request",
    )


def lambda_memory_for_vcpus(prices: Prices, vcpus: float) -> float:
    """Lambda sizes CPU by memory: the GB that buys ``vcpus`` vCPUs."""
    return round(vcpus * prices.lambda_["mb_per_vcpu"].value / 1024, 2)


def cloud_run(
    prices: Prices, vcpus: float, memory_gib: float, tokens_per_s: float
) -> ManagedServerless:
    """Cloud Run with request-based billing (billed while a request is in flight)."""
    vcpu_s = prices.cloud_run["vcpu_second"].value
    gib_s = prices.cloud_run["gib_second"].value
    return ManagedServerless(
        name=f"Cloud Run ({vcpus:g} vCPU, {memory_gib:g} GiB)",
        rate_per_s=vcpus * vcpu_s + memory_gib * gib_s,
        request_fee=prices.cloud_run["request"].value,
        tokens_per_s=tokens_per_s,
        detail=f"{vcpus:g} x {usd(vcpu_s)}/vCPU-s + {memory_gib:g} x {usd(gib_s)}/GiB-s "
        f"+ {usd(prices.cloud_run['request'].value)}/request",
    )


@dataclass(frozen=True)
class SelfHosted:
    """One model on Knative: pods that each get a share of a node."""

    node: NodePrice
    pods_per_node: int
    tokens_per_s: float
    cold_start_s: float
    idle_before_zero_s: float
    max_utilization: float = 0.7

    def __post_init__(self) -> None:
        if self.pods_per_node < 1:
            raise ValueError("pods_per_node must be at least 1")
        if self.tokens_per_s <= 0:
            raise ValueError("tokens_per_s must be positive")
        if not 0 < self.max_utilization <= 1:
            raise ValueError("max_utilization must be in (0, 1]")

    @property
    def pod_rate_per_s(self) -> float:
        return self.node.per_hour / SECONDS_PER_HOUR / self.pods_per_node

    def busy_s(self, tokens: int = TOKENS_PER_REQUEST) -> float:
        return tokens / self.tokens_per_s

    def pods_needed(self, rate_rps: float, tokens: int = TOKENS_PER_REQUEST) -> int:
        """Pods that keep the offered load at or under the target utilization; at least 1."""
        return max(1, math.ceil(rate_rps * self.busy_s(tokens) / self.max_utilization - 1e-12))

    def utilization(self, rate_rps: float, tokens: int = TOKENS_PER_REQUEST) -> float:
        return rate_rps * self.busy_s(tokens) / self.pods_needed(rate_rps, tokens)

    def always_on_pod_seconds_per_s(
        self, rate_rps: float, tokens: int = TOKENS_PER_REQUEST
    ) -> float:
        return float(self.pods_needed(rate_rps, tokens))

    def scale_to_zero_pod_seconds_per_s(
        self, rate_rps: float, tokens: int = TOKENS_PER_REQUEST
    ) -> float:
        """Pod-seconds billed per second of wall time, for Poisson arrivals.

        Per request a pod is billed for its service time, then for the idle gap
        until the next request, cut at ``idle_before_zero_s``; when the gap is
        longer the pod goes away and the next request pays a cold start. With
        exponential gaps (rate r, cut-off T): E[min(gap, T)] = (1 - e^(-rT)) / r
        and P(gap > T) = e^(-rT). This holds while one pod carries the load;
        above the target utilization of one pod the KPA keeps several pods up,
        scaling to zero never happens, and the cost is the always-on cost.
        ``simulator`` checks this closed form against a KPA replay.
        """
        if rate_rps <= 0:
            return 0.0
        if rate_rps * self.busy_s(tokens) > self.max_utilization:
            return self.always_on_pod_seconds_per_s(rate_rps, tokens)
        idle = self.idle_before_zero_s
        stays_up = 1.0 - math.exp(-rate_rps * idle)
        cold_starts_per_s = rate_rps * math.exp(-rate_rps * idle)
        single_pod = (
            rate_rps * self.busy_s(tokens) + stays_up + cold_starts_per_s * self.cold_start_s
        )
        return min(single_pod, 1.0)

    def always_on_cost_per_s(self, rate_rps: float, tokens: int = TOKENS_PER_REQUEST) -> float:
        return self.always_on_pod_seconds_per_s(rate_rps, tokens) * self.pod_rate_per_s

    def scale_to_zero_cost_per_s(self, rate_rps: float, tokens: int = TOKENS_PER_REQUEST) -> float:
        return self.scale_to_zero_pod_seconds_per_s(rate_rps, tokens) * self.pod_rate_per_s


def per_request(cost_per_s: float, rate_rps: float) -> float:
    return cost_per_s / rate_rps


def per_million_tokens(
    cost_per_s: float, rate_rps: float, tokens: int = TOKENS_PER_REQUEST
) -> float:
    return cost_per_s / (rate_rps * tokens) * 1e6


def break_even_rate(
    self_hosted_cost_per_s: Callable[[float], float],
    managed_cost_per_s: Callable[[float], float],
    lo: float = MIN_RATE_RPS,
    hi: float = MAX_RATE_RPS,
    steps: int = 600,
) -> float | None:
    """The lowest request rate from which self-hosted costs no more than managed.

    Returns ``lo`` when self-hosted is already cheaper at ``lo``, and None when
    it never becomes cheaper up to ``hi``. The costs are scanned on a
    logarithmic grid, and the first crossing is refined by bisection (a step of
    the always-on cost, when a pod is added, is found the same way).
    """

    def cheaper(rate: float) -> bool:
        return self_hosted_cost_per_s(rate) <= managed_cost_per_s(rate)

    if cheaper(lo):
        return lo
    ratio = (hi / lo) ** (1 / steps)
    previous = lo
    for step in range(1, steps + 1):
        rate = lo * ratio**step
        if cheaper(rate):
            low, high = previous, rate
            for _ in range(60):
                middle = math.sqrt(low * high)
                low, high = (low, middle) if cheaper(middle) else (middle, high)
            return high
        previous = rate
    return None


@dataclass(frozen=True)
class Row:
    """One line of the comparison at one traffic rate."""

    label: str
    per_request: float
    per_million_tokens: float
    note: str
    break_even_rps: dict[str, float | None]


def compare(
    self_hosted: SelfHosted,
    managed: Sequence[ManagedServerless],
    rate_rps: float,
    tokens: int = TOKENS_PER_REQUEST,
) -> list[Row]:
    """Always-on, scale-to-zero, then every managed offer: the three kinds, always all shown."""
    if rate_rps <= 0:
        raise ValueError("the traffic rate must be positive")
    modes: list[tuple[str, Callable[[float], float], str]] = [
        (
            "self-hosted, always on (minReplicas 1)",
            lambda r: self_hosted.always_on_cost_per_s(r, tokens),
            f"{self_hosted.pods_needed(rate_rps, tokens)} pod(s), "
            f"{self_hosted.utilization(rate_rps, tokens):.1%} busy",
        ),
        (
            "self-hosted, scale to zero (minReplicas 0)",
            lambda r: self_hosted.scale_to_zero_cost_per_s(r, tokens),
            f"{self_hosted.scale_to_zero_pod_seconds_per_s(rate_rps, tokens):.3f} pod-s/s, "
            f"{self_hosted.cold_start_s:g} s cold start",
        ),
    ]
    rows = []
    for label, cost_fn, note in modes:
        cost_per_s = cost_fn(rate_rps)
        rows.append(
            Row(
                label=label,
                per_request=per_request(cost_per_s, rate_rps),
                per_million_tokens=per_million_tokens(cost_per_s, rate_rps, tokens),
                note=note,
                break_even_rps={
                    offer.name: break_even_rate(
                        cost_fn, lambda r, offer=offer: offer.cost_per_s(r, tokens)
                    )
                    for offer in managed
                },
            )
        )
    for offer in managed:
        cost_per_s = offer.cost_per_s(rate_rps, tokens)
        rows.append(
            Row(
                label=f"managed: {offer.name}",
                per_request=per_request(cost_per_s, rate_rps),
                per_million_tokens=per_million_tokens(cost_per_s, rate_rps, tokens),
                note=offer.detail,
                break_even_rps={},
            )
        )
    return rows
