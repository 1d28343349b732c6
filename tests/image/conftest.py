"""The image check (`make image-check`): the CPU image run as the rendered chart runs it.

Tests marked ``image`` need the built image named by KZERO_IMAGE and podman;
scripts/image/check-cpu-image.sh builds the image, sets both up and runs them.
Anywhere else (plain `make test`) they are deselected, which pytest's summary
counts. The other tests here check the chart-to-podman translation and run
everywhere.
"""

from __future__ import annotations

import os

import pytest

IMAGE_ENV = "KZERO_IMAGE"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "image: runs the CPU image with podman (make image-check sets KZERO_IMAGE)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(IMAGE_ENV):
        return
    deselected = [item for item in items if item.get_closest_marker("image")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("image")]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures the image tests measured (record_property), for docs/image.md."""
    figures = [
        (report.nodeid.rsplit("::", 1)[-1], name, value)
        for report in terminalreporter.stats.get("passed", [])
        for name, value in report.user_properties
    ]
    if figures:
        terminalreporter.section("image check figures")
        for test, name, value in figures:
            terminalreporter.write_line(f"{name}: {value}  ({test})")
