"""InferenceServices and ServingRuntimes are valid KServe objects, two ways.

1. Against the CRD openAPIV3Schemas of kserve/kserve (kserve_schema.py,
   schemas/README.md): what the API server checks, unknown fields refused.
2. Against the kserve 0.21.0 SDK's models (kserve_strict.py): the pinned
   release's own types.
"""

from __future__ import annotations

import copy

import pytest

from . import kserve_schema, kserve_strict


def kserve_objects(objects: list[dict]) -> list[dict]:
    found = [o for o in objects if (o["apiVersion"], o["kind"]) in kserve_schema.KINDS]
    assert any(o["kind"] == "InferenceService" for o in found)
    return found


def test_kserve_objects_match_the_crd_schemas(objects: list[dict]) -> None:
    problems = [p for obj in kserve_objects(objects) for p in kserve_schema.validate(obj)]
    assert not problems, "\n".join(problems)


def test_kserve_objects_validate_against_the_sdk_models(objects: list[dict]) -> None:
    problems = [p for obj in kserve_objects(objects) for p in kserve_strict.validate(obj)]
    assert not problems, "\n".join(problems)


def _broken_service(objects: list[dict]) -> dict:
    service = copy.deepcopy(next(o for o in objects if o["kind"] == "InferenceService"))
    predictor = service["spec"]["predictor"]
    predictor["minReplica"] = 0  # typo
    predictor["maxReplicas"] = "3"  # string for an int
    predictor["model"]["readinessProbe"]["httpGet"]["paht"] = "/"  # typo deep inside
    del predictor["model"]["volumeMounts"][0]["mountPath"]  # required
    return service


def test_crd_validator_rejects_unknown_fields_wrong_types_and_missing_required(
    objects: list[dict],
) -> None:
    assert sorted(kserve_schema.validate(_broken_service(objects))) == [
        "InferenceService.spec.predictor.maxReplicas: expected integer, got str '3'",
        "InferenceService.spec.predictor.minReplica: unknown field (not in the CRD schema)",
        "InferenceService.spec.predictor.model.readinessProbe.httpGet.paht: unknown field (not in the CRD schema)",
        "InferenceService.spec.predictor.model.volumeMounts[0].mountPath: required",
    ]


@pytest.mark.parametrize(
    ("where", "value", "problem"),
    [
        # int32 range (format: int32).
        (("spec", "predictor", "model", "startupProbe", "periodSeconds"), 2**31, "out of ["),
        # An enum.
        (("spec", "predictor", "scaleMetric"), "latency", "is not one of"),
        # A Quantity (int-or-string with a pattern).
        (("spec", "predictor", "model", "resources", "limits", "cpu"), "two", "does not match"),
        # A list-type map keyed by name: two env entries with one name.
        (
            ("spec", "predictor", "model", "env"),
            [{"name": "A"}, {"name": "A"}],
            "duplicate entries",
        ),
        # ObjectMeta is Kubernetes' own type.
        (("metadata", "lables"), {"a": "b"}, "unknown field of ObjectMeta"),
    ],
)
def test_crd_validator_applies_formats_enums_patterns_and_list_keys(
    objects: list[dict], where: tuple[str, ...], value: object, problem: str
) -> None:
    service = copy.deepcopy(next(o for o in objects if o["kind"] == "InferenceService"))
    parent = service
    for key in where[:-1]:
        parent = parent.setdefault(key, {})
    parent[where[-1]] = value
    found = "\n".join(kserve_schema.validate(service))
    assert problem in found, found


def test_the_sdk_validator_rejects_the_same_mistakes(objects: list[dict]) -> None:
    assert sorted(kserve_strict.validate(_broken_service(objects))) == [
        "InferenceService.spec.predictor.maxReplicas: expected int, got str '3'",
        "InferenceService.spec.predictor.minReplica: unknown field for V1beta1PredictorSpec",
        "InferenceService.spec.predictor.model.readinessProbe.httpGet.paht: unknown field for V1HTTPGetAction",
        "InferenceService.spec.predictor.model.volumeMounts[0].mountPath: required by V1VolumeMount",
    ]


def test_runtimes_carry_no_kserve_prometheus_annotations(objects: list[dict]) -> None:
    # prometheus.kserve.io/* only tell KServe's metric aggregation (qpext) where
    # to scrape, and only with serving.kserve.io/enable-metric-aggregation
    # "true" (kserve/kserve pkg/webhook/admission/pod/metrics_aggregate_injector.go).
    # kzero's PodMonitor scrapes :8080 itself, so they would only mislead.
    for obj in kserve_objects(objects):
        annotations = {
            **obj["metadata"].get("annotations", {}),
            **obj["spec"].get("annotations", {}),
            **obj["spec"].get("predictor", {}).get("annotations", {}),
        }
        aggregation = annotations.get("serving.kserve.io/enable-metric-aggregation") == "true"
        stray = [key for key in annotations if key.startswith("prometheus.kserve.io/")]
        assert aggregation or not stray, f"{obj['kind']}/{obj['metadata']['name']}: {stray}"
