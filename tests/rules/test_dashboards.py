"""The overview dashboard: generated JSON up to date, required panels and variables, contract names."""

from __future__ import annotations

import json
import subprocess
import sys

from .contract import ALLOWED_SERIES, DASHBOARD, ROOT, metric_names


def _dashboard() -> dict[str, object]:
    return json.loads(DASHBOARD.read_text())


def _panels() -> list[dict[str, object]]:
    return [p for p in _dashboard()["panels"] if p["type"] != "row"]


def test_committed_json_matches_the_generator() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "dashboards" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_datasource_and_model_name_variables() -> None:
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["model_name"]["type"] == "query"
    assert variables["model_name"]["datasource"]["uid"] == "${datasource}"


def test_every_panel_has_a_unit_a_description_and_the_datasource_variable() -> None:
    for panel in _panels():
        assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]
        assert panel.get("description"), panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            # Knative's series name the model's Knative Service: "<model_name>-predictor".
            assert '$model_name"' in target["expr"] or '$model_name-predictor"' in target["expr"], (
                panel["title"],
                target["expr"],
            )


def test_required_panels_are_there() -> None:
    titles = " | ".join(p["title"] for p in _panels()).lower()
    for needle in (
        "requests/s",
        "error",
        "time to first token",
        "inter-token",
        "end-to-end",
        "tokens/s per pod",
        "tokens/s in total",
        "running and waiting",
        "replicas",
        "cold-start phases",
        "cache lookups",
        "cache download bytes",
        "revision pods: actual and desired (knative)",
        "requests through the activator",
        "requests held in the activator",
        "queue-proxy request latency",
        "cost per 1m tokens: this cluster vs aws lambda vs cloud run",
    ):
        assert needle in titles, needle


def test_latency_panels_show_p50_p95_p99() -> None:
    for panel in _panels():
        if panel["title"] in ("Time to first token", "Inter-token latency", "End-to-end latency"):
            quantiles = [t["expr"].split(",")[0] for t in panel["targets"]]
            assert quantiles == [f"histogram_quantile({q}" for q in ("0.5", "0.95", "0.99")]


def test_cost_panel_is_driven_by_price_variables() -> None:
    variables = {v["name"] for v in _dashboard()["templating"]["list"]}
    (cost,) = [p for p in _panels() if p["title"].startswith("Cost per 1M tokens")]
    exprs = " ".join(t["expr"] for t in cost["targets"])
    for name in ("pod_price_per_hour", "lambda_gb_second", "cloud_run_vcpu_second"):
        assert f"${name}" in exprs and name in variables


def test_queries_use_only_contract_and_knative_series() -> None:
    for panel in _panels():
        for target in panel["targets"]:
            used = metric_names(target["expr"])
            assert used and used <= ALLOWED_SERIES, (panel["title"], used - ALLOWED_SERIES)
