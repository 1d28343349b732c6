"""Chart tests render charts/kzero once per ci/*-values.yaml scenario and share the objects."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helm_cli import HelmMissing, helm_binary, scenario_files, template

# --api-versions makes .Capabilities see the Prometheus Operator CRDs, as a
# cluster running it would, so the CRD-gated objects render in every scenario.
CRD_API_VERSIONS = (
    "--api-versions=monitoring.coreos.com/v1/PodMonitor",
    "--api-versions=monitoring.coreos.com/v1/PrometheusRule",
)


@pytest.fixture(scope="session", autouse=True)
def _helm_installed() -> None:
    try:
        helm_binary()
    except HelmMissing as exc:
        # A failure, not a skip: chart checks must run wherever `make test` runs.
        pytest.fail(str(exc), pytrace=False)


_rendered: dict[Path, list[dict]] = {}


def rendered(scenario: Path) -> list[dict]:
    if scenario not in _rendered:
        _rendered[scenario] = template("-f", str(scenario), *CRD_API_VERSIONS)
    return _rendered[scenario]


@pytest.fixture(params=scenario_files(), ids=lambda path: path.name)
def scenario(request: pytest.FixtureRequest) -> Path:
    return request.param


@pytest.fixture
def objects(scenario: Path) -> list[dict]:
    return rendered(scenario)
