"""Helm's --timeout outlasts what the chart asks Helm to wait for.

`helm install`/`upgrade` wait for hook Jobs and `helm test` for the test Pod up
to --timeout, 300 s unless given (helm v4.1.4 pkg/cmd/install.go and
pkg/cmd/release_testing.go, `--timeout` default). The warm Job may run
warmJob.activeDeadlineSeconds, and the test Pod gives each model
tests.timeoutSeconds. Every place that tells a user (or CI) which command to
run passes a --timeout at least that long.
"""

from __future__ import annotations

import re

import yaml

from .helm_cli import CHART, REPO, notes

MARGIN_S = 60  # scheduling, image pull and Helm's own polling
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
E2E_VALUES = yaml.safe_load((REPO / "tests" / "e2e" / "values.yaml").read_text())


def seconds(duration: str) -> int:
    """A Go duration as Helm's flag takes it: 61m, 3660s, 1h2m."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)([hms])", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * units[u] for n, u in parts)


def timeouts(text: str, command: str) -> list[int]:
    """The --timeout of every `helm <command>` line in text (continuations joined)."""
    lines = text.replace("\\\n", " ").splitlines()
    found = []
    for line in lines:
        if line.strip().startswith(("#", "- name:")):
            continue
        if re.search(rf"\bhelm (upgrade --install|{command}) [\w{{$]", line):
            match = re.search(r"--timeout[ =](\S+)", line)
            assert match, f"no --timeout in: {line.strip()}"
            found.append(seconds(match.group(1)))
    return found


def install_needs(values: dict) -> int:
    return int(values["warmJob"]["activeDeadlineSeconds"]) + MARGIN_S


def helm_test_needs(values: dict, models: int) -> int:
    return models * int(values["tests"]["timeoutSeconds"]) + MARGIN_S


def test_readme_install_and_test_timeouts_cover_the_default_values() -> None:
    readme = (REPO / "README.md").read_text()
    (install,) = timeouts(readme, "install")
    (test,) = timeouts(readme, "test")
    assert install >= install_needs(VALUES)
    assert test >= helm_test_needs(VALUES, len(VALUES["models"]))


def test_notes_print_timeouts_derived_from_the_values() -> None:
    text = notes("--set", "warmJob.activeDeadlineSeconds=1200", "--set", "tests.timeoutSeconds=300")
    assert timeouts(text, "upgrade") == [1200 + MARGIN_S]
    assert timeouts(text, "test") == [300 + MARGIN_S]


def test_kind_install_and_ci_helm_test_cover_the_e2e_values() -> None:
    values = {**VALUES, **E2E_VALUES, "tests": {**VALUES["tests"], **E2E_VALUES.get("tests", {})}}
    values["warmJob"] = {**VALUES["warmJob"], **E2E_VALUES.get("warmJob", {})}
    (install,) = timeouts((REPO / "scripts" / "kind" / "install-kzero.sh").read_text(), "install")
    assert install >= install_needs(values)
    workflow = (REPO / ".github" / "workflows" / "e2e-kind.yaml").read_text()
    (test,) = timeouts(workflow, "test")
    assert test >= helm_test_needs(values, len(E2E_VALUES["models"]))
