"""Knative's webhook admits every predictor pod and revision the chart renders.

KServe turns each InferenceService into a Knative Service whose pod spec is the
predictor merged with its runtime (kserve_pod.py); Knative's webhook then runs
ValidatePodSpec under the cluster's config-features. This checks every
scenario's predictor pods with the port of Knative 1.21's rules
(knative_rules/), under the flags autoscaling/knative/config-features.yaml
ships, merged over Knative's defaults as the patch is, and each revision's
autoscaling annotations under the config-autoscaler the chart ships.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from .conftest import rendered
from .helm_cli import REPO, scenario_files, template
from .knative_rules.annotations import validate_annotations
from .knative_rules.configmaps import parse_autoscaler
from .knative_rules.features import DISABLED, ENABLED, Features, parse_features
from .knative_rules.validation import validate_pod_spec
from .kserve_pod import knative_pod_spec, revision_annotations, runtime_for

KNATIVE = REPO / "autoscaling" / "knative"
FEATURES_PATCH = KNATIVE / "config-features.yaml"
AUTOSCALER_PATCH = KNATIVE / "config-autoscaler.yaml"
RUNTIME_KINDS = ("ClusterServingRuntime", "ServingRuntime")


def shipped_features() -> Features:
    """Knative's defaults with the chart's config-features patch merged in."""
    return parse_features(yaml.safe_load(FEATURES_PATCH.read_text())["data"])


def all_runtimes() -> dict[str, dict]:
    """The runtimes any scenario renders (a scenario may reuse another release's)."""
    return {
        obj["metadata"]["name"]: obj
        for scenario in scenario_files()
        for obj in rendered(scenario)
        if obj["kind"] in RUNTIME_KINDS
    }


def predictor_pods(objects: list[dict]) -> list[tuple[str, dict]]:
    runtimes = all_runtimes()
    return [
        (obj["metadata"]["name"], knative_pod_spec(obj, runtime_for(obj, runtimes)))
        for obj in objects
        if obj["kind"] == "InferenceService"
    ]


def refusals(features: Features, objects: list[dict]) -> list[str]:
    return [
        f"{name}: {error}"
        for name, pod in predictor_pods(objects)
        for error in validate_pod_spec(features, pod, "spec.template.spec")
    ]


def test_every_predictor_pod_is_admitted_under_the_shipped_features(objects: list[dict]) -> None:
    assert predictor_pods(objects)
    found = refusals(shipped_features(), objects)
    assert not found, "\n".join(found)


@pytest.mark.parametrize("secure_pod_defaults", [DISABLED, ENABLED])
def test_admission_does_not_depend_on_the_cluster_wide_secure_pod_defaults(
    objects: list[dict], secure_pod_defaults: str
) -> None:
    # secure-pod-defaults is cluster-wide and the chart does not set it: a
    # cluster may run with either value.
    features = shipped_features().with_(secure_pod_defaults=secure_pod_defaults)
    found = refusals(features, objects)
    assert not found, "\n".join(found)


def test_the_predictor_pod_is_the_runtime_merged_with_the_model(objects: list[dict]) -> None:
    service = next(o for o in objects if o["kind"] == "InferenceService")
    pod = knative_pod_spec(service, runtime_for(service, all_runtimes()))
    (container,) = pod["containers"]
    assert container["name"] == "kserve-container"
    # Runtime args first, then the model's (MergeRuntimeContainers).
    backend = (
        "vllm" if service["spec"]["predictor"]["model"]["runtime"] == "kzero-vllm" else "llamacpp"
    )
    assert container["args"][:2] == ["--http_port=8080", f"--backend={backend}"]
    assert any(arg.startswith("--model=") for arg in container["args"])
    assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    assert {m["name"] for m in container["volumeMounts"]} == {v["name"] for v in pod["volumes"]}


def test_pod_level_run_as_non_root_is_refused(objects: list[dict]) -> None:
    # Defect: the chart once set securityContext.runAsNonRoot on the predictor
    # pod; PodSecurityContextMask keeps only seccompProfile without
    # kubernetes.podspec-securitycontext, so Knative refused every InferenceService.
    service = copy.deepcopy(next(o for o in objects if o["kind"] == "InferenceService"))
    service["spec"]["predictor"]["securityContext"] = {
        "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"},
    }  # fmt: skip
    pod = knative_pod_spec(service, runtime_for(service, all_runtimes()))
    features = shipped_features().with_(secure_pod_defaults=ENABLED)
    assert [str(e) for e in validate_pod_spec(features, pod)] == [
        "must not set the field(s): securityContext.runAsNonRoot"
    ]


def test_the_check_reports_fields_behind_disabled_flags() -> None:
    # The default values: a ReadWriteOnce cache, hence the affinity.
    service = next(o for o in template() if o["kind"] == "InferenceService")
    service["spec"]["predictor"]["hostNetwork"] = True
    pod = knative_pod_spec(service, runtime_for(service, all_runtimes()))
    found = "\n".join(str(e) for e in validate_pod_spec(parse_features({}), pod))
    for expected in (
        "Persistent volume claim support is disabled",
        "must not set the field(s): hostNetwork",
        "must not set the field(s): affinity",
        "must not set the field(s): volumes[0].persistentVolumeClaim",
    ):
        assert expected in found, found


def test_the_kind_e2e_predictor_is_admitted() -> None:
    objects = template("-f", str(REPO / "tests" / "e2e" / "values.yaml"), namespace="kzero-e2e")
    found = refusals(shipped_features(), objects)
    assert not found, "\n".join(found)


def shipped_autoscaler() -> dict[str, object]:
    return parse_autoscaler(yaml.safe_load(AUTOSCALER_PATCH.read_text())["data"])


def annotation_refusals(objects: list[dict], config: dict[str, object]) -> list[str]:
    runtimes = all_runtimes()
    return [
        f"{obj['metadata']['name']}: {error}"
        for obj in objects
        if obj["kind"] == "InferenceService"
        for error in validate_annotations(
            config, revision_annotations(obj, runtime_for(obj, runtimes))
        )
    ]


def test_every_revision_passes_knatives_autoscaling_annotation_checks(objects: list[dict]) -> None:
    found = annotation_refusals(objects, shipped_autoscaler())
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "preset", sorted((KNATIVE / "presets").glob("*-values.yaml")), ids=lambda p: p.name
)
def test_preset_revisions_pass_the_annotation_checks(preset: Path) -> None:
    found = annotation_refusals(template("-f", str(preset)), shipped_autoscaler())
    assert not found, "\n".join(found)


def test_zero_initial_scale_needs_the_shipped_cluster_setting() -> None:
    # The cost-first preset starts revisions with no pod; Knative refuses that
    # unless config-autoscaler allows it, which the shipped patch does.
    objects = template("-f", str(KNATIVE / "presets" / "cost-first-values.yaml"))
    strict_cluster = {**shipped_autoscaler(), "allow-zero-initial-scale": False}
    assert annotation_refusals(objects, strict_cluster) == [
        "smollm2: invalid value: 0: autoscaling.knative.dev/initial-scale=0 not allowed by cluster"
    ]
