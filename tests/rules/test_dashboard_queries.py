"""promtool runs unit tests on the dashboard's own queries (dashboard_queries.test.yaml)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .contract import DASHBOARD

CASES = Path(__file__).with_name("dashboard_queries.test.yaml")
# Grafana's variables as the test cases assume them (series every minute).
VARIABLES = {"$model_name": "m", "$__range": "10m", "$__rate_interval": "5m"}
_PLACEHOLDER = re.compile(r"^<<(.+)>>$")


def dashboard_targets() -> dict[str, str]:
    """``"Panel title [refId]"`` -> its expression, Grafana's variables filled in."""
    board = json.loads(DASHBOARD.read_text())
    pattern = re.compile("|".join(re.escape(k) for k in sorted(VARIABLES, key=len, reverse=True)))
    return {
        f"{panel['title']} [{target['refId']}]": pattern.sub(
            lambda m: VARIABLES[m.group(0)], target["expr"]
        )
        for panel in board["panels"]
        for target in panel.get("targets", [])
    }


def promtool_file(cases: dict[str, object], targets: dict[str, str]) -> dict[str, object]:
    """The test cases with every ``<<Panel title [refId]>>`` replaced by its query."""
    for test in cases["tests"]:  # type: ignore[union-attr]
        for check in test.get("promql_expr_test", []):
            placeholder = _PLACEHOLDER.match(check["expr"])
            assert placeholder, f"not a <<Panel title [refId]>> placeholder: {check['expr']}"
            name = placeholder.group(1)
            assert name in targets, f"no dashboard target {name!r}; there are {sorted(targets)}"
            check["expr"] = targets[name]
    return cases


def _run_promtool(cases: dict[str, object], workdir: Path) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not found: apt-get install prometheus")
    (workdir / "no-rules.yaml").write_text("groups: []\n")
    (workdir / "queries.test.yaml").write_text(
        yaml.safe_dump({"rule_files": ["no-rules.yaml"], **cases}, sort_keys=False)
    )
    return subprocess.run(
        [promtool, "test", "rules", "queries.test.yaml"],
        capture_output=True,
        text=True,
        cwd=workdir,
        timeout=120,
    )


def test_dashboard_queries_pass_their_promtool_unit_tests(tmp_path: Path) -> None:
    cases = promtool_file(yaml.safe_load(CASES.read_text()), dashboard_targets())
    result = _run_promtool(cases, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_pod_start_case_fails_with_increase_on_series_born_at_one(tmp_path: Path) -> None:
    # The query the panel had before (issue 13, defect 10): it counts 0 of the two
    # pod starts whose first scrape came after they were ready, so the same case fails.
    targets = dashboard_targets()
    targets["Replicas and pod starts [B]"] = (
        "sum by (model_name) (increase("
        'kzero_cold_start_seconds_count{model_name=~"m",phase="ready"}[10m]))'
    )
    cases = yaml.safe_load(CASES.read_text())
    cases["tests"] = cases["tests"][:1]
    result = _run_promtool(promtool_file(cases, targets), tmp_path)
    assert result.returncode != 0
    assert 'model_name="m"} 0E+00' in result.stdout + result.stderr
