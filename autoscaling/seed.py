"""The seed study's scenario and table, reproduced to the digits it published.

Llama 3.2 1B Q4_K_M in a 6 GB function: 7.42 tokens/s on AWS Lambda and 7.39
on Cloud Run with CPU boost (4 vCPU). The study published:

| platform | $/s | $/token | $/500-token request |
| Lambda | 0.00010002 | 0.00001348 | 0.00674 |
| Cloud Run, boosted | 0.000102 | 0.0000138 | 0.0069 |

The Lambda rate is 6 GB x $0.00001667/GB-s. The Cloud Run rate does not
follow from its stated inputs: 4 vCPU x $0.000024 + 6 GB x $0.0000025 is
$0.000111/s, not $0.000102/s. ``seed_table`` reproduces the published table
from the published rates; ``list_price_rates`` recomputes the rates from
``prices.yaml`` so that the difference stays visible.
"""

from __future__ import annotations

from dataclasses import dataclass

from autoscaling.cost import TOKENS_PER_REQUEST, ManagedServerless, aws_lambda, usd
from autoscaling.prices import Prices

MODEL = "Llama 3.2 1B Q4_K_M"
MEMORY_GB = 6.0
LAMBDA_TOKENS_PER_S = 7.42
CLOUD_RUN_TOKENS_PER_S = 7.39
CLOUD_RUN_VCPUS = 4.0
# The rates the study multiplied, as published.
LAMBDA_GB_SECOND = 0.00001667
LAMBDA_RATE_PER_S = MEMORY_GB * LAMBDA_GB_SECOND  # 0.00010002
CLOUD_RUN_RATE_PER_S = 0.000102


@dataclass(frozen=True)
class SeedRow:
    platform: str
    rate_per_s: float
    tokens_per_s: float

    @property
    def per_token(self) -> float:
        return self.rate_per_s / self.tokens_per_s

    @property
    def per_request(self) -> float:
        return self.per_token * TOKENS_PER_REQUEST


def seed_table() -> list[SeedRow]:
    return [
        SeedRow("AWS Lambda (6 GB)", LAMBDA_RATE_PER_S, LAMBDA_TOKENS_PER_S),
        SeedRow(
            "Cloud Run, CPU boost (4 vCPU, 6 GB)", CLOUD_RUN_RATE_PER_S, CLOUD_RUN_TOKENS_PER_S
        ),
    ]


def seed_offers() -> list[ManagedServerless]:
    """The seed study's two platforms as offers for the comparison (rates as published)."""
    return [
        ManagedServerless(
            name="AWS Lambda (6 GB, seed)",
            rate_per_s=LAMBDA_RATE_PER_S,
            request_fee=0.0,
            tokens_per_s=LAMBDA_TOKENS_PER_S,
            detail=f"seed study: 6 GB x {usd(LAMBDA_GB_SECOND)}/GB-s, {LAMBDA_TOKENS_PER_S} tok/s",
        ),
        ManagedServerless(
            name="Cloud Run boosted (seed)",
            rate_per_s=CLOUD_RUN_RATE_PER_S,
            request_fee=0.0,
            tokens_per_s=CLOUD_RUN_TOKENS_PER_S,
            detail=f"seed study: {usd(CLOUD_RUN_RATE_PER_S)}/s as published, "
            f"{CLOUD_RUN_TOKENS_PER_S} tok/s",
        ),
    ]


def list_price_rates(prices: Prices) -> dict[str, float]:
    """The seed platforms' per-second rates recomputed from the price file."""
    cloud_run = prices.cloud_run
    return {
        "AWS Lambda (6 GB)": aws_lambda(prices, MEMORY_GB, LAMBDA_TOKENS_PER_S).rate_per_s,
        "Cloud Run, CPU boost (4 vCPU, 6 GB)": CLOUD_RUN_VCPUS * cloud_run["vcpu_second"].value
        + MEMORY_GB * cloud_run["gib_second"].value,
    }
