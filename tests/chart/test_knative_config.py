"""autoscaling/knative/: kzero's Knative settings for both install styles, and the presets.

- config-*.yaml are merge-patch bodies for Knative's ConfigMaps
  (`kubectl patch --type merge`), checked against the keys and validation
  Knative's parsers define (knative_rules/configmaps.py, features.py).
- operator/knative-serving-config.yaml carries the same data as a
  KnativeServing spec.config patch, for Knative installed by its Operator.
- The README and scripts/kind/up.sh apply the patches, never whole ConfigMaps.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from . import kserve_strict
from .helm_cli import CHART, REPO, template
from .knative_rules import configmaps
from .knative_rules.configmaps import ConfigRefused

KNATIVE = REPO / "autoscaling" / "knative"
PRESETS = sorted((KNATIVE / "presets").glob("*-values.yaml"))
PATCHES = sorted(KNATIVE.glob("config-*.yaml"))
OPERATOR_PATCH = KNATIVE / "operator" / "knative-serving-config.yaml"
INSTALLERS = [REPO / "README.md", REPO / "scripts" / "kind" / "up.sh"]


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


def test_there_are_patches_for_features_autoscaler_deployment_and_defaults() -> None:
    assert {path.stem for path in PATCHES} == {
        "config-features", "config-autoscaler", "config-deployment", "config-defaults",
    }  # fmt: skip


@pytest.mark.parametrize("path", PATCHES, ids=lambda p: p.name)
def test_patch_is_a_merge_patch_body_not_a_whole_configmap(path: Path) -> None:
    # A whole ConfigMap invites `kubectl apply`, which deletes the keys Knative
    # ships (defect: config-deployment lost queue-sidecar-image).
    body = yaml.safe_load(path.read_text())
    assert set(body) == {"data"}, f"{path.name}: only `data`, no apiVersion/kind/metadata"
    assert uncommented_keys(path, "data") == [], "every value needs a comment saying why"


@pytest.mark.parametrize("path", PATCHES, ids=lambda p: p.name)
def test_patched_configmap_has_only_keys_knative_reads_and_passes_its_webhook(path: Path) -> None:
    # Merged over what serving-core.yaml ships, as `kubectl patch` does.
    shipped = configmaps.SHIPPED_DEPLOYMENT_DATA if path.stem == "config-deployment" else {}
    configmaps.check(path.stem, configmaps.merge_patch(shipped, _data(path.stem)))


def test_a_whole_configmap_apply_would_be_refused_and_a_patch_is_not() -> None:
    # The failure the patches avoid: serving-core.yaml's config-deployment holds
    # queue-sidecar-image, and `kubectl apply` of a file without it deletes it.
    shipped = configmaps.SHIPPED_DEPLOYMENT_DATA
    ours = _data("config-deployment")
    assert "queue-sidecar-image" not in ours, "the image is Knative's to set, never kzero's"
    with pytest.raises(ConfigRefused, match="queue-sidecar-image cannot be empty or unset"):
        configmaps.check("config-deployment", configmaps.apply_whole(shipped, shipped, ours))
    configmaps.check("config-deployment", configmaps.merge_patch(shipped, ours))


@pytest.mark.parametrize(
    ("name", "data", "refusal"),
    [
        (
            "config-features",
            {"kubernetes.podspec-emptydir": "enabled"},
            "not a config-features key",
        ),
        ("config-features", {"kubernetes.podspec-affinity": "on"}, "ignores the value"),
        ("config-autoscaler", {"stable-window": "5s"}, "stable-window must be in"),
        ("config-autoscaler", {"initial-scale": "0"}, "allow-zero-initial-scale"),
        ("config-autoscaler", {"target-burst-capacity": "-2"}, "target-burst-capacity"),
        ("config-autoscaler", {"scale-to-zero-grace-period": "30"}, "invalid duration"),
        ("config-deployment", {"queue-sidecar-image": ""}, "cannot be empty"),
        ("config-deployment", {"progress-deadline": "1.5s"}, "whole second"),
        ("config-defaults", {"revision-timeout-seconds": "900"}, "cannot be greater"),
        ("config-defaults", {"revision-timeout": "300"}, "keys Knative does not read"),
    ],
)
def test_the_port_refuses_what_knative_refuses_or_ignores(
    name: str, data: dict[str, str], refusal: str
) -> None:
    shipped = configmaps.SHIPPED_DEPLOYMENT_DATA if name == "config-deployment" else {}
    with pytest.raises(ConfigRefused, match=refusal):
        configmaps.check(name, configmaps.merge_patch(shipped, data))


def test_features_the_chart_needs_are_enabled() -> None:
    features = _data("config-features")
    for flag in (
        "kubernetes.podspec-persistent-volume-claim",
        # The llama.cpp predictors' prefix mount (prefixCache) writes.
        "kubernetes.podspec-persistent-volume-write",
        "kubernetes.podspec-nodeselector",
        "kubernetes.podspec-tolerations",
        "kubernetes.podspec-volumes-emptydir",
        "kubernetes.podspec-affinity",
    ):
        assert features[flag] == "enabled", flag


def test_cluster_wide_secure_pod_defaults_is_not_set_and_the_reason_is_given() -> None:
    assert "secure-pod-defaults" not in _data("config-features")
    text = (KNATIVE / "config-features.yaml").read_text()
    assert "secure-pod-defaults. It is cluster-wide" in text


def test_operator_variant_carries_exactly_the_patches() -> None:
    # Knative Operator installs overwrite hand-patched ConfigMaps; its
    # KnativeServing spec.config (a map of ConfigMap name, "config-" optional,
    # to string data: operator.knative.dev_knativeservings.yaml) is merged key
    # by key instead (pkg/reconciler/common/config_maps.go, ConfigMapTransform).
    patch = yaml.safe_load(OPERATOR_PATCH.read_text())
    assert set(patch) == {"spec"} and set(patch["spec"]) == {"config"}
    config = patch["spec"]["config"]
    assert {f"config-{name}" for name in config} == {path.stem for path in PATCHES}
    for name, data in config.items():
        assert all(isinstance(value, str) for value in data.values())
        assert data == _data(f"config-{name}"), f"{name} differs from config-{name}.yaml"


def _commands(path: Path) -> str:
    """The file's shell with line continuations joined."""
    return path.read_text().replace("\\\n", " ")


@pytest.mark.parametrize("path", INSTALLERS, ids=lambda p: p.name)
def test_installers_patch_knative_configmaps_and_never_apply_them(path: Path) -> None:
    text = _commands(path)
    assert not re.search(r"kubectl apply[^\n]*autoscaling/knative", text), (
        f"{path.name} applies whole Knative ConfigMaps"
    )
    loop = re.search(r"for name in ([\w ]+); do\s+kubectl -n knative-serving patch "
                     r"\"?configmap/config-\$name\"? --type merge\s+--patch-file "
                     r"\"?autoscaling/knative/config-\$name\.yaml", text)  # fmt: skip
    assert loop, f"{path.name} does not merge-patch the Knative ConfigMaps"
    assert {f"config-{n}" for n in loop.group(1).split()} == {p.stem for p in PATCHES}


def test_readme_names_the_operator_variant() -> None:
    text = _commands(REPO / "README.md")
    assert "patch knativeserving/knative-serving --type merge" in text
    assert "--patch-file autoscaling/knative/operator/knative-serving-config.yaml" in text


def test_timeouts_fit_knative_limits_and_the_chart_startup_budget() -> None:
    defaults = configmaps.parse_defaults(_data("config-defaults"))
    chart = yaml.safe_load((CHART / "values.yaml").read_text())
    assert defaults["max-revision-timeout-seconds"] == chart["knative"]["maxRevisionTimeoutSeconds"]
    probe = chart["defaults"]["startupProbe"]
    deadline = configmaps.parse_deployment(
        configmaps.merge_patch(configmaps.SHIPPED_DEPLOYMENT_DATA, _data("config-deployment"))
    )["progress-deadline"]
    assert probe["periodSeconds"] * probe["failureThreshold"] < deadline  # type: ignore[operator]


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
    assert configmaps.parse_autoscaler(_data("config-autoscaler"))["allow-zero-initial-scale"]


def test_latency_first_keeps_a_warm_floor() -> None:
    assert _preset_service("latency-first")["spec"]["predictor"]["minReplicas"] >= 1
