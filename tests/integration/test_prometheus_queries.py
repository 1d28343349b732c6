"""Every dashboard query and every recording rule returns data from a real Prometheus.

Prometheus (Debian's package) scrapes the session's predictor every second and
evaluates dashboards/rules/kzero-rules.yaml. The fixture waits for what the
queries need, never for a fixed time: a scrape before the load, a small load, the
first scrape that shows all of it, and an evaluation of every recording rule
after that scrape. Each query then runs with Grafana's variables replaced, its rate
window ($__rate_interval) stretched from the scrape before the load to the query
time, however long the load took. "Data" means at least one finite sample.

Knative's series (dashboards/knative_queries.py) do not exist here: their queries
must evaluate and find nothing; tests/rules/dashboard_queries.test.yaml and the
rule tests check them on Knative-shaped series.
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
from bench.harness.process import PredictorProcess

from .conftest import MODEL_NAME
from .prometheus_process import PrometheusProcess

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboards" / "kzero-overview.json"
RULES = ROOT / "dashboards" / "rules" / "kzero-rules.yaml"
GRAFANA_RANGE = "10m"
# Knative Serving's series: exported by Knative's components, not by the predictor.
KNATIVE_SERIES = re.compile(
    r"\b(kn_[a-z_]+|http_server_request_duration_seconds_count|target_info)\b"
)
REQUEST_SERIES = f'kzero_requests_total{{model_name="{MODEL_NAME}"}}'
REQUESTS = f"sum({REQUEST_SERIES})"


def _on_knative(expr: str) -> bool:
    return bool(KNATIVE_SERIES.search(expr))


@dataclass(frozen=True)
class Query:
    name: str
    expr: str
    on_knative: bool  # selects Knative's series, which do not exist here


def _dashboard_queries(rate_interval: str = "20s") -> list[Query]:
    board = json.loads(DASHBOARD.read_text())
    values = {
        f"${v['name']}": v["query"] for v in board["templating"]["list"] if v["type"] == "textbox"
    }
    values.update({"$__rate_interval": rate_interval, "$__range": GRAFANA_RANGE})
    values["$model_name"] = MODEL_NAME
    # Longest names first, so that $lambda_gb_second is not cut by a shorter prefix.
    pattern = re.compile("|".join(re.escape(k) for k in sorted(values, key=len, reverse=True)))
    queries = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = pattern.sub(lambda m: values[m.group(0)], target["expr"])
            assert "$" not in expr, f"unsubstituted variable in {expr}"
            queries.append(Query(f"{panel['title']} [{target['refId']}]", expr, _on_knative(expr)))
    return queries


def _recording_rules() -> list[Query]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [
        Query(rule["record"], rule["record"], _on_knative(rule["expr"]))
        for group in groups
        for rule in group["rules"]
        if "record" in rule
    ]


def _alert_exprs() -> list[Query]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [
        Query(rule["alert"], rule["expr"], _on_knative(rule["expr"]))
        for group in groups
        for rule in group["rules"]
        if "alert" in rule
    ]


@dataclass
class LoadedPrometheus:
    prometheus: PrometheusProcess
    at: float  # unix time of the queries: after the scrape of the load and its evaluation
    rate_interval: str  # a window from the scrape before the load to ``at``


@pytest.fixture(scope="module")
def loaded(predictor: PredictorProcess) -> Iterator[LoadedPrometheus]:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus not found: apt-get install prometheus")
    host = predictor.url.removeprefix("http://")
    up = f'up{{instance="{host}"}}'
    prometheus = PrometheusProcess([host], [RULES])
    try:
        prometheus.wait_ready()
        # A scrape before the load, of series that exist before it: the predictor
        # exports its counters at 0 from its start, so rate() sees the load's increase.
        prometheus.wait_for(f"count({REQUEST_SERIES})", lambda v: v >= 1)
        scraped_before = prometheus.wait_for(f"timestamp({up})", lambda v: True)
        before = prometheus.value(REQUESTS, at=scraped_before)
        assert before is not None, "no kzero_requests_total in the scrape before the load"

        sent = _send_load(predictor.url)

        # The first scrape that holds every request of the load (the predictor
        # counts a request as it finishes, just after its response)...
        prometheus.wait_for(REQUESTS, lambda v: v >= before + sent)
        visible = time.time()
        # ...and an evaluation of each recording rule that saw it: a rule's sample
        # carries its evaluation time, and an evaluation for a moment after the
        # scrape was visible cannot have run before it.
        for rule in _recording_rules():
            if not rule.on_knative:
                prometheus.wait_for(f"max(timestamp({rule.expr}))", lambda t: t > visible)
        at = time.time()
        window = f"{math.ceil(at - scraped_before) + 1}s"
        yield LoadedPrometheus(prometheus, at, window)
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
    if query.on_knative:
        # Evaluates (query raises on a PromQL error) and finds no Knative here.
        assert result == [], f"{query.name}: {result}"
        return
    assert _finite(result), f"{query.name}: no finite sample for {query.expr}: {result}"


# Collected by name: the rate window is known only once the load has been scraped.
@pytest.mark.parametrize("name", [q.name for q in _dashboard_queries()])
def test_dashboard_query_returns_data(loaded: LoadedPrometheus, name: str) -> None:
    queries = {q.name: q for q in _dashboard_queries(loaded.rate_interval)}
    _check_data(loaded, queries[name])


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
