"""Measured figures read from a Prometheus that scrapes kzero predictors."""

from __future__ import annotations

import math
from dataclasses import dataclass

import httpx

QUERIES = {
    # Each process observes phase="ready" once: sum / count is the mean cold start.
    "cold_start_s": 'sum(kzero_cold_start_seconds_sum{phase="ready"})'
    ' / sum(kzero_cold_start_seconds_count{phase="ready"})',
    # Tokens per second of the engine while a request runs: generated tokens over
    # engine time (end-to-end minus queueing) of every request so far.
    "tokens_per_s": "sum(kzero_generation_tokens_total)"
    " / (sum(kzero_e2e_request_latency_seconds_sum) - sum(kzero_request_queue_seconds_sum))",
    **{
        f"ttft_p{q}_s": f"histogram_quantile({q / 100}, sum by (le) (kzero_time_to_first_token_seconds_bucket))"
        for q in (50, 95, 99)
    },
}


class PrometheusError(RuntimeError):
    """Prometheus could not be reached or answered with an error."""


@dataclass(frozen=True)
class PrometheusFigures:
    url: str
    cold_start_s: float | None
    tokens_per_s: float | None
    ttft_s: dict[int, float]


def _instant(client: httpx.Client, url: str, expr: str) -> float | None:
    try:
        response = client.get(f"{url}/api/v1/query", params={"query": expr})
    except httpx.HTTPError as exc:
        raise PrometheusError(f"cannot query {url}: {exc}") from None
    body = (
        response.json()
        if response.headers.get("content-type", "").startswith("application/json")
        else {}
    )
    if body.get("status") != "success":
        raise PrometheusError(
            f"{url} answered {response.status_code}: {body.get('error', response.text[:200])}"
        )
    result = body["data"]["result"]
    if not result:
        return None
    value = float(result[0]["value"][1])
    return value if math.isfinite(value) else None


def read_prometheus(url: str, timeout_s: float = 30.0) -> PrometheusFigures:
    url = url.rstrip("/")
    with httpx.Client(timeout=timeout_s) as client:
        values = {name: _instant(client, url, expr) for name, expr in QUERIES.items()}
    return PrometheusFigures(
        url=url,
        cold_start_s=values["cold_start_s"],
        tokens_per_s=values["tokens_per_s"],
        ttft_s={q: v for q in (50, 95, 99) if (v := values[f"ttft_p{q}_s"]) is not None},
    )
