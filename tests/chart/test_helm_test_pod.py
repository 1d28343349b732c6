"""The `helm test` pod's script really completes a chat against a real predictor.

The pod's Python is rendered by the chart and normally runs in the cluster
against each model's Knative route. Here it runs against a local predictor
process with the bundled model: only the route's host is swapped for
127.0.0.1, everything else (request, parsing, assertions) is the rendered code.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

# tests/ is on sys.path (pytest rootdir import): integration is a sibling package.
from integration.server_process import PredictorProcess

from .helm_cli import template

pytestmark = pytest.mark.integration
MODEL = "smollm2"
NAMESPACE = "kzero"


@pytest.fixture(scope="module")
def predictor() -> Iterator[PredictorProcess]:
    server = PredictorProcess(["--model_name", MODEL])
    try:
        server.wait_ready(MODEL)
        yield server
    finally:
        server.stop()


def test_helm_test_pod_gets_a_chat_completion(predictor: PredictorProcess) -> None:
    (pod,) = [obj for obj in template(namespace=NAMESPACE) if obj["kind"] == "Pod"]
    (container,) = pod["spec"]["containers"]
    script, models = container["args"]
    route = f"http://{{name}}-predictor.{NAMESPACE}.svc.cluster.local"
    assert route in script, "the test pod no longer calls the model's Knative route"
    local = script.replace(route, predictor.url)
    assert container["command"] == ["python", "-c"]
    done = subprocess.run(
        [sys.executable, "-c", local, models],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"{MODEL}: ") and " tokens in " in done.stdout, done.stdout
