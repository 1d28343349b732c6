"""API keys: an existing Secret mounted read-only as a file; no key material is ever rendered.

The predictor reads KZERO_API_KEY_FILE (one key per line, blank lines and lines
starting with # skipped). The chart only ever names the Secret: it creates none,
puts no key in values or in the environment, and the `helm test` pod sends the
first key of the same file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import yaml

from bench.harness.process import http_server_on_loopback

from .conftest import rendered
from .helm_cli import CHART, template

AUTH_SCENARIO = CHART / "ci" / "auth-values.yaml"
SECRET = "kzero-api-keys"
KEY_FILE = "/etc/kzero/auth/api-keys"
KEY_VARIABLES = {"KZERO_API_KEY", "KZERO_API_KEY_FILE", "KZERO_AUTH_HEALTH", "KZERO_AUTH_METRICS"}


def services(objects: list[dict]) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == "InferenceService"]


def helm_test_pod(objects: list[dict]) -> dict:
    (pod,) = [obj for obj in objects if obj["kind"] == "Pod"]
    return pod


def env(service: dict) -> dict[str, str]:
    return {var["name"]: var.get("value") for var in service["spec"]["predictor"]["model"]["env"]}


def secret_volumes(volumes: list[dict]) -> list[dict]:
    return [volume for volume in volumes if "secret" in volume]


def test_without_a_secret_there_are_no_keys_and_no_key_settings() -> None:
    objects = template()
    for service in services(objects):
        assert not KEY_VARIABLES & env(service).keys()
        assert secret_volumes(service["spec"]["predictor"]["volumes"]) == []
    pod = helm_test_pod(objects)
    assert secret_volumes(pod["spec"]["volumes"]) == []
    assert "key_file = None" in pod["spec"]["containers"][0]["args"][0]


def test_a_named_secret_is_mounted_read_only_and_passed_as_a_file() -> None:
    for service in services(rendered(AUTH_SCENARIO)):
        predictor = service["spec"]["predictor"]
        (volume,) = secret_volumes(predictor["volumes"])
        # Only the key file, not every key the Secret may hold (metrics-key stays out).
        assert volume["secret"] == {
            "secretName": SECRET,
            "items": [{"key": "api-keys", "path": "api-keys"}],
        }
        (mount,) = [m for m in predictor["model"]["volumeMounts"] if m["name"] == volume["name"]]
        assert mount == {"name": volume["name"], "mountPath": "/etc/kzero/auth", "readOnly": True}
        variables = env(service)
        assert variables["KZERO_API_KEY_FILE"] == KEY_FILE
        assert variables["KZERO_AUTH_HEALTH"] == "false"  # probes carry no key
        assert variables["KZERO_AUTH_METRICS"] == "true"
        assert "KZERO_API_KEY" not in variables


def test_probes_use_routes_the_predictor_leaves_open_when_keys_are_on() -> None:
    # kubelet's startup probe and Knative's readiness probe send no key.
    from predictor.auth import ApiKeyMiddleware

    guard = ApiKeyMiddleware(
        None,  # type: ignore[arg-type]  # no app: only the route check is used
        key_hashes=(b"k",),
        guard_health=False,
        guard_metrics=True,
    )
    for service in services(rendered(AUTH_SCENARIO)):
        model = service["spec"]["predictor"]["model"]
        for probe in ("readinessProbe", "startupProbe"):
            assert guard.is_open(model[probe]["httpGet"]["path"]), probe
    assert not guard.is_open("/v1/chat/completions")


def test_no_scenario_renders_a_secret_or_an_inline_key(objects: list[dict]) -> None:
    assert [obj["metadata"]["name"] for obj in objects if obj["kind"] == "Secret"] == []
    for service in services(objects):
        assert "KZERO_API_KEY" not in env(service)


def test_the_test_pod_mounts_the_same_secret_and_reads_the_same_file() -> None:
    objects = rendered(AUTH_SCENARIO)
    pod = helm_test_pod(objects)
    (predictor_volume,) = secret_volumes(services(objects)[0]["spec"]["predictor"]["volumes"])
    (volume,) = secret_volumes(pod["spec"]["volumes"])
    assert volume == predictor_volume
    (container,) = pod["spec"]["containers"]
    assert {"name": volume["name"], "mountPath": "/etc/kzero/auth", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert f"key_file = {json.dumps(KEY_FILE)}" in container["args"][0]


def test_podmonitor_sends_the_scrape_key_when_metrics_are_protected() -> None:
    (monitor,) = [obj for obj in rendered(AUTH_SCENARIO) if obj["kind"] == "PodMonitor"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": SECRET, "key": "metrics-key"},
    }


def test_metrics_stay_open_unless_protected(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"auth": {"existingSecret": SECRET}}))
    objects = template("-f", str(values), "--set", "monitoring.podMonitor.force=true")
    (monitor,) = [obj for obj in objects if obj["kind"] == "PodMonitor"]
    assert "authorization" not in monitor["spec"]["podMetricsEndpoints"][0]
    assert env(services(objects)[0])["KZERO_AUTH_METRICS"] == "false"


# ---- the rendered test script against a stand-in predictor that checks the key ----

GOOD_KEY = "kz-first"
ANSWER = {
    "choices": [{"message": {"role": "assistant", "content": "Hello!"}}],
    "usage": {"completion_tokens": 3},
}


class _KeyCheckingModel(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ok = self.headers.get("Authorization") == f"Bearer {GOOD_KEY}"
        body = json.dumps(ANSWER if ok else {"error": {"code": "invalid_api_key"}}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def stand_in_model() -> Iterator[str]:
    with http_server_on_loopback(_KeyCheckingModel) as url:
        yield url


def run_test_script(url: str, key_file: Path) -> subprocess.CompletedProcess[str]:
    (container,) = helm_test_pod(rendered(AUTH_SCENARIO))["spec"]["containers"]
    script, models = container["args"]
    route = "http://{name}-predictor.kzero.svc.cluster.local"
    assert route in script and KEY_FILE in script
    local = script.replace(route, url).replace(KEY_FILE, str(key_file))
    return subprocess.run(
        [sys.executable, "-c", local, models], capture_output=True, text=True, timeout=60
    )


def test_rendered_test_script_sends_the_first_key_of_the_file(
    stand_in_model: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "api-keys"
    key_file.write_text(f"# rotated 2026-01\n\n  {GOOD_KEY}  \nkz-second\n")
    done = run_test_script(stand_in_model, key_file)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("smollm2: 3 tokens in "), done.stdout


def test_rendered_test_script_fails_when_the_key_is_refused(
    stand_in_model: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "api-keys"
    key_file.write_text("kz-wrong\n")
    done = run_test_script(stand_in_model, key_file)
    assert done.returncode != 0 and "401" in done.stderr, done.stdout + done.stderr
