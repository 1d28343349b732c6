"""The `helm test` pod's script really completes a chat against a real predictor.

The pod's Python is rendered by the chart and normally runs in the cluster
against each model's Knative route. Here it runs against a local predictor
process with the bundled model: only the route's host is swapped for
127.0.0.1 (and, with API keys on, the mounted key file's path for a local
file), everything else (request, key, parsing, assertions) is the rendered code.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# tests/ is on sys.path (pytest rootdir import): integration is a sibling package.
from bench.harness.process import PredictorProcess

from .helm_cli import template

pytestmark = pytest.mark.integration
MODEL = "smollm2"
NAMESPACE = "kzero"
# auth.mountPath + auth.secretKey, the chart's defaults.
MOUNTED_KEY_FILE = "/etc/kzero/auth/api-keys"


@pytest.fixture(scope="module")
def predictor() -> Iterator[PredictorProcess]:
    server = PredictorProcess(["--model_name", MODEL])
    try:
        server.wait_ready(MODEL)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "api-keys"
    path.write_text("# the helm test pod sends the first key\nkz-helm-test\nkz-other\n")
    return path


@pytest.fixture(scope="module")
def predictor_with_keys(key_file: Path) -> Iterator[PredictorProcess]:
    server = PredictorProcess(["--model_name", MODEL], env={"KZERO_API_KEY_FILE": str(key_file)})
    try:
        server.wait_ready(MODEL)
        yield server
    finally:
        server.stop()


def run_rendered_script(
    url: str, *values: str, key_file: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The test pod's rendered Python, run here with only the route (and key path) swapped."""
    (pod,) = [obj for obj in template(*values, namespace=NAMESPACE) if obj["kind"] == "Pod"]
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["python", "-c"]
    script, models = container["args"]
    route = f"http://{{name}}-predictor.{NAMESPACE}.svc.cluster.local"
    assert route in script, "the test pod no longer calls the model's Knative route"
    local = script.replace(route, url)
    if key_file is not None:
        assert MOUNTED_KEY_FILE in script, "the test pod no longer reads the mounted key file"
        local = local.replace(MOUNTED_KEY_FILE, str(key_file))
    return subprocess.run(
        [sys.executable, "-c", local, models],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_helm_test_pod_gets_a_chat_completion(predictor: PredictorProcess) -> None:
    done = run_rendered_script(predictor.url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"{MODEL}: ") and " tokens in " in done.stdout, done.stdout


def test_helm_test_pod_sends_the_api_key_to_a_guarded_predictor(
    predictor_with_keys: PredictorProcess, key_file: Path
) -> None:
    with_auth = ("--set", "auth.existingSecret=kzero-api-keys")
    done = run_rendered_script(predictor_with_keys.url, *with_auth, key_file=key_file)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"{MODEL}: ") and " tokens in " in done.stdout, done.stdout
    # The same script without the key file is refused: the predictor really checks.
    refused = run_rendered_script(predictor_with_keys.url)
    assert refused.returncode != 0 and "401" in refused.stderr, refused.stdout + refused.stderr
