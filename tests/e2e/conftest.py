"""The kind e2e suite: skips with the reason when no kind cluster with kzero is reachable."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .cluster import MODEL, NAMESPACE, Cluster, connect
from .state_dump import dump_state

_cluster: Cluster | str | None = None


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    global _cluster
    if _cluster is None:
        _cluster = connect()
    if isinstance(_cluster, str):
        # `make kind-e2e` has just built the cluster: a skip there would hide a failure.
        if os.environ.get("KZERO_E2E_REQUIRED"):
            pytest.fail(_cluster, pytrace=False)
        pytest.skip(_cluster)
    yield _cluster


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and isinstance(_cluster, Cluster):
        report.sections.append(("cluster state", dump_state(_cluster, NAMESPACE, MODEL)))
