"""The InferenceServices carry the Knative settings a scale-to-zero LLM needs, consistently."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from .helm_cli import CHART, template

KNATIVE_MAX_TIMEOUT_SECONDS = 600  # max-revision-timeout-seconds default
ANNOTATIONS = (
    "autoscaling.knative.dev/class",
    "autoscaling.knative.dev/metric",
    "autoscaling.knative.dev/target",
    "autoscaling.knative.dev/window",
    "autoscaling.knative.dev/initial-scale",
    "autoscaling.knative.dev/scale-to-zero-pod-retention-period",
    "autoscaling.knative.dev/scale-down-delay",
    "serving.knative.dev/progress-deadline",
)


def seconds(duration: str) -> float:
    value, unit = re.fullmatch(r"(\d+)(ms|s|m|h)", duration).groups()  # type: ignore[union-attr]
    return int(value) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def services(objects: list[dict]) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == "InferenceService"]


def test_every_service_has_the_knative_annotations(objects: list[dict]) -> None:
    for service in services(objects):
        missing = set(ANNOTATIONS) - set(service["metadata"]["annotations"])
        assert not missing, f"{service['metadata']['name']} lacks {missing}"
        assert service["metadata"]["annotations"]["autoscaling.knative.dev/class"] == (
            "kpa.autoscaling.knative.dev"
        ), "only the KPA scales to zero"


def test_startup_budget_fits_the_progress_deadline_and_timeout_is_allowed(
    objects: list[dict],
) -> None:
    for service in services(objects):
        model = service["spec"]["predictor"]["model"]
        probe = model["startupProbe"]
        budget = probe["periodSeconds"] * probe["failureThreshold"]
        deadline = seconds(
            service["metadata"]["annotations"]["serving.knative.dev/progress-deadline"]
        )
        assert budget < deadline, (
            f"{service['metadata']['name']}: the startup probe allows {budget}s but Knative "
            f"fails the revision after {deadline}s"
        )
        assert service["spec"]["predictor"]["timeout"] <= KNATIVE_MAX_TIMEOUT_SECONDS


def test_probes_check_model_readiness_on_the_serving_port(objects: list[dict]) -> None:
    for service in services(objects):
        name = service["metadata"]["name"]
        model = service["spec"]["predictor"]["model"]
        for probe in ("readinessProbe", "startupProbe"):
            assert model[probe]["httpGet"] == {"path": f"/v1/models/{name}", "port": 8080}
        assert f"--model_name={name}" in model["args"], "probe path and served name must agree"


def test_defaults_scale_to_zero_and_render_the_cpu_path() -> None:
    (service,) = services(template())
    assert service["spec"]["predictor"]["minReplicas"] == 0
    assert service["spec"]["predictor"]["model"]["runtime"] == "kzero-llamacpp"
    assert service["spec"]["predictor"]["model"]["modelFormat"] == {"name": "gguf"}


def test_auto_accelerator_without_a_cluster_falls_back_to_cpu(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump({"models": [{"name": "m", "uri": "file:///m.gguf", "gpuUri": "hf://org/m"}]})
    )
    (service,) = services(template("-f", str(values)))
    assert service["metadata"]["labels"]["kzero.dev/accelerator"] == "cpu"
    assert "--model=file:///m.gguf" in service["spec"]["predictor"]["model"]["args"]


def test_gpu_models_use_vllm_with_a_gpu_and_gpu_scheduling() -> None:
    (service,) = services(template("-f", str(CHART / "ci" / "gpu-values.yaml")))
    predictor = service["spec"]["predictor"]
    assert predictor["model"]["runtime"] == "kzero-vllm"
    assert predictor["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in predictor[
        "tolerations"
    ]


def test_warm_job_warms_exactly_the_served_uris() -> None:
    objects = template("-f", str(CHART / "ci" / "multi-model-values.yaml"))
    (job,) = [obj for obj in objects if obj["kind"] == "Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    # `--cache-dir` belongs to `kzero cache`, before the subcommand.
    assert container["command"] == ["kzero", "cache", "--cache-dir", "/var/cache/kzero", "warm"]
    warmed = container["args"]
    served = [
        arg.removeprefix("--model=")
        for service in services(objects)
        for arg in service["spec"]["predictor"]["model"]["args"]
        if arg.startswith("--model=")
    ]
    assert warmed == served
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"


def test_predictors_mount_the_cache_read_only_and_point_kzero_at_it(objects: list[dict]) -> None:
    # The models are read-only in every predictor; llama.cpp predictors mount
    # the same volume again for their prefix files (test_prefix_cache.py).
    for service in services(objects):
        predictor = service["spec"]["predictor"]
        (volume,) = [v for v in predictor["volumes"] if "persistentVolumeClaim" in v]
        env = {e["name"]: e.get("value") for e in predictor["model"]["env"]}
        (mount,) = [
            m
            for m in predictor["model"]["volumeMounts"]
            if m["name"] == volume["name"] and "subPath" not in m
        ]
        assert mount["readOnly"] is True and env["KZERO_CACHE_DIR"] == mount["mountPath"]
