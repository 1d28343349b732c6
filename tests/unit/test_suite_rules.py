"""tests/conftest.py's rules, run on a scratch suite: a skip outside e2e/gpu fails in CI,
and elsewhere the run ends by counting such skips and naming what enables them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"
SCRATCH_SUITE = """
import pytest

def test_needs_prometheus():
    pytest.skip("prometheus not found: apt-get install prometheus")

def test_needs_promtool():
    pytest.skip("promtool not found: apt-get install prometheus")

def test_needs_root():
    pytest.skip("needs root to mount a tmpfs")

@pytest.mark.e2e
def test_needs_a_cluster():
    pytest.skip("no kind cluster")

def test_runs():
    pass
"""


def run_suite(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_scratch.py").write_text(SCRATCH_SUITE)
    # A module that skips as a whole, as tests/gpu does without a GPU.
    (tmp_path / "test_whole_module.py").write_text(
        "import pytest\npytest.skip('no GPU', allow_module_level=True)\n"
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    e2e: needs a cluster\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": "true"} if ci else {})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-ra", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_outside_ci_the_run_ends_with_the_count_and_the_command(tmp_path: Path):
    result = run_suite(tmp_path, ci=False)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "   1 skipped: prometheus not found: apt-get install prometheus" in lines
    assert "   1 skipped: needs root to mount a tmpfs" in lines
    assert not any("no kind cluster" in line and "skipped:" in line for line in lines)
    assert (
        "2 of them need a missing tool. To run them: apt-get install prometheus (as root), "
        "then make test again." in lines
    )
    # The count comes after pytest's own list of skips, just before the final line.
    text = [line for line in lines if line.strip()]
    assert text[-2].startswith("2 of them need a missing tool")
    assert "short test summary info" in result.stdout.partition("skipped here")[0]


def test_in_ci_the_same_skips_fail(tmp_path: Path):
    result = run_suite(tmp_path, ci=True)
    assert result.returncode == 1
    assert "3 failed, 1 passed, 2 skipped" in result.stdout
    assert "skipped here, failures in CI" not in result.stdout
