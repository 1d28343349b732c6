"""Every dashboard query and every recording rule returns data from a real Prometheus.

Prometheus (Debian's package) scrapes the session's predictor every second and
evaluates dashboards/rules/kzero-rules.yaml; a small load goes to the predictor;
then each query runs as of a moment just after the load, with Grafana's
variables replaced by their defaults. "Data" means at least one finite sample.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from autoscaling.prometheus_source import read_prometheus
from bench.harness.metrics import scrape
from bench.harness.process import PredictorProcess

from .conftest import MODEL_NAME
from .prometheus_process import PrometheusProcess

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboards" / "kzero-overview.json"
RULES = ROOT / "dashboards" / "rules" / "kzero-rules.yaml"
# Grafana's $__rate_interval is max(4 x scrape interval, step + scrape interval).
GRAFANA_MACROS = {"$__rate_interval": "20s", "$__range": "10m"}
# Series that arrive with the model cache (issue 3). Until a predictor exposes
# them, queries on them cannot return data, and say so instead of failing.
CACHE_SERIES = ("kzero_cache_lookups_total", "kzero_cache_download_bytes_total")


@dataclass(frozen=True)
class Query:
    name: str
    expr: str


def _dashboard_queries() -> list[Query]:
    board = json.loads(DASHBOARD.read_text())
    values = {
        f"${v['name']}": v["query"] for v in board["templating"]["list"] if v["type"] == "textbox"
    }
    values.update(GRAFANA_MACROS)
    values["$model_name"] = MODEL_NAME
    # Longest names first, so that $lambda_gb_second is not cut by a shorter prefix.
    pattern = re.compile("|".join(re.escape(k) for k in sorted(values, key=len, reverse=True)))
    queries = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = pattern.sub(lambda m: values[m.group(0)], target["expr"])
            assert "$" not in expr, f"unsubstituted variable in {expr}"
            queries.append(Query(f"{panel['title']} [{target['refId']}]", expr))
    return queries


def _recording_rules() -> list[Query]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [
        Query(rule["record"], rule["record"])
        for group in groups
        for rule in group["rules"]
        if "record" in rule
    ]


def _alert_exprs() -> list[Query]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [
        Query(rule["alert"], rule["expr"])
        for group in groups
        for rule in group["rules"]
        if "alert" in rule
    ]


def _needs_cache_series(query: Query) -> bool:
    expr = query.expr
    if (
        query.name.startswith("model_name_backend_result:kzero_cache_lookups")
        or "cache" in query.name
    ):
        return True
    return any(name in expr for name in CACHE_SERIES)


@dataclass
class LoadedPrometheus:
    prometheus: PrometheusProcess
    at: float  # unix time just after the load was scraped
    cache_series_exposed: bool


@pytest.fixture(scope="module")
def loaded(predictor: PredictorProcess) -> Iterator[LoadedPrometheus]:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus not found: apt-get install prometheus")
    host = predictor.url.removeprefix("http://")
    prometheus = PrometheusProcess([host], [RULES])
    try:
        prometheus.wait_ready()
        # A baseline: two scrapes before the load, so that rate() sees the increase.
        prometheus.wait_for(f'count_over_time(up{{instance="{host}"}}[1m])', lambda v: v >= 2)
        before = prometheus.wait_for(
            f'sum(kzero_requests_total{{model_name="{MODEL_NAME}"}}) or vector(0)', lambda v: True
        )
        sent = _send_load(predictor.url)
        prometheus.wait_for(
            f'sum(kzero_requests_total{{model_name="{MODEL_NAME}"}})',
            lambda v: v >= before + sent,
        )
        time.sleep(2.0)  # a couple of evaluations of the recording rules
        exposed = {name for name, _ in scrape(predictor.url)}
        yield LoadedPrometheus(prometheus, time.time(), all(s in exposed for s in CACHE_SERIES))
    finally:
        prometheus.stop()


def _send_load(base_url: str) -> int:
    """A few short completions (ok) and one refused request (invalid); returns the count."""
    with httpx.Client(base_url=base_url, timeout=120) as client:
        for index in range(4):
            response = client.post(
                "/v1/completions",
                json={"model": MODEL_NAME, "prompt": f"Count to {index + 3}:", "max_tokens": 8},
            )
            assert response.status_code == 200, response.text
        response = client.post(
            "/v1/chat/completions",
            json={
                "model": MODEL_NAME,
                "messages": [{"role": "user", "content": "Say hi."}],
                "max_tokens": 8,
                "stream": True,
            },
        )
        assert response.status_code == 200
        refused = client.post(
            "/v1/completions", json={"model": MODEL_NAME, "prompt": "x", "max_tokens": 10**6}
        )
        assert refused.status_code == 400
    return 6


def _finite(result: list[dict[str, object]]) -> list[float]:
    values = [float(sample["value"][1]) for sample in result]  # type: ignore[index]
    return [value for value in values if math.isfinite(value)]


def _check_data(loaded: LoadedPrometheus, query: Query) -> None:
    result = loaded.prometheus.query(query.expr, at=loaded.at)
    if not _finite(result) and _needs_cache_series(query) and not loaded.cache_series_exposed:
        pytest.xfail("the predictor exposes no kzero_cache_* samples yet (model cache, issue 3)")
    assert _finite(result), f"{query.name}: no finite sample for {query.expr}: {result}"


@pytest.mark.parametrize("query", _dashboard_queries(), ids=lambda q: q.name)
def test_dashboard_query_returns_data(loaded: LoadedPrometheus, query: Query) -> None:
    _check_data(loaded, query)


@pytest.mark.parametrize("query", _recording_rules(), ids=lambda q: q.name)
def test_recording_rule_returns_data(loaded: LoadedPrometheus, query: Query) -> None:
    _check_data(loaded, query)


# On a shared machine the session predictor can be slow for a while: the TTFT
# condition may hold for a moment (its `for: 10m` keeps it from firing).
LOAD_DEPENDENT_ALERTS = {"KzeroSlowTimeToFirstToken"}


@pytest.mark.parametrize("query", _alert_exprs(), ids=lambda q: q.name)
def test_alert_condition_is_false_for_a_healthy_predictor(
    loaded: LoadedPrometheus, query: Query
) -> None:
    # Evaluates without a PromQL error (query raises on one) ...
    result = loaded.prometheus.query(query.expr, at=loaded.at)
    # ... and finds nothing wrong with a ready predictor that served requests.
    if query.name not in LOAD_DEPENDENT_ALERTS:
        assert result == []


def test_report_reads_cold_start_throughput_and_ttft_from_prometheus(
    loaded: LoadedPrometheus,
) -> None:
    figures = read_prometheus(loaded.prometheus.url)
    # The session predictor's own start, as its /metrics reports it.
    assert figures.cold_start_s is not None and 0 < figures.cold_start_s < 120
    assert figures.tokens_per_s is not None and figures.tokens_per_s > 0
    assert set(figures.ttft_s) == {50, 95, 99}
    assert figures.ttft_s[50] <= figures.ttft_s[95] <= figures.ttft_s[99]
