"""Suite-wide rules.

In CI (``CI`` set), only the kind e2e and GPU tests may skip: a skip anywhere
else means a tool the suite needs is missing, and that must fail the run instead
of passing it silently.

Outside CI such skips are allowed, but the run ends by counting them and
naming the command that enables them, so that a green run that proved less
says so. A test that skips for a missing tool says why as
``"<tool> not found: <command that installs it>"``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

import pytest

ALLOWED_CI_SKIP_MARKERS = ("e2e", "gpu")
MISSING_TOOL = " not found: "


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or _may_skip_in_ci(item):
        return
    if os.environ.get("CI"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where only e2e and gpu tests may skip: {report.longrepr}"
    else:
        # Read back by the terminal summary below.
        report.user_properties.append(("ci_would_fail_skip", _reason(report)))


def _may_skip_in_ci(item: pytest.Item) -> bool:
    return any(item.get_closest_marker(name) for name in ALLOWED_CI_SKIP_MARKERS)


def _reason(report: pytest.TestReport) -> str:
    # A skip's longrepr is (file, line, "Skipped: <reason>").
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ")


# tryfirst makes this wrapper the outermost, so the lines come after pytest's
# own short summary, just before the final counts.
@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> Iterator[None]:
    yield
    reasons = Counter(
        value
        for report in terminalreporter.stats.get("skipped", [])
        # A module that skips as a whole leaves a CollectReport, which has no properties.
        for name, value in getattr(report, "user_properties", ())
        if name == "ci_would_fail_skip"
    )
    if not reasons:
        return
    terminalreporter.section("skipped here, failures in CI", sep="=", yellow=True)
    for reason, count in reasons.most_common():
        terminalreporter.line(f"{count:4d} skipped: {reason}")
    tool_skips = {r: n for r, n in reasons.items() if MISSING_TOOL in r}
    if tool_skips:
        commands = sorted({r.partition(MISSING_TOOL)[2] for r in tool_skips})
        terminalreporter.line(
            f"{sum(tool_skips.values())} of them need a missing tool. To run them: "
            f"{'; '.join(commands)} (as root), then make test again."
        )
