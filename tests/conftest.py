"""Suite-wide rules.

In CI (``CI`` set), only the kind e2e and GPU tests may skip: a skip anywhere
else means a tool the suite needs is missing, and that must fail the run instead
of passing it silently.
"""

from __future__ import annotations

import os

import pytest

ALLOWED_CI_SKIP_MARKERS = ("e2e", "gpu")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if not os.environ.get("CI") or not report.skipped:
        return
    if any(item.get_closest_marker(name) for name in ALLOWED_CI_SKIP_MARKERS):
        return
    report.outcome = "failed"
    report.longrepr = f"skipped in CI, where only e2e and gpu tests may skip: {report.longrepr}"
