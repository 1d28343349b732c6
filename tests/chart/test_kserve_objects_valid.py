"""InferenceServices and ClusterServingRuntimes match the kserve SDK's models exactly."""

from __future__ import annotations

import copy

from . import kserve_strict


def test_kserve_objects_validate_strictly(objects: list[dict]) -> None:
    kserve_objects = [o for o in objects if (o["apiVersion"], o["kind"]) in kserve_strict.KINDS]
    assert any(o["kind"] == "InferenceService" for o in kserve_objects)
    problems = [p for obj in kserve_objects for p in kserve_strict.validate(obj)]
    assert not problems, "\n".join(problems)


def test_validator_rejects_unknown_fields_wrong_types_and_missing_required(
    objects: list[dict],
) -> None:
    service = copy.deepcopy(next(o for o in objects if o["kind"] == "InferenceService"))
    predictor = service["spec"]["predictor"]
    predictor["minReplica"] = 0  # typo
    predictor["maxReplicas"] = "3"  # string for an int
    predictor["model"]["readinessProbe"]["httpGet"]["paht"] = "/"  # typo deep inside
    del predictor["model"]["volumeMounts"][0]["mountPath"]  # required
    assert sorted(kserve_strict.validate(service)) == [
        "InferenceService.spec.predictor.maxReplicas: expected int, got str '3'",
        "InferenceService.spec.predictor.minReplica: unknown field for V1beta1PredictorSpec",
        "InferenceService.spec.predictor.model.readinessProbe.httpGet.paht: unknown field for V1HTTPGetAction",
        "InferenceService.spec.predictor.model.volumeMounts[0].mountPath: required by V1VolumeMount",
    ]
