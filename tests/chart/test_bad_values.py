"""Wrong values fail `helm template` with a message that names the offending key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .helm_cli import CHART, run_helm

MODEL = {"name": "m", "uri": "file:///models/m.gguf"}

BAD_VALUES = {
    "unknown top-level key": ({"replicas": 2}, "additional properties 'replicas' not allowed"),
    "typo in a nested key": ({"cache": {"sise": "1Gi"}}, "additional properties 'sise'"),
    "unknown accelerator": (
        {"models": [{**MODEL, "accelerator": "tpu"}]},
        "/models/0/accelerator': value must be one of 'auto', 'cpu', 'gpu'",
    ),
    "model without a name": ({"models": [{"uri": "file:///m.gguf"}]}, "missing property 'name'"),
    "model name not a DNS label": (
        {"models": [{**MODEL, "name": "Llama_3"}]},
        "/models/0/name'",
    ),
    "negative minReplicas": (
        {"models": [{**MODEL, "minReplicas": -1}]},
        "/models/0/minReplicas': minimum: got -1, want 0",
    ),
    "timeout above the schema's bound": (
        {"defaults": {"timeouts": {"requestSeconds": 7200}}},
        "/defaults/timeouts/requestSeconds': maximum",
    ),
    "negative drain timeout": (
        {"models": [{**MODEL, "timeouts": {"drainSeconds": -1}}]},
        "/models/0/timeouts/drainSeconds': minimum",
    ),
    "timeouts past Knative's revision timeout ceiling": (
        {"defaults": {"timeouts": {"requestSeconds": 500, "coldStartSeconds": 200}}},
        "above knative.maxRevisionTimeoutSeconds 600",
    ),
    "misspelled limit": (
        {"defaults": {"limits": {"maxTokens": 512}}},
        "additional properties 'maxTokens'",
    ),
    "too many stop sequences": (
        {"models": [{**MODEL, "limits": {"maxStopSequences": 65}}]},
        "/models/0/limits/maxStopSequences': maximum",
    ),
    "limit given as a string": (
        {"defaults": {"limits": {"maxQueuedRequests": "64"}}},
        "/defaults/limits/maxQueuedRequests': got string, want integer",
    ),
    "knative concurrency above what the predictor admits": (
        {
            "defaults": {
                "containerConcurrency": 20,
                "limits": {"maxRunningRequests": 1, "maxQueuedRequests": 8},
            }
        },
        "the rest would get 429",
    ),
    "API key inline in env": (
        {"models": [{**MODEL, "env": [{"name": "KZERO_API_KEY", "value": "sk-1"}]}]},
        "env sets KZERO_API_KEY, which the chart sets itself",
    ),
    "chart-managed variable in env": (
        {"defaults": {"env": [{"name": "KZERO_DRAIN_TIMEOUT_S", "value": "5"}]}},
        "env sets KZERO_DRAIN_TIMEOUT_S, which the chart sets itself",
    ),
    "API key Secret name not a DNS name": (
        {"auth": {"existingSecret": "API_Keys"}},
        "/auth/existingSecret'",
    ),
    "unknown auth key": (
        {"auth": {"apiKey": "sk-1"}},
        "additional properties 'apiKey' not allowed",
    ),
    "protected metrics without keys": (
        {"auth": {"protectMetrics": True}},
        "auth.protectMetrics needs API keys: set auth.existingSecret",
    ),
    "guarded health routes (the probes send no key)": (
        {"auth": {"existingSecret": "keys", "protectHealth": True}},
        "additional properties 'protectHealth' not allowed",
    ),
    "protected metrics without a key for Prometheus": (
        {
            "auth": {"existingSecret": "keys", "protectMetrics": True},
            "monitoring": {"podMonitor": {"force": True}},
        },
        "auth.protectMetrics requires a key under auth.metricsSecretKey",
    ),
    "duration without a unit": (
        {"defaults": {"scaleDownDelay": "30"}},
        "/defaults/scaleDownDelay'",
    ),
    "unquoted quantity": (
        {"defaults": {"resources": {"cpu": {"limits": {"cpu": 2}}}}},
        "/defaults/resources/cpu/limits/cpu': got number, want string",
    ),
    "model URI with an unknown scheme": (
        {"models": [{**MODEL, "uri": "ftp://host/m.gguf"}]},
        "/models/0/uri'",
    ),
    "no models": ({"models": []}, "/models': minItems"),
    "gpu model without gpuUri": (
        {"models": [{**MODEL, "accelerator": "gpu"}]},
        "models[m]: accelerator is gpu but gpuUri",
    ),
    "cpu model without uri": (
        {"models": [{"name": "m", "gpuUri": "hf://org/m", "accelerator": "cpu"}]},
        "models[m]: runs on CPU (accelerator cpu) but uri",
    ),
    "no PVC at all": (
        {"cache": {"create": False, "existingClaim": ""}},
        "cache.existingClaim is required when cache.create is false",
    ),
    "prefix budget as a Kubernetes quantity (the predictor refuses 1Gi)": (
        {"prefixCache": {"maxBytes": "1Gi"}},
        "/prefixCache/maxBytes'",
    ),
    "prefix budget as a number": (
        {"prefixCache": {"maxBytes": 1073741824}},
        "/prefixCache/maxBytes': got number, want string",
    ),
    "misspelled prefixCache key": (
        {"prefixCache": {"enable": False}},
        "additional properties 'enable' not allowed",
    ),
    "prefix directory moved by a model's env": (
        {
            "models": [
                {**MODEL, "env": [{"name": "KZERO_PREFIX_CACHE_DIR", "value": "/var/cache/kzero"}]}
            ]
        },
        "env sets KZERO_PREFIX_CACHE_DIR, which the chart sets itself",
    ),
    "prefix budget set by a model's env": (
        {"defaults": {"env": [{"name": "KZERO_PREFIX_CACHE_MAX_BYTES", "value": "10GiB"}]}},
        "env sets KZERO_PREFIX_CACHE_MAX_BYTES, which the chart sets itself",
    ),
}


@pytest.mark.parametrize(("values", "message"), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_values_fail_with_a_message_naming_the_key(
    tmp_path: Path, values: dict, message: str
) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    result = run_helm("template", "kzero", str(CHART), "-f", str(values_file))
    assert result.returncode != 0, f"accepted bad values {values}"
    assert message in result.stderr, result.stderr


def _undescribed(schema: dict, path: str) -> list[str]:
    missing = [] if schema.get("description") else [path or "(root)"]
    for key, sub in schema.get("properties", {}).items():
        missing += _undescribed(sub, f"{path}.{key}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            missing += _undescribed(schema[key], f"{path}.{key}")
    return missing


def test_schema_describes_every_key_and_forbids_unknown_ones() -> None:
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())
    assert not _undescribed(schema, ""), _undescribed(schema, "")

    def loose(node: dict, path: str) -> list[str]:
        found = []
        if "properties" in node and node.get("additionalProperties") is not False:
            found.append(path)
        for key, sub in node.get("properties", {}).items():
            found += loose(sub, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            found += loose(node["items"], f"{path}[]")
        return found

    # EnvVar items stay open (value, valueFrom...): the rendered objects are
    # validated strictly against Kubernetes' schema instead.
    assert [path for path in loose(schema, "") if not path.endswith(".env[]")] == []


def test_default_values_satisfy_the_schema() -> None:
    result = run_helm("lint", str(CHART), "--strict")
    assert result.returncode == 0, result.stdout + result.stderr
