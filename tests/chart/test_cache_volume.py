"""The model-cache PVC: how pods share it, and how it lives across Helm operations.

Access mode: a ReadWriteOnce volume attaches to one node at a time, and Knative
spreads a revision's pods over nodes (knative/serving
pkg/reconciler/revision/resources/deploy.go, makePreferSpreadRevisionOverNodes,
used only when the pod has no affinity). So with RWO every pod that mounts the
cache must share a node, or scale-out and the warm Job hit Multi-Attach errors.

Life cycle (helm v4.1.4): a hook gets `before-hook-creation` when it names no
delete policy (pkg/action/hooks.go, hookSetDeletePolicy), so a hook PVC is
deleted on the next install under the same name, and hooks are never updated;
`helm.sh/resource-policy: keep` is honoured for release objects on uninstall
(pkg/action/uninstall.go, filterManifestsToKeep) and upgrade (pkg/kube/client.go,
update), and a kept object with the release's ownership metadata is adopted by
a reinstall (pkg/action/validate.go, existingResourceConflict).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .helm_cli import CHART, run_helm, template
from .pod_specs import pod_specs

CLAIM = "kzero-model-cache"
PIN = {
    "podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {"kzero.dev/model-cache": CLAIM}},
            "topologyKey": "kubernetes.io/hostname",
        }]
    }
}  # fmt: skip


def cache_users(objects: list[dict]) -> list[tuple[str, dict, dict]]:
    """(where, pod spec, pod labels) of every pod that mounts the cache PVC."""
    found = []
    for obj in objects:
        if obj["kind"] == "InferenceService":
            labels = obj["spec"]["predictor"].get("labels", {})
        elif obj["kind"] == "Job":
            labels = obj["spec"]["template"]["metadata"]["labels"]
        else:
            continue
        (spec,) = [s for s in pod_specs([obj])]
        claims = [
            v["persistentVolumeClaim"]["claimName"]
            for v in spec.pod.get("volumes", [])
            if "persistentVolumeClaim" in v
        ]
        if claims:
            found.append((spec.where, spec.pod, labels))
    return found


def test_default_is_read_write_once_with_every_cache_user_on_one_node() -> None:
    objects = template()
    (pvc,) = [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    users = cache_users(objects)
    assert {where.split("/")[0] for where, _, _ in users} == {"InferenceService", "Job"}
    for where, pod, labels in users:
        # Each user matches the term itself, so the first one may start alone.
        assert pod.get("affinity") == PIN, where
        assert labels.get("kzero.dev/model-cache") == CLAIM, where


def test_read_write_many_lets_knative_spread_the_pods() -> None:
    objects = template("--set", "cache.accessMode=ReadWriteMany")
    pvc = next(o for o in objects if o["kind"] == "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    for where, pod, _ in cache_users(objects):
        assert "affinity" not in pod, where


def test_read_write_once_refuses_models_on_both_cpu_and_gpu(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"models": [
        {"name": "small", "uri": "file:///m.gguf", "accelerator": "cpu"},
        {"name": "big", "gpuUri": "hf://org/big", "accelerator": "gpu"},
    ]}))  # fmt: skip
    result = run_helm("template", "kzero", str(CHART), "-f", str(values))
    assert result.returncode != 0
    assert (
        "cache.accessMode ReadWriteOnce keeps every pod that mounts the cache on one node"
        in result.stderr
    )
    run = run_helm(
        "template",
        "kzero",
        str(CHART),
        "-f",
        str(values),
        "--set",
        "cache.accessMode=ReadWriteMany",
    )
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("mode", ["ReadWriteOncePod", "ReadOnlyMany"])
def test_access_modes_that_cannot_work_are_refused(mode: str) -> None:
    # ReadWriteOncePod admits one pod in all (no scale-out, no warm Job beside
    # a predictor); ReadOnlyMany leaves the warm Job nothing to write.
    result = run_helm("template", "kzero", str(CHART), "--set", f"cache.accessMode={mode}")
    assert result.returncode != 0 and "/cache/accessMode" in result.stderr


def test_values_and_schema_say_what_each_mode_implies() -> None:
    values = (CHART / "values.yaml").read_text()
    schema = (CHART / "values.schema.json").read_text()
    for text in (values, schema):
        assert (
            "ReadWriteOnce" in text and "one node" in text and "kubernetes.podspec-affinity" in text
        )
        assert "ReadWriteMany" in text


def test_cache_pvc_is_a_kept_release_object_not_a_hook() -> None:
    (pvc,) = [o for o in template() if o["kind"] == "PersistentVolumeClaim"]
    annotations = pvc["metadata"].get("annotations", {})
    assert annotations == {"helm.sh/resource-policy": "keep"}
    assert not any(key.startswith("helm.sh/hook") for key in annotations)


def test_warm_job_runs_after_the_pvc_exists_and_before_upgrades() -> None:
    # A pre-install hook runs before the release's objects (the PVC) exist.
    (job,) = [o for o in template() if o["kind"] == "Job"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"


def test_cache_size_changes_reach_the_rendered_claim() -> None:
    (pvc,) = [
        o for o in template("--set", "cache.size=50Gi") if o["kind"] == "PersistentVolumeClaim"
    ]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "50Gi"
