"""helm lint and helm template pass for every ci/*-values.yaml scenario."""

from __future__ import annotations

from pathlib import Path

from .helm_cli import CHART, run_helm

KNOWN_KINDS = {
    "ClusterServingRuntime",
    "ConfigMap",
    "InferenceService",
    "Job",
    "NetworkPolicy",
    "PersistentVolumeClaim",
    "Pod",
    "PodMonitor",
    "PrometheusRule",
}


def test_helm_lint_passes_strictly(scenario: Path) -> None:
    result = run_helm("lint", str(CHART), "--strict", "-f", str(scenario))
    assert result.returncode == 0, result.stdout + result.stderr


def test_template_renders_only_known_kinds_each_once_per_name(objects: list[dict]) -> None:
    kinds = {obj["kind"] for obj in objects}
    assert kinds <= KNOWN_KINDS, f"unexpected kinds {kinds - KNOWN_KINDS}: add validation for them"
    names = [(obj["kind"], obj["metadata"]["name"]) for obj in objects]
    assert len(names) == len(set(names)), f"duplicate objects: {names}"


def test_every_model_gets_one_inference_service(scenario: Path, objects: list[dict]) -> None:
    import yaml

    models = (yaml.safe_load(scenario.read_text()) or {}).get("models") or yaml.safe_load(
        (CHART / "values.yaml").read_text()
    )["models"]
    services = sorted(o["metadata"]["name"] for o in objects if o["kind"] == "InferenceService")
    assert services == sorted(model["name"] for model in models)


def test_dashboard_configmap_holds_valid_json_with_sidecar_label(objects: list[dict]) -> None:
    import json

    for obj in objects:
        if obj["kind"] == "ConfigMap":
            assert obj["metadata"]["labels"]["grafana_dashboard"] == "1"
            dashboard = json.loads(obj["data"]["kzero-overview.json"])
            assert dashboard["uid"] == "kzero-overview" and dashboard["panels"]
