"""KServe's model-management routes on a real server: an inference key never unloads the model,
and an unload does not leave a live pod that cannot serve."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from bench.harness.process import PredictorProcess

pytestmark = pytest.mark.integration

NAME = "smollm2"
UNLOAD = f"/v2/repository/models/{NAME}/unload"


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[PredictorProcess]:
    with PredictorProcess(["--model_name", NAME], env=request.param) as process:
        process.wait_ready(NAME)
        yield process


@pytest.mark.parametrize("server", [{}, {"KZERO_API_KEY": "inference"}], indirect=True)
def test_without_an_admin_key_no_one_can_unload_the_model(server: PredictorProcess):
    for headers in ({}, {"Authorization": "Bearer inference"}):
        refused = httpx.post(server.url + UNLOAD, headers=headers, timeout=30)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "model_management_disabled"
    assert httpx.get(f"{server.url}/v1/models/{NAME}", timeout=30).status_code == 200


@pytest.mark.parametrize(
    "server", [{"KZERO_API_KEY": "inference", "KZERO_ADMIN_API_KEY": "admin"}], indirect=True
)
def test_an_admin_unload_ends_the_process_instead_of_leaving_it_live_and_unready(
    server: PredictorProcess,
):
    inference = {"Authorization": "Bearer inference"}
    assert httpx.post(server.url + UNLOAD, headers=inference, timeout=30).status_code == 403
    unloaded = httpx.post(
        server.url + UNLOAD, headers={"Authorization": "Bearer admin"}, timeout=30
    )
    assert unloaded.status_code == 200
    # Draining like a SIGTERM, then exit 0: the kubelet starts a fresh container.
    assert server.wait_exit(60) == 0
    assert "draining" in server.log()
