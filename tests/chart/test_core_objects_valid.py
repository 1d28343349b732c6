"""Every rendered core Kubernetes object passes kubernetes-validate --strict (offline).

Strict mode rejects unknown fields. We check against the oldest Kubernetes the
chart supports (Chart.yaml kubeVersion) and a current one.
"""

from __future__ import annotations

import kubernetes_validate
import pytest

from .kserve_strict import KINDS as KSERVE_KINDS

KUBERNETES_VERSIONS = ("1.30.0", "1.34.0")
# CRD kinds without a schema here: KServe's have their own strict check
# (test_kserve_objects_valid.py); the Prometheus Operator's are checked for shape
# in test_monitoring.py.
NOT_CORE = {kind for _, kind in KSERVE_KINDS} | {"PodMonitor", "PrometheusRule"}


def _problems(obj: dict, version: str) -> str | None:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(part) for part in exc.path) or "(top)"
        return f"{obj['kind']}/{obj['metadata']['name']} at {path}: {exc.message}"
    return None


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_objects_validate_strictly(objects: list[dict], version: str) -> None:
    core = [obj for obj in objects if obj["kind"] not in NOT_CORE]
    assert core, "no core objects rendered"
    problems = [p for obj in core if (p := _problems(obj, version))]
    assert not problems, "\n".join(problems)


def test_strict_validation_rejects_an_unknown_field(objects: list[dict]) -> None:
    job = next(obj for obj in objects if obj["kind"] == "Job")
    broken = {**job, "spec": {**job["spec"], "backofLimit": 3}}
    assert "backofLimit" in (_problems(broken, KUBERNETES_VERSIONS[-1]) or "")
