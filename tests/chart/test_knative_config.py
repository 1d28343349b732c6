"""autoscaling/knative/: the Knative ConfigMap patches and the chart presets.

Each patch is a valid ConfigMap for knative-serving whose every key is a real
Knative setting (a misspelled key is silently ignored by Knative) and has a
comment saying why. Each preset renders with the chart and means what it says.
"""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from . import kserve_strict
from .helm_cli import CHART, REPO, template

KNATIVE = REPO / "autoscaling" / "knative"
PRESETS = sorted((KNATIVE / "presets").glob("*-values.yaml"))

# The keys each ConfigMap accepts, from Knative Serving's config docs
# (knative.dev/docs/serving/configuration, and the _example block of each
# ConfigMap in serving-core.yaml). Only keys kzero might set are listed.
KNOWN_KEYS = {
    "config-autoscaler": {
        "enable-scale-to-zero", "scale-to-zero-grace-period",
        "scale-to-zero-pod-retention-period", "stable-window", "panic-window-percentage",
        "panic-threshold-percentage", "container-concurrency-target-percentage",
        "container-concurrency-target-default", "requests-per-second-target-default",
        "target-burst-capacity", "activator-capacity", "initial-scale",
        "allow-zero-initial-scale", "max-scale-up-rate", "max-scale-down-rate", "max-scale",
        "max-scale-limit", "min-scale", "scale-down-delay", "pod-autoscaler-class",
    },
    "config-features": {
        "kubernetes.podspec-persistent-volume-claim", "kubernetes.podspec-persistent-volume-write",
        "kubernetes.podspec-nodeselector", "kubernetes.podspec-tolerations",
        "kubernetes.podspec-affinity", "kubernetes.podspec-emptydir",
        "kubernetes.podspec-securitycontext", "kubernetes.podspec-runtimeclassname",
        "kubernetes.podspec-init-containers", "secure-pod-defaults",
    },
    "config-deployment": {"progress-deadline", "queue-sidecar-image", "registries-skipping-tag-resolving"},
    "config-defaults": {
        "revision-timeout-seconds", "max-revision-timeout-seconds",
        "revision-response-start-timeout-seconds", "revision-idle-timeout-seconds",
        "container-concurrency", "container-concurrency-max-limit",
    },
}  # fmt: skip
PATCHES = sorted(KNATIVE.glob("config-*.yaml"))


def _data(name: str) -> dict[str, str]:
    return yaml.safe_load((KNATIVE / f"{name}.yaml").read_text())["data"]


def uncommented_keys(path: Path, section: str | None) -> list[str]:
    """Keys (under `section`, or at any depth) with no comment line right above them."""
    missing, inside, previous = [], section is None, ""
    for line in path.read_text().splitlines():
        if section and re.match(rf"^{section}:", line):
            inside = True
        elif section and re.match(r"^\S", line):
            inside = False
        elif (
            inside
            and (match := re.match(r"^\s+([\w.\-/]+):\s*\S", line))
            and not previous.strip().startswith("#")
        ):
            missing.append(match.group(1))
        if line.strip():
            previous = line
    return missing


def test_there_are_patches_for_autoscaler_features_and_deployment() -> None:
    names = {path.stem for path in PATCHES}
    assert {"config-autoscaler", "config-features", "config-deployment"} <= names


@pytest.mark.parametrize("path", PATCHES, ids=lambda p: p.name)
def test_patch_is_a_knative_configmap_with_known_commented_keys(path: Path) -> None:
    configmap = yaml.safe_load(path.read_text())
    kubernetes_validate.validate(configmap, "1.34.0", strict=True)
    assert configmap["metadata"] == {"name": path.stem, "namespace": "knative-serving"}
    unknown = set(configmap["data"]) - KNOWN_KEYS[path.stem]
    assert not unknown, f"{path.name}: not Knative settings (typo?): {unknown}"
    assert all(isinstance(value, str) for value in configmap["data"].values())
    assert uncommented_keys(path, "data") == [], "every value needs a comment saying why"


def test_features_the_chart_needs_are_enabled() -> None:
    features = _data("config-features")
    for flag in (
        "kubernetes.podspec-persistent-volume-claim",
        "kubernetes.podspec-nodeselector",
        "kubernetes.podspec-tolerations",
        "kubernetes.podspec-emptydir",
    ):
        assert features[flag] == "enabled", flag


def test_timeouts_fit_knative_limits_and_the_chart_startup_budget() -> None:
    defaults = _data("config-defaults")
    assert int(defaults["revision-timeout-seconds"]) <= int(
        defaults["max-revision-timeout-seconds"]
    )
    assert int(defaults["max-revision-timeout-seconds"]) <= 600
    chart = yaml.safe_load((CHART / "values.yaml").read_text())["defaults"]["startupProbe"]
    budget = chart["periodSeconds"] * chart["failureThreshold"]
    deadline = int(_data("config-deployment")["progress-deadline"].removesuffix("s"))
    assert budget < deadline


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_preset_renders_valid_commented_inference_services(preset: Path) -> None:
    assert uncommented_keys(preset, None) == []
    services = [o for o in template("-f", str(preset)) if o["kind"] == "InferenceService"]
    assert services
    for service in services:
        assert kserve_strict.validate(service) == []


def _preset_service(name: str) -> dict:
    objects = template("-f", str(KNATIVE / "presets" / f"{name}-values.yaml"))
    return next(o for o in objects if o["kind"] == "InferenceService")


def test_cost_first_starts_nothing_and_knative_allows_it() -> None:
    service = _preset_service("cost-first")
    assert service["spec"]["predictor"]["minReplicas"] == 0
    assert service["metadata"]["annotations"]["autoscaling.knative.dev/initial-scale"] == "0"
    assert _data("config-autoscaler")["allow-zero-initial-scale"] == "true"


def test_latency_first_keeps_a_warm_floor() -> None:
    assert _preset_service("latency-first")["spec"]["predictor"]["minReplicas"] >= 1
