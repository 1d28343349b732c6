"""The llama.cpp prompt-prefix cache (values: prefixCache) on the cache PVC.

Each CPU model's predictor mounts the cache volume twice: the models
read-only at cache.mountPath, and its own directory prefixes/<model> writable
(subPath) at a separate path, named by KZERO_PREFIX_CACHE_DIR. The subPath is
the security boundary: nothing else in the pod that is backed by the PVC is
writable. Knative admits that one volume without readOnly only with
kubernetes.podspec-persistent-volume-write enabled (knative/serving
knative-v1.21.1 pkg/apis/serving/k8s_validation.go, validatePersistentVolumeClaims,
lines 114-118), and a writable mount of a read-only claim not at all (lines
741-747), so readOnly moves from the volume to the mounts. The warm Job makes
the directories as the predictors' UID, so that kubelet never has to make them
as root.
"""

from __future__ import annotations

import posixpath
import subprocess
from pathlib import Path

import pytest
import yaml

from .helm_cli import CHART, REPO, run_helm, template
from .knative_rules.features import DISABLED
from .knative_rules.validation import validate_pod_spec
from .kserve_pod import knative_pod_spec, runtime_for
from .test_knative_admission import all_runtimes, shipped_features

PREFIX_MOUNT = "/var/cache/kzero-prefixes"
CACHE_MOUNT = "/var/cache/kzero"
WRITE_DISABLED = (
    "Persistent volume write support is disabled, but found persistent volume claim "
    "{claim} that is not read-only"
)
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def services(objects: list[dict]) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == "InferenceService"]


def is_cpu(service: dict) -> bool:
    return service["metadata"]["labels"]["kzero.dev/accelerator"] == "cpu"


def env_of(service: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in service["spec"]["predictor"]["model"]["env"]}


def claim_mounts(service: dict) -> tuple[dict, list[dict]]:
    """The predictor's PVC volume and every mount of it."""
    predictor = service["spec"]["predictor"]
    (volume,) = [v for v in predictor["volumes"] if "persistentVolumeClaim" in v]
    mounts = [m for m in predictor["model"]["volumeMounts"] if m["name"] == volume["name"]]
    return volume, mounts


def warm_job(objects: list[dict]) -> dict:
    (job,) = [obj for obj in objects if obj["kind"] == "Job"]
    return job["spec"]["template"]["spec"]


def test_llama_cpp_predictors_write_only_their_own_prefix_directory(objects: list[dict]) -> None:
    cpu = [service for service in services(objects) if is_cpu(service)]
    for service in cpu:
        name = service["metadata"]["name"]
        volume, mounts = claim_mounts(service)
        # One volume, not read-only as a whole: the mounts decide.
        assert "readOnly" not in volume["persistentVolumeClaim"], name
        models, prefixes = sorted(mounts, key=lambda m: "subPath" in m)
        assert models == {"name": volume["name"], "mountPath": CACHE_MOUNT, "readOnly": True}
        assert prefixes == {
            "name": volume["name"],
            "mountPath": PREFIX_MOUNT,
            "subPath": f"prefixes/{name}",
        }, name
        # Every writable mount backed by the PVC is this model's subPath.
        writable = [m for m in mounts if not m.get("readOnly")]
        assert [m["subPath"] for m in writable] == [f"prefixes/{name}"], name
        sub_path = prefixes["subPath"]
        assert posixpath.normpath(sub_path) == sub_path and not posixpath.isabs(sub_path)
        env = env_of(service)
        assert env["KZERO_PREFIX_CACHE_DIR"] == PREFIX_MOUNT
        assert env["KZERO_PREFIX_CACHE_MAX_BYTES"] == VALUES["prefixCache"]["maxBytes"] == "1GiB"
        assert env["KZERO_CACHE_DIR"] == CACHE_MOUNT
        assert "KZERO_PREFIX_CACHE" not in env, "in-memory reuse stays the predictor's default (on)"
    sub_paths = [claim_mounts(s)[1][1]["subPath"] for s in cpu]
    assert len(set(sub_paths)) == len(sub_paths), "models share a prefix directory"


def test_the_multi_model_scenario_gives_each_model_its_own_directory() -> None:
    objects = template("-f", str(CHART / "ci" / "multi-model-values.yaml"))
    found = {
        s["metadata"]["name"]: [m.get("subPath") for m in claim_mounts(s)[1]]
        for s in services(objects)
    }
    assert found == {
        "smollm2": [None, "prefixes/smollm2"],
        "gemma3-270m": [None, "prefixes/gemma3-270m"],
    }


def test_gpu_models_get_no_prefix_mount_and_no_prefix_settings() -> None:
    objects = template("-f", str(CHART / "ci" / "gpu-values.yaml"))
    (service,) = services(objects)
    assert not is_cpu(service)
    volume, mounts = claim_mounts(service)
    assert volume["persistentVolumeClaim"]["readOnly"] is True
    assert mounts == [{"name": volume["name"], "mountPath": CACHE_MOUNT, "readOnly": True}]
    assert not [name for name in env_of(service) if name.startswith("KZERO_PREFIX_CACHE")]
    assert "initContainers" not in warm_job(objects), "no llama.cpp model, no prefix directory"


def test_in_a_mixed_release_only_the_cpu_model_gets_a_prefix_directory(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({
        "cache": {"accessMode": "ReadWriteMany"},
        "models": [
            {"name": "a", "uri": "file:///a.gguf", "accelerator": "cpu"},
            {"name": "g", "gpuUri": "hf://org/g", "accelerator": "gpu"},
        ],
    }))  # fmt: skip
    objects = template("-f", str(values))
    found = {
        s["metadata"]["name"]: [m.get("subPath") for m in claim_mounts(s)[1]]
        for s in services(objects)
    }
    assert found == {"a": [None, "prefixes/a"], "g": [None]}
    (init,) = warm_job(objects)["initContainers"]
    assert init["command"][3:] == ["prefix-dirs", f"{CACHE_MOUNT}/prefixes/a"]


def test_disabled_keeps_the_whole_cache_read_only_and_saves_nothing() -> None:
    objects = template("--set", "prefixCache.enabled=false")
    (service,) = services(objects)
    volume, mounts = claim_mounts(service)
    assert volume["persistentVolumeClaim"]["readOnly"] is True
    assert mounts == [{"name": volume["name"], "mountPath": CACHE_MOUNT, "readOnly": True}]
    env = env_of(service)
    assert "KZERO_PREFIX_CACHE_DIR" not in env
    assert env["KZERO_PREFIX_CACHE_MAX_BYTES"] == "0"
    assert "initContainers" not in warm_job(objects)


def test_max_bytes_reaches_the_predictor() -> None:
    (service,) = services(template("--set", "prefixCache.maxBytes=512MiB"))
    assert env_of(service)["KZERO_PREFIX_CACHE_MAX_BYTES"] == "512MiB"


def test_the_predictor_reads_the_rendered_settings() -> None:
    # The values the chart passes are ones the predictor's settings accept.
    from predictor.settings import Settings

    (service,) = services(template())
    env = {k: v for k, v in env_of(service).items() if k.startswith("KZERO_PREFIX_CACHE")}
    settings = Settings(**{k.removeprefix("KZERO_").lower(): v for k, v in env.items()})
    assert str(settings.prefix_cache_dir) == PREFIX_MOUNT
    assert int(settings.prefix_cache_max_bytes) == 1 << 30
    assert settings.prefix_cache is True


# --- Knative admission -------------------------------------------------------


def _pods(objects: list[dict]) -> list[tuple[str, dict]]:
    runtimes = all_runtimes()
    return [
        (service["metadata"]["name"], knative_pod_spec(service, runtime_for(service, runtimes)))
        for service in services(objects)
    ]


def test_knative_refuses_the_prefix_mount_without_the_write_feature() -> None:
    # validatePersistentVolumeClaims wants the flag Enabled exactly.
    features = shipped_features().with_(pod_spec_persistent_volume_write=DISABLED)
    ((name, pod),) = _pods(template())
    assert [str(e) for e in validate_pod_spec(features, pod, "spec.template.spec")] == [
        WRITE_DISABLED.format(claim="kzero-model-cache")
    ]
    assert validate_pod_spec(shipped_features(), pod) == [], name


def test_disabled_is_admitted_without_the_write_feature() -> None:
    features = shipped_features().with_(pod_spec_persistent_volume_write=DISABLED)
    for name, pod in _pods(template("--set", "prefixCache.enabled=false")):
        assert validate_pod_spec(features, pod) == [], name


def test_gpu_models_are_admitted_without_the_write_feature() -> None:
    features = shipped_features().with_(pod_spec_persistent_volume_write=DISABLED)
    for name, pod in _pods(template("-f", str(CHART / "ci" / "gpu-values.yaml"))):
        assert validate_pod_spec(features, pod) == [], name


def test_the_shipped_knative_features_enable_persistent_volume_write() -> None:
    data = yaml.safe_load((REPO / "autoscaling" / "knative" / "config-features.yaml").read_text())
    assert data["data"]["kubernetes.podspec-persistent-volume-write"] == "enabled"
    assert shipped_features().pod_spec_persistent_volume_write == "Enabled"


# --- The directories: made by the warm Job as the predictors' UID ------------


def test_the_warm_job_makes_each_cpu_models_directory_as_the_predictor_user() -> None:
    objects = template("-f", str(CHART / "ci" / "multi-model-values.yaml"))
    pod = warm_job(objects)
    (init,) = pod["initContainers"]
    assert init["command"][:2] == ["sh", "-c"]
    assert init["command"][3:] == [
        "prefix-dirs",
        f"{CACHE_MOUNT}/prefixes/smollm2",
        f"{CACHE_MOUNT}/prefixes/gemma3-270m",
    ]
    (mount,) = init["volumeMounts"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert "persistentVolumeClaim" in volume and mount["mountPath"] == CACHE_MOUNT
    assert not mount.get("readOnly")
    # The predictors run as the UID that makes (and so owns) the directories.
    for service in services(objects):
        runtime = runtime_for(service, all_runtimes())
        pod_spec = knative_pod_spec(service, runtime)
        (container,) = pod_spec["containers"]
        assert container["securityContext"]["runAsUser"] == init["securityContext"]["runAsUser"]
        assert container["securityContext"]["runAsGroup"] == pod["securityContext"]["fsGroup"]


def _run_init_script(objects: list[dict], *dirs: str) -> subprocess.CompletedProcess[str]:
    (init,) = warm_job(objects)["initContainers"]
    shell, flag, script, name = init["command"][:4]
    return subprocess.run(
        [shell, flag, script, name, *dirs], capture_output=True, text=True, timeout=30
    )


def test_the_init_script_makes_private_directories_and_never_fails_the_job(
    tmp_path: Path,
) -> None:
    objects = template()
    made = tmp_path / "prefixes" / "smollm2"
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    done = _run_init_script(objects, str(made), str(blocked / "prefixes" / "x"))
    assert done.returncode == 0, done.stderr
    assert made.is_dir() and (made.stat().st_mode & 0o777) == 0o770
    assert f"kzero: {blocked}/prefixes/x is missing or not writable" in done.stderr
    again = _run_init_script(objects, str(made))
    assert again.returncode == 0 and again.stderr == "", "an existing directory is fine"


# --- Values ------------------------------------------------------------------


@pytest.mark.parametrize(
    "cache_mount", [PREFIX_MOUNT, f"{PREFIX_MOUNT}/", "/var/cache", f"{PREFIX_MOUNT}/models"]
)
def test_a_cache_mount_path_overlapping_the_prefix_mount_fails_rendering(cache_mount: str) -> None:
    result = run_helm("template", "kzero", str(CHART), "--set", f"cache.mountPath={cache_mount}")
    assert result.returncode != 0
    assert "overlaps the prefix cache mount /var/cache/kzero-prefixes" in result.stderr


def test_an_overlapping_cache_mount_path_is_fine_without_the_prefix_mount() -> None:
    objects = template("--set", "cache.mountPath=/var/cache", "--set", "prefixCache.enabled=false")
    assert services(objects)
