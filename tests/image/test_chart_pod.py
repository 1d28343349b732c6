"""The chart-to-podman translation the image check relies on (no podman needed)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from chart.helm_cli import CHART, template

from .chart_pod import (
    UnsupportedSpec,
    merge_runtime_container,
    predictor_container,
    warm_job_container,
)
from .podman_run import cpus, memory_bytes, run_plan

CPU_SCENARIO = CHART / "ci" / "cpu-values.yaml"


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    return template("-f", str(CPU_SCENARIO))


def runtime_and_isvc(rendered: list[dict]) -> tuple[dict, dict, str]:
    """The runtime's container, the InferenceService's predictor and its name."""
    (isvc,) = [o for o in rendered if o["kind"] == "InferenceService"]
    predictor = isvc["spec"]["predictor"]
    (runtime,) = [
        o
        for o in rendered
        if o["kind"] == "ClusterServingRuntime"
        and o["metadata"]["name"] == predictor["model"]["runtime"]
    ]
    return runtime["spec"]["containers"][0], predictor, isvc["metadata"]["name"]


def test_merge_concatenates_args_and_merges_env_and_mounts_by_key() -> None:
    runtime = {
        "args": ["--http_port=8080"],
        "env": [{"name": "HOME", "value": "/home/a"}, {"name": "TMPDIR", "value": "/tmp"}],
        "volumeMounts": [{"name": "x", "mountPath": "/x"}],
        "securityContext": {"runAsUser": 1, "readOnlyRootFilesystem": True},
    }
    isvc = {
        "args": ["--model=m"],
        "env": [{"name": "HOME", "value": "/home/b"}, {"name": "EXTRA", "value": "1"}],
        "volumeMounts": [{"name": "y", "mountPath": "/x", "readOnly": True}],
        "securityContext": {"runAsUser": 2},
    }
    merged = merge_runtime_container(runtime, isvc)
    assert merged["args"] == ["--http_port=8080", "--model=m"]
    assert merged["env"] == [
        {"name": "HOME", "value": "/home/b"},
        {"name": "TMPDIR", "value": "/tmp"},
        {"name": "EXTRA", "value": "1"},
    ]
    assert merged["volumeMounts"] == [{"name": "y", "mountPath": "/x", "readOnly": True}]
    assert merged["securityContext"] == {"runAsUser": 2, "readOnlyRootFilesystem": True}


def test_predictor_container_is_read_from_the_rendered_objects(rendered: list[dict]) -> None:
    runtime, predictor, name = runtime_and_isvc(rendered)
    model = predictor["model"]
    container = predictor_container(rendered, name)
    assert container.command is None, "the image's ENTRYPOINT runs"
    assert container.args == [*runtime["args"], *model["args"]]
    for entry in [*runtime["env"], *model["env"]]:
        assert entry["name"] in container.env
    security = model.get("securityContext") or runtime["securityContext"]
    assert container.run_as_user == security["runAsUser"]
    assert container.run_as_group == security["runAsGroup"]
    assert container.read_only_root is security["readOnlyRootFilesystem"]
    assert container.no_new_privileges is not security["allowPrivilegeEscalation"]
    assert container.dropped_capabilities == security["capabilities"]["drop"]
    mounts = {m["mountPath"]: m for m in model["volumeMounts"]}
    assert {v.mount_path for v in container.volumes} == set(mounts)
    (cache,) = [v for v in container.volumes if v.kind == "pvc" and not v.sub_path]
    assert cache.read_only, "predictors mount the model cache read-only"
    (prefixes,) = [v for v in container.volumes if v.kind == "pvc" and v.sub_path]
    assert prefixes.sub_path == f"prefixes/{name}" and not prefixes.read_only
    assert container.env["KZERO_PREFIX_CACHE_DIR"] == prefixes.mount_path
    assert container.startup_probe and container.readiness_probe
    assert container.startup_probe.path == model["startupProbe"]["httpGet"]["path"]
    assert container.readiness_probe.path == model["readinessProbe"]["httpGet"]["path"]
    assert container.cpu_limit == str(model["resources"]["limits"]["cpu"])


def test_warm_job_container_keeps_its_command_and_a_writable_cache(rendered: list[dict]) -> None:
    (job,) = [o for o in rendered if o["kind"] == "Job"]
    pod = job["spec"]["template"]["spec"]
    container = warm_job_container(rendered)
    assert container.command == pod["containers"][0]["command"]
    assert container.args == pod["containers"][0]["args"]
    assert container.fs_group == pod["securityContext"]["fsGroup"]
    (cache,) = [v for v in container.volumes if v.kind == "pvc"]
    assert not cache.read_only


def test_run_plan_reproduces_the_security_context_and_volumes(
    rendered: list[dict], tmp_path: Path
) -> None:
    container = warm_job_container(rendered)
    dirs = {v.name: tmp_path / v.name for v in container.volumes}
    plan = run_plan(container, dirs)
    assert f"--user={container.run_as_user}:{container.run_as_group}" in plan.options
    assert {"--read-only", "--read-only-tmpfs=false"} <= set(plan.options)
    assert "--security-opt=no-new-privileges" in plan.options
    assert "--cap-drop=all" in plan.options
    assert f"--group-add={container.fs_group}" in plan.options
    for volume in container.volumes:
        assert f"--volume={dirs[volume.name]}:{volume.mount_path}:rw" in plan.options
    assert plan.options[-1].startswith("--entrypoint=[")
    assert plan.args == container.args


def test_kubernetes_quantities() -> None:
    assert cpus("2") == "2" and cpus("500m") == "0.5"
    assert memory_bytes("2Gi") == 2 * 2**30 and memory_bytes("512M") == 512 * 10**6
    assert memory_bytes("1073741824") == 2**30
    with pytest.raises(UnsupportedSpec):
        memory_bytes("2 gigs")


def test_what_podman_cannot_reproduce_is_refused(rendered: list[dict]) -> None:
    rendered = copy.deepcopy(rendered)
    _, predictor, name = runtime_and_isvc(rendered)
    secret = {"name": "keys", "secret": {"secretName": "s"}}
    predictor["volumes"].append(secret)
    predictor["model"]["volumeMounts"].append({"name": "keys", "mountPath": "/keys"})
    with pytest.raises(UnsupportedSpec, match="only PVCs and emptyDirs"):
        predictor_container(rendered, name)
    predictor["model"]["volumeMounts"].pop()
    predictor["model"]["env"].append({"name": "K", "valueFrom": {"secretKeyRef": {}}})
    with pytest.raises(UnsupportedSpec, match="no literal value"):
        predictor_container(rendered, name)
