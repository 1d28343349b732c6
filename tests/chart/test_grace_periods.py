"""Grace period, revision timeout and the predictor's own timeouts agree, per model.

Knative sets every revision pod's terminationGracePeriodSeconds to the
revision's timeoutSeconds (knative/serving pkg/reconciler/revision/resources/
deploy.go, BuildPodSpec) and refuses the field in a pod template (PodSpecMask in
pkg/apis/serving/fieldmask.go); KServe copies the predictor's `timeout` into
that timeoutSeconds (kserve pkg/controller/v1beta1/inferenceservice/reconcilers/
knative/ksvc_reconciler.go). So the rendered `timeout` is both the pod's grace
period and the end-to-end limit the activator and queue-proxy put on a request.
The chart derives it in one helper ("kzero.timing" in _helpers.tpl):

- shutdown: queue-proxy drains for 30 s (drainSleepDuration) and its
  /wait-for-drain preStop hook holds the predictor's SIGTERM back that long;
  then the predictor gives streams KZERO_DRAIN_TIMEOUT_S, plus a margin to exit;
- requests: a cold start in the activator, then KZERO_REQUEST_TIMEOUT_S, plus a
  margin to send the answer.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .helm_cli import CHART, REPO, run_helm, template

QUEUE_PROXY_DRAIN_S = 30
MARGIN_S = 5
CHART_DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())
DEFAULT_TIMEOUTS = CHART_DEFAULTS["defaults"]["timeouts"]


def services(objects: list[dict]) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == "InferenceService"]


def env(service: dict) -> dict[str, str]:
    return {var["name"]: var.get("value") for var in service["spec"]["predictor"]["model"]["env"]}


def grace_period(service: dict) -> int:
    """What Knative will give the pod: the revision timeout (BuildPodSpec)."""
    return service["spec"]["predictor"]["timeout"]


def render(tmp_path: Path, values: dict) -> list[dict]:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return template("-f", str(path))


def test_grace_period_covers_queue_proxy_drain_then_predictor_drain(
    objects: list[dict],
) -> None:
    for service in services(objects):
        drain = float(env(service)["KZERO_DRAIN_TIMEOUT_S"])
        assert grace_period(service) >= QUEUE_PROXY_DRAIN_S + drain + MARGIN_S, (
            f"{service['metadata']['name']}: SIGKILL would cut the predictor's drain"
        )


def test_revision_timeout_outlasts_the_predictor_request_deadline(objects: list[dict]) -> None:
    for service in services(objects):
        request = float(env(service)["KZERO_REQUEST_TIMEOUT_S"])
        # Knative's 504 must never pre-empt the predictor's own, clearer one.
        assert service["spec"]["predictor"]["timeout"] >= request + MARGIN_S


def test_the_chart_leaves_the_grace_period_to_knative(objects: list[dict]) -> None:
    # Knative's webhook refuses terminationGracePeriodSeconds in a revision's pod spec.
    for service in services(objects):
        assert "terminationGracePeriodSeconds" not in service["spec"]["predictor"]


def test_defaults_give_the_documented_numbers(tmp_path: Path) -> None:
    (service,) = services(render(tmp_path, {}))
    assert env(service)["KZERO_REQUEST_TIMEOUT_S"] == str(DEFAULT_TIMEOUTS["requestSeconds"])
    assert env(service)["KZERO_DRAIN_TIMEOUT_S"] == str(DEFAULT_TIMEOUTS["drainSeconds"])
    assert grace_period(service) == (
        DEFAULT_TIMEOUTS["coldStartSeconds"] + DEFAULT_TIMEOUTS["requestSeconds"] + MARGIN_S
    )


def test_a_longer_drain_timeout_moves_the_grace_period(tmp_path: Path) -> None:
    (base,) = services(render(tmp_path, {}))
    (longer,) = services(render(tmp_path, {"defaults": {"timeouts": {"drainSeconds": 400}}}))
    assert env(longer)["KZERO_DRAIN_TIMEOUT_S"] == "400"
    assert grace_period(longer) == QUEUE_PROXY_DRAIN_S + 400 + MARGIN_S > grace_period(base)
    assert env(longer)["KZERO_REQUEST_TIMEOUT_S"] == env(base)["KZERO_REQUEST_TIMEOUT_S"]


def test_request_deadline_and_cold_start_move_the_revision_timeout(tmp_path: Path) -> None:
    timeouts = {"requestSeconds": 200, "coldStartSeconds": 60, "drainSeconds": 10}
    (service,) = services(render(tmp_path, {"defaults": {"timeouts": timeouts}}))
    assert env(service)["KZERO_REQUEST_TIMEOUT_S"] == "200"
    assert grace_period(service) == 60 + 200 + MARGIN_S


def test_each_model_gets_its_own_timing() -> None:
    objects = template("-f", str(CHART / "ci" / "multi-model-values.yaml"))
    by_name = {service["metadata"]["name"]: service for service in services(objects)}
    # multi-model-values.yaml gives smollm2 a 120 s drain; gemma3-270m keeps the default.
    assert env(by_name["smollm2"])["KZERO_DRAIN_TIMEOUT_S"] == "120"
    assert env(by_name["gemma3-270m"])["KZERO_DRAIN_TIMEOUT_S"] == str(
        DEFAULT_TIMEOUTS["drainSeconds"]
    )


def test_timing_beyond_knatives_ceiling_fails_naming_the_keys(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"defaults": {"timeouts": {"requestSeconds": 550}}}))
    result = run_helm("template", "kzero", str(CHART), "-f", str(values))
    assert result.returncode != 0
    assert "needs 675s" in result.stderr, result.stderr
    assert "knative.maxRevisionTimeoutSeconds 600" in result.stderr
    # A cluster that raised max-revision-timeout-seconds says so, and it renders.
    raised = {
        "defaults": {"timeouts": {"requestSeconds": 550}},
        "knative": {"maxRevisionTimeoutSeconds": 900},
    }
    (service,) = services(render(tmp_path, raised))
    assert grace_period(service) == 675


def test_chart_ceiling_matches_the_knative_config_patch() -> None:
    patch = yaml.safe_load((REPO / "autoscaling" / "knative" / "config-defaults.yaml").read_text())
    assert CHART_DEFAULTS["knative"]["maxRevisionTimeoutSeconds"] == int(
        patch["data"]["max-revision-timeout-seconds"]
    )


@pytest.mark.parametrize("drain", [0, 30, 555])
def test_relation_holds_at_the_edges(tmp_path: Path, drain: int) -> None:
    (service,) = services(render(tmp_path, {"defaults": {"timeouts": {"drainSeconds": drain}}}))
    request = DEFAULT_TIMEOUTS["requestSeconds"] + DEFAULT_TIMEOUTS["coldStartSeconds"]
    assert grace_period(service) == max(request + MARGIN_S, QUEUE_PROXY_DRAIN_S + drain + MARGIN_S)
