"""promtool checks the rules and runs their unit tests (positive and negative cases)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .contract import ALLOWED_SERIES, RULE_TESTS, RULES, metric_names, recorded_names, rule_groups

ALERTS = {
    "KzeroSlowTimeToFirstToken",
    "KzeroSlowColdStart",
    "KzeroCacheDownloadFailing",
    "KzeroHighErrorRatio",
    "KzeroModelNotReady",
    "KzeroScaleFromZeroStuck",
}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not found: apt-get install prometheus")
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_promtool(), *args], capture_output=True, text=True, cwd=RULES.parent, timeout=120
    )


def test_promtool_check_rules_accepts_the_rules() -> None:
    result = _run("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    result = _run("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_threshold_makes_the_rule_tests_fail(tmp_path: Path) -> None:
    # The unit tests must be able to fail: raise the TTFT threshold past the
    # tested 9.75 s and the positive case has to break.
    (tmp_path / RULES.name).write_text(
        RULES.read_text().replace("p95_5m > 5\n", "p95_5m > 10\n", 1)
    )
    (tmp_path / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    result = subprocess.run(
        [_promtool(), "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode != 0
    assert "KzeroSlowTimeToFirstToken" in result.stdout + result.stderr


def test_every_required_alert_exists_and_has_severity_and_summary() -> None:
    alerts = {
        rule["alert"]: rule for group in rule_groups() for rule in group["rules"] if "alert" in rule
    }
    assert set(alerts) == ALERTS
    for rule in alerts.values():
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]


def test_every_alert_has_a_negative_case_for_a_model_scaled_to_zero() -> None:
    text = RULE_TESTS.read_text()
    for alert in ALERTS:
        assert f"alertname: {alert}, exp_alerts: []" in text


def test_rules_use_only_contract_and_knative_series_and_their_own_recordings() -> None:
    allowed = ALLOWED_SERIES | recorded_names()
    for group in rule_groups():
        for rule in group["rules"]:
            used = metric_names(rule["expr"])
            assert used, rule
            assert used <= allowed, (rule.get("record") or rule.get("alert"), used - allowed)
